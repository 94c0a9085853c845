"""Typed settings: `NATTILLSYN_*` environment variables over an optional TOML file.

Nested sections use `__`: `NATTILLSYN_EDGE__FPS=5`. The TOML file is named by
`NATTILLSYN_CONFIG` (or `nattillsyn --config FILE`); its tables are the sections.
Unknown keys are errors that name the field.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .alerting import AlertingSettings
from .api import ApiSettings
from .edge import EdgeSettings
from .evaluation import EvaluationSettings
from .gateway import GatewaySettings
from .ingest import IngestSettings
from .logging import LogSettings
from .oidc import OidcSettings
from .tablet import TabletSettings

__all__ = ["OidcSettings", "Settings", "SettingsError", "default_clips_dir", "load"]

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("nattillsyn_config_file", default=None)


def default_clips_dir() -> Path:
    """`../shared/data/clips` from the checkout, else from any folder above it or the cwd."""
    repo = Path(__file__).resolve().parents[2]
    for base in (repo, *repo.parents, Path.cwd(), *Path.cwd().parents, Path("/work")):
        candidate = base / "shared" / "data" / "clips"
        if (candidate / "labels.csv").exists():
            return candidate
    return repo.parent / "shared" / "data" / "clips"


class SettingsError(ValueError):
    """Settings failed validation; the message names each bad field."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NATTILLSYN_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    database_url: str | None = Field(
        None, description="PostgreSQL/TimescaleDB URL; unset: the demo starts a private server."
    )
    database_schema: str = Field(
        "public",
        description="Schema holding the tables (tests use one per test).",
        pattern=r"^[a-z_][a-z0-9_]*$",
    )
    mqtt_url: str | None = Field(
        None,
        description="Broker URL, mqtt://user:pass@host:1883 (mqtts:// for TLS; ?protocol=3.1.1 for "
        "brokers without MQTT 5); unset: the demo starts an in-process broker.",
    )
    topic_root: str = Field(
        "nattillsyn", description="First level of every topic.", pattern=r"^[A-Za-z0-9_\-/]+$"
    )
    site: str = Field(
        "site-1", description="Site (care home) id of this process.", pattern=r"^[A-Za-z0-9_\-]+$"
    )
    clips_dir: Path = Field(
        default_factory=lambda: default_clips_dir(),
        description="Folder of the shared labelled clips (demo and tests); default: "
        "../shared/data/clips beside the checkout, else the nearest shared/data/clips above it.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address every service's Prometheus endpoint listens on; 0.0.0.0 in a "
        "container so Prometheus can scrape it over the container network.",
        min_length=1,
        max_length=255,
    )
    log: LogSettings = Field(default_factory=LogSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    tablet: TabletSettings = Field(default_factory=TabletSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get() or os.environ.get("NATTILLSYN_CONFIG")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)


def load(config_file: str | Path | None = None, **overrides: object) -> Settings:
    """Load and validate settings; raise SettingsError naming every bad field."""
    path = config_file or os.environ.get("NATTILLSYN_CONFIG")
    if path and not Path(path).is_file():
        raise SettingsError(f"config file not found: {path}")
    token = _CONFIG_FILE.set(Path(path) if path else None)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None
    finally:
        _CONFIG_FILE.reset(token)
