"""Settings of the twin core, read once by the composition root (never at import).

Precedence: environment (``NOVAMIND_*``) > TOML config file (``NOVAMIND_CONFIG``, default
``novamind.toml`` in the working directory, if present) > defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["TwinSettings"]


class TwinSettings(BaseSettings):
    """What the twin core needs to know.

    Attributes:
        environment: Deployment environment; ``local`` allows the embedded defaults.
        data_dir: Folder for the embedded stores and demo outputs.
        particles: Particles per twin (twin-model.md: 2000).
        forecast_weeks: Default forecast horizon, weeks.
    """

    model_config = SettingsConfigDict(env_prefix="NOVAMIND_", extra="ignore")

    environment: Literal["local", "dev", "staging", "prod"] = "local"
    data_dir: Path = Path("data")
    particles: int = Field(default=2000, ge=100, le=100_000)
    forecast_weeks: int = Field(default=12, ge=1, le=26)
    config: Path = Path("novamind.toml")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the TOML file named by ``NOVAMIND_CONFIG``."""
        import os

        path = Path(os.environ.get("NOVAMIND_CONFIG", "novamind.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path))
