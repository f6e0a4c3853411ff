"""`dataengine up`: the whole product on one machine with one command (the embedded mode).

In order: migrate the database; on the first run create an `admin` user and write its password to
``<data_dir>/admin-password.txt`` (mode 0600; only the path is printed, so the password never lands
in a terminal log); create the default `untrained` model version (weights and browser decoder,
written once); then run, under one supervisor (this process):

* a Celery worker (queues embed, auto, train, one task at a time, the model inside it; broker and
  results in SQLite files under the data dir, so no server is needed),
* Celery beat, a process of its own (it holds the data dir's beat lock, so there is one beat per
  data dir even when a second `up` or a stray `celery beat` starts; see `backend.worker.celery_app`),
* the API and the built frontend (uvicorn, in a thread of this process).

Supervision: a worker or beat that dies is restarted (after 1 s, doubling up to a minute while it
keeps dying young), and this process sweeps stale jobs itself every half `job_stale_seconds`: a job
whose worker was killed is requeued once its heartbeat is that old, and the restarted worker runs
it, without a person and without depending on the worker that died.

Every child runs in its own session, so a terminal's Ctrl-C reaches only this process; SIGINT,
SIGTERM or SIGHUP then stop the API, send SIGTERM to each child's process group (the worker warm
shuts down: its running task finishes or, past `WORKER_GRACE_SECONDS`, the group gets SIGKILL), and
SIGKILL whatever a group leader leaves behind, so no process survives `up`.

The data dir is 0700 and everything `up` and its children create is private to the user (umask
077): the SQLite database holds password hashes, the broker holds task arguments.

Output: one short block (the URL, where the first admin's password is, the model it serves, the data
home) and then only what needs a person: a child that died (with its last log line), a requeued
job, warnings and errors of the API. The worker and beat write to ``<data_dir>/logs/worker.log`` and
``beat.log`` (the previous run's are kept as ``*.log.1``), the API's access log is off, and the
TracerWarnings of the default model's ONNX export are dropped: all of that is routine, and a person
who must read it uses ``--verbose``, which prints everything here as it happens.

With `DATAENGINE_BROKER_URL` set, the worker uses that broker instead (docker-compose runs the
pieces as separate services and does not use this command).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from backend.core.config import Settings

WORKER_GRACE_SECONDS = 30
API_GRACE_SECONDS = 5  # open event streams do not hold the shutdown longer than this
POLL_SECONDS = 0.5
FIRST_RESTART_DELAY = 1.0
LONGEST_RESTART_DELAY = 60.0
HEALTHY_AFTER_SECONDS = 60.0  # a child that ran this long before dying is restarted at once again
PASSWORD_FILE = "admin-password.txt"
LOG_DIR = "logs"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger(__name__)


def register_up(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("up", help="migrate, then run the API, a worker and the model (embedded mode)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print the worker's and beat's logs, the API's access log and the model export's warnings",
    )
    parser.set_defaults(func=up, needs_schema=False)  # up migrates the database itself


def _resolved_settings() -> Settings:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)  # also an install made before the data dir was private
    settings.ensure_secret_key()
    return settings


def _make_database_private(settings: Settings) -> None:
    """chmod 0600 the SQLite database file (new ones already are, by the umask; older ones were 0644)."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database and Path(url.database).is_file():
        Path(url.database).chmod(0o600)


def create_first_admin(settings: Settings) -> str | None:
    """Create `admin` with a random password if the install has no admin; return the password."""
    from sqlalchemy import select

    from backend.core.db import make_engine, make_session_factory
    from backend.tables import Role, User
    from backend.users.service import create_user

    engine = make_engine(settings.db_url)
    try:
        with make_session_factory(engine)() as db:
            if db.scalar(select(User.id).where(User.role == Role.admin)) is not None:
                return None
            password = secrets.token_urlsafe(12)
            create_user(db, "admin", password, Role.admin, settings.bcrypt_rounds)
            return password
    finally:
        engine.dispose()


def write_first_password(settings: Settings, password: str) -> Path:
    """Write the first admin password to `<data_dir>/admin-password.txt`, readable by this user only."""
    path = settings.data_dir / PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an earlier install keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    return path


