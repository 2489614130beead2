"""The composition root on the production adapters: PostgreSQL, S3 + KMS (moto), Redis."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deployments.api.observability import PrometheusMetrics
from deployments.bootstrap import open_api_services
from deployments.host_ports import build_host_ports
from tests.servers import MotoServer, PostgresServer, RedisServer
from twin import errors
from twin.domain import events as E
from twin.domain.audit import AuditAnchor
from twin.domain.patients import Identifiers
from twin.ports import Document, NewEvent
from twin.service.host import TwinHost
from twin.settings import HostSettings, TwinSettings

pytestmark = pytest.mark.integration


def test_outside_local_the_embedded_defaults_are_refused(monkeypatch):
    monkeypatch.delenv("NOVAMIND_DATABASE_URL", raising=False)
    with pytest.raises(
        ValidationError, match="database_url, s3_bucket, kms_key_id, jwks_url, research_key"
    ):
        TwinSettings(environment="prod")
    production = {
        "database_url": "postgresql://db/x",
        "s3_bucket": "b",
        "kms_key_id": "k",
        "jwks_url": "https://idp.example/jwks",
        "research_key": "r" * 48,
        "public_base_url": "https://api.example",
        "audit_anchors": "s3://anchors/prod",
    }
    with pytest.raises(ValidationError, match="needs public_base_url"):
        TwinSettings(environment="prod", **{**production, "public_base_url": None})
    with pytest.raises(ValidationError, match="needs public_base_url"):
        TwinSettings(environment="prod", **{**production, "public_base_url": "http://api.example"})
    settings = TwinSettings(environment="prod", **production)
    assert settings.environment == "prod"
    for where in (None, "/var/lib/novamind/audit-anchors.jsonl", "s3://"):
        with pytest.raises(ValidationError, match="needs audit_anchors"):
            TwinSettings(environment="prod", **{**production, "audit_anchors": where})
    # An anchor's own retention date overrides the bucket's: never under six years there.
    with pytest.raises(ValidationError, match="at least 2192 days"):
        TwinSettings(environment="prod", audit_anchor_retention_days=2191, **production)
    assert TwinSettings(audit_anchor_retention_days=1).audit_anchor_retention_days == 1  # local
    with pytest.raises(ValidationError, match="not a shared HS256 secret"):
        TwinSettings(environment="prod", jwt_secret="s" * 48, **production)


async def test_a_twin_round_trips_through_the_production_stores(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    pg, moto, redis = PostgresServer(), MotoServer(), RedisServer()
    pg.start()
    moto.start()
    redis.start()
    try:
        s3, kms = moto.client("s3"), moto.client("kms")
        s3.create_bucket(Bucket="novamind-checkpoints")  # type: ignore[attr-defined]
        s3.create_bucket(Bucket="novamind-anchors", ObjectLockEnabledForBucket=True)  # type: ignore[attr-defined]
        key = kms.create_key()["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
        settings = TwinSettings(
            environment="staging",
            data_dir=tmp_path,
            database_url=pg.dsn,
            s3_bucket="novamind-checkpoints",
            audit_anchors="s3://novamind-anchors/staging",
            s3_kms_key_id=key,
            kms_key_id=key,
            aws_endpoint_url=moto.endpoint,
            redis_url=redis.url,
            jwks_url="https://idp.novamind.test/jwks",
            public_base_url="https://api.novamind.test",
            research_key="r" * 48,
            rate_limit_per_minute=2,
        )
        stores = await build_host_ports(settings)
        host = TwinHost(stores, settings=HostSettings(particles=200))
        await host.ingest("p1", [NewEvent("a", 0.5, E.Phq9(16)), NewEvent("b", 3.5, E.Gad7(11))])
        live = (await host.state("p1")).to_bytes()
        await host.passivate("p1")
        assert (await stores.checkpoints.latest("p1")).seq == 2
        assert (await stores.index.get("p1")).last_seq == 2
        assert await stores.feed.cached_summary("p1") is not None
        again = TwinHost(stores, settings=HostSettings(particles=200))
        assert (await again.state("p1")).to_bytes() == live
        # The API's services on the same production stores: registry, documents, Redis budgets.
        async with open_api_services(settings, again, PrometheusMetrics()) as api:
            assert api.ready is not None and await api.ready()
            pid = await api.registry.create(
                Identifiers("Pat Canary", "1970-01-01", "MRN-P", None), care_team="t"
            )
            await api.documents.put(Document("scenario", "r1", pid, b"sealed", 1.0))
            assert (await api.documents.get("scenario", "r1")).patient_id == pid
            await api.limiter.check("caller")
            await api.limiter.check("caller")
            with pytest.raises(errors.RateLimitedError):
                await api.limiter.check("caller")
            assert api.limiter.fallbacks == 0  # the budget lived in Redis
            await api.anchors.put(AuditAnchor(1, "a" * 64, "2026-12-01T10:00:00+00:00"))
            assert [a.entries for a in await api.anchors.all()] == [1]  # in the locked bucket
        await stores.aclose()
        assert not list(tmp_path.rglob("*.db"))  # nothing fell back to the embedded store
    finally:
        redis.stop()
        moto.stop()
        pg.destroy()
