"""Every Trainport setting, in one pydantic-settings class read from `TRAINPORT_*` variables.

The README's configuration table documents each field; keep the two in step.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STATE_DIR = Path(".trainport")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Runtime configuration. Defaults give the embedded, single-machine platform."""

    model_config = SettingsConfigDict(env_prefix="TRAINPORT_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_STATE_DIR}/trainport.db",
        description="SQLAlchemy URL: sqlite:///path (embedded) or postgresql+psycopg://...",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    broker_url: str = Field(
        default="", description="Celery broker; empty means the embedded, serverless transport"
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    idempotency_ttl_hours: int = Field(default=24, ge=24)
    long_poll_max_seconds: int = Field(default=60, ge=1, le=600)
    key_touch_interval_seconds: int = Field(
        default=60, ge=0, description="How stale api_keys.last_used_at may get before a write"
    )
    log_level: str = "INFO"
    # Workers and scheduling (issue 3).
    celery_queue: str = Field(default="trainport", description="Celery queue the workers consume")
    local_cpu_slots: int | None = Field(
        default=None, ge=1, description="CPU-only ranks the local cluster runs at once; empty: CPUs"
    )
    local_gpus: dict[str, int] = Field(
        default_factory=dict, description='GPUs of the local cluster per type, e.g. {"a100": 8}'
    )
    scheduler_starvation_seconds: int = Field(
        default=600, ge=0, description="After this long queued, a run reserves what it waits for"
    )
    fair_share_window_hours: float = Field(
        default=24.0, gt=0, description="How far back GPU usage counts for fair share"
    )
    max_task_deliveries: int = Field(
        default=5, ge=1, description="Unfinished deliveries of one task before the run fails"
    )
    system_retry_limit: int = Field(
        default=3, ge=0, description="Retries after platform failures, apart from max_retries"
    )
    launch_grace_seconds: float = Field(
        default=60.0, gt=0, description="How long a starting run may go unseen before relaunch"
    )
    reconcile_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often the reconciler compares runs with executors"
    )
    relay_poll_seconds: float = Field(
        default=0.05, gt=0, description="Outbox poll interval where LISTEN/NOTIFY is unavailable"
    )
    public_url: str = Field(default="http://127.0.0.1:8000", description="URL runs call back")
    state_dir: Path = Field(
        default=DEFAULT_STATE_DIR, description="Local executor's attempt and checkpoint folders"
    )
    log_dir: Path | None = Field(
        default=None, description="Where run logs are kept; empty means <state_dir>/logs"
    )
    cancel_grace_seconds: float = Field(
        default=10.0, ge=0, le=3600, description="SIGTERM to SIGKILL delay when stopping a run"
    )

    @model_validator(mode="after")
    def _production_needs_a_server_database(self) -> Settings:
        # SQLite is for one machine; in production several processes share the database.
        if self.environment is Environment.PRODUCTION and self.is_sqlite:
            raise ValueError("TRAINPORT_DATABASE_URL must point at PostgreSQL in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def log_root(self) -> Path:
        return self.log_dir or self.state_dir / "logs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
