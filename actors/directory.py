"""Where twins live: named ``TwinHost`` actors and rendezvous hashing over them.

The only module that calls ``ray.remote``, ``.options()`` and ``ray.get_actor``.

- Shared hosts ``twinhost-0..H-1`` (async actors, restarted without limit on failure). A patient
  goes to the host with the highest score h(host, patient) (rendezvous / highest-random-weight
  hashing, Thaler & Ravishankar 1998): adding a host moves only the patients it now wins.
- Dedicated hosts ``twin-<digest>`` give one patient a process of its own (the
  one-actor-per-patient model, for twins with heavy live streams).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import ray

from actors.host_actor import PortsFactory, TwinHostActor
from twin.settings import HostSettings, TwinSettings

__all__ = ["FORGET_EVERY_S", "RayTwinDirectory", "rendezvous"]


def rendezvous(patient_id: str, hosts: list[str]) -> str:
    """The host with the highest hash score for this patient."""

    def score(host: str) -> int:
        digest = hashlib.blake2b(f"{host}|{patient_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    return max(hosts, key=score)


_SHARED, _DEDICATED = "twinhost-", "twin-"
#: Shortest time between two restarts of a host this process finds dead for good (seconds).
FORGET_EVERY_S = 5.0


def _dedicated_name(patient_id: str) -> str:
    return _DEDICATED + hashlib.blake2b(patient_id.encode(), digest_size=12).hexdigest()


def _is_host(name: str) -> bool:
    """Whether a named actor is a twin host (shared or dedicated)."""
    return name.startswith((_SHARED, _DEDICATED))


class RayTwinDirectory:
    """Creates or finds the host actors and maps patients to them.

    Args:
        settings: Platform settings (number of hosts, namespace, data directory).
        open_ports: Importable coroutine function opening a host's stores in its process.
        host_settings: Tuning of each host.
    """

    def __init__(
        self, settings: TwinSettings, open_ports: PortsFactory, host_settings: HostSettings
    ) -> None:
        if type(host_settings) is not HostSettings:
            # Hosts are Ray actors: what they are given is kept by Ray, so only the host's part
            # of the settings (``TwinSettings.host``), never the whole with its secrets.
            raise TypeError("a twin host takes HostSettings (settings.host), nothing else")
        self._settings = settings
        self._open_ports = open_ports
        self._host_settings = host_settings
        self._names = [f"{_SHARED}{i}" for i in range(settings.hosts)]
        self._handles: dict[str, Any] = {}
        self._dedicated: set[str] = set()
        self._forgotten: dict[str, float] = {}  # name -> monotonic time it was last forgotten

    def _actor(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            handle = (
                ray.remote(TwinHostActor)
                .options(
                    name=name,
                    namespace=self._settings.ray_namespace,
                    get_if_exists=True,
                    # Detached: hosts outlive whichever process created them first (a Serve
                    # replica that scales down, a driver that exits); they hold only derived
                    # state and come back from checkpoints and the log.
                    lifetime="detached",
                    max_restarts=-1,
                    max_task_retries=0,  # the runtime retries, with idempotency keys
                    max_concurrency=1000,
                    num_cpus=0,
                )
                .remote(self._settings.for_workers(), self._open_ports, self._host_settings)
            )
            self._handles[name] = handle
        return handle

    def start(self) -> list[str]:
        """Create (or attach to) the shared hosts; returns their names."""
        for name in self._names:
            self._actor(name)
        return list(self._names)

    def host_for(self, patient_id: str) -> tuple[str, Any]:
        """The name and handle of the host that owns ``patient_id``."""
        if patient_id in self._dedicated:
            name = _dedicated_name(patient_id)
        else:
            name = rendezvous(patient_id, self._names)
        return name, self._actor(name)

    def forget(self, name: str) -> None:
        """Drop the handle of a host that died for good; the next use finds or starts it again.

        Ray restarts a host without limit, so this is for a host ended on purpose
        (``ray.kill``) or one whose constructor failed: a handle to it would fail every call
        until this process ends. At most once per :data:`FORGET_EVERY_S` for a name: a host
        whose start keeps failing is not started again at every retry of every caller.
        """
        now = time.monotonic()
        if now - self._forgotten.get(name, -FORGET_EVERY_S) < FORGET_EVERY_S:
            return
        self._forgotten[name] = now
        self._handles.pop(name, None)

    def dedicate(self, patient_id: str) -> str:
        """Give a patient a host of its own; returns the host's name."""
        self._dedicated.add(patient_id)
        return self.host_for(patient_id)[0]

    def hosts(self) -> dict[str, Any]:
        """Every host this directory has started, by name."""
        return dict(self._handles)

    def running_hosts(self) -> dict[str, Any]:
        """Every host of the namespace that Ray still lists, shared or dedicated, by name.

        Found by name, without creating any: a process other than the replicas that started
        them (the platform's driver, before it stops) reaches them all here.
        """
        found: dict[str, Any] = {}
        for actor in ray.util.list_named_actors(all_namespaces=True):
            name, namespace = actor["name"], actor["namespace"]
            if namespace != self._settings.ray_namespace or not _is_host(name):
                continue
            try:
                found[name] = ray.get_actor(name, namespace=namespace)
            except ValueError:  # gone since it was listed
                continue
        return found
