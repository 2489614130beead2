"""Settings of the twin core, read once by the composition root (never at import).

Precedence: environment (``NOVAMIND_*``) > TOML config file (``NOVAMIND_CONFIG``, default
``novamind.toml`` in the working directory, if present) > defaults.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "AUDIT_RETENTION_DAYS",
    "SECRET_FIELDS",
    "URL_FIELDS",
    "AuthSettings",
    "HostSettings",
    "HostTuning",
    "RaySettings",
    "ServeSettings",
    "StoreSettings",
    "TelemetrySettings",
    "TwinSettings",
    "WorkloadSettings",
    "url_carries_secret",
]

#: Fields that are secrets themselves (``config`` names a file that may hold them).
SECRET_FIELDS = frozenset({"jwt_secret", "research_key", "config"})
#: Least retention of an audit anchor outside local use, days (six years: 45 CFR 164.316).
AUDIT_RETENTION_DAYS = 2192
#: Store URLs that may carry a password (in the user part or the query string).
URL_FIELDS = ("database_url", "redis_url", "mongo_url")
#: Query parameters of a DSN that hold credentials (libpq, redis-py, MongoDB drivers).
_CREDENTIAL_WORDS = ("pass", "secret", "token", "credential", "key")


def url_carries_secret(url: str) -> bool:
    """Whether a store URL holds a credential: ``user:password@`` or ``?password=...``.

    Args:
        url: A DSN such as ``postgresql://u:p@host/db`` or ``redis://host/0?password=p``.

    Returns:
        True when the URL must not leave this process (Ray keeps task and actor arguments and
        ``runtime_env`` in its GCS, which the dashboard shows and GCS fault tolerance writes
        to Redis).
    """
    parts = urlsplit(url)
    if parts.password:
        return True
    return any(
        word in name.lower()
        for name, _ in parse_qsl(parts.query, keep_blank_values=True)
        for word in _CREDENTIAL_WORDS
    )


class HostTuning(BaseModel):
    """Tuning of a twin host (``twin.service.host``): its particles, checkpoints and memory.

    Attributes:
        particles: Particles per twin (docs/model.md §7: 2000).
        checkpoint_every_events: Checkpoint a twin after this many applied events.
        checkpoint_every_s: ... or after this many seconds.
        idle_passivate_s: Passivate twins idle for this long, seconds.
        max_active_twins: Active twins per host before least-recently-used passivation.
        max_concurrent_activations: Activations in flight per host (no stampede on restart).
    """

    particles: int = Field(default=2000, ge=100, le=100_000)
    checkpoint_every_events: int = Field(default=200, ge=1)
    checkpoint_every_s: float = Field(default=300.0, gt=0)
    idle_passivate_s: float = Field(default=900.0, gt=0)
    max_active_twins: int = Field(default=5000, ge=1, description="per host, LRU beyond")
    max_concurrent_activations: int = Field(default=8, ge=1)


class HostSettings(HostTuning):
    """What a twin host is given: :class:`HostTuning`, and nothing else of the settings.

    A class of its own, which :class:`TwinSettings` is not, so a host (and the Ray actor that
    receives one) can never be handed the whole settings with their secrets.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


class RaySettings(BaseModel):
    """Where the twins run on Ray.

    Attributes:
        hosts: Number of TwinHost actors (twins spread by rendezvous hashing).
        ray_namespace: Ray namespace of the named host actors.
        ray_address: The Ray cluster every command uses: ``local`` starts a new one (never one
            left running on the machine, whatever ``RAY_ADDRESS`` says); ``auto`` joins the
            machine's cluster (inside a KubeRay pod); ``host:port`` or ``ray://host:port`` that
            one.
        stop_checkpoint_s: Seconds ``novamind up``, when it stops, gives the twin hosts to
            checkpoint the twins that are ahead of their checkpoints (best effort: a twin left
            without one is rebuilt from its previous checkpoint and the event log). At most
            5, so that the whole stop stays within 10 s.
    """

    hosts: int = Field(default=2, ge=1, le=1024, description="TwinHost actors")
    ray_namespace: str = "novamind"
    ray_address: str = Field(
        default="local",
        max_length=255,
        pattern=r"^(local|auto|(ray://)?[A-Za-z0-9.\-]+:[0-9]{1,5})$",
        description="local (a new cluster), auto, or host:port",
    )
    stop_checkpoint_s: float = Field(default=3.0, ge=0, le=5)


