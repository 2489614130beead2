"""What Ray processes receive: settings without secrets, and Arrow filesystems for job paths."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from twin.settings import TwinSettings

__all__ = [
    "SYSTEM_CONFIG",
    "arrow_filesystem",
    "connect",
    "output_root",
    "serve_flags",
    "settings_env",
    "strip_scheme",
    "system_env",
]

#: Ray's own settings that differ from its defaults, for every cluster the platform runs on.
#:
#: A call to an actor whose process died fails once the GCS has said why, or once
#: ``timeout_ms_task_wait_for_death_info`` has passed; the caller's Ray worker checks that
#: timeout, and fails calls made while the actor restarts, every
#: ``core_worker_internal_heartbeat_ms``. With Ray's defaults (1000 ms each) a host's death
#: kept its twins unavailable for 1.4 s at least, and each further failed call of a restart
#: cost up to a second more, however fast the host came back. The call fails either way; the
#: twin runtime retries it (idempotency keys make that safe), and at 100 ms each the retry
#: reaches the restarted host within about 0.2 s of its start. The shorter tick costs each Ray
#: worker a few checks ten times a second.
SYSTEM_CONFIG: dict[str, int] = {
    "timeout_ms_task_wait_for_death_info": 100,
    "core_worker_internal_heartbeat_ms": 100,
}


def connect(settings: TwinSettings, address: str | None = None, **options: Any) -> Any:
    """``ray.init`` on exactly the cluster the settings name (``address`` overrides them).

    ``local`` starts a new cluster even when one is running on the machine or ``RAY_ADDRESS``
    names one, with :data:`SYSTEM_CONFIG`; any other address joins that cluster, whose
    resources and Ray settings are its own (``num_cpus`` and ``include_dashboard`` apply only
    to a cluster started here; KubeRay's pods have :func:`system_env` in their containers'
    environment, ``kuberay/base/rayservice.yaml``).
    """
    import ray

    target = address or settings.ray_address
    if target == "local":
        options.setdefault("_system_config", dict(SYSTEM_CONFIG))
    else:
        options.pop("num_cpus", None)
        options.pop("include_dashboard", None)
    return ray.init(address=target, **options)


def system_env() -> dict[str, str]:
    """:data:`SYSTEM_CONFIG` as the ``RAY_<name>`` variables that ``ray start`` reads.

    For clusters started by ``ray start``, in the environment of every node's processes:
    KubeRay's pods (the RayService's containers and the ``Dockerfile`` set the same).
    """
    return {f"RAY_{name}": str(value) for name, value in SYSTEM_CONFIG.items()}


def serve_flags(settings: TwinSettings) -> dict[str, str]:
    """The ``RAY_SERVE_*`` variables the settings ask for (Serve reads them at import).

    Set in the environment of the process that starts Ray, they reach the Serve controller and
    replicas, which inherit it. The image sets the same for KubeRay pods (``Dockerfile``).
    """
    flags: dict[str, str] = {}
    if settings.serve_haproxy:
        flags["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    if settings.serve_throughput_optimized:
        flags["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
        if not settings.serve_haproxy:
            # The mode also turns on direct ingress, which would replace the Python proxy.
            flags["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "0"
    return flags


def settings_env(settings: TwinSettings) -> dict[str, str]:
    """The settings Ray may hold, as ``NOVAMIND_*`` variables for a ``runtime_env``.

    ``runtime_env`` is kept in the GCS and shown by the dashboard, so this is
    :meth:`TwinSettings.for_workers`: no secret, no credential-bearing store URL (replicas read
    those from their own environment, which Ray workers inherit from the node).
    """
    return {
        f"NOVAMIND_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
        for name, value in settings.for_workers().items()
    }


def arrow_filesystem(settings: TwinSettings, paths: tuple[str, ...]) -> Any:
    """Pyarrow's S3 filesystem for ``s3://`` paths when an endpoint override is configured.

    Without one, Ray Data resolves ``s3://`` itself (the pod's IAM role through the default
    credential chain); local paths need nothing.
    """
    if not any(p.startswith("s3://") for p in paths) or not settings.aws_endpoint_url:
        return None
    from pyarrow import fs

    endpoint = urlsplit(settings.aws_endpoint_url)
    return fs.S3FileSystem(
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme or "https",
        region=settings.aws_region,
    )


def strip_scheme(path: str, filesystem: Any) -> str:
    """The path as ``filesystem`` expects it (``s3://`` dropped for an explicit S3 filesystem)."""
    return path.removeprefix("s3://") if filesystem is not None else path


def output_root(settings: TwinSettings, uri: str, *, create: bool = True) -> tuple[Any, str]:
    """A job's output folder (local path, ``file://`` or ``s3://``) as (Arrow filesystem, path).

    With ``create`` the folder is created when missing (object stores have no folders: nothing
    to do there).
    """
    from pathlib import Path

    from pyarrow import fs

    filesystem = arrow_filesystem(settings, (uri,))
    if filesystem is None:
        local = "://" not in uri
        filesystem, root = fs.FileSystem.from_uri(f"file://{Path(uri).resolve()}" if local else uri)
    else:
        root = strip_scheme(uri, filesystem)
    if create:
        filesystem.create_dir(root, recursive=True)
    return filesystem, root
