"""One platform per data folder: its record, its lock, ``novamind status`` and ``novamind down``.

``novamind up`` holds ``data_dir/run/up.lock`` (``fcntl.flock``) for its whole life, so two
``up`` on one data folder cannot race, and writes ``data_dir/run/platform.json`` (atomically,
mode 0600): its driver's process id and start time, its process group, the host and ports it
bound, Ray's session folder, a random run id and the identities (process id and start time) of
the processes it knows. The lock ends with the driver whatever ends it; the record stays when
the driver could not remove it (SIGKILL, an OOM kill, a closed terminal), and then tells the
next ``up`` or ``down`` what that run left.

Which processes are the run's: those the record names, if still the same process (same
start time) of the same user; and every process of this user whose environment carries the
run's id (``NOVAMIND_PLATFORM_RUN``, set by the driver before it starts Ray and inherited by
every process below it: Ray's daemons, its workers, Serve's HAProxy, also one started after
the record was last written). Never a process found by its name, another run's or another
user's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

import psutil

from twin.errors import ConfigurationError, PlatformRunningError
from twin.settings import TwinSettings

__all__ = [
    "DOWN_WAIT_S",
    "RUN_ENV",
    "DownReport",
    "Identity",
    "PlatformRecord",
    "PlatformStatus",
    "UpLock",
    "clear_stale",
    "down",
    "read_record",
    "record_path",
    "remove_record",
    "run_processes",
    "status",
    "write_record",
]

#: The environment variable that marks every process of one run with that run's id.
RUN_ENV = "NOVAMIND_PLATFORM_RUN"
#: Seconds ``novamind down`` waits for the driver's own orderly stop (which forces itself
#: after 9 s) before it kills what is left.
DOWN_WAIT_S = 12.0
#: Seconds the run's processes get after SIGTERM before SIGKILL.
_GRACE_S = 1.0
_POLL_S = 0.05
#: A record is a few kilobytes; anything much larger is not one.
_MAX_RECORD_BYTES = 1 << 20
#: Two readings of one process's start time differ by less than this, seconds (psutil derives
#: it from the boot time and clock ticks).
_SAME_START_S = 0.05


def _run_dir(settings: TwinSettings) -> Path:
    return settings.data_dir.resolve() / "run"


def record_path(settings: TwinSettings) -> Path:
    """``data_dir/run/platform.json``."""
    return _run_dir(settings) / "platform.json"


@dataclass(frozen=True, slots=True)
class Identity:
    """A process as it was found: its id and its start time (seconds since the epoch)."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, process: psutil.Process) -> Identity:
        """The identity of ``process``."""
        return cls(process.pid, process.create_time())

    def find(self) -> psutil.Process | None:
        """The process if it still runs, is still this one and is this user's; else ``None``."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.create_time) > _SAME_START_S:
                return None  # the id now names another process
            if process.uids().real != os.getuid():
                return None
        except psutil.Error:
            return None
        return process if _alive(process) else None


@dataclass(frozen=True, slots=True)
class PlatformRecord:
    """What one ``novamind up`` runs (``data_dir/run/platform.json``).

    Attributes:
        run: A random id; every process of the run carries it in ``NOVAMIND_PLATFORM_RUN``.
        driver: The ``novamind up`` process.
        pgid: The driver's process group (the shell's job: recorded, never signalled).
        uid: The user the platform runs as.
        data_dir: The data folder, absolute.
        host: The address every listener binds.
        ports: The ports bound: ``api``, ``dashboard`` (absent without one),
            ``haproxy_stats``, ``haproxy_metrics``, ``ray_metrics``.
        started_at: When the driver started (UTC, ISO 8601).
        state: ``starting``, ``serving`` or ``stopping``.
        session_dir: Ray's session folder (``None`` until Ray has started).
        processes: The processes of the run found so far.
    """

    run: str
    driver: Identity
    pgid: int
    uid: int
    data_dir: str
    host: str
    ports: dict[str, int]
    started_at: str
    state: Literal["starting", "serving", "stopping"] = "starting"
    session_dir: str | None = None
    processes: tuple[Identity, ...] = field(default_factory=tuple)

    @classmethod
    def new(cls, settings: TwinSettings, ports: dict[str, int]) -> PlatformRecord:
        """The record of a run that this process (the driver) starts now."""
        me = psutil.Process()
        return cls(
            run=uuid.uuid4().hex,
            driver=Identity.of(me),
            pgid=os.getpgid(0),
            uid=os.getuid(),
            data_dir=str(settings.data_dir.resolve()),
            host=settings.http_host,
            ports=dict(ports),
            started_at=datetime.fromtimestamp(me.create_time(), UTC).isoformat(),
        )

    def to_json(self) -> str:
        """The record as JSON."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PlatformRecord:
        """Read a record; :class:`ValueError` (or a subclass) if it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        driver = Identity(**data.pop("driver"))
        processes = tuple(Identity(**item) for item in data.pop("processes", ()))
        record = cls(driver=driver, processes=processes, **data)
        if record.state not in ("starting", "serving", "stopping"):
            raise ValueError(f"unknown state {record.state!r}")
        return record


def write_record(settings: TwinSettings, record: PlatformRecord) -> None:
    """Write the record atomically (a new file, synced, renamed over the old), mode 0600."""
    path = record_path(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(record.to_json())
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def read_record(settings: TwinSettings) -> PlatformRecord | None:
    """The data folder's record, or ``None`` when there is none.

    Raises:
        ConfigurationError: The file is not a platform record (damaged or foreign): the
            message names it, to be looked at and removed by hand.
    """
    path = record_path(settings)
    try:
        with path.open("rb") as source:
            raw = source.read(_MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    try:
        if len(raw) > _MAX_RECORD_BYTES:
            raise ValueError("larger than 1 MiB")
        return PlatformRecord.from_json(raw.decode())
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(
            f"{path} is not a platform record ({type(exc).__name__}: {exc}); remove it once "
            "no platform of this data folder runs"
        ) from None


def remove_record(settings: TwinSettings, run: str) -> None:
    """Remove the record if it is still run ``run``'s."""
    with contextlib.suppress(ConfigurationError):
        record = read_record(settings)
        if record is not None and record.run == run:
            record_path(settings).unlink(missing_ok=True)


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def run_processes(record: PlatformRecord, *, include_driver: bool = False) -> list[psutil.Process]:
    """The run's processes that still run (see the module docstring); never this process.

    Args:
        record: The run.
        include_driver: Count the driver too.
    """
    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for identity in record.processes:
        process = identity.find()
        if process is not None:
            found[process.pid] = process
    uid = os.getuid()
    marker = f"{RUN_ENV}={record.run}"
    for process in psutil.process_iter():
        if process.pid in found or process.pid == me:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if process.uids().real != uid:
                continue  # another user's: not even read
            # /proc/PID/environ as written at exec: the marker cannot come from elsewhere.
            with open(f"/proc/{process.pid}/environ", "rb") as environ:
                if marker.encode() in environ.read().split(b"\0") and _alive(process):
                    found[process.pid] = process
    driver = record.driver.find()
    if driver is None or not include_driver:
        found.pop(record.driver.pid, None)
    elif driver.pid != me:
        found[driver.pid] = driver
    return list(found.values())


