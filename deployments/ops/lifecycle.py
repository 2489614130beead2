"""One platform per data folder: its record, its lock, ``novamind status`` and ``novamind down``.

``novamind up`` holds ``data_dir/run/up.lock`` (``fcntl.flock``) for its whole life, so two
``up`` on one data folder cannot race, and writes ``data_dir/run/platform.json`` (atomically,
mode 0600): its driver's process id and start time, its process group, the host and ports it
bound, Ray's session folder, a random run id and the identities (process id and start time) of
the processes it knows. The lock ends with the driver whatever ends it; the record stays when
the driver could not remove it (SIGKILL, an OOM kill, a closed terminal), and then tells the
next ``up`` or ``down`` what that run left.

Which processes are the run's: those the record names, if still the same process (same
start time, counted in clock ticks since this boot, and the same boot: a change of the wall
clock moves neither) of the same user; and every process of this user whose environment carries the
run's id (``NOVAMIND_PLATFORM_RUN``, set by the driver before it starts Ray and inherited by
every process below it: Ray's daemons, its workers, Serve's HAProxy, also one started after
the record was last written). Never a process found by its name, another run's or another
user's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import psutil

from deployments.ops.processes import is_alive
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
    "leave_inherited_run",
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
#: A record names at most this many processes (a Ray node runs a few dozen).
_MAX_PROCESSES = 10_000
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_BOOT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STATES = ("starting", "serving", "stopping")


def _boot_id() -> str:
    """This boot's id (``/proc/sys/kernel/random/boot_id``): process start ticks restart at 0."""
    with open("/proc/sys/kernel/random/boot_id") as source:
        return source.read().strip()


def _start_ticks(pid: int) -> int:
    """When process ``pid`` started: clock ticks since boot (``/proc/PID/stat``, field 22).

    Unlike a start time in seconds since the epoch (psutil's ``create_time``, derived from
    the wall clock's idea of the boot time), it never moves when the clock is set.

    Raises:
        OSError: No such process (or not readable).
    """
    with open(f"/proc/{pid}/stat", "rb") as source:
        raw = source.read()
    # The command name (field 2) is in parentheses and may hold spaces and parentheses.
    return int(raw[raw.rindex(b")") + 2 :].split()[19])


def _seconds_since(ticks: int) -> float:
    """Seconds from ``ticks`` after boot until now (``/proc/uptime``, the boot clock)."""
    with open("/proc/uptime") as source:
        uptime = float(source.read().split()[0])
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


def _run_dir(settings: TwinSettings) -> Path:
    return settings.data_dir.resolve() / "run"


def record_path(settings: TwinSettings) -> Path:
    """``data_dir/run/platform.json``."""
    return _run_dir(settings) / "platform.json"