class StoreSettings(BaseModel):
    """Where data lives (``deployments.stores`` chooses the adapters from these).

    Attributes:
        data_dir: Folder for the embedded stores and demo outputs.
        database_url: PostgreSQL DSN for the event log, data keys and index.
        s3_bucket: Bucket for checkpoints; ``s3_prefix`` and ``s3_kms_key_id`` refine it.
        kms_key_id: AWS KMS key that wraps per-patient data keys.
        aws_region: Region of the AWS clients.
        aws_endpoint_url: Endpoint override for S3 and KMS (tests, private endpoints).
        redis_url: Redis for the change feed and summary cache.
        mongo_url: MongoDB for documents (scenario reports); else the relational store.
        ingest_root: Where ingest jobs submitted through the API may read (a folder or an
            ``s3://bucket/prefix/``); ``None``: ``data_dir/inbox``.
        erasure_ledger: Where erased patients are listed, apart from backups.
        backup_root: Where ``novamind backup --scheduled`` writes its archives and
            ``novamind dr-drill`` finds them: ``s3://bucket/prefix`` or a folder; ``None``:
            ``data_dir/backups``.
        backup_keep: Scheduled archives kept by count (the newest ones), at least 2 (with one,
            each new archive replaces the only backup, even while a drill copies it).
        backup_keep_days: Scheduled archives older than this many days are pruned (the newest
            complete archive never is).
        audit_anchors: Where heads of the audit chain are anchored: ``s3://bucket/prefix``
            (Object Lock, required outside ``local``) or a file (default
            ``data_dir/keys/audit-anchors.jsonl``).
        audit_anchor_every_entries: Entries between the anchors the service writes (N).
        audit_anchor_retention_days: Object Lock (COMPLIANCE) retention of each anchor, days.
        audit_anchor_interval_s: How often ``novamind up`` anchors the head, seconds.
    """

    data_dir: Path = Path("data")
    database_url: str | None = Field(default=None, description="postgresql://... (else SQLite)")
    s3_bucket: str | None = Field(default=None, description="checkpoints in S3 (else local)")
    s3_prefix: str = "checkpoints"
    s3_kms_key_id: str | None = Field(default=None, description="SSE-KMS key of the bucket")
    kms_key_id: str | None = Field(default=None, description="KMS key wrapping data keys")
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = Field(default=None, description="S3/KMS endpoint override")
    redis_url: str | None = Field(default=None, description="redis://... (else in-process)")
    mongo_url: str | None = Field(default=None, description="mongodb://... (else relational)")
    ingest_root: str | None = Field(default=None, max_length=1024, description="API ingest root")
    erasure_ledger: str | None = Field(
        default=None,
        max_length=1024,
        description="where erased patients are listed, apart from backups: s3://bucket/prefix "
        "or a folder (default: the checkpoint bucket's erasure-ledger/ prefix, else the key "
        "folder's erased/)",
    )
    backup_root: str | None = Field(
        default=None,
        max_length=1024,
        pattern=r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?|[^:]+)$",
        description="scheduled backups: s3://bucket/prefix or a folder (default data_dir/backups)",
    )
    backup_keep: int = Field(default=14, ge=2, le=10_000, description="archives kept by count")
    backup_keep_days: int = Field(default=35, ge=1, le=3650, description="archives kept, days")
    audit_anchors: str | None = Field(
        default=None,
        max_length=1024,
        description="where audit-chain heads are anchored: s3://bucket/prefix (Object Lock) "
        "or a file (default: the key folder's audit-anchors.jsonl)",
    )
    audit_anchor_every_entries: int = Field(default=1000, ge=1, le=1_000_000)
    # Six years (45 CFR 164.316(b)(2)), required outside local use; at most 100 years.
    audit_anchor_retention_days: int = Field(default=AUDIT_RETENTION_DAYS, ge=1, le=36_500)
    audit_anchor_interval_s: float = Field(default=900.0, ge=10.0, le=86_400.0)


