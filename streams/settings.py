"""All settings in one typed object, read from COLUMNIST_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COLUMNIST_", extra="ignore")

    db: str = "chdb://./.columnist/db"
    """ClickHouse DSN: chdb://PATH (embedded engine, relative paths allowed) or http://host:8123."""
    cluster: Optional[str] = None
    """When set, DDL runs ON CLUSTER with Replicated engines."""
    model: str = "tiny-clip"
    """'mock', a built-in model name, or a model directory."""
    vocab: str = "space"
    """A built-in vocabulary name or a YAML file."""
    batch_size: int = 32
    threads: int = 0
    """onnxruntime intra-op threads; 0 means one per core."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
