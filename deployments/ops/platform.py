"""``novamind up``: the whole platform on one machine.

Local Ray (with its dashboard), the TwinHost actors, the Serve application on
``http_host:http_port``, seeded with synthetic demo patients through the HTTP API itself (the
researcher SDK, as any client would), then it prints the URLs and a local admin token and keeps
serving until interrupted. Re-running is idempotent: the demo patients are created once (their
ids are remembered in ``data_dir/demo/patients.json``) and every event carries an idempotency
key. The same code with ``NOVAMIND_*`` settings uses PostgreSQL, Redis, S3 and KMS.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from deployments.api.auth import Role, mint_token
from deployments.bootstrap import jwt_secret
from twin.client import Client, observation
from twin.domain import events
from twin.model.virtual_patient import synthetic_patient
from twin.settings import TwinSettings

__all__ = ["DEMO_TEAM", "Platform", "local_token", "seed_demo_patients", "start_platform"]

DEMO_TEAM = "demo-team"
_DEMO = (
    ("Demo Patient One", "1984-03-02", "DEMO-0001", 101, "sertraline", 50.0),
    ("Demo Patient Two", "1991-07-19", "DEMO-0002", 102, "escitalopram", 10.0),
    ("Demo Patient Three", "1975-11-30", "DEMO-0003", 103, None, 0.0),
)


def local_token(
    settings: TwinSettings,
    role: Role,
    *,
    subject: str | None = None,
    care_team: tuple[str, ...] = (),
    ttl_s: int = 12 * 3600,
) -> str:
    """A locally signed token (HS256 secret of ``data_dir/secrets``; local use only)."""
    return mint_token(
        jwt_secret(settings),
        subject=subject or f"local-{role}",
        role=role,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        care_team=care_team,
        ttl_s=ttl_s,
    )


def seed_demo_patients(
    client: Client, state_file: Path, progress: Callable[[str], None] = print
) -> list[str]:
    """Create the demo patients once and send their 8 weeks of events (idempotent)."""
    known: dict[str, str] = json.loads(state_file.read_text()) if state_file.exists() else {}
    ids = []
    for name, born, mrn, seed, drug, dose in _DEMO:
        pid = known.get(mrn)
        if pid is None:
            pid = client.create_patient(name=name, birth_date=born, mrn=mrn, care_team=DEMO_TEAM)
            known[mrn] = pid
            state_file.parent.mkdir(parents=True, exist_ok=True)
            state_file.write_text(json.dumps(known))
        patient = synthetic_patient(
            seed,
            days=56,
            phq9_every=7,
            ema_per_day=2,
            wearables=True,
            drug_name=drug,
            mg_per_day=dose,
            drug_from_day=14,
            p_episode=1.0,
        )
        # Consecutive runs of one kind, in log order: the twin's clock only moves forward.
        for is_intervention, run in groupby(
            patient.events, key=lambda e: isinstance(e.payload, events.INTERVENTION_TYPES)
        ):
            items = [observation(e.payload, day=e.day, key=f"{mrn}-{e.seq}") for e in run]
            for start in range(0, len(items), 500):
                send = client.add_interventions if is_intervention else client.add_observations
                send(pid, items[start : start + 500])
        progress(f"{name}: {client.twin(pid).severity_mean:.1f} PHQ-9 points (posterior mean)")
        ids.append(pid)
    return ids


@dataclass(frozen=True, slots=True)
class Platform:
    """A running local platform.

    Attributes:
        api_url: Base URL of the HTTP API.
        dashboard_url: The Ray dashboard, when started.
    """

    api_url: str
    dashboard_url: str | None

    def stop(self) -> None:
        """Shut Serve and Ray down."""
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def start_platform(
    settings: TwinSettings,
    *,
    dashboard: bool = True,
    num_cpus: int | None = None,
    ready_timeout_s: float = 180.0,
) -> Platform:
    """Start local Ray, the TwinHost actors and the Serve app; wait until it is ready."""
    from ray import serve

    from deployments import ray_env
    from deployments.serve_app import application

    # Read by the Serve controller and replicas, which inherit Ray's environment.
    os.environ.update(ray_env.serve_flags(settings))
    context: Any = ray_env.connect(
        settings,
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        namespace=settings.ray_namespace,
        log_to_driver=False,
        configure_logging=False,
    )
    serve.start(http_options={"host": settings.http_host, "port": settings.http_port})
    serve.run(application(settings), name="novamind", route_prefix="/", blocking=False)
    url = f"http://{settings.http_host}:{settings.http_port}"
    token = local_token(settings, "admin", ttl_s=600)
    deadline = time.monotonic() + ready_timeout_s
    with Client(url, token=token, timeout_s=10.0) as client:
        while True:
            try:
                if client.ready():
                    break
            except Exception:  # the proxy may refuse connections while it starts
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API at {url} was not ready in {ready_timeout_s:g} s")
            time.sleep(0.5)
    dashboard_url = getattr(context, "dashboard_url", None)
    return Platform(url, f"http://{dashboard_url}" if dashboard_url else None)