class AuthSettings(BaseModel):
    """Who may call, and how often.

    Attributes:
        jwt_issuer: Expected ``iss`` of bearer tokens.
        jwt_audience: Expected ``aud`` of bearer tokens.
        jwt_secret: HS256 secret (local use; generated into the key folder when unset).
        jwks_url: JWKS endpoint of the identity provider (RS256/ES256; production).
        research_key: HMAC key of researcher pseudonyms (generated locally when unset).
        research_dates: What research outputs show of time: ``relative``, the record days only
            (Safe Harbor; the default), or also ``shifted`` dates (each patient's moved by a
            keyed whole number of days), only under an expert determination that accepts a
            live listing's bound on the shift (docs/time.md).
        rate_limit_per_minute: Requests per caller and minute before 429.
        auth_failures_per_minute: Failed authentications per client address and minute before
            that address is refused with 429 without its token being checked.
        break_glass_max_minutes: Longest emergency-access grant.
    """

    jwt_issuer: str = "novamind-local"
    jwt_audience: str = "novamind-api"
    jwt_secret: SecretStr | None = Field(default=None, description="HS256 secret (local)")
    jwks_url: str | None = Field(default=None, description="IdP JWKS (RS256/ES256)")
    research_key: SecretStr | None = Field(default=None, description="pseudonym HMAC key")
    research_dates: Literal["shifted", "relative"] = Field(
        default="relative", description="research outputs: record days only, or shifted dates"
    )
    rate_limit_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    auth_failures_per_minute: int = Field(default=30, ge=1, le=10_000)
    break_glass_max_minutes: int = Field(default=60, ge=1, le=24 * 60)


#: A listener's address: an IPv4 or IPv6 literal, or a host name.
_HOST_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$"
#: One label of an RFC 1123 host name.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
#: A web origin: scheme, host and optional port, no path (RFC 6454's serialisation).
_ORIGIN_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$"


