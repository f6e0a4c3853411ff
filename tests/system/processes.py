"""The engine's services as separate processes, each in a folder of its own (system tests, benchmarks).

`Processes` starts a command in a new empty folder under its root: the folder is the process's
working directory, and its ``home/``, ``tmp/`` and ``data/`` are the process's HOME (so ~/.cache too),
TMPDIR and data home (``DATAENGINE_HOME``). The caller's ``DATAENGINE_*`` and ``AWS_*`` variables are
not inherited: each service sees only what it is given, as a container of docker-compose.yml would.
The output goes to a log file outside every folder, so a folder holds only what its process wrote.
Each process leads a session of its own, so stopping it (SIGTERM, then SIGKILL after a grace time)
stops its children too (uvicorn's and Celery's worker processes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from backend.up import worker_command

NOT_INHERITED = ("DATAENGINE_", "AWS_")
STOP_GRACE_SECONDS = 20.0


@dataclass
class Service:
    """One started process: its name, its own folder, and where its output goes."""

    name: str
    folder: Path
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def files(self) -> list[Path]:
        """Every file in the folder, relative to it, sorted."""
        return sorted(p.relative_to(self.folder) for p in self.folder.rglob("*") if p.is_file())

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}; its output:\n{self.log()}")

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `condition` while the process lives; fail with its output after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not condition():
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what} after {timeout:.0f} s; its output:\n{self.log()}")
            time.sleep(0.25)

    def wait_http(self, url: str, timeout: float = 120.0) -> None:
        """Wait until GET `url` answers 200."""

        def answers() -> bool:
            try:
                return httpx.get(url, timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        self.wait_until(answers, timeout, f"answer from {url}")

    def wait_log(self, text: str, timeout: float = 120.0) -> None:
        self.wait_until(lambda: text in self.log(), timeout, f"{text!r} in its output")

    def stop(self) -> None:
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Processes:
    """Starts services under `root` (one new folder each), logs in `logs`; stops them all on exit.

    Args:
        root: where the services' folders are made (``root/<name>``, which must not exist yet).
        logs: where their output goes (``logs/<name>.log``), outside every service folder.
        env: variables every service gets (the shared database, broker and object store).
    """

    def __init__(self, root: Path, logs: Path, env: Mapping[str, str]) -> None:
        self.root, self.logs, self.env = root, logs, dict(env)
        self.services: list[Service] = []

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Service:
        folder = self.root / name
        folder.mkdir(parents=True)  # fails if a service already has it: folders are never shared
        for sub in ("home", "tmp"):
            (folder / sub).mkdir()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
        full_env = {
            **inherited,
            **self.env,
            "HOME": str(folder / "home"),
            "TMPDIR": str(folder / "tmp"),
            "XDG_CACHE_HOME": str(folder / "home" / ".cache"),
            "DATAENGINE_HOME": str(folder / "data"),
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        }
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv, cwd=folder, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        service = Service(name, folder, process, log_path)
        self.services.append(service)
        return service

    def run(self, name: str, argv: list[str], timeout: float = 120.0) -> str:
        """Run a one-shot command (e.g. the CLI) as a service of its own; its output, or fail with it."""
        service = self.start(name, argv)
        try:
            service.process.wait(timeout=timeout)
        finally:
            service.stop()
        if service.process.returncode != 0:
            raise AssertionError(f"{name} exited with {service.process.returncode}:\n{service.log()}")
        return service.log()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_: object) -> None:
        for service in reversed(self.services):
            service.stop()


def api_argv(port: int, workers: int = 1) -> list[str]:
    """The API as docker-compose.yml runs it: uvicorn with `workers` processes."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "backend.main:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]


def create_admin_argv(password: str) -> list[str]:
    """The CLI creating the first admin, ``admin`` (a one-shot process: `Processes.run`)."""
    return [sys.executable, "-m", "backend.cli", "create-user", "admin", "--role", "admin", "--password", password]


def worker_argv(queues: str, name: str) -> list[str]:
    """One Celery worker process (solo pool) serving `queues` (comma-separated), as `dataengine up` starts it."""
    return worker_command(queues.split(","), name)


def model_service_argv(storage_url: str, port: int) -> list[str]:
    """The model service on the CPU over `storage_url`, as docker-compose.yml runs it on a GPU."""
    return [
        sys.executable,
        "-m",
        "model_server",
        "serve",
        "--storage",
        storage_url,
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


WORKER_READY = "ready."  # what a Celery worker prints once it consumes
