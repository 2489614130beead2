"""A multi-node Novamind on one machine, for chaos tests and the chaos benchmark.

A Ray head and worker nodes as separate raylets (``ray start --block`` in their own process
groups), PostgreSQL, Redis, moto's S3 and KMS as a server process, and the Serve
application with its replicas and twin hosts spread over the nodes. Everything is started by
:func:`running_cluster` and stopped by it, by process group or by the cluster's own folder:
nothing else on the machine is touched, and nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deployments import ray_env
from deployments.api.auth import mint_token
from tests.chaos.proxy import FaultProxy
from tests.servers import PostgresServer, RedisServer, free_port, moto_client, wait_for_port
from twin.settings import TwinSettings

SECRET = "c" * 48
RESEARCH_KEY = "k" * 48
#: Logical CPUs of each node: as many as the machine's cores. With one, the API replicas'
#: half CPUs leave no node a whole CPU, and a bulk ingest's or cohort run's Ray Data tasks
#: (one CPU each) could never be scheduled.
NODE_CPUS = 2
ISSUER, AUDIENCE = "novamind-local", "novamind-api"
# What the driver and every node of the cluster run with besides the settings: moto's
# credentials, Serve's HAProxy ingress (the platform's default), and Ray without its token
# authentication (as the suite's other clusters; a token file in the home folder is ignored).
_PROCESS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_AUTH_MODE": "disabled",
}


class MotoProcess:
    """moto's S3 and KMS server in a process of its own (so it can be stopped as a fault)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id (it runs in a process group of its own)."""
        assert self._proc is not None, "moto is not running"
        return self._proc.pid

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, 30, "moto")

    def stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=30)
            self._proc = None

    def client(self, service: str) -> object:
        return moto_client(self.endpoint, service)


