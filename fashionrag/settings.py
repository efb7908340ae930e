"""How every service reads its typed settings: flags first, then FASHIONRAG_* variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict


def settings_config(prog: str) -> SettingsConfigDict:
    """The pydantic-settings configuration shared by every service's settings class.

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
