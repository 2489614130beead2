"""No secret reaches Ray's GCS: host and job actors are created without credentials.

Ray keeps actor constructor arguments (``ACTOR_TASK_SPEC``) and ``runtime_env`` in its GCS; with
GCS fault tolerance they are written to Redis and the dashboard shows them. This test starts a
one-node cluster of its own whose GCS persists to a throwaway Redis, sets canary secrets (the
JWT secret, the research key and a password in the change feed's Redis URL), creates the twin
hosts and the job runner the way the platform does, ingests an event (so the host must really
reach its password-protected Redis, with the password from its own environment), and then reads
every key of the GCS's Redis: no canary may be there, while the host actor's spec must be.
It runs on the embedded SQLite store and on PostgreSQL, whose URL then carries a canary
password that the host must take from its own environment to write the event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresServer, RedisServer, free_port
from twin.settings import TwinSettings, url_carries_secret

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
CANARY_JWT = "canary-jwt-7c1d9e5a3b2f4e6d8a0b1c2d3e4f5a6b"
CANARY_RESEARCH = "canary-research-0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c"
CANARY_PASSWORD = "canary-redis-pw-5e4d3c2b1a"
CANARY_DB_PASSWORD = "canary-db-pw-9a8b7c6d5e"

_DRIVER = """
import asyncio, os, time
import ray
from actors.directory import RayTwinDirectory
from actors.runtime import TwinRuntime
from deployments.host_ports import build_host_ports
from deployments.pipelines.job_runner import ensure_runner
from twin.domain import events as E
from twin.ports import NewEvent
from twin.settings import TwinSettings

deadline = time.monotonic() + 60
while True:  # the head answers once its GCS and raylet are up
    try:
        ray.init(address=os.environ["HEAD"], log_to_driver=False)
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        time.sleep(1)
settings = TwinSettings()
directory = RayTwinDirectory(settings, build_host_ports, settings.host)
directory.start()
runner = ensure_runner(settings)
assert ray.get(runner.alive.remote())
result = asyncio.run(
    TwinRuntime(directory, retry_for_s=60).ingest("p-canary", [NewEvent("k1", 0.0, E.Phq9(12))])
)
print("LAST_SEQ", result.last_seq)
"""


@contextlib.contextmanager
def _head(gcs_redis: RedisServer, env: dict[str, str], temp: Path) -> Iterator[str]:
    port = free_port()
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
         "--num-cpus", "1", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp)],
        env={**env, "RAY_REDIS_ADDRESS": f"127.0.0.1:{gcs_redis.port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped by its id, nothing else
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        # Workers the raylet started may sit in other groups; they all name our temp dir.
        left = subprocess.run(["pgrep", "-f", str(temp)], capture_output=True, text=True)
        for pid in left.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _everything_in(redis_port: int) -> bytes:
    import redis

    client = redis.Redis(port=redis_port)
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"hash":
            parts.extend(k + v for k, v in client.hgetall(key).items())
        elif kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"list":
            parts.extend(client.lrange(key, 0, -1))
        elif kind == b"set":
            parts.extend(client.smembers(key))
        elif kind == b"zset":
            parts.extend(client.zrange(key, 0, -1))
    client.close()
    return b"\n".join(parts)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_actor_specs_and_runtime_envs_in_the_gcs_hold_no_secret(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database: dict[str, str] = {}
    if store == "postgres":
        # The server trusts local connections, so the canary password is carried, not checked:
        # what matters is that the URL holding it never reaches the GCS.
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = f"secrets_{os.getpid()}"
        url = server.create_database(name)
        database["NOVAMIND_DATABASE_URL"] = url.replace(
            "postgres@", f"postgres:{CANARY_DB_PASSWORD}@", 1
        )
    gcs_redis = RedisServer()
    feed_redis = RedisServer(password=CANARY_PASSWORD)
    gcs_redis.start()
    feed_redis.start()
    temp = Path(f"/tmp/nm-ray-{os.getpid()}-{free_port()}")  # short: Ray's socket paths
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_AUTH_MODE": "disabled",  # as the suite's own cluster: no token file needed
        "NOVAMIND_DATA_DIR": str(tmp_path / "data"),
        "NOVAMIND_RAY_NAMESPACE": "canary",
        "NOVAMIND_HOSTS": "1",
        "NOVAMIND_PARTICLES": "200",
        "NOVAMIND_JWT_SECRET": CANARY_JWT,
        "NOVAMIND_RESEARCH_KEY": CANARY_RESEARCH,
        "NOVAMIND_REDIS_URL": feed_redis.url,  # the node's environment, as a pod's Secret
        **database,
    }
    try:
        with _head(gcs_redis, env, temp) as address:
            driver = subprocess.run(
                [sys.executable, "-c", _DRIVER],
                env={**env, "HEAD": address},
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert driver.returncode == 0, driver.stderr[-3000:]
            assert "LAST_SEQ 1" in driver.stdout
            gcs = _everything_in(gcs_redis.port)
    finally:
        feed_redis_keys = _count_keys(feed_redis)
        gcs_redis.stop()
        feed_redis.stop()
    assert b"TwinHostActor" in gcs and b"JobRunner" in gcs  # the specs were there to read
    for canary in (CANARY_JWT, CANARY_RESEARCH, CANARY_PASSWORD, CANARY_DB_PASSWORD):
        assert canary.encode() not in gcs, canary
    # The host published the event to the password-protected Redis: it had the password.
    assert feed_redis_keys > 0
    if store == "postgres":
        # ... and wrote it to PostgreSQL through the URL of its own environment.
        assert _events_in(database["NOVAMIND_DATABASE_URL"]) == 1


def _events_in(url: str) -> int:
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM events"))
        finally:
            await conn.close()

    return asyncio.run(count())


def _count_keys(server: RedisServer) -> int:
    import redis

    client = redis.Redis.from_url(server.url)
    try:
        return int(client.dbsize())
    finally:
        client.close()


def test_settings_for_ray_leave_out_secrets_and_credential_urls() -> None:
    settings = TwinSettings(
        jwt_secret=CANARY_JWT,  # type: ignore[arg-type]
        research_key=CANARY_RESEARCH,  # type: ignore[arg-type]
        database_url=f"postgresql://db.internal/novamind?sslmode=require&password={CANARY_PASSWORD}",
        redis_url=f"redis://:{CANARY_PASSWORD}@cache:6379/0",
        mongo_url="mongodb://docs.internal/novamind",
    )
    values = settings.for_workers()
    assert CANARY_PASSWORD not in repr(values) and CANARY_JWT not in repr(values)
    assert CANARY_RESEARCH not in repr(values)
    assert values["withheld"] == ["database_url", "jwt_secret", "redis_url", "research_key"]
    assert values["mongo_url"] == "mongodb://docs.internal/novamind"
    # A receiving process without its own copy refuses to start (never the embedded stores,
    # never a research key of its own, which would give other pseudonyms).
    with pytest.raises(ValueError, match="database_url, jwt_secret, redis_url, research_key is"):
        TwinSettings(**values)
    # Secrets that were not configured (generated locally, shared through the key folder) are
    # not withheld.
    assert TwinSettings().for_workers()["withheld"] == []
    assert url_carries_secret("postgresql://u@h/db?PassWord=x")
    assert not url_carries_secret("postgresql://u@h/db?sslmode=require")
