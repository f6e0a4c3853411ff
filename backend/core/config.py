"""One `Settings` object for the whole backend, read from `DATAENGINE_*` environment variables.

The defaults are the embedded mode: everything under one data home (SQLite database, storage root,
secret key, broker, logs), no external services. Production overrides `DATAENGINE_DATABASE_URL`,
`DATAENGINE_BROKER_URL`, ... .

The data home is `DATAENGINE_HOME` (`DATAENGINE_DATA_DIR`, its older name, still works; HOME wins if
both are set), by default `var/` in the install's own folder: the source checkout that
`scripts/install` installs in editable mode (or `/app` in the Docker image, which sets
`DATAENGINE_HOME=/data`). Not a per-user folder: every working install is such a checkout, since the
migrations (`alembic.ini`, `migrations/`) are read from next to the code. Nothing depends on the
working directory: a relative path given in the environment is made absolute once, here, and the
built frontend is looked up next to the code, so `dataengine` run from any folder sees the same state.
"""

from __future__ import annotations

import secrets
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from limits import parse as parse_rate
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_FILE = "secret_key"
INSTALL_ROOT = Path(__file__).resolve().parents[2]  # the checkout: backend/, frontend/, migrations/
DEFAULT_JOB_STALE_SECONDS = 60.0


class Settings(BaseSettings):
    """Every knob of the backend. Build one per process (or per test) and pass it down explicitly."""

    # populate_by_name: `Settings(data_dir=...)` by the field's name, the environment by its aliases.
    model_config = SettingsConfigDict(env_prefix="DATAENGINE_", env_file=None, extra="ignore", populate_by_name=True)

    # The data home (see the module docstring), absolute after validation.
    data_dir: Path = Field(
        default=INSTALL_ROOT / "var", validation_alias=AliasChoices("DATAENGINE_HOME", "DATAENGINE_DATA_DIR")
    )
    # Images, thumbnails, embeddings, model artifacts and exports; default `<data_dir>/storage`.
    storage_root: Path | None = None
    # Where they live instead, as `model_server.api.open_storage` reads it: an S3 bucket
    # (`s3://bucket/prefix?endpoint_url=http://minio:9000&region=us-east-1`, credentials from the
    # standard AWS_* variables) or a folder (`file:///abs/path`). None: the folder `storage_root`.
    storage_url: str | None = Field(default=None, min_length=1)
    # Stores images may be imported from (`POST .../images/from-bucket`), by name: a name -> a storage
    # URL as above, e.g. `{"incoming": "s3://drop/cameras?endpoint_url=http://minio:9000"}`. Only these.
    import_sources: dict[str, str] = Field(default_factory=dict, max_length=64)
    # SQLAlchemy URL; default `sqlite:///<data_dir>/dataengine.db`. PostgreSQL: `postgresql+psycopg://...`.
    database_url: str | None = None

    # JWT signing key. When not given it is generated once and persisted in `<data_dir>/secret_key`
    # so tokens survive a restart of the embedded mode.
    secret_key: str | None = None
    jwt_algorithm: str = "HS256"
    access_token_minutes: int = Field(default=12 * 60, gt=0)
    # bcrypt cost factor; tests lower it to keep user creation fast.
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)

    # Failed logins allowed per username and per client address in a moving window (`limits` syntax,
    # e.g. "10/5 minutes"); beyond that the login answers 429 with Retry-After, right password or not.
    login_failures_per_username: str = "10/5 minutes"
    login_failures_per_address: str = "100/5 minutes"
    # Where those counts live (a `limits` storage URL). None: the broker's Redis when `broker_url` is a
    # redis URL (production: every API worker shares the counts), else this process's memory (embedded).
    rate_limit_storage_url: str | None = None
    # Lifetime of the ticket that opens a job's event stream (it travels in the URL, so it is short).
    job_events_ticket_seconds: int = Field(default=60, gt=0, le=3600)

    # Upload limits. A request larger than `max_request_bytes` is refused (413) before its body is read.
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # one file
    max_request_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)  # one whole multipart request
    max_image_pixels: int = Field(default=50_000_000, gt=0)  # width*height, decompression-bomb guard
    max_files_per_request: int = Field(default=500, gt=0)
    thumbnail_size: int = Field(default=256, gt=0)

    # How long a claimed image stays locked to its annotator without activity.
    lock_expiry_seconds: int = Field(default=30 * 60, gt=0)

    # Projects with more images than this are exported as a job (POST /exports), not streamed by GET /export.
    export_stream_max_images: int = Field(default=500, ge=0)

    # Celery. None = the embedded mode (a broker and result store that need no server, chosen by
    # backend/worker); production sets redis URLs.
    broker_url: str | None = None
    result_backend: str | None = None
    # A running job whose heartbeat is older than this is taken for abandoned (its worker died) and
    # requeued by the sweep. Runners heartbeat 12 times and sweeps run twice per window, so only a
    # dead worker (not a slow one) goes stale; tests lower it to see a recovery in seconds.
    job_stale_seconds: float = Field(default=DEFAULT_JOB_STALE_SECONDS, ge=1)

    # Webhooks and URL image imports reach global addresses only (backend/core/outbound.py); networks
    # listed here are reachable too, e.g. `["10.20.0.0/16"]` for a receiver on the company network.
    outbound_allowed_networks: list[IPv4Network | IPv6Network] = Field(default_factory=list, max_length=64)

    # Model server. None = in process (embedded mode); production: "http://model-server:8001".
    model_server_url: str | None = None
    default_model_arch: str = "vit_t"
    # Retraining rounds that train the image encoder (encoder_mode full/last_k/lora) are refused on a
    # CPU, where a real encoder takes days; tests set this to train the tiny `vit_test` encoder there.
    allow_cpu_encoder_training: bool = False
    # Where `dataengine models download` fetches official checkpoints (the only command that goes online);
    # tests point it at a loopback server.
    weights_base_url: str = "https://dl.fbaipublicfiles.com/segment_anything"

    # The built frontend (Vite output) served at `/`; missing folder = API only.
    frontend_dist: Path = INSTALL_ROOT / "frontend" / "dist"

    @field_validator("login_failures_per_username", "login_failures_per_address")
    @classmethod
    def _parse_rate(cls, value: str) -> str:
        """Refuse a malformed rate at startup rather than at the first login."""
        parse_rate(value)  # ValueError names the problem
        return value

    @model_validator(mode="after")
    def _fill_derived_defaults(self) -> Settings:
        # Absolute once, so that children started elsewhere (and later chdirs) see the same folders.
        self.data_dir = self.data_dir.expanduser().resolve()
        self.frontend_dist = self.frontend_dist.expanduser().resolve()
        self.storage_root = (self.storage_root or self.data_dir / "storage").expanduser().resolve()
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'dataengine.db'}"
        if self.rate_limit_storage_url is None:
            broker = self.broker_url or ""
            self.rate_limit_storage_url = broker if broker.startswith(("redis://", "rediss://")) else "memory://"
        return self

    @property
    def storage_path(self) -> Path:
        """The storage root, always set after validation."""
        assert self.storage_root is not None
        return self.storage_root

    @property
    def db_url(self) -> str:
        """The database URL, always set after validation."""
        assert self.database_url is not None
        return self.database_url

    def ensure_secret_key(self) -> str:
        """Return the JWT key, generating and persisting one in `data_dir` on first use (mode 0600)."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / SECRET_KEY_FILE
        if path.exists():
            self.secret_key = path.read_text().strip()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(48)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(key)
            tmp.chmod(0o600)
            tmp.replace(path)
            self.secret_key = key
        return self.secret_key