class ServeSettings(BaseModel):
    """The HTTP API's deployment: where it listens, how it scales, how long its queues are.

    Attributes:
        http_host: Address the listeners of a platform started by ``novamind up`` that take
            one bind: the HTTP API, Serve's HAProxy stats page and Prometheus endpoint, and
            the Ray dashboard. Ray's metrics export, the dashboard's and the autoscaler's
            Prometheus servers and Ray's core services take no address and listen on every
            interface whatever this says (a host firewall must keep them in on a machine
            others reach; docs/operations.md §9). ``127.0.0.1`` (the default); ``0.0.0.0``
            or ``::`` (every interface) only behind a firewall.
        http_port: Port of the HTTP API; 0: a free one, chosen at start (printed, and kept in
            the platform record, ``novamind status``).
        dashboard_port: Port of the Ray dashboard of a cluster ``novamind up`` starts; 0: a
            free one; ``None`` (the default): Ray's, 8265 or the next free one after it.
        haproxy_stats_port: Port of Serve's HAProxy stats page (``/stats``); 0 (the default):
            a free one, so that platforms on other data folders can run beside this one.
        haproxy_metrics_port: Port of Serve's HAProxy Prometheus endpoint (``/metrics``); 0
            (the default): a free one.
        ray_metrics_export_port: Port where the Ray node exports its Prometheus metrics; 0
            (the default): a free one.
        api_min_replicas: Serve autoscaling lower bound of the API deployment.
        api_max_replicas: Serve autoscaling upper bound.
        api_target_ongoing_requests: Serve autoscaling target per replica.
        api_upscale_delay_s: Seconds the load must stay above the target before Serve adds
            replicas (Serve's default, 30).
        api_downscale_delay_s: Seconds the load must stay below the target before Serve
            removes replicas (Serve's default, 600: ten minutes at the peak size after load).
        api_autoscaling_look_back_s: Seconds of ongoing-request samples Serve averages for each
            decision (Serve's default, 30); more than 10, Serve's metrics interval, which it
            requires.
        api_max_ongoing_requests: Requests one replica works on at once.
        api_max_queued_requests: Requests waiting per caller before 503 (bounded queue).
        api_max_replicas_per_node: At most this many API replicas on one Ray node (spreads
            them over nodes for availability); ``None`` leaves placement to Ray.
        serve_haproxy: Serve's HAProxy ingress (``RAY_SERVE_ENABLE_HA_PROXY``) instead of the
            Python proxy; measured faster here (``bench/api.py``).
        cors_origins: Web origins (``https://host[:port]``) whose pages may call the API from a
            browser (CORS). Empty by default: PHI is read by the organisation's own apps, and a
            page of any other origin gets no ``Access-Control-Allow-Origin``. Never ``*``;
            ``http://`` only in the ``local`` environment.
        public_base_url: The API's URL as clients reach it (behind the load balancer), for the
            absolute URLs FHIR answers carry (Bulk Data status and file URLs, Bundle
            ``fullUrl``); ``None``: the request's own scheme and host.
        serve_throughput_optimized: Serve's throughput-optimised mode
            (``RAY_SERVE_THROUGHPUT_OPTIMIZED``): the app runs on the replica's own event loop
            instead of a second thread, Serve's own request logs are buffered and kept off
            stderr (the API's JSON access log is unchanged) and start-up objects are frozen out
            of garbage collection; measured faster here (``bench/api.py``). The app never
            blocks its event loop, which this mode requires.
    """

    http_host: str = Field(
        default="127.0.0.1", min_length=1, max_length=253, pattern=_HOST_PATTERN,
        description="address the API, HAProxy's stats/metrics and the dashboard bind",
    )  # fmt: skip
    http_port: int = Field(default=8000, ge=0, le=65535, description="0: a free port")
    dashboard_port: int | None = Field(
        default=None, ge=0, le=65535, description="0: a free port; none: 8265 or the next free"
    )
    haproxy_stats_port: int = Field(default=0, ge=0, le=65535, description="0: a free port")
    haproxy_metrics_port: int = Field(default=0, ge=0, le=65535, description="0: a free port")
    ray_metrics_export_port: int = Field(default=0, ge=0, le=65535, description="0: a free port")
    api_min_replicas: int = Field(default=1, ge=1, le=100)
    api_max_replicas: int = Field(default=2, ge=1, le=100)
    api_target_ongoing_requests: float = Field(default=32.0, gt=0, le=10_000)
    api_upscale_delay_s: float = Field(default=30.0, ge=0, le=3600)
    api_downscale_delay_s: float = Field(default=600.0, ge=0, le=24 * 3600)
    # Serve warns (and announces it will refuse) a look-back no longer than its 10 s metrics
    # interval: the average would rest on a single sample.
    api_autoscaling_look_back_s: float = Field(default=30.0, gt=10, le=3600)
    api_max_ongoing_requests: int = Field(default=64, ge=1, le=10_000)
    api_max_queued_requests: int = Field(default=256, ge=1, le=100_000)
    api_max_replicas_per_node: int | None = Field(default=None, ge=1, le=100)
    serve_haproxy: bool = True
    cors_origins: list[
        Annotated[str, StringConstraints(max_length=255, pattern=_ORIGIN_PATTERN)]
    ] = Field(default_factory=list, max_length=32)
    public_base_url: str | None = Field(
        default=None, max_length=255, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="https://host[/path] as clients reach the API (FHIR's absolute URLs)",
    )  # fmt: skip
    serve_throughput_optimized: bool = True

    @field_validator("http_host")
    @classmethod
    def _http_host(cls, value: str) -> str:
        """An IP address, or an RFC 1123 host name whose last label is not all digits.

        The resolver reads a numeric "name" loosely (``0`` is ``0.0.0.0``), and an address
        with a port (``1.2.3.4:80``) is no address: both are refused, never guessed at.
        """
        try:
            ipaddress.ip_address(value)
        except ValueError:
            labels = value.split(".")
            if not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
                raise ValueError(
                    f"{value!r} is neither an IP address nor a host name (RFC 1123)"
                ) from None
        return value