def _describe(process: psutil.Process) -> str:
    try:
        words = process.cmdline() or [process.name()]
    except psutil.Error:
        return str(process.pid)
    return f"{process.pid} {' '.join(words)[:100]}"


def _wait(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until none of ``processes`` runs or ``timeout_s`` passes; returns those left.

    A zombie counts as ended: a process orphaned by its driver's death may be re-parented to
    one that does not reap it soon.
    """
    deadline = time.monotonic() + timeout_s
    while (left := [p for p in processes if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    return left


def _end(processes: list[psutil.Process], grace_s: float = _GRACE_S) -> int:
    """SIGTERM, ``grace_s`` seconds, SIGKILL; returns how many had to be killed."""
    for process in processes:
        with contextlib.suppress(psutil.Error):  # ended, or its id now names another
            process.terminate()
    left = _wait(processes, grace_s)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    _wait(left, 1.0)
    return len(left)


class UpLock:
    """The data folder's ``up`` lock (``data_dir/run/up.lock``), held while a platform runs.

    ``fcntl.flock`` on a file opened close-on-exec: no process Ray starts holds it, and the
    kernel releases it when the driver ends, however it ends.
    """

    def __init__(self, settings: TwinSettings) -> None:
        self._path = _run_dir(settings) / "up.lock"
        self._file: IO[str] | None = None

    def acquire(self, *, wait_s: float = 0.0) -> bool:
        """Take the lock, waiting up to ``wait_s`` seconds; ``False`` if another holds it."""
        self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        lock = os.fdopen(fd, "r+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    lock.close()
                    return False
                time.sleep(_POLL_S)
                continue
            self._file = lock
            return True

    def release(self) -> None:
        """Let the lock go (closing the file releases it)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def clear_stale(settings: TwinSettings, lock: UpLock) -> tuple[PlatformRecord, list[str]] | None:
    """Before a start: refuse a running platform, remove what a dead one left.

    Args:
        settings: The settings of the platform about to start.
        lock: The data folder's lock, not yet held; taken here and kept.

    Returns:
        ``None`` when there was no record; else the previous run's record and one line per
        process of it that was still running and was ended (possibly none).

    Raises:
        PlatformRunningError: A platform runs or is starting on this data folder.
        ConfigurationError: The record is damaged.
    """
    if not lock.acquire():
        record = _quiet_read(settings)
        who = f" (driver pid {record.driver.pid})" if record is not None else ""
        raise PlatformRunningError(
            f"a platform is already running or starting on {settings.data_dir.resolve()}"
            f"{who}: `novamind status` shows it, `novamind down` stops it"
        )
    record = read_record(settings)
    if record is None:
        return None
    if record.driver.find() is not None:
        lock.release()
        raise PlatformRunningError(
            f"a platform is already running on {record.data_dir} (driver pid "
            f"{record.driver.pid}, since {record.started_at}): `novamind down` stops it"
        )
    left = run_processes(record)
    removed = [_describe(process) for process in left]
    _end(left)
    record_path(settings).unlink(missing_ok=True)
    return record, removed


def _quiet_read(settings: TwinSettings) -> PlatformRecord | None:
    try:
        return read_record(settings)
    except ConfigurationError:
        return None


@dataclass(frozen=True, slots=True)
class PlatformStatus:
    """What runs on a data folder.

    Attributes:
        state: ``running`` (the driver runs), ``stale`` (a record whose driver has ended:
            the run stopped without cleaning up; its processes may still run) or ``stopped``
            (no record).
        record: The record, if any.
        processes: The run's processes that still run, the driver excluded.
        uptime_s: Seconds since the driver started (``running`` only).
    """

    state: Literal["running", "stale", "stopped"]
    record: PlatformRecord | None = None
    processes: tuple[str, ...] = ()
    uptime_s: float | None = None

    @property
    def exit_code(self) -> int:
        """LSB ``status`` codes: 0 running, 1 dead with its record left, 3 not running."""
        return {"running": 0, "stale": 1, "stopped": 3}[self.state]


def status(settings: TwinSettings) -> PlatformStatus:
    """What runs on the settings' data folder (reads only; starts and signals nothing)."""
    record = read_record(settings)
    if record is None:
        return PlatformStatus("stopped")
    left = tuple(_describe(process) for process in run_processes(record))
    driver = record.driver.find()
    if driver is None:
        return PlatformStatus("stale", record, left)
    return PlatformStatus("running", record, left, time.time() - record.driver.create_time)


@dataclass(frozen=True, slots=True)
class DownReport:
    """What ``novamind down`` did.

    Attributes:
        state: The platform's state before (:class:`PlatformStatus`).
        driver_stopped: The driver ended by itself after SIGTERM (its orderly stop).
        killed: Processes of the run that were left and were ended here.
        seconds: Duration.
    """

    state: Literal["running", "stale", "stopped"]
    driver_stopped: bool
    killed: int
    seconds: float


def down(settings: TwinSettings, *, wait_s: float = DOWN_WAIT_S) -> DownReport:
    """Stop the platform of the settings' data folder, from any process of its user.

    SIGTERM to the driver, which stops in order (checkpoints, then Ray) and forces its own
    stop after 9 s; after ``wait_s`` seconds, or at once when the driver has already ended,
    every process of the run that is left is ended by its identity (SIGTERM, 1 s, SIGKILL),
    and the record is removed.
    """
    started = time.monotonic()
    record = read_record(settings)
    if record is None:
        return DownReport("stopped", False, 0, time.monotonic() - started)
    driver = record.driver.find()
    state: Literal["running", "stale"] = "stale" if driver is None else "running"
    stopped = False
    if driver is not None:
        with contextlib.suppress(psutil.Error):
            driver.terminate()
        alive = _wait([driver], wait_s)
        stopped = not alive
        for process in alive:  # its orderly stop and its own forced stop both hung
            with contextlib.suppress(psutil.Error):
                process.kill()
        _wait(alive, 1.0)
    lock = UpLock(settings)
    # The driver has ended (its lock with it); holding the lock, no new `up` starts meanwhile
    # (and if one did, its record is not this run's and stays).
    lock.acquire(wait_s=2.0)
    try:
        killed = _end(run_processes(record))
        remove_record(settings, record.run)
    finally:
        lock.release()
    return DownReport(state, stopped, killed, time.monotonic() - started)
