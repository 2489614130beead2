# syntax=docker/dockerfile:1
# The Novamind image: the Ray image of the version pinned in pyproject.toml, with the
# application and its server extras baked in (Serve's `runtime_env` stays empty in production).
#
# - Runs as an unprivileged user with a high UID (10001), never root.
# - Works with a read-only root filesystem: everything Ray and the app write goes under /tmp,
#   which the pod mounts as an emptyDir (see kuberay/base/rayservice.yaml). Bytecode is compiled
#   here, at build time, because nothing under the install can be written at run time.
# - No secrets in any layer: settings and credentials come from the pod's environment
#   (ConfigMap / Secret references) and from IAM roles for service accounts.
# - Checked offline by checkov's Dockerfile checks and hadolint (tests/deploy/test_image.py).
# Same Ray version as `ray[serve,data]==2.60.*` in pyproject.toml (a test keeps them equal).
FROM rayproject/ray:2.60.0-py311

USER 0
# A dedicated account: UID/GID above 10000 so it never collides with a host account.
RUN groupadd --gid 10001 novamind \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp/home \
       --shell /usr/sbin/nologin novamind

WORKDIR /opt/novamind
COPY pyproject.toml README.md ./
COPY twin ./twin
COPY storage ./storage
COPY actors ./actors
COPY deployments ./deployments
# The server extras only (no dev or demo tools); no pip cache left in the layer. Versions are
# bounded by pyproject.toml (the application itself is the local package, so DL3013 cannot apply).
# hadolint ignore=DL3013
RUN python -m pip install --no-cache-dir '.[serve,embedded,postgres,s3,redis,mongo,ingest,analytics]' \
    && python -m compileall -q /opt/novamind

# Everything writable lives under /tmp (an emptyDir in Kubernetes; tmpfs with `docker run
# --read-only --tmpfs /tmp`). Serve runs behind its HAProxy ingress, in its throughput-optimised
# mode: what `novamind up` sets from TwinSettings.serve_haproxy and serve_throughput_optimized.
# RAY_timeout_ms_task_wait_for_death_info, RAY_core_worker_internal_heartbeat_ms: Ray's settings
# that the platform changes (deployments.ray_env.SYSTEM_CONFIG; a call to a dead twin host fails,
# and is retried on its restarted process, sooner). The RayService's containers set them too:
# KubeRay sets its own value of the first in a RayService's containers unless they set it.
ENV HOME=/tmp/home \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/cache/matplotlib \
    NUMBA_CACHE_DIR=/tmp/cache/numba \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NOVAMIND_DATA_DIR=/tmp/novamind \
    RAY_SERVE_ENABLE_HA_PROXY=1 \
    RAY_SERVE_THROUGHPUT_OPTIMIZED=1 \
    RAY_SERVE_DEFAULT_HTTP_HOST=0.0.0.0 \
    RAY_timeout_ms_task_wait_for_death_info=100 \
    RAY_core_worker_internal_heartbeat_ms=100

USER 10001:10001
EXPOSE 8000
# The API's own liveness route through the node's Serve ingress (wget ships in the Ray image,
# which KubeRay needs too).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/bin/sh", "-c", "wget -q -O /dev/null http://127.0.0.1:8000/health/liveness || exit 1"]
