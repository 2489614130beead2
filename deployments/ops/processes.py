"""The processes of one local platform: found by descent from its driver, stopped by identity.

``ray.init`` on a new local cluster starts the GCS, the raylet, the dashboard and Ray's
monitors as children of the driver (the ``novamind up`` process); the raylet starts the
workers (twin hosts, Serve's controller, proxies and replicas, tasks). Each worker leads a
process group of its own, which its children join: Serve's HAProxy is the child of the
``HAProxyManager`` actor. A process whose parent dies is re-parented to init, so it leaves the
driver's tree, but it keeps its process group. The platform's processes are therefore

- the driver's descendants;
- the members of every process group that one of them leads (never the driver's own group,
  which the driver or one of its parents leads: in a terminal that is the shell's job,
  ``make`` included); and
- every process an earlier look found that is still alive and still the same process.

Nothing else on the machine is ever signalled: not another platform's Ray cluster, not the
processes of other users. Why psutil: a maintained library for process trees whose signals
first check that a process id still names the process that was found (and not a process that
got the id after it ended).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import psutil

__all__ = ["PlatformProcesses", "is_alive"]

#: How often a stop checks whether the processes it signalled have ended, seconds.
_POLL_S = 0.05


def is_alive(process: psutil.Process) -> bool:
    """Whether a process still runs (a zombie has ended; it waits only for its parent)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class PlatformProcesses:
    """The processes started by one platform's driver, remembered between looks.

    Args:
        root: The driver's process id (default: this process). The root itself is never
            counted nor signalled.
    """

    def __init__(self, root: int | None = None) -> None:
        self._root = psutil.Process(os.getpid() if root is None else root)
        self._known: dict[int, psutil.Process] = {}
        #: Process groups led by a known process, kept while any member is left (the kernel
        #: gives no new process the id of a group that still has a member), with when each was
        #: last seen occupied: a member created later may belong to a new group that took the
        #: id of an emptied one, and is not adopted.
        self._groups: dict[int, float] = {}
        # A forced stop (the main thread) may look while the orderly one (a thread) does.
        self._lock = threading.Lock()

    def look(self) -> int:
        """Find the platform's processes now (see the module docstring); returns how many.

        Called when the platform is up, while it serves and before it stops, so that a
        process orphaned in between (its parent died) is still known by its identity or its
        process group.
        """
        with self._lock:
            now = time.time()
            try:
                found = self._root.children(recursive=True)
            except psutil.Error:  # the root has ended: only what is already known remains
                found = []
            for process in found:
                self._known.setdefault(process.pid, process)
            # The dead go first: a dead process's id may now name an unrelated group leader.
            for pid in [pid for pid, process in self._known.items() if not is_alive(process)]:
                del self._known[pid]
            for pid in self._known:
                with contextlib.suppress(OSError):  # ended meanwhile
                    if os.getpgid(pid) == pid:
                        self._groups.setdefault(pid, now)
            occupied: set[int] = set()
            if self._groups:
                for process in psutil.process_iter():
                    if process.pid == self._root.pid:
                        continue
                    with contextlib.suppress(OSError, psutil.Error):  # ended meanwhile
                        group = os.getpgid(process.pid)
                        if group in self._groups and process.create_time() <= self._groups[group]:
                            occupied.add(group)
                            self._known.setdefault(process.pid, process)
            self._groups = dict.fromkeys(occupied, now)
            for pid in [pid for pid, process in self._known.items() if not is_alive(process)]:
                del self._known[pid]  # a dead group leader is still in its group's list
            return len(self._known)

    def alive(self) -> list[psutil.Process]:
        """The known processes that still run."""
        with self._lock:
            known = list(self._known.values())
        return [process for process in known if is_alive(process)]

    def stop(self, grace_s: float) -> int:
        """End every known process: SIGTERM, ``grace_s`` seconds, then SIGKILL.

        Returns:
            How many had to be killed (they did not end within the grace period).
        """
        self.look()
        self._signal(self.alive(), kill=False)
        left = self._wait(grace_s)
        self._signal(left, kill=True)
        self._wait(1.0)
        return len(left)

    def kill(self) -> int:
        """SIGKILL every known process at once (a forced stop); returns how many."""
        self.look()
        left = self.alive()
        self._signal(left, kill=True)
        self._wait(1.0)
        return len(left)

    @staticmethod
    def _signal(processes: list[psutil.Process], *, kill: bool) -> None:
        for process in processes:
            with contextlib.suppress(psutil.Error):  # ended, or its id now names another
                if kill:
                    process.kill()
                else:
                    process.terminate()

    def _wait(self, timeout_s: float) -> list[psutil.Process]:
        """Wait until no known process runs or ``timeout_s`` passes; returns those left."""
        deadline = time.monotonic() + timeout_s
        while (left := self.alive()) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        return left
