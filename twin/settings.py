"""Settings of the twin core, read once by the composition root (never at import).

Precedence: environment (``NOVAMIND_*``) > TOML config file (``NOVAMIND_CONFIG``, default
``novamind.toml`` in the working directory, if present) > defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
        hosts: Number of TwinHost actors (twins spread by rendezvous hashing).
        checkpoint_every_events: Checkpoint a twin after this many applied events.
        checkpoint_every_s: ... or after this many seconds.
        idle_passivate_s: Passivate twins idle for this long.
        max_active_twins: Active twins per host before least-recently-used passivation.
        max_concurrent_activations: Activations in flight per host (no stampede on restart).
        ray_namespace: Ray namespace of the named host actors.
        database_url: PostgreSQL DSN for the event log, data keys and index.
        s3_bucket: Bucket for checkpoints; ``s3_prefix`` and ``s3_kms_key_id`` refine it.
        kms_key_id: AWS KMS key that wraps per-patient data keys.
        aws_region: Region of the AWS clients.
        aws_endpoint_url: Endpoint override for S3 and KMS (tests, private endpoints).
        redis_url: Redis for the change feed and summary cache.

    Outside ``local``, the service refuses to start on the embedded defaults.
    """

    model_config = SettingsConfigDict(env_prefix="NOVAMIND_", extra="ignore")

    environment: Literal["local", "dev", "staging", "prod"] = "local"
    data_dir: Path = Path("data")
    particles: int = Field(default=2000, ge=100, le=100_000)
    forecast_weeks: int = Field(default=12, ge=1, le=26)
    hosts: int = Field(default=2, ge=1, le=1024, description="TwinHost actors")
    checkpoint_every_events: int = Field(default=200, ge=1)
    checkpoint_every_s: float = Field(default=300.0, gt=0)
    idle_passivate_s: float = Field(default=900.0, gt=0)
    max_active_twins: int = Field(default=5000, ge=1, description="per host, LRU beyond")
    max_concurrent_activations: int = Field(default=8, ge=1)
    ray_namespace: str = "novamind"
    database_url: str | None = Field(default=None, description="postgresql://... (else SQLite)")
    s3_bucket: str | None = Field(default=None, description="checkpoints in S3 (else local)")
    s3_prefix: str = "checkpoints"
    s3_kms_key_id: str | None = Field(default=None, description="SSE-KMS key of the bucket")
    kms_key_id: str | None = Field(default=None, description="KMS key wrapping data keys")
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = Field(default=None, description="S3/KMS endpoint override")
    redis_url: str | None = Field(default=None, description="redis://... (else in-process)")

    @model_validator(mode="after")
    def _no_embedded_defaults_outside_local(self) -> TwinSettings:
        if self.environment != "local":
            missing = [
                name
                for name in ("database_url", "s3_bucket", "kms_key_id")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"environment {self.environment!r} needs {', '.join(missing)}: the embedded "
                    "SQLite store, local checkpoints and local key file are for local use only"
                )
        return self

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