def create_default_model(settings: Settings, verbose: bool) -> str:
    """Create the untrained default version if missing; describe the version new projects get.

    Unless `verbose`, the warnings raised in model_server's code while the first run exports the
    browser decoder (torch's TracerWarnings: expected when tracing a model) are not shown."""
    from backend.clients.model_server import model_service
    from backend.core.db import make_engine, make_session_factory
    from backend.model_versions.service import default_version, ensure_default_version
    from backend.storage import storage_for
    from backend.tables import ModelOrigin

    engine = make_engine(settings.db_url)
    try:
        with make_session_factory(engine)() as db, warnings.catch_warnings():
            if not verbose:
                warnings.filterwarnings("ignore", module=r"model_server\.")
            storage = storage_for(settings)
            client = model_service(settings, storage)
            ensure_default_version(db, storage, client, settings)
            version = default_version(db, storage, client, settings)
            if version.origin == ModelOrigin.untrained:
                return (
                    f"{version.name} (version {version.id}): its masks are meaningless until real weights "
                    "are imported:\n"
                    "         `dataengine models download vit_b`, or `dataengine models import PATH --arch vit_b`"
                )
            return f"{version.name} ({version.architecture}, {version.origin.value}, version {version.id})"
    finally:
        engine.dispose()


def rotate_log(path: Path) -> Path:
    """Keep the previous run's log as `<name>.1` and start an empty one: each run's log stays readable
    and two runs' worth at most is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))
    return path


def last_line(path: Path) -> str:
    """The last non-empty line of a log (its end only is read), or "" if there is none."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
            lines = file.read().decode(errors="replace").split("\n")
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def worker_environment(settings: Settings) -> dict[str, str]:
    """The children's environment: the same settings as this process, spelled as DATAENGINE_* variables."""
    env = {
        **os.environ,
        "DATAENGINE_HOME": str(settings.data_dir),
        "DATAENGINE_STORAGE_ROOT": str(settings.storage_path),
        "DATAENGINE_DATABASE_URL": settings.db_url,
        "DATAENGINE_SECRET_KEY": settings.ensure_secret_key(),
    }
    if settings.storage_url is not None:
        env["DATAENGINE_STORAGE_URL"] = settings.storage_url
    if settings.model_server_url is not None:
        env["DATAENGINE_MODEL_SERVER_URL"] = settings.model_server_url
    return env


def worker_command(queues: Sequence[str] | None = None, name: str | None = None) -> list[str]:
    """A worker for `queues` (default: every queue), one task at a time (the CPU model uses every core),
    named ``<name>@<host>`` when `name` is given; the one form `up` and the tests' workers start."""
    from backend.worker.celery_app import QUEUES

    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "backend.worker.celery_app",
        "worker",
        "-Q",
        ",".join(QUEUES if queues is None else queues),
        "-P",
        "solo",
        *(["-n", f"{name}@%h"] if name else []),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "info",
    ]


def beat_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "backend.worker.celery_app",
        "beat",
        "-s",
        str(settings.data_dir / "celerybeat-schedule"),
        "-l",
        "info",
    ]