@dataclass
class ChaosCluster:
    """A running cluster: its servers, its Ray address, its HTTP URL and its settings.

    Attributes:
        root: The cluster's folder (the data directory).
        postgres: The database server.
        redis: The change feed's and rate limiter's server.
        postgres_link: The network between the service and PostgreSQL (every connection).
        redis_link: The network between the service and Redis.
        moto: S3 (checkpoints, erasure ledger) and KMS (data keys).
        address: The Ray head's GCS address.
        http_url: The Serve proxy's URL.
        settings: The settings every process of the cluster runs with.
        env: The environment the raylets (and so every Ray worker) were started with.
        session: Ray's temporary folder (every process of the cluster names it).
    """

    root: Path
    postgres: PostgresServer
    redis: RedisServer
    postgres_link: FaultProxy
    redis_link: FaultProxy
    moto: MotoProcess
    address: str
    http_url: str
    settings: TwinSettings
    env: dict[str, str]
    session: Path
    head: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    node_ids: set[str] = field(default_factory=set)

    def _note_nodes(self) -> None:
        import ray

        self.node_ids.update(n["NodeID"] for n in ray.nodes())

    def token(self, role: str, sub: str = "chaos", team: tuple[str, ...] = ()) -> str:
        """A bearer token the cluster accepts."""
        return mint_token(SECRET, subject=sub, role=role, issuer=ISSUER, audience=AUDIENCE,
                          care_team=team, ttl_s=12 * 3600)  # type: ignore[arg-type]  # fmt: skip

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Add a worker node and wait until the cluster counts it."""
        import ray

        known = set(self.node_ids)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--address", self.address,
             "--block", "--num-cpus", str(NODE_CPUS), "--node-ip-address", "127.0.0.1",
             "--disable-usage-stats"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self.workers.append(proc)  # stopped with the cluster even if it never joins
        # A new node id, alive: a node killed moments ago may still be listed as alive.
        deadline = time.monotonic() + 60
        while not {n["NodeID"] for n in ray.nodes() if n["Alive"]} - known:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker node did not join")
            time.sleep(0.2)
        self._note_nodes()
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """Lose a whole worker node: its raylet, its object store and every worker on it."""
        _kill_tree(proc)
        self.workers.remove(proc)


def _pids_naming(text: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split() if int(pid) != os.getpid()]


def pids_of(cluster: ChaosCluster, title: str) -> list[int]:
    """Processes of this cluster whose title names ``title`` (``ray::TwinHostActor``...).

    Ray names each worker process after the actor or task it runs; only descendants of the cluster's
    raylets are considered, so nothing outside the cluster is ever matched.
    """
    return _descendants({p.pid for p in [cluster.head, *cluster.workers] if p is not None}, title)


def haproxy_pids(cluster: ChaosCluster) -> list[int]:
    """Serve's HAProxy processes of this cluster (each names its node's folder)."""
    return sorted(
        pid for node in cluster.node_ids for pid in _pids_naming(f"/tmp/haproxy-serve/{node}")
    )


def _descendants(roots: set[int], title: str = "") -> list[int]:
    """Processes below ``roots`` (their own ids excluded) whose command contains ``title``."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            status = (entry / "status").read_text()
            ppid = next(int(line.split()[1]) for line in status.splitlines()
                        if line.startswith("PPid:"))  # fmt: skip
            parents[int(entry.name)] = ppid
            titles[int(entry.name)] = (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )

    def in_cluster(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid in roots:
                return True
            pid = parents.get(pid, 0)
            seen += 1
        return False

    return sorted(
        pid for pid, cmd in titles.items() if title in cmd and pid not in roots and in_cluster(pid)
    )


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a node's process group and every process below it (Ray workers set their own)."""
    below = _descendants({proc.pid})
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def _settings(root: Path, dsn: str, redis_url: str, endpoint: str, http_port: int) -> TwinSettings:
    return TwinSettings(
        environment="local",
        data_dir=root / "data",
        database_url=dsn,
        redis_url=redis_url,
        s3_bucket="novamind-chaos",
        kms_key_id="alias/novamind-chaos",
        aws_endpoint_url=endpoint,
        jwt_secret=SECRET,
        research_key=RESEARCH_KEY,
        particles=200,
        hosts=2,
        checkpoint_every_events=20,
        http_port=http_port,
        api_min_replicas=2,
        api_max_replicas=2,
        ray_namespace=f"chaos-{uuid.uuid4().hex[:8]}",
    )


@contextlib.contextmanager
def running_cluster(root: Path, *, workers: int = 1) -> Iterator[ChaosCluster]:
    """Start the whole platform on this machine; stop all of it on exit.

    Args:
        root: An empty folder for everything the cluster writes.
        workers: Worker nodes besides the head.
    """
    import ray
    from ray import serve

    from deployments.serve_app import application

    root.mkdir(parents=True, exist_ok=True)
    postgres, redis, moto = PostgresServer(), RedisServer(), MotoProcess()
    links: list[FaultProxy] = []
    cluster: ChaosCluster | None = None
    try:
        postgres.start("max_connections=300")
        dsn = postgres.create_database("novamind")
        redis.start()
        # The service reaches both servers only through proxies, so the network can fail.
        links = [FaultProxy(postgres.port).start(), FaultProxy(redis.port).start()]
        dsn = dsn.replace(f":{postgres.port}/", f":{links[0].port}/")
        redis_url = redis.url.replace(f":{redis.port}/", f":{links[1].port}/")
        moto.start()
        moto.client("s3").create_bucket(Bucket="novamind-chaos")  # type: ignore[attr-defined]
        kms = moto.client("kms")
        key = kms.create_key()["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
        kms.create_alias(AliasName="alias/novamind-chaos", TargetKeyId=key)  # type: ignore[attr-defined]
        http_port = free_port()
        settings = _settings(root, dsn, redis_url, moto.endpoint, http_port)
        # Secrets reach Ray workers through the nodes' environment, never through Ray.
        # HAProxy's stats and metrics listeners on ports of their own: on its default ones it
        # could not start beside another platform on this machine.
        process_env = {
            **_PROCESS_ENV,
            **ray_env.system_env(),  # Ray's settings as the platform runs it (the image's)
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        }
        env = {
            **os.environ, **process_env,
            "NOVAMIND_JWT_SECRET": SECRET, "NOVAMIND_RESEARCH_KEY": RESEARCH_KEY,
        }  # fmt: skip
        port = free_port()
        # Short: Ray's socket paths under it must fit a Unix socket's 107 bytes.
        session = Path(f"/tmp/nmc-{os.getpid()}-{port}")
        head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
             "--num-cpus", str(NODE_CPUS), "--port", str(port), "--node-ip-address", "127.0.0.1",
             "--include-dashboard", "false", "--disable-usage-stats",
             "--temp-dir", str(session)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        cluster = ChaosCluster(
            root, postgres, redis, *links, moto, f"127.0.0.1:{port}",
            f"http://127.0.0.1:{http_port}", settings, env, session, head,
        )  # fmt: skip
        wait_for_port(port, 60, "the Ray head")
        saved = {k: os.environ.get(k) for k in process_env}
        os.environ.update(process_env)
        try:
            ray.init(address=cluster.address, namespace=settings.ray_namespace,
                     log_to_driver=False, configure_logging=False)  # fmt: skip
            cluster._note_nodes()
            for _ in range(workers):
                cluster.start_worker()
            serve.start(http_options={"host": "127.0.0.1", "port": http_port})
            serve.run(application(settings), name="novamind", route_prefix="/")
            _wait_ready(cluster.http_url, 180)
            yield cluster
        finally:
            # No orderly Serve shutdown: the cluster is thrown away whole (and Serve's
            # controller takes 30 s to give up on replicas a fault already killed).
            ray.shutdown()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    finally:
        if cluster is not None:
            for proc in [*cluster.workers, cluster.head]:
                if proc is not None:
                    _kill_tree(proc)
            # Workers a raylet started may sit in other groups; they all name the session.
            for pid in _pids_naming(str(cluster.session)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(cluster.session, ignore_errors=True)
            # Serve's HAProxy outlives a killed node (a reload detaches it); it names its node.
            for node in cluster.node_ids:
                for pid in _pids_naming(f"/tmp/haproxy-serve/{node}"):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                shutil.rmtree(f"/tmp/haproxy-serve/{node}", ignore_errors=True)
        # Each server is stopped even if stopping another one failed.
        with contextlib.ExitStack() as stops:
            stops.callback(postgres.destroy)
            stops.callback(redis.stop)
            stops.callback(moto.stop)
            for link in links:
                stops.callback(link.stop)


def _wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/readiness", timeout=5).status_code == 200:
                return
        time.sleep(1.0)
    raise RuntimeError("the API did not become ready")
