"""Settings (env vars), validated once at startup so bad values fail loudly.

Every knob is documented in service/README.md.  ``get_settings()`` is cached
per process; tests change env vars before starting subprocesses instead.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    celery_broker_url: str = "redis://127.0.0.1:6379/0"
    celery_result_backend: str | None = None
    database_url: str = "sqlite:///./data-sync.db"
    api_tokens: str = "dev-token=dev"
    admin_token: str | None = None
    publish_timeout_ms: int = Field(50, ge=0, le=10_000)  # 0 = unbounded publish (canary knob)
    lease_seconds: float = Field(5.0, gt=0.2, le=3600)
    row_work_ms: int = Field(20, ge=0, le=60_000)
    sweep_interval_seconds: float = Field(1.0, gt=0.05, le=600)
    fallback_concurrency: int = Field(4, ge=1, le=256)
    seed_demo: bool = True
    visibility_timeout_seconds: int = Field(3600, ge=1)
    breaker_open_seconds: float = Field(1.0, ge=0, le=600)
    heartbeat_interval_seconds: float = Field(1.0, gt=0.05, le=60)
    worker_live_seconds: float = Field(3.0, gt=0.1, le=600)
    max_attempts: int = Field(20, ge=1, le=10_000)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    api_broker_socket_timeout: float = Field(0.5, gt=0, le=60)
    # Unsafe knobs (canaries, see service/README.md): the defaults are the correct service.
    task_acks_late: bool = True
    task_reject_on_worker_lost: bool = True
    recovery_sweeper: bool = True
    claim_fencing: bool = True
    effects_mode: Literal["transactional", "per-row"] = "transactional"
    durable_revoke: bool = True
    fallback: bool = True
    unknown_status: Literal["not-found", "pending"] = "not-found"
    fallback_store: Literal["durable", "memory"] = "durable"
    broker_connection_retry: bool = True

    @field_validator("celery_broker_url")
    @classmethod
    def _broker_is_redis(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("CELERY_BROKER_URL must be a redis:// URL (the sweeper inspects Redis queues)")
        return v

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, v: str) -> str:
        if not v.startswith(("sqlite:", "postgresql")):
            raise ValueError("DATABASE_URL must be sqlite:///... or postgresql://...")
        return v

    @field_validator("admin_token")
    @classmethod
    def _admin_token(cls, v: str | None) -> str | None:
        return v or None  # empty string == unset == probe disabled

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, v: str) -> str:
        parse_tokens(v)
        return v

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.celery_result_backend:
            self.celery_result_backend = self.celery_broker_url
        return self

    @property
    def publish_bounded(self) -> bool:
        return self.publish_timeout_ms > 0

    @property
    def tokens(self) -> dict[str, str]:
        return parse_tokens(self.api_tokens)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def parse_tokens(raw: str) -> dict[str, str]:
    """``"tok=caller,tok2=caller2"`` -> {token: caller}; rejects malformed pairs."""
    out: dict[str, str] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        token, sep, caller = part.partition("=")
        token, caller = token.strip(), caller.strip()
        if not sep or not token or not caller:
            raise ValueError(f"API_TOKENS entry {part!r} is not token=caller")
        out[token] = caller
    if not out:
        raise ValueError("API_TOKENS must contain at least one token=caller pair")
    return out


class ConfigError(RuntimeError):
    pass


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:  # turn pydantic's dump into one clear line per field
        lines = [f"  {'.'.join(str(x) for x in e['loc']).upper() or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid data-sync configuration:\n" + "\n".join(lines)) from None
