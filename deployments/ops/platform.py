"""``novamind up``: the whole platform on one machine.

Local Ray (with its dashboard), the TwinHost actors, the Serve application on
``http_host:http_port``, seeded with synthetic demo patients through the HTTP API itself (the
researcher SDK, as any client would), then it prints the URLs and a local admin token and keeps
serving until interrupted. Re-running is idempotent: the demo patients are created once (their
ids are remembered in ``data_dir/demo/patients.json``, and a demo patient that file does not
name is looked up by its MRN in the demo care team before one is registered) and every event
carries an idempotency key. The same code with ``NOVAMIND_*`` settings uses PostgreSQL, Redis,
S3 and KMS.

Stopping (:meth:`Platform.stop`) takes about 2 s plus the twins' checkpoints: the twin hosts
checkpoint what they hold, then Ray ends its cluster and every process of the platform that is
left is ended by its identity (:mod:`deployments.ops.processes`). Nothing is lost by a stop at
any moment: an event is acknowledged only once the event log has committed it, and a twin is
rebuilt from its newest checkpoint and the log.

While it serves, the audit chain's head is anchored every ``audit_anchor_interval_s``
(:class:`AuditAnchorTimer`), besides the anchors the API writes every N entries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any

from deployments.api.auth import Role, mint_token
from deployments.bootstrap import jwt_secret
from deployments.ops.lifecycle import (
    RUN_ENV,
    Identity,
    PlatformRecord,
    remove_record,
    write_record,
)
from deployments.ops.processes import PlatformProcesses
from twin.client import Client, observation
from twin.domain import events
from twin.domain.audit import AuditAnchor
from twin.errors import ConfigurationError
from twin.model.virtual_patient import synthetic_patient
from twin.settings import TwinSettings

__all__ = [
    "APP_NAME",
    "DEMO_TEAM",
    "STOP_DEADLINE_S",
    "AuditAnchorTimer",
    "Platform",
    "StopReport",
    "local_token",
    "seed_demo_patients",
]

_LOG = logging.getLogger("novamind.platform")

#: The Serve application's name.
APP_NAME = "novamind"
DEMO_TEAM = "demo-team"
#: Seconds from the signal to stop until the stop is forced (every process of the platform
#: killed): the orderly steps take about 2 s plus the checkpoints (``stop_checkpoint_s``, at
#: most 5 s), so this fires only when a step hangs.
STOP_DEADLINE_S = 9.0
#: Seconds the platform's processes get after Ray's shutdown (then SIGTERM), before SIGKILL.
STOP_GRACE_S = 1.0
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
    """Create the demo patients once and send their 8 weeks of events (idempotent).

    A new demo patient is enrolled 57 days ago, so that their 8 weeks lie in the past; each
    event is sent at its instant on the patient's axis (a patient an earlier demo enrolled at
    its own start gets the part of the course that has happened since).
    """
    known: dict[str, str] = json.loads(state_file.read_text()) if state_file.exists() else {}
    if any(mrn not in known for _, _, mrn, *_ in _DEMO):
        # The file is only a shortcut: a run stopped between a registration and the file's
        # write (Ctrl-C while seeding, an answer lost on the way), or a new data_dir against
        # a database that has them, left demo patients it does not name. The registry is
        # asked before any is registered again.
        found = {**_registered_demo_patients(client), **known}
        if found != known:
            known = found
            _remember(state_file, known)
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    ids = []
    for name, born, mrn, seed, drug, dose in _DEMO:
        pid = known.get(mrn)
        if pid is None:
            pid = client.create_patient(
                name=name, birth_date=born, mrn=mrn, care_team=DEMO_TEAM,
                enrolled_at=today - timedelta(days=57),
            )  # fmt: skip
            known[mrn] = pid
            _remember(state_file, known)
        stored = client.patient(pid).enrolled_at
        if stored is None:  # a demo from before enrolments were kept seeded it already
            ids.append(pid)
            continue
        enrolled = datetime.fromisoformat(stored)
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
            items = [
                observation(e.payload, effective=when, key=f"{mrn}-{e.seq}")
                for e in run
                if (when := enrolled + timedelta(days=e.day)) <= now
            ]
            for start in range(0, len(items), 500):
                send = client.add_interventions if is_intervention else client.add_observations
                send(pid, items[start : start + 500])
        progress(f"{name}: {client.twin(pid).severity_mean:.1f} PHQ-9 points (posterior mean)")
        ids.append(pid)
    return ids


def _registered_demo_patients(client: Client) -> dict[str, str]:
    """The demo care team's patients that carry a demo MRN: MRN -> patient id (the first listed)."""
    demo = {mrn for _, _, mrn, *_ in _DEMO}
    found: dict[str, str] = {}
    for pid in client.iter_patients(DEMO_TEAM):
        mrn = client.patient(pid).mrn
        if mrn in demo:
            found.setdefault(mrn, pid)
    return found