class WorkloadSettings(BaseModel):
    """How much work one caller or one request may ask for.

    Attributes:
        forecast_weeks: Default forecast horizon, weeks.
        jobs_per_caller: Queued or running batch jobs (cohort runs, ingests) one caller may hold.
        streams_per_caller: Open change-feed streams one caller may hold (per API replica).
        stream_recheck_s: An open change-feed stream re-checks its caller's access at least
            this often (and when an emergency grant or the token ends).
        cohort_max_particle_days: Work one cohort run may ask for, particle-days
            (``twin.analytics.budget``).
        cohort_max_rows: Result rows (twins × scenarios) one cohort run may produce.
        fhir_export_ttl_hours: Hours a FHIR Bulk Data export's files are kept after it
            finishes (sealed under each patient's key); then they are deleted.
    """

    forecast_weeks: int = Field(default=12, ge=1, le=26)
    jobs_per_caller: int = Field(default=2, ge=1, le=100)
    streams_per_caller: int = Field(default=4, ge=1, le=1000)
    stream_recheck_s: float = Field(default=60.0, ge=0.5, le=60.0)
    cohort_max_particle_days: float = Field(default=5e10, gt=0, le=1e15)
    cohort_max_rows: int = Field(default=500_000, ge=1, le=10_000_000)
    fhir_export_ttl_hours: float = Field(default=24.0, gt=0, le=24 * 30)


class TelemetrySettings(BaseModel):
    """Trace export (OpenTelemetry over OTLP/HTTP): off unless an endpoint is named.

    Without ``otel_exporter_otlp_endpoint`` no tracer provider is installed, nothing is
    exported and every span is a no-op. The endpoint is not a secret and reaches every Ray
    process with the other settings, so it may not carry a credential: a collector that wants
    one takes it as a header from the standard ``OTEL_EXPORTER_OTLP_HEADERS`` variable, set in
    the pods' environment from a Secret (never through Ray).

    Attributes:
        otel_exporter_otlp_endpoint: Base URL of an OTLP/HTTP receiver (a collector), e.g.
            ``http://otel-collector.monitoring:4318``; spans go to ``<endpoint>/v1/traces``.
        otel_service_name: ``service.name`` of the exported spans.
        otel_sample_ratio: Share of new traces kept, 0 to 1 (a caller's sampled
            ``traceparent`` is followed whatever the ratio, and so is every process's parent).
    """

    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        max_length=512,
        # A scheme, a host and an optional port and path; no user, password or query string.
        pattern=r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~\-/]*)?$",
        description="OTLP/HTTP receiver base URL (unset: no tracing)",
    )
    otel_service_name: str = Field(
        default="novamind", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$"
    )
    otel_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


