"""Real Celery workers for the worker-crash tests, and `dataengine up` as a process with its tree.

On real Redis: a broker per suite (each suite passes its own Redis database so that two suites
running at once on one machine never take each other's messages) and worker processes. For `up`:
`UpProcess`, and the process tree read from /proc to see what a stop leaves behind.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend.core.config import Settings
from backend.up import worker_command
from backend.worker import celery_app
from tests.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("DATAENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


def redis_database(number: int) -> str:
    """`REDIS_URL` with another database number."""
    return REDIS_URL.rsplit("/", 1)[0] + f"/{number}"


@contextmanager
def redis_broker(settings: Settings, url: str) -> Iterator[Settings]:
    """`settings` with Redis at `url` as the broker (emptied before and after); skips if Redis is absent."""
    import redis

    try:
        connection = redis.Redis.from_url(url, socket_connect_timeout=2)
        connection.ping()
    except redis.exceptions.RedisError as error:
        pytest.skip(f"Redis at {url} unreachable: {error}")
    connection.flushdb()  # no messages left by an earlier (killed) run
    settings.broker_url = url
    celery_app.configure(settings, eager=False)
    try:
        yield settings
    finally:
        connection.flushdb()
        celery_app.configure(Settings(data_dir=settings.data_dir), eager=False)


@contextmanager
def worker_processes(settings: Settings, queue: str, log_dir: Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    """Yield `start(name)`, which starts a real worker process on `queue`; all are stopped at the end."""
    started: list[subprocess.Popen] = []

    def start(name: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATAENGINE_DATA_DIR": str(settings.data_dir),
            "DATAENGINE_DATABASE_URL": settings.db_url,
            "DATAENGINE_STORAGE_ROOT": str(settings.storage_path),
            "DATAENGINE_SECRET_KEY": settings.ensure_secret_key(),
            "DATAENGINE_BROKER_URL": settings.broker_url,
            "OMP_NUM_THREADS": "2",
        }
        log = open(log_dir / f"{name}.log", "wb")
        process = subprocess.Popen(
            worker_command([queue], name),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def up_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a `dataengine up` on `tmp_path/var` (no DATAENGINE_* of the caller's), plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAENGINE_")}
    return {
        **env,
        "DATAENGINE_DATA_DIR": str(tmp_path / "var"),
        "DATAENGINE_BCRYPT_ROUNDS": "4",
        "DATAENGINE_FRONTEND_DIST": str(tmp_path / "no-frontend"),
        "OMP_NUM_THREADS": "2",
        **settings,
    }


class Output:
    """Reads a process's output in a thread from the start to the end, so that the pipe that `up`
    and its worker write to never fills (the test used to stop reading after "serving"), and a
    failure message can carry everything they printed. Why an embed job once stayed queued for
    300 s in a loaded CI run is not known: up printed only ~4.5 KB in 90 s when measured."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> list[re.Match]:
        """The first `count` matches of `pattern` (one per line), waiting up to `timeout` s for them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [m for m in map(functools.partial(re.search, pattern), self.lines) if m]
                if len(matches) >= count:
                    return matches[:count]
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise AssertionError(f"{pattern!r} not printed {count} time(s); output:\n{self.text()}")
                self._changed.wait(min(left, 1.0))

    def text(self) -> str:
        return "".join(self.lines)

    def rest(self, timeout: float = 30) -> str:
        """All output once the process has closed it."""
        self._thread.join(timeout)
        return self.text()


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start_time: int  # clock ticks after boot: with the pid, names a process even if the pid is reused
    command: str


def processes() -> list[ProcessInfo]:
    """Every process of the machine, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # it exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
        found.append(
            ProcessInfo(
                int(entry.name), int(fields[1]), int(fields[2]), int(fields[3]), fields[0], int(fields[19]), command
            )
        )
    return found


def process_tree(root: int) -> list[ProcessInfo]:
    """`root` and every live process descended from it."""
    every = processes()
    children: dict[int, list[ProcessInfo]] = {}
    for info in every:
        children.setdefault(info.ppid, []).append(info)
    tree = [info for info in every if info.pid == root]
    for info in tree:  # grows while it is walked
        tree.extend(children.get(info.pid, []))
    return tree


def left_behind(tree: list[ProcessInfo]) -> list[ProcessInfo]:
    """The live processes among `tree` (matched by pid and start time), or in a session one of them led."""
    known = {(info.pid, info.start_time) for info in tree}
    sessions = {info.sid for info in tree}
    return [
        info
        for info in processes()
        if info.state != "Z" and ((info.pid, info.start_time) in known or info.sid in sessions)
    ]


class UpProcess:
    """`dataengine up` as a subprocess in its own session (so a signal to its group is a terminal's
    Ctrl-C): `start` waits until it serves, `login` as the first admin, `stop(sig)` returns what was
    left behind. Use as a context manager: it is SIGKILLed with its whole tree if a test fails. It runs
    in `cwd` (default: the checkout), which must not matter (tests/backend/test_data_home.py), with
    `args` after `up --port N`."""

    def __init__(self, tmp_path: Path, cwd: Path = REPO_ROOT, args: tuple[str, ...] = (), **settings: str) -> None:
        self.cwd, self.args = cwd, args
        self.env = up_environment(tmp_path, **settings)
        self.data_dir = Path(self.env["DATAENGINE_DATA_DIR"])
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.output: Output | None = None
        self._stopped_tree: list[ProcessInfo] = []

    def __enter__(self) -> UpProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "up", "--port", str(self.port), *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output = Output(self.process)
        try:
            self.output.wait_for(r"serving http://", 300)
            with httpx.Client(base_url=self.base_url, timeout=10) as http:
                wait_for(lambda: _answers(http), 60, f"{self.base_url}/openapi.json; output:\n{self.output.text()}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for info in left_behind(self._stopped_tree + self.tree()):
            with suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)
        self.process.wait()

    def login(self, http: httpx.Client) -> dict[str, str]:
        """Headers of the first admin, whose password `up` wrote to the data dir."""
        password = (self.data_dir / "admin-password.txt").read_text().strip()
        response = http.post("/api/auth/token", data={"username": "admin", "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def tree(self) -> list[ProcessInfo]:
        return process_tree(self.process.pid)

    def stop(self, sig: int, timeout: float = 60) -> list[ProcessInfo]:
        """Send `sig` to up's process group, wait for up to exit (0), return the processes it left."""
        tree = self._stopped_tree = self.tree()
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"up did not stop in {timeout} s; output:\n{self.output.text()}") from None
        text = self.output.rest()
        assert self.process.returncode == 0 and "stopped" in text, text
        return left_behind(tree)


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/openapi.json").status_code == 200
    except httpx.TransportError:
        return False