def _remember(state_file: Path, known: dict[str, str]) -> None:
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(known))


class AuditAnchorTimer:
    """Anchors the audit chain every ``audit_anchor_interval_s`` while the platform serves.

    :meth:`tick` is called from the serve loop; when an anchor is due it is written in a
    daemon thread (reading the chain from its latest anchor on must not hold up the loop,
    which answers signals), at most one at a time. A failure is logged by its class and
    retried at the next interval; a chain that does not check is logged as an error and not
    anchored (``novamind audit verify`` says why); once the latest anchor is older than twice
    the interval, each failure also logs that newer entries are unprotected.

    Args:
        settings: The platform's settings.
        clock: Monotonic seconds.
    """

    def __init__(
        self, settings: TwinSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._next = clock()  # the first anchor once the platform is up
        self._thread: threading.Thread | None = None
        self._latest: AuditAnchor | None = None

    def tick(self) -> None:
        """Start an anchor when one is due and none is being written."""
        now = self._clock()
        if now < self._next or (self._thread is not None and self._thread.is_alive()):
            return
        self._next = now + self._settings.audit_anchor_interval_s
        self._thread = threading.Thread(
            target=self._anchor, name="novamind-audit-anchor", daemon=True
        )
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` seconds for the anchor being written, if any."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def latest(self) -> AuditAnchor | None:
        """The latest anchor this timer wrote or found (``None`` before the first run)."""
        return self._latest

    def _anchor(self) -> None:
        from deployments.ops.audit import anchor

        try:
            outcome = anchor(self._settings)
        except Exception as exc:  # retried at the next interval
            _LOG.warning("audit anchor not written (%s)", type(exc).__name__)
            self._warn_if_stale()
            return
        if outcome.anchor is not None:
            self._latest = outcome.anchor
        for warning in outcome.report.warnings:
            _LOG.warning("audit anchors: %s", warning)
        if not outcome.report.ok:
            _LOG.error("audit chain does not verify; not anchored: %s", outcome.report.reason)
            self._warn_if_stale()

    def _warn_if_stale(self) -> None:
        """Say so once the latest anchor is older than twice the interval (anchoring stopped)."""
        if self._latest is None:
            return
        clock = datetime.now(UTC)
        age_s = (clock - self._latest.trusted_when(clock)).total_seconds()
        if age_s > 2 * self._settings.audit_anchor_interval_s:
            _LOG.error(
                "the latest audit anchor is %.0f s old: newer audit entries are protected only "
                "by the database's access control until anchoring works again",
                age_s,
            )


@dataclass(frozen=True, slots=True)
class StopReport:
    """What an orderly stop did.

    Attributes:
        checkpoints: Twin checkpoints the hosts wrote.
        hosts: Twin hosts asked to checkpoint.
        hosts_answered: Hosts that had finished within ``stop_checkpoint_s``.
        killed: Processes of the platform that had not ended after Ray's own shutdown and
            the grace period, and were killed.
        seconds: Duration of the stop.
    """

    checkpoints: int
    hosts: int
    hosts_answered: int
    killed: int
    seconds: float


def _is_wildcard(host: str) -> bool:
    """Whether ``host`` means every interface: any unspecified IP address (``0.0.0.0``, ``::``)."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False  # a host name (the settings accept nothing else)


def free_port(host: str) -> int:
    """A port that nothing listens on at ``host`` now (the kernel's choice)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.bind(address)
        return int(probe.getsockname()[1])


class Platform:
    """The platform on this machine: Ray, the twin hosts, the Serve application.

    With ``ray_address = "local"`` (the default) it starts a Ray cluster of its own, whose
    processes, HAProxy included, are all started below this process
    (:class:`~deployments.ops.processes.PlatformProcesses`); :meth:`stop` ends all of them and
    nothing else. On a cluster it joins, a stop deletes only its Serve application and
    disconnects: the cluster, and the detached twin hosts in it, stay.

    A cluster started here binds ``http_host`` with every listener it can: the API, Serve's
    HAProxy stats and metrics (:mod:`deployments.ops.haproxy_bind`), the Ray dashboard and
    Ray's metrics export, each on its port setting (0: a free one, chosen at start). The run
    is recorded in ``data_dir/run/platform.json`` (:mod:`deployments.ops.lifecycle`) from
    before Ray starts until the stop has ended every process.

    Args:
        settings: The platform's settings.

    Attributes:
        api_url: Base URL of the HTTP API (its port known once :meth:`start` has begun).
        dashboard_url: The Ray dashboard, once started (``None`` without one).
        processes: The processes this platform started.
        ports: The ports chosen at start: ``api``, ``dashboard``, ``haproxy_stats``,
            ``haproxy_metrics``, ``ray_metrics`` (those of a cluster started here).
        record: This run's record, once written.
    """

    def __init__(self, settings: TwinSettings) -> None:
        self._settings = settings
        self._owns_cluster = settings.ray_address == "local"
        self.api_url = f"http://{settings.http_host}:{settings.http_port}"
        self.dashboard_url: str | None = None
        self.processes = PlatformProcesses()
        self.ports: dict[str, int] = {}
        self.record: PlatformRecord | None = None
        self._written: PlatformRecord | None = None
        self._environ: dict[str, str | None] = {}

    def start(
        self, *, dashboard: bool = True, num_cpus: int | None = None, ready_timeout_s: float = 180.0
    ) -> None:
        """Start (or join) Ray, the TwinHost actors and the Serve app; wait until it is ready.

        Raises:
            TimeoutError: The API did not answer ready within ``ready_timeout_s`` seconds.
        """
        from ray import serve

        from deployments import ray_env
        from deployments.serve_app import application

        settings = self._settings
        self.ports = self._choose_ports(dashboard=dashboard)
        http_host = "127.0.0.1" if _is_wildcard(settings.http_host) else settings.http_host
        self.api_url = f"http://{_url_host(http_host)}:{self.ports['api']}"
        self.record = PlatformRecord.new(settings, self.ports)
        write_record(settings, self.record)
        self._written = self.record
        # Read by the Serve controller and replicas, which inherit Ray's environment; the
        # run's id marks every process started below this one.
        environ = {**ray_env.serve_flags(settings), RUN_ENV: self.record.run}
        options: dict[str, Any] = {}
        if self._owns_cluster:
            environ.update(self._listener_environ())
            options = self._listener_options(dashboard=dashboard)
        self._set_environ(environ)
        context: Any = ray_env.connect(
            settings,
            num_cpus=num_cpus,
            include_dashboard=dashboard,
            namespace=settings.ray_namespace,
            log_to_driver=False,
            configure_logging=False,
            **options,
        )
        session_dir = getattr(context, "address_info", {}).get("session_dir")
        self.record = dataclasses.replace(self.record, session_dir=session_dir)
        self.look()
        dashboard_url = getattr(context, "dashboard_url", None)
        self.dashboard_url = None
        if dashboard_url:  # HOST:PORT, an IPv6 literal unbracketed
            address, _, port = dashboard_url.rpartition(":")
            self.dashboard_url = f"http://{_url_host(address.strip('[]'))}:{port}"
        if dashboard_url and self._owns_cluster:  # the port Ray took (its own choice by default)
            self.ports["dashboard"] = int(dashboard_url.rpartition(":")[2])
            self.record = dataclasses.replace(self.record, ports=dict(self.ports))
        serve.start(http_options={"host": settings.http_host, "port": self.ports["api"]})
        serve.run(application(settings), name=APP_NAME, route_prefix="/", blocking=False)
        token = local_token(settings, "admin", ttl_s=600)
        deadline = time.monotonic() + ready_timeout_s
        with Client(self.api_url, token=token, timeout_s=10.0) as client:
            while True:
                try:
                    if client.ready():
                        break
                except Exception:  # the proxy may refuse connections while it starts
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the API at {self.api_url} was not ready in {ready_timeout_s:g} s"
                    )
                time.sleep(0.5)
        self.record = dataclasses.replace(self.record, state="serving")
        self.look()

    def look(self) -> None:
        """Find the platform's processes again and record them when they changed."""
        self.processes.look()
        if self.record is None:
            return
        found = tuple(sorted(_identities(self.processes.alive()), key=lambda i: i.pid))
        self.record = dataclasses.replace(self.record, processes=found)
        if self.record != self._written:
            write_record(self._settings, self.record)
            self._written = self.record

    def _choose_ports(self, *, dashboard: bool) -> dict[str, int]:
        """Each listener's port: its setting, or a free one where the setting is 0."""
        settings = self._settings
        host = settings.http_host
        wanted = {"api": settings.http_port}
        if self._owns_cluster:
            wanted["haproxy_stats"] = settings.haproxy_stats_port
            wanted["haproxy_metrics"] = settings.haproxy_metrics_port
            wanted["ray_metrics"] = settings.ray_metrics_export_port
            wanted["dashboard_metrics"] = 0
            wanted["autoscaler_metrics"] = 0
            if dashboard and settings.dashboard_port is not None:
                wanted["dashboard"] = settings.dashboard_port
        return {name: port or free_port(host) for name, port in wanted.items()}

    def _listener_environ(self) -> dict[str, str]:
        """Serve's HAProxy variables: its ports, its files in the data folder, its binds."""
        settings = self._settings
        haproxy_dir = settings.data_dir.resolve() / "run" / "haproxy"
        environ = {
            "RAY_SERVE_HAPROXY_STATS_PORT": str(self.ports["haproxy_stats"]),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(self.ports["haproxy_metrics"]),
            # Serve adds the node's id: data_dir/run/haproxy/NODE/haproxy.cfg (HAProxy's
            # command line names the data folder).
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy_dir / "haproxy.cfg"),
            # The dashboard's and the autoscaler's own Prometheus servers: fixed ports (44227,
            # 44217) unless told, which a second platform could not take.
            "DASHBOARD_METRIC_PORT": str(self.ports["dashboard_metrics"]),
            "AUTOSCALER_METRIC_PORT": str(self.ports["autoscaler_metrics"]),
        }
        if settings.serve_haproxy and not _is_wildcard(settings.http_host):
            from ray.serve._private.haproxy import get_haproxy_binary

            from deployments.ops.haproxy_bind import launcher

            real = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH") or get_haproxy_binary()
            try:
                path = launcher(haproxy_dir / "haproxy", settings.http_host, real)
            except OSError as exc:
                raise ConfigurationError(f"Serve's HAProxy cannot be started: {exc}") from None
            environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(path)
        return environ

    def _listener_options(self, *, dashboard: bool) -> dict[str, Any]:
        """``ray.init`` options that put a new cluster's listeners on the host and ports."""
        host = self._settings.http_host
        options: dict[str, Any] = {"_metrics_export_port": self.ports["ray_metrics"]}
        if dashboard:
            options["dashboard_host"] = host
            if "dashboard" in self.ports:
                options["dashboard_port"] = self.ports["dashboard"]
        # Ray's GCS, raylet, object manager and workers take no address to listen on (Ray
        # turns a loopback node address into the machine's): see docs/operations.md §9.
        return options

    def _set_environ(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._environ.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _restore_environ(self) -> None:
        for name, value in self._environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._environ.clear()

    def stop(self) -> StopReport:
        """Stop in order, each step bounded; safe to call whatever the start reached.

        1. The twin hosts checkpoint their twins that are ahead of their checkpoints, for at
           most ``stop_checkpoint_s`` (best effort: every acknowledged event is already
           committed to the event log, from which a twin is rebuilt).
        2. A cluster started here is shut down by Ray (the raylet first, which ends the
           workers with their process groups, HAProxy among them). Serve's own shutdown is
           skipped: it drains each replica for up to 30 s (the HAProxy ingress's minimum
           draining period) on a cluster about to end anyway. On a joined cluster the
           application is deleted (without waiting for its replicas to drain) and the driver
           disconnects.
        3. Any process of the platform still running gets SIGTERM, then SIGKILL.
        """
        import ray

        started = time.monotonic()
        if self.record is not None:
            self.record = dataclasses.replace(self.record, state="stopping")
        with contextlib.suppress(OSError):  # a full disk must not keep the stop from running
            self.look()
        checkpoints, hosts, answered = 0, 0, 0
        if ray.is_initialized():
            checkpoints, hosts, answered = self._checkpoint_hosts()
            if not self._owns_cluster:
                from ray import serve

                with contextlib.suppress(Exception):  # not deployed (a start that failed)
                    serve.delete(APP_NAME, _blocking=False)
            self.processes.look()  # workers started since (a replica, a Ray Data task)
        ray.shutdown()
        killed = self.processes.stop(grace_s=STOP_GRACE_S)
        self._forget()
        return StopReport(checkpoints, hosts, answered, killed, time.monotonic() - started)

    def kill(self) -> int:
        """End every process of the platform at once with SIGKILL; returns how many.

        The forced stop: nothing is checkpointed, and no process of the platform is left.
        """
        killed = self.processes.kill()
        self._forget()
        return killed

    def _forget(self) -> None:
        """After a stop that ended every process: remove the record, restore the environment."""
        if self.record is not None and not self.processes.alive():
            remove_record(self._settings, self.record.run)
        self._restore_environ()

    def _checkpoint_hosts(self) -> tuple[int, int, int]:
        """Ask every twin host to checkpoint; (checkpoints written, hosts, hosts answered)."""
        import ray

        from actors.directory import RayTwinDirectory
        from deployments.host_ports import build_host_ports

        budget = self._settings.stop_checkpoint_s
        directory = RayTwinDirectory(self._settings, build_host_ports, self._settings.host)
        hosts = directory.running_hosts()
        if budget <= 0 or not hosts:
            return 0, len(hosts), 0
        pending = [handle.checkpoint_active.remote() for handle in hosts.values()]
        done, _ = ray.wait(pending, num_returns=len(pending), timeout=budget)
        written = 0
        for ref in done:
            try:
                written += int(ray.get(ref))
            except ray.exceptions.RayError as exc:  # a host that died: its twins replay
                _LOG.warning("a twin host did not checkpoint: %s", type(exc).__name__)
        return written, len(hosts), len(done)


def _identities(processes: list[Any]) -> list[Identity]:
    found = []
    for process in processes:
        with contextlib.suppress(Exception):  # ended meanwhile
            found.append(Identity.of(process))
    return found


def _url_host(host: str) -> str:
    """``host`` as a URL's host part (an IPv6 literal in brackets)."""
    return f"[{host}]" if ":" in host else host
