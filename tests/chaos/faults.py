"""Faults injected into a running :class:`tests.chaos.cluster.ChaosCluster` on a seeded schedule.

Each fault is a real failure of a real process or of the network:

- SIGKILL of a twin host actor, a Serve replica, the job runner, a bulk ingest's writer, Serve's
  HAProxy ingress, or a whole worker node (its raylet and workers; then a new node joins);
- PostgreSQL killed with commits in flight (``pg_ctl stop -m immediate``) and started again;
  Redis stopped and started (its data is derived: the change feed, the shared rate budgets);
- S3 and KMS unreachable (moto's process stopped with SIGSTOP, then continued: a store that
  hangs, the way a network partition looks, without losing what it holds);
- the network to PostgreSQL or Redis slowed, reset or black-holed
  (:class:`tests.chaos.proxy.FaultProxy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tests.chaos.cluster import ChaosCluster, haproxy_pids, pids_of

#: Every kind of fault, by name.
KINDS = (
    "host_kill",
    "replica_kill",
    "runner_kill",
    "node_kill",
    "postgres_crash",
    "redis_restart",
    "s3_kms_outage",
    "haproxy_kill",
    "writer_kill",
    "postgres_latency",
    "postgres_reset",
    "postgres_blackhole",
    "redis_latency",
    "redis_reset",
    "redis_blackhole",
)
#: Kills, by the title Ray gives the victim's process (a prefix, or a part for Ray Data's).
_TITLES = {
    "host_kill": "ray::TwinHostActor",
    "replica_kill": "ray::ServeReplica",
    "runner_kill": "ray::JobRunner",
    "writer_kill": "_Writer",
}
#: Seconds of delay a slow network adds to every chunk of bytes, each way.
SLOW_LINK_S = 0.05
#: The shortest black hole, seconds.
BLACK_HOLE_S = 6.0
#: How long a kill waits for its victim to exist, seconds: a restarting actor is back within
#: seconds; a bulk ingest's writer exists only while a job writes (one job after another).
_VICTIM_WAIT_S = {"writer_kill": 120.0}


@dataclass(frozen=True, slots=True)
class Injected:
    """One fault: its kind, when it began (monotonic seconds) and when it was undone."""

    kind: str
    at: float
    until: float


@dataclass
class Injector:
    """Injects faults into ``cluster``, choosing kinds with a seeded generator.

    Args:
        cluster: The running cluster.
        seed: Seeds the choice of kinds and victims.
        outage_s: How long a server stays down (PostgreSQL, Redis, S3/KMS).
    """

    cluster: ChaosCluster
    seed: int = 0
    outage_s: float = 3.0
    injected: list[Injected] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def _kill_one(self, kind: str) -> bool:
        # A victim killed moments ago may still be restarting (and a writer lives only while a
        # bulk ingest writes): wait for one.
        deadline = time.monotonic() + _VICTIM_WAIT_S.get(kind, 30.0)
        while not (victims := pids_of(self.cluster, _TITLES[kind])):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._random.choice(victims), signal.SIGKILL)
        return True

    def _blocking(self, kind: str) -> bool:
        """Inject one fault and undo it (blocks for the outage); False if it had no victim."""
        cluster = self.cluster
        if kind in _TITLES:
            return self._kill_one(kind)
        if kind == "node_kill":
            if not cluster.workers:
                return False
            cluster.kill_worker(self._random.choice(cluster.workers))
            cluster.start_worker()
            return True
        if kind == "postgres_crash":
            cluster.postgres.stop("immediate")
            time.sleep(self.outage_s)
            cluster.postgres.start("max_connections=300")
            return True
        if kind == "redis_restart":
            cluster.redis.stop()
            time.sleep(self.outage_s)
            cluster.redis.start()
            return True
        if kind == "haproxy_kill":
            victims = haproxy_pids(cluster)
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return bool(victims)
        if kind.startswith(("postgres_", "redis_")):
            server, fault = kind.split("_")
            link = cluster.postgres_link if server == "postgres" else cluster.redis_link
            if fault == "reset":
                return link.reset() > 0  # no connection open: nothing was injected
            slow = fault == "latency"  # else a black hole
            link.set_latency(SLOW_LINK_S) if slow else link.black_hole(True)
            try:
                # A black hole outlasts the service's timeouts (5 s for a PostgreSQL statement)
                # so the timeout paths are taken, not only the waits.
                time.sleep(self.outage_s if slow else max(self.outage_s, BLACK_HOLE_S))
            finally:
                link.set_latency(0.0) if slow else link.black_hole(False)
            return True
        if kind == "s3_kms_outage":
            pid = cluster.moto.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(self.outage_s)
            finally:
                os.kill(pid, signal.SIGCONT)
            return True
        raise ValueError(f"unknown fault {kind!r}: one of {', '.join(KINDS)}")

    async def inject(self, kind: str) -> Injected | None:
        """Inject one fault of ``kind`` (off the event loop) and record it."""
        at = time.monotonic()
        if not await asyncio.to_thread(self._blocking, kind):
            return None
        done = Injected(kind, at, time.monotonic())
        self.injected.append(done)
        return done

    async def run(
        self,
        kinds: Sequence[str],
        *,
        every_s: float,
        until: float,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Inject a fault every ``every_s`` until ``until``, ``kinds`` in turn.

        Each round takes the kinds in a seeded order, so every kind is injected once there is
        time for as many faults.
        """
        turn: list[str] = []
        while time.monotonic() + every_s < until and not stop():
            await asyncio.sleep(every_s)
            if not turn:
                turn = list(kinds)
                self._random.shuffle(turn)
            await self.inject(turn.pop())
