"""Settings: one class, environment variables with the `ELIGO_` prefix, secure defaults."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ELIGO_", extra="ignore")

    env: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="development (local, announced) or production (strict checks at start)",
    )
    rules_dir: Path = Field(
        default=PROJECT_ROOT / "rules",
        description="Directory with features.yaml, evidence.yaml and therapies/*.yaml",
    )
    migrations_dir: Path = Field(
        default=PROJECT_ROOT / "migrations",
        description="Alembic scripts (set in images where the package is installed elsewhere)",
    )
    rules_reload_interval: float = Field(
        default=2.0,
        ge=0,
        description="Seconds between checks of the rules directory for changed files; "
        "0 turns polling off (SIGHUP still reloads)",
    )
    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'data' / 'eligo.db'}",
        description="SQLAlchemy URL; the embedded default is a SQLite file",
    )
    host: str = Field(default="127.0.0.1", description="Bind address for `eligo serve`")
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Larger request bodies get 413"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
