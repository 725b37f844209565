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
    public_url: str = Field(default="http://127.0.0.1:8000", description="URL runs call back")

    @model_validator(mode="after")
    def _production_needs_a_server_database(self) -> Settings:
        # SQLite is for one machine; in production several processes share the database.
        if self.environment is Environment.PRODUCTION and self.is_sqlite:
            raise ValueError("TRAINPORT_DATABASE_URL must point at PostgreSQL in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