class Child:
    """A supervised child process, the leader of its own session and process group, writing to `log`
    (appended to over restarts) or, when that is None, to this process's stdout.

    Its exit is noticed with ``waitid(WNOWAIT)``, which leaves the leader a zombie: while it is one,
    its process group id cannot be reused, so the SIGKILL to the group that mops up what the leader
    left behind can only reach processes of this child. Only then is it reaped.
    """

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path | None) -> None:
        self.name, self.command, self.env, self.log = name, command, env, log
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.delay = FIRST_RESTART_DELAY / 2
        self.restart_at = 0.0

    def start(self) -> None:
        if self.log is None:
            self.process = subprocess.Popen(self.command, cwd=REPO_ROOT, env=self.env, start_new_session=True)
        else:
            with self.log.open("ab") as log:  # the child keeps its own copy of the descriptor
                self.process = subprocess.Popen(
                    self.command,
                    cwd=REPO_ROOT,
                    env=self.env,
                    start_new_session=True,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        self.started_at = time.monotonic()
        print(f"{self.name} started (pid {self.process.pid})" + (f", log {self.log}" if self.log else ""), flush=True)

    def keep_running(self) -> None:
        """Restart the child if it died (after a delay that grows while it keeps dying young)."""
        if self.process is not None:
            pid = self.process.pid
            code = self._reap()
            if code is None:
                return
            lived = time.monotonic() - self.started_at
            self.delay = (
                FIRST_RESTART_DELAY if lived >= HEALTHY_AFTER_SECONDS else min(self.delay * 2, LONGEST_RESTART_DELAY)
            )
            self.restart_at = time.monotonic() + self.delay
            where = f"; its log {self.log} ends: {last_line(self.log)}" if self.log else ""
            print(
                f"{self.name} (pid {pid}) exited with code {code}; restarting in {self.delay:.0f} s{where}", flush=True
            )
        if time.monotonic() >= self.restart_at:
            self.start()

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def stop(self, deadline: float) -> None:
        """Wait for the child (sent SIGTERM) to exit; from `deadline` on, SIGKILL its group."""
        while self.process is not None and self._reap() is None:
            if time.monotonic() >= deadline:
                self._signal(signal.SIGKILL)
            time.sleep(0.1)

    def _signal(self, sig: int) -> None:
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def _reap(self) -> int | None:
        """The exit code if the child has exited (its group killed, the child reaped), else None."""
        assert self.process is not None
        if os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return None
        self._signal(signal.SIGKILL)
        code = self.process.wait()
        self.process = None
        return code


class Sweeper:
    """Requeues the jobs of dead workers from this process, every half stale window.

    It needs no worker: when the one worker of `up` is killed, its job is requeued here and runs on
    the restarted worker. Beat's sweep (on the worker) does the same and the two never collide (see
    `backend.jobs.service.sweep_stale_jobs`).
    """

    def __init__(self, settings: Settings) -> None:
        from backend.core.db import make_engine, make_session_factory
        from backend.jobs import service

        self.sessions = make_session_factory(make_engine(settings.db_url))
        self.window = service.stale_after(settings)
        self.every = settings.job_stale_seconds / 2
        self.next_at = time.monotonic() + self.every

    def maybe_sweep(self) -> None:
        from backend.jobs import service

        if time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + self.every
        try:
            with self.sessions() as db:
                for job_id, action in service.sweep_stale_jobs(db, self.window):
                    print(f"job {job_id}: its worker stopped heartbeating; {action}", flush=True)
        except Exception:  # a failed sweep (a locked database) is retried; the supervisor lives on
            log.exception("sweeping stale jobs failed; trying again in %.0f s", self.every)


def admin_line(settings: Settings) -> str:
    """Where the first admin's password is, while its file is there; else how to reset it."""
    path = settings.data_dir / PASSWORD_FILE
    if path.is_file():
        return f"admin password: {path} (readable only by you): log in as admin, change it, then delete the file"
    return "admin: log in with your admin account (`dataengine set-password admin` sets a new password)"


def up(args: argparse.Namespace) -> int:
    import uvicorn
    from sqlalchemy.engine import make_url

    from backend.core.migrations import upgrade
    from backend.main import create_app
    from backend.worker import celery_app

    os.umask(0o077)  # the database, broker, storage and keys are this user's only
    settings = _resolved_settings()
    upgrade(settings.db_url)
    _make_database_private(settings)
    if args.verbose:
        print(f"database ready ({make_url(settings.db_url).render_as_string(hide_password=True)})", flush=True)
    password = create_first_admin(settings)
    if password:
        write_first_password(settings, password)
    model = create_default_model(settings, args.verbose)
    celery_app.configure(settings, eager=False)  # where the sweep sends requeued jobs

    stopping = threading.Event()
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: stopping.set())
    env = worker_environment(settings)
    logs = settings.data_dir / LOG_DIR
    children = [
        Child(name, command, env, None if args.verbose else rotate_log(logs / f"{name}.log"))
        for name, command in (("worker", worker_command()), ("beat", beat_command(settings)))
    ]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_level="info" if args.verbose else "warning",
            access_log=args.verbose,
            timeout_graceful_shutdown=API_GRACE_SECONDS,
        )
    )
    api = threading.Thread(target=server.run, name="api")  # not the main thread: uvicorn leaves signals to us
    sweeper = Sweeper(settings)
    code = 0
    try:
        for child in children:
            child.start()
        api.start()
        print(
            f"serving http://{args.host}:{args.port} (Ctrl-C stops it)\n"
            f"  {admin_line(settings)}\n"
            f"  model: {model}\n"
            f"  data home: {settings.data_dir}"
            + ("" if args.verbose else " (the API logs warnings and errors here; --verbose shows every log)"),
            flush=True,
        )
        while not stopping.wait(POLL_SECONDS):
            if not api.is_alive():
                print("the API server stopped; stopping", flush=True)
                code = 1
                break
            for child in children:
                child.keep_running()
            sweeper.maybe_sweep()
    finally:
        server.should_exit = True
        for child in children:
            child.terminate()
        deadline = time.monotonic() + WORKER_GRACE_SECONDS
        for child in children:
            child.stop(deadline)
        if api.is_alive():
            api.join()
        print("stopped", flush=True)
    return code