# Each concern declares its fields once; the settings of a process are all of them, read flat
# (NOVAMIND_DATABASE_URL, not a nested name) so the environment, the TOML file and every
# deployment manifest keep one name per field.
class TwinSettings(
    BaseSettings,
    HostTuning,
    RaySettings,
    StoreSettings,
    AuthSettings,
    ServeSettings,
    WorkloadSettings,
    TelemetrySettings,
):
    """The settings of one process: every concern's fields, read once.

    Concerns: :class:`HostTuning` (twin hosts), :class:`RaySettings`, :class:`StoreSettings`,
    :class:`AuthSettings`, :class:`ServeSettings`, :class:`WorkloadSettings` and
    :class:`TelemetrySettings` (each lists its fields). A twin host, which runs in Ray actors,
    is given its own part (:attr:`host`), never the whole.

    Attributes:
        environment: Deployment environment; ``local`` allows the embedded defaults.
        withheld: Store URLs the process that built these settings held back from Ray
            (:meth:`for_workers`); this process must read each from its own environment or
            secret files, and refuses to start without them rather than fall back to the
            embedded stores.
        config: The TOML file read after the environment (``NOVAMIND_CONFIG``).

    Outside ``local``, the service refuses to start on the embedded defaults.
    """

    model_config = SettingsConfigDict(env_prefix="NOVAMIND_", extra="ignore")

    environment: Literal["local", "dev", "staging", "prod"] = "local"

    withheld: tuple[
        Literal["database_url", "redis_url", "mongo_url", "jwt_secret", "research_key"], ...
    ] = ()

    @model_validator(mode="after")
    def _withheld_urls_supplied(self) -> TwinSettings:
        missing = [name for name in self.withheld if getattr(self, name) is None]
        if missing:
            names = ", ".join(f"NOVAMIND_{name.upper()}" for name in missing)
            raise ValueError(
                f"{', '.join(missing)} is a secret or carries one and is not passed through "
                f"Ray: this process must read it from its own environment or secret files "
                f"({names})"
            )
        return self

    @model_validator(mode="after")
    def _no_embedded_defaults_outside_local(self) -> TwinSettings:
        if self.environment != "local":
            missing = [
                name
                for name in ("database_url", "s3_bucket", "kms_key_id", "jwks_url", "research_key")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"environment {self.environment!r} needs {', '.join(missing)}: the embedded "
                    "SQLite store, local checkpoints, local key file and generated secrets "
                    "are for local use only"
                )
            if self.erasure_ledger is not None and not self.erasure_ledger.startswith("s3://"):
                raise ValueError(
                    f"environment {self.environment!r} keeps its erasure ledger in S3 "
                    "(s3://bucket/prefix): a folder in a pod is lost with it"
                )
            if self.jwt_secret is not None:
                raise ValueError(
                    f"environment {self.environment!r} takes tokens from the IdP (jwks_url), "
                    "not a shared HS256 secret"
                )
            if self.public_base_url is None or not self.public_base_url.startswith("https://"):
                # Behind a load balancer the request's own scheme is the balancer's (http), and
                # clients would send their tokens in clear text to the URLs FHIR answers give.
                raise ValueError(
                    f"environment {self.environment!r} needs public_base_url, https://, the "
                    "API's URL as clients reach it"
                )
            plain = [origin for origin in self.cors_origins if origin.startswith("http://")]
            if plain:
                raise ValueError(
                    f"environment {self.environment!r} allows only https:// CORS origins "
                    f"(not {', '.join(plain)})"
                )
            anchors = self.audit_anchors or ""
            if not anchors.startswith("s3://") or not anchors[5:].partition("/")[0]:
                raise ValueError(
                    f"environment {self.environment!r} needs audit_anchors, s3://bucket/prefix "
                    "in an Object-Lock bucket: a local anchor file can be rewritten by whoever "
                    "writes the database's disk"
                )
            if self.audit_anchor_retention_days < AUDIT_RETENTION_DAYS:
                # Each anchor's own retention date overrides the bucket's default: a shorter
                # one would let anchors expire before the records they vouch for may.
                raise ValueError(
                    f"environment {self.environment!r} keeps audit anchors at least "
                    f"{AUDIT_RETENTION_DAYS} days (six years, 45 CFR 164.316(b)(2)); "
                    f"audit_anchor_retention_days is {self.audit_anchor_retention_days}"
                )
        if self.api_min_replicas > self.api_max_replicas:
            raise ValueError("api_min_replicas exceeds api_max_replicas")
        return self

    config: Path = Path("novamind.toml")

    @property
    def host(self) -> HostSettings:
        """The twin host's part of these settings."""
        # Only the host's part crosses to Ray actors: the rest holds secrets.
        return HostSettings(**{name: getattr(self, name) for name in HostTuning.model_fields})

    def for_workers(self) -> dict[str, Any]:
        """These settings as other Ray processes may receive them: no secret in them.

        Secrets (``jwt_secret``, ``research_key``) are left out, and so is a store URL that
        carries a credential; the name of each such field that is set goes into ``withheld``
        so that the receiving process insists on its own copy (in Kubernetes the pod's Secret,
        which every Ray worker on the node inherits). The data directory is made absolute:
        workers have other working directories.

        Returns:
            Field values, JSON-serializable, that ``TwinSettings(**values)`` accepts.
        """
        values = self.model_dump(mode="json", exclude_none=True, exclude=set(SECRET_FIELDS))
        values["data_dir"] = str(self.data_dir.resolve())
        withheld: set[str] = set(self.withheld)
        # A configured secret must be the receiving process's own copy, never a stand-in: a
        # worker that generated its own research key would give other pseudonyms.
        withheld.update(name for name in ("jwt_secret", "research_key") if getattr(self, name))
        for name in URL_FIELDS:
            if name in values and url_carries_secret(str(values[name])):
                del values[name]
                withheld.add(name)
        values["withheld"] = sorted(withheld)
        return values

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then secret files, then the TOML file named by ``NOVAMIND_CONFIG``.

        Secret files: when ``NOVAMIND_SECRETS_DIR`` names a folder (in Kubernetes the mounted
        Secret), each file ``NOVAMIND_<FIELD>`` in it holds that field's value, so credentials
        need not sit in the process environment.
        """
        import os

        path = Path(os.environ.get("NOVAMIND_CONFIG", "novamind.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get("NOVAMIND_SECRETS_DIR")
        if secrets_dir:
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)
