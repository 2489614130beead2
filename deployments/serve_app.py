"""The Ray Serve application: the FastAPI ingress as an autoscaling deployment.

- Factory ingress (``serve.ingress(replica_app)``): each replica builds its own app and opens
  its stores in the app's lifespan; nothing is pickled but this module's import path.
- Settings reach replicas as ``NOVAMIND_*`` environment variables in the deployment's
  ``runtime_env`` (non-secret fields only: secrets come from the pod's environment or, locally,
  from the generated files in ``data_dir/secrets``).
- Bounded queues: ``max_ongoing_requests`` per replica and ``max_queued_requests`` per caller;
  overflow is answered at once with 503 and ``Retry-After`` (``BackpressureConfig``) instead of
  waiting. Replicas scale between ``api_min_replicas`` and ``api_max_replicas`` on ongoing
  requests (``api_target_ongoing_requests`` per replica), averaged over
  ``api_autoscaling_look_back_s`` and held for ``api_upscale_delay_s`` /
  ``api_downscale_delay_s`` before Serve adds or removes a replica.
- ``app_builder(args)`` is the import path for ``serve run``/``serve build`` and the KubeRay
  ``serveConfigV2``: ``deployments.serve_app:app_builder``.
"""

from __future__ import annotations

from contextlib import nullcontext

from fastapi import FastAPI
from ray import serve
from ray.serve import Application, Deployment
from ray.serve.config import AutoscalingConfig, BackpressureConfig

from actors.directory import RayTwinDirectory
from actors.runtime import TwinRuntime
from deployments.api.observability import RayMetrics, configure_json_logging
from deployments.bootstrap import api_app
from deployments.host_ports import build_host_ports
from deployments.pipelines.job_runner import ensure_runner
from deployments.ray_env import settings_env
from deployments.telemetry import configure_tracing
from twin.settings import SECRET_FIELDS, URL_FIELDS, TwinSettings, url_carries_secret

__all__ = [
    "API_DEPLOYMENT",
    "APP_BUILDER",
    "NovamindApi",
    "api_deployment",
    "app_builder",
    "application",
    "replica_app",
    "settings_env",
]

API_DEPLOYMENT = "NovamindApi"
#: The import path Serve configs (``serve run``, KubeRay ``serveConfigV2``) name.
APP_BUILDER = "deployments.serve_app:app_builder"


def replica_app() -> FastAPI:
    """One replica's app (built in the replica process, from its environment's settings)."""
    settings = TwinSettings()
    configure_json_logging()  # before the directory and the runner log anything
    configure_tracing(settings, process="api")  # before the stores open (they are traced)
    directory = RayTwinDirectory(settings, build_host_ports, settings.host)
    runtime = TwinRuntime(directory)

    async def hosts_ready() -> bool:
        try:
            await runtime.hosts()
        except Exception:  # a host that cannot answer means not ready
            return False
        return True

    directory.start()
    # Cohort runs the API queues are run by the cluster's one job runner (created once).
    ensure_runner(settings)
    return api_app(settings, RayMetrics(), lambda: nullcontext(runtime), twins_ready=hosts_ready)


@serve.deployment(name=API_DEPLOYMENT)
@serve.ingress(replica_app)
class NovamindApi:
    """The HTTP API replica (routes come from the FastAPI app)."""


def api_deployment(settings: TwinSettings) -> Deployment:
    """The API deployment with its scaling, placement and queue bounds from ``settings``."""
    placement: dict[str, int] = {}
    if settings.api_max_replicas_per_node is not None:  # an explicit None would count as set
        placement["max_replicas_per_node"] = settings.api_max_replicas_per_node
    return NovamindApi.options(
        autoscaling_config=AutoscalingConfig(
            min_replicas=settings.api_min_replicas,
            max_replicas=settings.api_max_replicas,
            target_ongoing_requests=settings.api_target_ongoing_requests,
            upscale_delay_s=settings.api_upscale_delay_s,
            downscale_delay_s=settings.api_downscale_delay_s,
            look_back_period_s=settings.api_autoscaling_look_back_s,
        ),
        max_ongoing_requests=settings.api_max_ongoing_requests,
        max_queued_requests=settings.api_max_queued_requests,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=1),
        **placement,
        ray_actor_options={"num_cpus": 0.5, "runtime_env": {"env_vars": settings_env(settings)}},
    )


def application(settings: TwinSettings) -> Application:
    """The bound application (see :func:`api_deployment`)."""
    return api_deployment(settings).bind()


def app_builder(args: dict[str, str]) -> Application:
    """Serve's application-builder entry point: ``args`` override settings by field name.

    Serve keeps ``args`` in its config in the GCS (and KubeRay in the RayService resource), so
    a secret or a credential-bearing store URL there is refused: those come from the pods'
    environment (a Kubernetes Secret).

    Raises:
        ValueError: ``args`` names a secret or a URL with a credential.
    """
    secret = sorted(
        name
        for name, value in args.items()
        if name in SECRET_FIELDS or (name in URL_FIELDS and url_carries_secret(str(value)))
    )
    if secret:
        raise ValueError(
            f"{', '.join(secret)} must not be a Serve application argument (Ray stores those "
            "in its GCS): set it in the pods' environment from a Secret"
        )
    return application(TwinSettings(**args))  # type: ignore[arg-type]
