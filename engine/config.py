"""Configuration: a TOML file plus ``VIGIL_*`` environment variables.

Precedence, highest first: environment variables, the file named by ``VIGIL_CONFIG``
(or ``~/.config/vigil/config.toml`` when it exists), built-in defaults.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.errors import ConfigError


def _default_db() -> Path:
    return Path(platformdirs.user_data_dir("vigil")) / "pvdb.duckdb"


def _default_cache() -> Path:
    return Path(platformdirs.user_cache_dir("vigil")) / "http"


class Settings(BaseSettings):
    """Vigil's settings. Every field can be set as ``VIGIL_<FIELD>`` or in the TOML file."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="forbid", frozen=True)

    db: Path = Field(default_factory=_default_db)
    """Path of the PVDB DuckDB file."""

    http_cache: Path = Field(default_factory=_default_cache)
    """Folder where HTTP validators (ETag, Last-Modified) and bodies of synced feeds are kept."""

    http_timeout: float = 60.0
    """Seconds before an HTTP feed download is abandoned."""

    offline: bool = False
    """Never touch the network: ``feeds sync`` and URL sources fail instead of downloading."""

    feed_urls: dict[str, str] = Field(default_factory=dict)
    """Named feed URLs that ``vigil feeds sync`` pulls (name -> URL)."""

    ingest_batch: int = Field(default=2000, ge=1)
    """Records written per transaction during ingest; a crash loses at most one batch."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_path()
        if path is None:
            return {}
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"cannot read configuration file {path}: {exc}",
                tip="fix the file or point VIGIL_CONFIG at another one",
            ) from exc


def config_path() -> Path | None:
    """The configuration file in use, or None when there is none."""
    explicit = os.environ.get("VIGIL_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"VIGIL_CONFIG names {path}, which is not a file")
        return path
    default = Path(platformdirs.user_config_dir("vigil")) / "config.toml"
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Load the settings; raise :class:`ConfigError` naming the bad field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid configuration: {problems}",
            tip="check the VIGIL_* environment variables and the configuration file",
        ) from exc