@dataclass(frozen=True, slots=True)
class Identity:
    """A process as it was found: its id, its start (clock ticks since boot) and the boot.

    Attributes:
        pid: The process id.
        start_ticks: When it started, clock ticks since boot (exact; no wall clock involved).
        boot_id: The boot it started in (a reboot restarts the ticks and reuses ids).
    """

    pid: int
    start_ticks: int
    boot_id: str

    @classmethod
    def of(cls, process: psutil.Process) -> Identity:
        """The identity of ``process``.

        Raises:
            psutil.NoSuchProcess: It has ended.
        """
        try:
            return cls(process.pid, _start_ticks(process.pid), _boot_id())
        except OSError:
            raise psutil.NoSuchProcess(process.pid) from None

    def find(self) -> psutil.Process | None:
        """The process if it still runs, is still this one and is this user's; else ``None``."""
        try:
            if self.boot_id != _boot_id() or _start_ticks(self.pid) != self.start_ticks:
                return None  # another boot, or the id now names another process
            process = psutil.Process(self.pid)
            if process.uids().real != os.getuid():
                return None
            if _start_ticks(self.pid) != self.start_ticks:
                return None  # replaced between the two readings
        except (psutil.Error, OSError, ValueError, IndexError):
            return None
        return process if is_alive(process) else None

    @classmethod
    def parse(cls, data: Any) -> Identity:
        """Read an identity from a record, checking every field.

        Raises:
            ValueError: Not an identity.
        """
        if not isinstance(data, dict) or set(data) != {"pid", "start_ticks", "boot_id"}:
            raise ValueError("a process is not {pid, start_ticks, boot_id}")
        pid, ticks, boot = data["pid"], data["start_ticks"], data["boot_id"]
        if not _is_int(pid) or not 1 <= pid <= 1 << 22:
            raise ValueError(f"process id {pid!r} is not one")
        if not _is_int(ticks) or not 0 <= ticks < 1 << 63:
            raise ValueError(f"start ticks {ticks!r} are not a count")
        if not isinstance(boot, str) or not _BOOT_ID.fullmatch(boot):
            raise ValueError(f"boot id {boot!r} is not one")
        return cls(pid, ticks, boot)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        fields = {
            "run", "driver", "pgid", "uid", "data_dir", "host", "ports", "started_at", "state",
            "session_dir", "processes",
        }  # fmt: skip
        if set(data) != fields:
            raise ValueError(f"fields {sorted(set(data) ^ fields)} missing or unknown")
        if not isinstance(data["run"], str) or not _RUN_ID.fullmatch(data["run"]):
            raise ValueError("run is not 32 hexadecimal digits")
        if not _is_int(data["pgid"]) or not 0 <= data["pgid"] <= 1 << 22:
            raise ValueError("pgid is not a process group")
        if data["uid"] != os.getuid() or not _is_int(data["uid"]):
            raise ValueError(f"uid {data['uid']!r} is not this user's ({os.getuid()})")
        for name in ("data_dir", "host", "started_at"):
            if not isinstance(data[name], str) or len(data[name]) > 4096:
                raise ValueError(f"{name} is not a string")
        if data["session_dir"] is not None and not isinstance(data["session_dir"], str):
            raise ValueError("session_dir is not a string")
        ports = data["ports"]
        if (
            not isinstance(ports, dict)
            or len(ports) > 64
            or not all(
                isinstance(k, str) and _is_int(v) and 0 <= v <= 65535 for k, v in ports.items()
            )
        ):
            raise ValueError("ports are not {name: port}")
        if data["state"] not in _STATES:
            raise ValueError(f"unknown state {data['state']!r}")
        processes = data["processes"]
        if not isinstance(processes, list) or len(processes) > _MAX_PROCESSES:
            raise ValueError("processes is not a list of at most 10,000")
        return cls(
            run=data["run"],
            driver=Identity.parse(data["driver"]),
            pgid=data["pgid"],
            uid=data["uid"],
            data_dir=data["data_dir"],
            host=data["host"],
            ports=dict(ports),
            started_at=data["started_at"],
            state=data["state"],
            session_dir=data["session_dir"],
            processes=tuple(Identity.parse(item) for item in processes),
        )


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
        # Not through a link, never blocked on a FIFO; then only a regular file of this user.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise ConfigurationError(
            f"{path} cannot be read as a platform record ({why}); look at it and remove it "
            "once no platform of this data folder runs"
        ) from None
    try:
        with os.fdopen(fd, "rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ValueError("not a regular file")
            if info.st_uid != os.getuid():
                raise ValueError(f"owned by uid {info.st_uid}, not this user")
            raw = source.read(_MAX_RECORD_BYTES + 1)
        if len(raw) > _MAX_RECORD_BYTES:
            raise ValueError("larger than 1 MiB")
        return PlatformRecord.from_json(raw.decode())
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise ConfigurationError(
            f"{path} is not a platform record ({type(exc).__name__}: {exc}); remove it once "
            "no platform of this data folder runs"
        ) from None


def remove_record(settings: TwinSettings, run: str) -> None:
    """Remove the record if it is still run ``run``'s.

    Called with the data folder's lock held (by the driver, or by ``down`` after the driver
    has ended): only a lock holder writes the record, so it cannot change between the reading
    and the removal.
    """
    with contextlib.suppress(ConfigurationError):
        record = read_record(settings)
        if record is not None and record.run == run:
            record_path(settings).unlink(missing_ok=True)


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
                if marker.encode() in environ.read().split(b"\0") and is_alive(process):
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
    while (left := [p for p in processes if is_alive(p)]) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    return left


def _end(processes: list[psutil.Process], grace_s: float = _GRACE_S) -> list[psutil.Process]:
    """SIGTERM, ``grace_s`` seconds, SIGKILL; returns those still running after all that.

    A process that survives SIGKILL is in uninterruptible sleep (a hung disk or network
    file system): it is reported, never forgotten.
    """
    for process in processes:
        with contextlib.suppress(psutil.Error):  # ended, or its id now names another
            process.terminate()
    left = _wait(processes, grace_s)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return _wait(left, 1.0)


class UpLock:
    """The data folder's ``up`` lock (``data_dir/run/up.lock``), held while a platform runs.

    ``fcntl.flock`` on a file opened close-on-exec: no process Ray starts holds it, and the
    kernel releases it when the driver ends, however it ends.
    """

    def __init__(self, settings: TwinSettings) -> None:
        self._path = _run_dir(settings) / "up.lock"
        self._file: IO[str] | None = None
        #: The run id of the ``starting`` record :func:`clear_stale` wrote, if it did.
        self.run: str | None = None

    def acquire(self, *, wait_s: float = 0.0) -> bool:
        """Take the lock, waiting up to ``wait_s`` seconds; ``False`` if another holds it.

        Raises:
            ConfigurationError: The lock file cannot be opened (another user's, a link) or
                the file system has no locks (some network file systems).
        """
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"the platform lock {self._path} cannot be opened ({exc.strerror}): the data "
                "folder must be this user's"
            ) from None
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
            except OSError as exc:
                lock.close()
                raise ConfigurationError(
                    f"the platform lock {self._path} cannot be taken ({exc.strerror}): the data "
                    "folder must be on a local file system"
                ) from None
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
        lock: The data folder's lock, not yet held; taken here and kept. A record of this
            process in state ``starting`` is written (``lock.run`` names it) so that
            ``status`` and ``down`` see the platform from its first moment.

    Returns:
        ``None`` when there was no record; else the previous run's record and one line per
        process of it that was still running and was ended (possibly none).

    Raises:
        PlatformRunningError: A platform runs or is starting on this data folder, or a
            process of the previous one survived SIGKILL.
        ConfigurationError: The record is damaged, or the lock cannot be taken.
    """
    if not lock.acquire():
        record = _quiet_read(settings)
        who = f" (driver pid {record.driver.pid})" if record is not None else ""
        raise PlatformRunningError(
            f"a platform is already running or starting on {settings.data_dir.resolve()}"
            f"{who}: `novamind status` shows it, `novamind down` stops it"
        )
    try:
        record = read_record(settings)
    except ConfigurationError:
        lock.release()
        raise
    if record is None:
        _write_starting(settings, lock)
        return None
    if record.driver.find() is not None:
        lock.release()
        raise PlatformRunningError(
            f"a platform is already running on {record.data_dir} (driver pid "
            f"{record.driver.pid}, since {record.started_at}): `novamind down` stops it"
        )
    left = run_processes(record)
    removed = [_describe(process) for process in left]
    survivors = _end(left)
    if survivors:
        lock.release()
        raise PlatformRunningError(
            f"{len(survivors)} processes of the previous platform of {record.data_dir} survive "
            f"SIGKILL ({', '.join(_describe(p) for p in survivors)}); its record is kept"
        )
    _write_starting(settings, lock)
    return record, removed


def _write_starting(settings: TwinSettings, lock: UpLock) -> None:
    """Record this process as a platform starting, so that ``status`` and ``down`` see it."""
    record = PlatformRecord.new(settings, {})
    write_record(settings, record)
    lock.run = record.run


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
        """LSB ``status`` codes: 0 running (or starting), 1 dead with its record left, 3 not.

        A damaged record is 4 (unknown), from the :class:`ConfigurationError` it raises.
        """
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
    return PlatformStatus("running", record, left, _seconds_since(record.driver.start_ticks))


@dataclass(frozen=True, slots=True)
class DownReport:
    """What ``novamind down`` did.

    Attributes:
        state: The platform's state before (:class:`PlatformStatus`).
        driver_stopped: The driver ended by itself after SIGTERM (its orderly stop).
        ended: Processes of the run (the driver excluded) that were left and were ended here.
        survivors: Processes of the run still running after SIGKILL (uninterruptible
            sleep); the record is kept while there are any.
        seconds: Duration.
    """

    state: Literal["running", "stale", "stopped"]
    driver_stopped: bool
    ended: int
    survivors: tuple[str, ...]
    seconds: float


def down(settings: TwinSettings, *, wait_s: float = DOWN_WAIT_S) -> DownReport:
    """Stop the platform of the settings' data folder, from any process of its user.

    SIGTERM to the driver, which stops in order (checkpoints, then Ray) and forces its own
    stop after 9 s; after ``wait_s`` seconds, or at once when the driver has already ended,
    the data folder's lock is taken (the kernel frees it only when the driver has ended), then
    every process of the run that is left is ended by its identity (SIGTERM, 1 s, SIGKILL),
    and the record is removed once none is left.

    Raises:
        PlatformRunningError: The lock is held but the driver is not found by its recorded
            identity: a platform runs that cannot be told apart from here. Nothing is
            signalled.
        ConfigurationError: The record is damaged, or the lock cannot be taken.
    """
    started = time.monotonic()
    record = read_record(settings)
    if record is None:
        return DownReport("stopped", False, 0, (), time.monotonic() - started)
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
    # (and if one did, its record is not this run's and stays). A lock still held means a
    # driver this record does not identify: nothing of it is touched.
    if not lock.acquire(wait_s=2.0):
        raise PlatformRunningError(
            f"a platform holds the lock of {settings.data_dir.resolve()} but its driver (pid "
            f"{record.driver.pid}) is not the recorded process: it runs and cannot be stopped "
            "from here; nothing was signalled"
            if driver is None
            else f"the driver (pid {record.driver.pid}) ended but the lock of "
            f"{settings.data_dir.resolve()} is still held: another `novamind up` started"
        )
    try:
        left = run_processes(record)
        survivors = _end(left)
        if not survivors:
            remove_record(settings, record.run)
    finally:
        lock.release()
    return DownReport(
        state,
        stopped,
        len(left) - len(survivors),
        tuple(_describe(process) for process in survivors),
        time.monotonic() - started,
    )


def leave_inherited_run() -> None:
    """Re-execute this process without an inherited ``NOVAMIND_PLATFORM_RUN``, if it has one.

    A ``novamind up`` started from inside another platform (a shell of one of its workers, a
    test under it) inherits that run's id, and ``/proc/PID/environ`` keeps the value it was
    started with whatever ``os.environ`` becomes: that run's ``down`` would end this one. The
    process is replaced (same id, same arguments) by one started without it. Called first,
    before anything is started or opened.
    """
    if RUN_ENV not in os.environ:
        return
    environ = {name: value for name, value in os.environ.items() if name != RUN_ENV}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, environ)
