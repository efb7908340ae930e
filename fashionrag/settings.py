"""How every fashionrag program reads its typed settings: flags first, then FASHIONRAG_* variables;
and the settings every service shares, defined once."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fashionrag.grpc_options import DEFAULT_MAX_CONNECTION_AGE_SECONDS


def settings_config(prog: str) -> SettingsConfigDict:
    """The pydantic-settings configuration shared by every settings class.

    `--max-batch-size` or FASHIONRAG_MAX_BATCH_SIZE; boolean settings are plain switches
    (`--recreate`, `--no-recreate`).
    """
    return SettingsConfigDict(
        env_prefix="FASHIONRAG_",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name=prog,
        extra="ignore",
    )


class LoggingSettings(BaseSettings):
    """How a program logs (every service and job has these)."""

    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["text", "json"] = Field("text", description="text or json lines")


class ServerSettings(LoggingSettings):
    """What every gRPC server has besides its logging: where it listens, its metrics, how long
    a caller's connection lives."""

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: all interfaces)")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus metrics port on --host (0: no metrics)"
    )
    max_connection_age_seconds: float = Field(
        DEFAULT_MAX_CONNECTION_AGE_SECONDS,
        ge=0,
        description="close each caller's connection after about this long, letting calls in "
        "flight finish within --grace-seconds, so callers resolve DNS names again and find new "
        "replicas (0: never)",
    )
