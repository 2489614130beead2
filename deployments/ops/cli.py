"""The ``novamind`` command line (typer, with rich output).

- ``novamind up``: the whole platform locally (see :mod:`deployments.ops.platform`).
- ``novamind status`` / ``novamind down``: what runs on this data folder, and stopping it
  from another terminal (see :mod:`deployments.ops.lifecycle`).
- ``novamind token``: mint a local token for a role (local HS256 secret only).
- ``novamind audit verify``: recompute the audit chain and hold it to its anchors.
- ``novamind audit anchor``: anchor the chain's head (S3 Object Lock, or the local file).
- ``novamind migrate``: apply schema migrations.
- ``novamind erasures apply``: erase again the patients a database restore revived.
- ``novamind demo``: the single-twin walkthrough on the runtime (no HTTP).
- ``novamind kuberay serve-config DIR...``: generate (or ``--check``) the RayService's
  ``serveConfigV2`` from the Serve application's settings.
- ``novamind backup DIR`` / ``novamind restore DIR``: an encrypted, consistent backup of the
  stores and checkpoints, and its restore into an empty environment; ``novamind backup
  --scheduled`` writes one under ``backup_root`` and prunes the old ones.
- ``novamind dr-drill``: the newest scheduled backup restored into a scratch environment and
  checked (audit anchors, event counts, twins); one JSON line.
- ``novamind ingest PATHS --format F --out DIR [--care-team T]``: bulk ingest on Ray Data
  (patients registered or matched from the data; docs/ingest.md).
- ``novamind cohort RUN.json --out DIR``: a cohort what-if run on Ray Data.
- ``novamind calibrate``: fit the population priors to the twins' logs (SMM on Ray).
- ``novamind model targets`` / ``novamind model fit``: the literature battery's simulated values
  against the published targets, and the fit of the model's parameters to them.
- ``novamind priors list`` / ``novamind priors activate``: the prior sets in the registry.
- ``novamind keys new-kek`` / ``keys rotate`` / ``keys retire KEK_ID`` / ``keys destroy
  KEK_ID`` / ``keys status``: create a local key-encryption key, re-wrap every data key under
  the current one, take an old one out of use, delete a retired one, and count the data keys
  under each (see :mod:`deployments.ops.keys`).

Why typer: a maintained CLI library that builds help and parsing from type hints.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from deployments.api.auth import ROLES, Role
from twin.settings import TwinSettings

if TYPE_CHECKING:
    from deployments.ops.lifecycle import PlatformRecord
    from deployments.ops.platform import Platform


def _typer(help_text: str) -> typer.Typer:
    # A traceback never prints its frames' locals: they can hold key material or patient data.
    return typer.Typer(help=help_text, no_args_is_help=True, pretty_exceptions_show_locals=False)


app = _typer("Novamind: psychiatric digital twins on Ray.")
audit_app = _typer("The audit trail.")
app.add_typer(audit_app, name="audit")
kuberay_app = _typer("KubeRay manifests.")
app.add_typer(kuberay_app, name="kuberay")
priors_app = _typer("Population prior sets (the model registry).")
app.add_typer(priors_app, name="priors")
model_app = _typer("The twin model itself.")
app.add_typer(model_app, name="model")
erasures_app = _typer("The erasure ledger.")
app.add_typer(erasures_app, name="erasures")
keys_app = _typer("Key-encryption keys: rotation and retirement.")
app.add_typer(keys_app, name="keys")
console = Console()
T = TypeVar("T")


# This invocation's settings, once read (emptied as each invocation starts).
_invocation: dict[str, TwinSettings] = {}


@app.callback()
def _start() -> None:
    """Novamind: psychiatric digital twins on Ray."""
    # A process that runs several commands (tests, an embedding tool) reads each one's afresh.
    _invocation.clear()


def _settings() -> TwinSettings:
    """This invocation's settings, read once (environment > config file > defaults).

    Every step of one command sees the same values.
    """
    if "settings" not in _invocation:
        _invocation["settings"] = TwinSettings()
    return _invocation["settings"]


def _failed(label: str, exc: Exception) -> typer.Exit:
    """Print why ``label`` failed (the error's own words and notes, never markup) and exit 1.

    The notes say what the command did about the failure (a restore undone, or what it left).
    """
    console.print(f"{label} failed: {exc}", style="red", markup=False)
    for note in getattr(exc, "__notes__", ()):
        console.print(note, style="red", markup=False)
    return typer.Exit(1)


@contextmanager
def _on_ray(label: str, address: str | None) -> Iterator[TwinSettings]:
    """Connect to Ray for one job and disconnect after; a Novamind error exits 1.

    Yields:
        The settings (the job runs with the ones it connected with).
    """
    import ray

    from deployments import ray_env
    from twin.errors import TwinError

    settings = _settings()
    ray_env.connect(settings, address, log_to_driver=False)
    try:
        yield settings
    except TwinError as exc:
        raise _failed(label, exc) from None
    finally:
        ray.shutdown()


def _rows(rows: list[tuple[str, object]]) -> None:
    """Print a report's rows, their names in one column."""
    for name, value in rows:
        console.print(f"  {name:<12} {value}", soft_wrap=True)


def _role(value: str) -> Role:
    if value not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}")
    return value  # type: ignore[return-value]


class _StopSignals:
    """SIGINT and SIGTERM of ``novamind up``: the first stops it in order, another forces it.

    While the platform starts or seeds, the first signal also abandons that work (as
    ``KeyboardInterrupt``, which the stop follows); while it serves, it only wakes the main
    thread. Once the stop has begun, any signal forces it.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.force = threading.Event()
        self.received = signal.SIGINT
        self.interrupts = True

    def install(self) -> None:
        """Handle both signals here (again after ``ray.init``, which sets its own SIGTERM)."""
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def stopping(self) -> None:
        """From now on every signal forces the stop."""
        self.interrupts = False
        self.stop.set()
        self.install()

    def _handle(self, signum: int, _frame: object) -> None:
        self.received = signal.Signals(signum)
        if self.stop.is_set():
            self.force.set()
            return
        self.stop.set()
        if self.interrupts:
            raise KeyboardInterrupt


#: While serving, how often the platform's processes are looked at again (so that one
#: orphaned meanwhile is still known when it stops), seconds.
_LOOK_EVERY_S = 10.0


def _stop_platform(platform: Platform, signals: _StopSignals) -> None:
    """Stop the platform in order within ``STOP_DEADLINE_S``; force it on a signal or after.

    The orderly stop runs in a thread so that the main thread, where Python runs signal
    handlers, is never blocked in Ray: a second Ctrl-C is always heard. A forced stop kills
    every process of the platform and exits at once (128 + the signal, or 1 at the deadline).
    """
    import os
    import sys
    import time

    from deployments.ops.platform import STOP_DEADLINE_S

    signals.stopping()
    console.print("stopping (Ctrl-C again to force)")
    started = time.monotonic()
    outcome: list[Any] = []

    def orderly() -> None:
        try:
            outcome.append(platform.stop())
        except Exception as exc:  # reported below, and every process is killed
            outcome.append(exc)

    worker = threading.Thread(target=orderly, name="novamind-stop", daemon=True)
    worker.start()
    while worker.is_alive():
        forced = signals.force.wait(timeout=0.1)
        late = time.monotonic() - started > STOP_DEADLINE_S
        if forced or late:
            try:
                killed = platform.kill()
                why = f"{signals.received.name} again" if forced else f"{STOP_DEADLINE_S:g} s"
                console.print(f"stopped by force ({why}): {killed} processes killed", style="red")
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                # At once, whatever the kill met: the orderly stop's thread may hold Ray's
                # locks, which the interpreter's exit (Ray's atexit shutdown) would wait for.
                os._exit(128 + signals.received if forced else 1)
    result = outcome[0]
    if isinstance(result, Exception):
        killed = platform.kill()
        console.print(f"stop failed ({result!r}); {killed} processes killed", style="red")
        raise typer.Exit(1)
    console.print(
        f"stopped in {result.seconds:.1f} s: {result.checkpoints} twin checkpoints written by "
        f"{result.hosts_answered} of {result.hosts} hosts"
        + (f"; {result.killed} processes killed" if result.killed else "")
    )


@app.command()
def up(
    seed: Annotated[bool, typer.Option(help="Seed synthetic demo patients.")] = True,
    once: Annotated[bool, typer.Option(help="Exit after start-up and seeding.")] = False,
    dashboard: Annotated[bool, typer.Option(help="Start the Ray dashboard.")] = True,
) -> None:
    """Start Ray, the twin hosts and the HTTP API; seed demo patients; serve until Ctrl-C.

    Ctrl-C (SIGINT) or SIGTERM stops everything it started within 10 s; a second one forces
    the stop.
    """
    from deployments.ops.lifecycle import UpLock, clear_stale, leave_inherited_run, remove_record

    # First of all: a run id inherited from another platform would mark this one as that one's.
    leave_inherited_run()

    from deployments.ops.platform import Platform
    from twin.errors import TwinError

    settings = _settings()
    platform = Platform(settings)
    interrupted = False
    signals = _StopSignals()
    signals.install()
    lock = UpLock(settings)  # held until this process ends
    try:
        previous = clear_stale(settings, lock)
    except TwinError as exc:
        lock.release()
        raise _failed("up", exc) from None
    except KeyboardInterrupt:  # SIGINT/SIGTERM while a dead run's leftovers were ended
        if lock.run is not None:
            remove_record(settings, lock.run)
        lock.release()
        console.print("start-up interrupted")
        raise typer.Exit(128 + signals.received) from None
    try:
        _report_previous(previous)
        _serve(platform, settings, signals, seed=seed, once=once, dashboard=dashboard)
    except KeyboardInterrupt:
        interrupted = True
        console.print("start-up interrupted")
    finally:
        _stop_platform(platform, signals)
        if lock.run is not None:  # still the starting record: the platform never wrote its own
            remove_record(settings, lock.run)
        lock.release()
    if interrupted:
        raise typer.Exit(128 + signals.received)


def _report_previous(previous: tuple[PlatformRecord, list[str]] | None) -> None:
    """Say what the previous platform of the data folder left, if it left a record."""
    if previous is not None:
        record, removed = previous
        console.print(
            f"the previous platform of this data folder (driver pid {record.driver.pid}, "
            f"started {record.started_at}) ended without stopping: "
            + (f"ended the {len(removed)} processes it left" if removed else "nothing was left"),
            style="yellow",
            markup=False,
            soft_wrap=True,
        )
        for line in removed:
            console.print(f"  {line}", style="yellow", markup=False, soft_wrap=True)


def _serve(
    platform: Platform,
    settings: TwinSettings,
    signals: _StopSignals,
    *,
    seed: bool,
    once: bool,
    dashboard: bool,
) -> None:
    """Start the platform, seed it, print where it is, and serve until a signal."""
    from deployments.ops.platform import (
        DEMO_TEAM,
        AuditAnchorTimer,
        local_token,
        seed_demo_patients,
    )
    from twin.client import Client

    with console.status("starting Ray, the twin hosts and the Serve application..."):
        platform.start(dashboard=dashboard)
    signals.install()  # ray.init replaced the SIGTERM handler with its own
    admin = local_token(settings, "admin")
    clinician = local_token(settings, "clinician", subject="demo-clinician", care_team=(DEMO_TEAM,))
    if seed:
        with (
            Client(platform.api_url, token=clinician) as client,
            console.status("seeding demo patients through the API..."),
        ):
            seed_demo_patients(
                client, settings.data_dir / "demo" / "patients.json", progress=console.print
            )
    console.print(f"\n[bold]Novamind is up[/bold]\n  API       {platform.api_url}")
    console.print(f"  OpenAPI   {platform.api_url}/docs")
    if platform.dashboard_url:
        console.print(f"  Ray       {platform.dashboard_url}")
    if "haproxy_stats" in platform.ports:
        console.print(
            f"  HAProxy   stats :{platform.ports['haproxy_stats']}/stats, "
            f"metrics :{platform.ports['haproxy_metrics']}/metrics"
        )
    console.print(f"  data      {settings.data_dir.resolve()}")
    # soft_wrap: a token must stay on one line to be copied whole.
    console.print(f"\nadmin token (12 h):\n{admin}", soft_wrap=True)
    console.print(
        f"\nclinician token for care team {DEMO_TEAM} (12 h):\n{clinician}\n", soft_wrap=True
    )
    if not once:
        signals.interrupts = False  # from here a signal only wakes the loop below
        console.print("serving; Ctrl-C stops")
        anchors = AuditAnchorTimer(settings)
        anchors.tick()
        while not signals.stop.wait(_LOOK_EVERY_S):
            platform.look()
            anchors.tick()


@app.command()
def status() -> None:
    """Say whether a platform runs on this data folder: its driver, ports, uptime, processes.

    Exit status as an LSB init script's: 0 running (or starting), 1 stopped without cleaning
    up (its record is left; ``novamind up`` or ``novamind down`` removes what it left), 3 not
    running, 4 unknown (the record is damaged or unreadable, or this is not its user).
    """
    from deployments.ops.lifecycle import record_path
    from deployments.ops.lifecycle import status as platform_status
    from twin.errors import TwinError

    settings = _settings()
    try:
        found = platform_status(settings)
    except TwinError as exc:
        _failed("status", exc)
        raise typer.Exit(4) from None
    record = found.record
    if record is None:
        console.print(f"not running ({settings.data_dir.resolve()})", markup=False)
        raise typer.Exit(found.exit_code)
    if found.state == "running":
        uptime = f"{found.uptime_s or 0.0:.0f} s"
        console.print(
            f"running ({record.state}): driver pid {record.driver.pid}, up {uptime}",
            markup=False,
        )
    else:
        console.print(
            f"stale: the platform started {record.started_at} (driver pid {record.driver.pid}) "
            f"ended without stopping; {len(found.processes)} of its processes still run "
            "(`novamind down` or `novamind up` ends them)",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )
    ports = ", ".join(f"{name} {port}" for name, port in record.ports.items())
    _rows(
        [
            ("host", record.host),
            ("ports", ports),
            ("processes", len(found.processes)),
            ("ray session", record.session_dir or "-"),
            ("record", record_path(settings)),
        ]
    )
    raise typer.Exit(found.exit_code)


@app.command()
def down(
    wait: Annotated[
        float,
        typer.Option(
            help="Seconds for the platform's own orderly stop before what is left is killed.",
            min=1.0,
            max=60.0,
        ),
    ] = 12.0,
) -> None:
    """Stop the platform of this data folder (started by ``novamind up`` in another terminal).

    SIGTERM to its driver, which checkpoints the twins and stops Ray (at most 10 s); then, or
    at once if the driver has already ended, every process of that platform still running is
    ended by its recorded identity. Nothing else is signalled. Exit 0 also when nothing ran;
    1 when the platform runs but its driver is not the recorded process (nothing is
    signalled), or when a process survived SIGKILL.
    """
    from deployments.ops.lifecycle import down as platform_down
    from twin.errors import TwinError

    try:
        report = platform_down(_settings(), wait_s=_finite(wait) or 12.0)
    except TwinError as exc:
        raise _failed("down", exc) from None
    if report.state == "stopped":
        console.print("not running: nothing to stop")
        return
    how = "stopped" if report.driver_stopped or report.state == "stale" else "killed"
    console.print(
        f"{how} in {report.seconds:.1f} s"
        + (f"; {report.ended} processes it left ended" if report.ended else "")
    )
    if report.survivors:
        console.print(
            f"{len(report.survivors)} processes survived SIGKILL (the record is kept):",
            style="red",
        )
        for line in report.survivors:
            console.print(f"  {line}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def token(
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "clinician",
    subject: Annotated[str | None, typer.Option(help="The token's sub.")] = None,
    care_team: Annotated[list[str] | None, typer.Option(help="Care team (repeatable).")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime, seconds.", min=60, max=12 * 3600)] = 3600,
) -> None:
    """Print a locally signed token (local environment only)."""
    from deployments.ops.platform import local_token

    settings = _settings()
    if settings.environment != "local":
        raise typer.BadParameter("tokens are minted by the identity provider outside local")
    typer.echo(
        local_token(
            settings, _role(role), subject=subject, care_team=tuple(care_team or ()), ttl_s=ttl
        )
    )


@audit_app.command("verify")
def audit_verify(
    expected_head: Annotated[
        str | None, typer.Option(help="A head hash anchored by an earlier run.")
    ] = None,
    anchors: Annotated[
        bool, typer.Option(help="Hold the chain to every anchor of the anchor store.")
    ] = True,
    covered_only: Annotated[
        bool,
        typer.Option(
            help="A restored chain: hold it to the anchors it covers, and count those above "
            "its length instead of failing them."
        ),
    ] = False,
) -> None:
    """Recompute every link of the audit chain, streaming; exit 1 if anything was altered.

    The chain is also held to every anchor written by ``novamind audit anchor`` and by the
    service (``--no-anchors`` skips them): a chain rewritten and re-hashed after an anchor,
    or cut below one, fails naming the anchors it contradicts; an unreadable anchor fails
    too. Outside local use a chain with no anchor past N entries, or whose latest anchor is
    older than twice the anchoring interval, fails; locally that is a warning. The database
    is opened read-only and never migrated.
    """
    from deployments.ops.audit import broken, details, intact, verify
    from twin.errors import TwinError

    try:
        report = verify(_settings(), expected_head, anchors=anchors, covered_only=covered_only)
    except TwinError as exc:
        raise _failed("audit verify", exc) from None
    if report.ok:
        console.print(intact(report), markup=False, soft_wrap=True)
    else:
        console.print(broken(report), style="red", markup=False, soft_wrap=True)
    for line in details(report, anchors=anchors):
        console.print(line, style="yellow", markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor() -> None:
    """Anchor the audit chain's head: its length, hash and the time, where it cannot be changed.

    The chain is checked first from its latest anchor on (that entry's hash, every link
    after it): a chain that does not check is never anchored, and the command exits 1 with
    the reason. When the latest anchor covers the whole chain and is younger than half the
    anchoring interval, nothing new is written; an older one is renewed, so that the latest
    anchor's age tells whether anchoring works. ``novamind audit verify`` checks it all. The
    database is opened read-only and never migrated (the anchor goes to the anchor store).
    """
    from deployments.ops.audit import anchor, broken, details
    from twin.errors import TwinError

    try:
        outcome = anchor(_settings())
    except TwinError as exc:
        raise _failed("audit anchor", exc) from None
    for line in details(outcome.report, anchors=False):
        console.print(line, style="yellow", markup=False, soft_wrap=True)
    if not outcome.report.ok:
        console.print(
            f"not anchored: {broken(outcome.report)}", style="red", markup=False, soft_wrap=True
        )
        raise typer.Exit(1)
    if outcome.anchor is None:
        console.print("audit chain empty: nothing to anchor")
        return
    a = outcome.anchor
    state = "anchored" if outcome.written else "already anchored"
    console.print(
        f"{state}: {a.entries} entries, head {a.head_hash}, at {a.at}", markup=False, soft_wrap=True
    )


@app.command()
def openapi(
    out: Annotated[Path | None, typer.Option(help="Write it here instead of to stdout.")] = None,
) -> None:
    """The HTTP API's OpenAPI document (what ``/openapi.json`` serves), for client generators.

    Nothing is started or opened: the document is built from the routes alone.
    """
    import json

    from deployments.api.app import create_app

    def unopened() -> Any:
        raise RuntimeError("the document is built without services")

    document = json.dumps(create_app(open_services=unopened).openapi(), indent=2) + "\n"
    if out is None:
        typer.echo(document, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(document)


@app.command()
def migrate() -> None:
    """Apply the schema migrations and exit."""
    from deployments.ops.migrate import main

    raise typer.Exit(main(_settings()))


@app.command()
def demo() -> None:
    """One synthetic patient's twin on the runtime, without the HTTP API."""
    from deployments.ops.demo import main

    raise typer.Exit(main(_settings()))


@kuberay_app.command("serve-config")
def kuberay_serve_config(
    directories: Annotated[
        list[Path], typer.Argument(help="Kustomize directories holding serve-settings.toml.")
    ],
    check: Annotated[
        bool, typer.Option(help="Exit 1 if a generated file is out of date; write nothing.")
    ] = False,
) -> None:
    """Generate serve-config.yaml (the RayService serveConfigV2 patch) in each directory."""
    from deployments.ops.kuberay import CONFIG_FILE, write_or_check
    from twin.errors import ConfigurationError

    stale = []
    for directory in directories:
        try:
            current = write_or_check(directory, check=check)
        except ConfigurationError as exc:
            raise typer.BadParameter(str(exc)) from None
        if not current:
            stale.append(directory / CONFIG_FILE)
        elif not check:
            console.print(f"wrote {directory / CONFIG_FILE}")
    if stale:
        console.print(f"[red]out of date (run without --check): {', '.join(map(str, stale))}")
        raise typer.Exit(1)


def _finite(value: float | None) -> float | None:
    """A float option's value, refused when it is not a finite number (NaN passes ranges)."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter("a finite number is required")
    return value


def _run_job(label: str, job: Coroutine[Any, Any, T]) -> T:
    """Run an async job with a spinner; a Novamind error is printed and exits 1."""
    import asyncio

    from twin.errors import TwinError

    try:
        with console.status(f"{label} running..."):
            return asyncio.run(job)
    except TwinError as exc:
        raise _failed(label, exc) from None


@app.command()
def backup(
    directory: Annotated[
        Path | None, typer.Argument(help="New (or empty) folder for the archive.")
    ] = None,
    scheduled: Annotated[
        bool,
        typer.Option(
            "--scheduled",
            help="Write a new archive named by its UTC time under the backup_root setting, "
            "then prune by backup_keep and backup_keep_days.",
        ),
    ] = False,
) -> None:
    """Write an encrypted, consistent backup of the stores and the twins' checkpoints."""
    from deployments.ops.archives import scheduled_backup
    from deployments.ops.backup import BackupReport
    from deployments.ops.backup import backup as run_backup

    if (directory is None) != scheduled:
        raise typer.BadParameter("name a folder, or --scheduled (not both)")
    report: BackupReport
    retention: list[tuple[str, object]] = []
    if directory is not None:
        report = _run_job("backup", run_backup(_settings(), directory))
        console.print(f"backup {report.backup_id} written to {report.directory}")
    else:
        run = _run_job("backup", scheduled_backup(_settings()))
        report = run.report
        console.print(f"backup {report.backup_id} written to {run.root} as {run.name}")
        retention = [("pruned", ", ".join(run.pruned) or "none"), ("kept", run.kept)]
        if run.future:
            retention.append(("named in the future (ignored)", ", ".join(run.future)))
    _rows([
        ("tables", report.tables),
        ("documents", report.documents),
        ("checkpoints", f"{report.checkpoints} ({report.checkpoints_unreadable} unreadable)"),
        ("audit", f"{report.audit_entries} entries, head {report.audit_head}"),
        ("size", f"{report.bytes} bytes in {report.seconds:.2f} s"),
        *retention,
    ])  # fmt: skip


@app.command()
def restore(
    directory: Annotated[Path, typer.Argument(help="An archive written by `novamind backup`.")],
) -> None:
    """Restore a backup into this (empty) environment; verify the audit chain; report the time."""
    from deployments.ops.backup import restore as run_restore

    report = _run_job("restore", run_restore(_settings(), directory))
    console.print(f"backup {report.backup_id} restored and verified in {report.seconds:.2f} s")
    _rows([
        ("tables", report.tables),
        ("documents", report.documents),
        ("checkpoints",
         f"{report.checkpoints} ({report.checkpoints_skipped} of erased patients skipped)"),
        ("audit chain", f"intact: {report.audit_entries} entries, head {report.audit_head}"),
        ("erased again", f"{report.erasures_reapplied} (named by the erasure ledger)"),
    ])  # fmt: skip
    if report.erasures_failed:
        console.print(
            f"  {report.erasures_failed} unfinished erasure(s) failed again: run "
            "`novamind erasures apply` once the failing place is back"
        )
    _anchors_after_restore(_settings())


def _anchors_after_restore(settings: Any) -> None:
    """What to do with the audit anchors before anything serves the restored database."""
    where = settings.audit_anchors or str(settings.data_dir / "keys" / "audit-anchors.jsonl")
    console.print(
        "\nBefore any service, job or CronJob runs on this database: set "
        "NOVAMIND_AUDIT_ANCHORS to a new location (e.g. a new prefix of the anchor bucket). "
        f"The current one ({where}) holds the anchors of the chain before the restore: it stays "
        "as evidence, and anchors written there now would mix the restored chain's heads with "
        "them. Check the restored chain against it first: "
        f"NOVAMIND_AUDIT_ANCHORS={where} novamind audit verify --covered-only "
        '(docs/operations.md §7, "Audit anchors").',
        style="bold",
        markup=False,
        soft_wrap=True,
        highlight=False,
    )


@app.command("dr-drill")
def dr_drill(
    from_root: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Backup root (s3://bucket/prefix or a folder; default the backup_root setting).",
        ),
    ] = None,
    scratch: Annotated[
        Path | None,
        typer.Option(help="Scratch data folder (absent or empty; default a temporary one)."),
    ] = None,
    scratch_database_url: Annotated[
        str | None,
        typer.Option(
            help="An empty PostgreSQL database to restore a PostgreSQL backup into.",
            envvar="NOVAMIND_SCRATCH_DATABASE_URL",
            show_envvar=True,
        ),
    ] = None,
    twins: Annotated[
        int, typer.Option(help="Restored twins compared with their rebuild.", min=1, max=10**6)
    ] = 100,
    keep_scratch: Annotated[
        bool, typer.Option(help="Keep the scratch environment (it holds restored PHI).")
    ] = False,
    rpo_objective_s: Annotated[
        float,
        typer.Option(help="Recovery point objective, s.", min=1.0, max=366 * 86400.0),
    ] = 3600.0,
    rto_objective_s: Annotated[
        float,
        typer.Option(help="Recovery time objective, s.", min=1.0, max=366 * 86400.0),
    ] = 14400.0,
) -> None:
    """Restore the newest backup into a scratch environment, verify and compare it; print JSON.

    The last line is always one JSON object (RTO, RPO, the objectives and every check's
    count, ``error`` naming what failed); exit 1 when a check fails, the drill stops or RTO or
    RPO is outside its objective.
    """
    import asyncio

    from deployments.ops.drill import DrillReport
    from deployments.ops.drill import dr_drill as run_drill
    from twin.errors import TwinError

    if from_root is not None and (len(from_root) > 1024 or not from_root.strip()):
        raise typer.BadParameter("--from: s3://bucket/prefix or a folder (at most 1024 chars)")
    try:
        with console.status("drill running..."):
            report = asyncio.run(
                run_drill(
                    _settings(), root=from_root, scratch=scratch,
                    scratch_database_url=scratch_database_url, twins=twins,
                    keep_scratch=keep_scratch, rpo_objective_s=rpo_objective_s,
                    rto_objective_s=rto_objective_s, progress=console.print,
                )
            )  # fmt: skip
    except TwinError as exc:  # refused before it started (settings, arguments)
        report = DrillReport(error=f"{type(exc).__name__}: {exc}")
    if report.error:
        console.print(f"drill: {report.error}", style="red", markup=False)
    typer.echo(report.line())
    if not (report.ok and report.within_objectives):
        raise typer.Exit(1)


@erasures_app.command("apply")
def erasures_apply() -> None:
    """Erase again every patient the erasure ledger names that a database restore revived."""
    from deployments.bootstrap import open_backup_stores
    from twin.service.erasure_ledger import LedgerApplied, apply_erasure_ledger

    async def job() -> LedgerApplied:
        async with open_backup_stores(_settings()) as stores:
            return await apply_erasure_ledger(
                stores.erasures, stores.snapshot, stores.index, stores.eraser
            )

    done = _run_job("erasures", job())
    console.print(f"erased again: {done.revived} (named by the erasure ledger, with a data key)")
    console.print(f"completed:    {done.completed} (erasures that had stopped half-way)")
    if done.failed:
        console.print(f"failed again: {len(done.failed)} (still incomplete; retry later)")
        raise typer.Exit(1)


#: The longest KEK id a command takes (a KMS alias ARN is well under it).
_MAX_KEK_ID = 2048


def _kek_id(value: str) -> str:
    if not 1 <= len(value) <= _MAX_KEK_ID:
        raise typer.BadParameter(f"1 to {_MAX_KEK_ID} characters")
    return value


@keys_app.command("new-kek")
def keys_new_kek() -> None:
    """Create a new local key-encryption key; escrow the key folder before `keys rotate`."""
    from deployments.ops.keys import new_kek

    done = _run_job("keys new-kek", new_kek(_settings()))
    console.print(f"new key-encryption key {done.kek_id} in {done.folder}", markup=False)
    console.print(
        "Running services wrap new patients' keys under it from now on. Escrow the key folder "
        "NOW (copy it to where its escrow copy is kept), and only then run `novamind keys "
        "rotate`: until the escrow copy holds it, losing this folder loses every key wrapped "
        "under it.",
        markup=False,
    )


@keys_app.command("rotate")
def keys_rotate(
    batch: Annotated[int, typer.Option(help="Data keys per page.", min=1, max=10_000)] = 200,
    concurrency: Annotated[
        int,
        typer.Option(
            help="KMS calls at once (the local key folder wraps one key at a time).",
            min=1,
            max=32,
        ),
    ] = 8,
) -> None:
    """Re-wrap every data key under the current key-encryption key (safe during ingest).

    Interrupted, it is simply run again: keys already re-wrapped are skipped. It never creates
    a key-encryption key (`keys new-kek` does, escrowed before this runs).
    """
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from deployments.ops.keys import rotate
    from twin.errors import TwinError
    from twin.service.keys import RewrapProgress

    settings = _settings()
    bar = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=False,
    )  # fmt: skip
    tasks: dict[int, Any] = {}

    def advance(step: RewrapProgress) -> None:
        if step.pass_number not in tasks:
            label = f"re-wrapping under {step.kek_id} (pass {step.pass_number})"
            tasks[step.pass_number] = bar.add_task(label, total=step.total)
        task = tasks[step.pass_number]
        bar.update(task, completed=min(step.scanned, step.total), total=max(step.total, 1))

    try:
        with bar:
            report = asyncio.run(
                rotate(settings, batch=batch, concurrency=concurrency, progress=advance)
            )
    except TwinError as exc:
        raise _failed("keys rotate", exc) from None
    console.print(f"data keys under {report.kek_id}:", markup=False)
    _rows([
        ("re-wrapped", report.rewrapped),
        ("already", f"{report.already_current} (under it before)"),
        ("erased", f"{report.erased} (patients erased meanwhile; never written back)"),
        ("failed", report.failed),
        ("passes", report.passes),
    ])  # fmt: skip
    for failure in report.failures:
        console.print(f"  failed: {failure}", style="red", markup=False)
    if report.remaining:
        left = ", ".join(f"{k}: {n}" for k, n in sorted(report.remaining.items()))
        console.print(
            f"still under another key: {left}. Run `novamind keys rotate` again"
            + (" once the failures above are resolved" if report.failed else "")
            + " (under KMS: once every service uses the new NOVAMIND_KMS_KEY_ID).",
            markup=False,
        )
        raise typer.Exit(1)


@keys_app.command("retire")
def keys_retire(
    kek_id: Annotated[
        str,
        typer.Argument(help="The key-encryption key: kek-<n>.key, or a KMS key id or ARN."),
    ],
) -> None:
    """Take an old key-encryption key out of use once no data key is wrapped under it."""
    from deployments.ops.keys import retire

    done = _run_job("keys retire", retire(_settings(), _kek_id(kek_id)))
    if done.others:
        console.print("data keys under a key other than the current one:")
    for other, count in sorted(done.others.items()):
        console.print(f"  {other:<24} {count} data key(s)", markup=False)
    if done.kms:
        if done.still_wrapped or done.unsure:
            console.print(
                f"{done.still_wrapped} data key(s) are wrapped under KMS key {done.kek_id}"
                + (
                    f", and {done.unsure} under an alias (which key is not known)"
                    if done.unsure
                    else ""
                )
                + ". Do not disable it: run `novamind keys rotate` first. Nothing was changed.",
                style="red",
                markup=False,
            )
            raise typer.Exit(1)
        console.print(
            f"No data key is wrapped under KMS key {done.kek_id}. Nothing was changed here: "
            "disable it in KMS, and schedule its deletion once no backup written before the "
            "last re-wrap pass finished is kept.",
            markup=False,
        )
        return
    if not done.retired:
        console.print(
            f"{done.still_wrapped} data key(s) are still wrapped under {kek_id}: run "
            "`novamind keys rotate` first. Nothing was retired.",
            style="red",
            markup=False,
        )
        raise typer.Exit(1)
    console.print(f"{kek_id} retired to {done.kept_at}: no process uses it any more.", markup=False)
    console.print(
        "Data keys running processes unwrapped before stay in their caches until they restart. "
        "Backups written before the last re-wrap pass finished need it: move it back into the "
        "key folder to restore one (then run `keys rotate` and `keys retire` again). Once none "
        f"is kept, `novamind keys destroy {kek_id}` deletes it.",
        markup=False,
    )


@keys_app.command("destroy")
def keys_destroy(
    kek_id: Annotated[str, typer.Argument(help="A retired key-encryption key, e.g. kek-1.key.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: the key file is deleted for good.")
    ] = False,
) -> None:
    """Delete a retired local key-encryption key for good (no data key may be under it)."""
    from deployments.ops.keys import destroy

    kek_id = _kek_id(kek_id)
    if not yes:
        console.print(
            f"`keys destroy` deletes {kek_id} from keys/retired/ for good: no backup that needs "
            "it can be restored afterwards. Run it again with --yes to confirm.",
            markup=False,
        )
        raise typer.Exit(2)
    done = _run_job("keys destroy", destroy(_settings(), kek_id))
    if not done.destroyed:
        console.print(
            f"{done.still_wrapped} data key(s) are wrapped under {kek_id} (written by a process "
            "that had not yet seen the new key-encryption key): move it back into the key "
            "folder, run `novamind keys rotate`, then retire it again. Nothing was destroyed.",
            style="red",
            markup=False,
        )
        raise typer.Exit(1)
    console.print(
        f"{kek_id} deleted from keys/retired/. Its copies in the key folder's escrow (and in "
        "any copy of the folder) still exist: delete them too for it to be gone. Restart the "
        "services to drop data keys they unwrapped under it. Re-wrapping never changed a data "
        "key: whoever holds a copy of this key and of the wrapped keys can still read the data.",
        markup=False,
    )


@keys_app.command("status")
def keys_status() -> None:
    """The current key-encryption key and how many data keys each one wraps."""
    from deployments.ops.keys import key_status

    status = _run_job("keys status", key_status(_settings()))
    console.print(f"current key-encryption key: {status.current}", markup=False)
    for kek_id, count in sorted(status.counts.items()):
        mark = " (current)" if kek_id == status.current else ""
        console.print(f"  {kek_id:<24} {count} data key(s){mark}", markup=False)
    if status.folder is not None:
        console.print(f"  in the key folder: {', '.join(status.folder.live)}", markup=False)
        if status.folder.damaged:
            console.print(
                f"  damaged (restore from the escrow copy): {', '.join(status.folder.damaged)}",
                style="red",
                markup=False,
            )
        if status.folder.retired:
            console.print(f"  retired: {', '.join(status.folder.retired)}", markup=False)


def _instant(value: str | None, option: str) -> str | None:
    """An ISO date (UTC midnight) or date-time as the API takes it (with an offset)."""
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{option}: an ISO 8601 date or date-time") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files or folders (local or s3://).")],
    source_format: Annotated[
        str, typer.Option("--format", help="fhir-ndjson, fhir-bundle, csv or parquet.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for report.json and quarantine/.")],
    origin: Annotated[
        str | None,
        typer.Option(
            help="Time origin (ISO date = UTC midnight, or date-time) of registered patients "
            "without a stored enrolment."
        ),
    ] = None,
    care_team: Annotated[
        str | None,
        typer.Option(help="Register the sources' Patient resources in this care team."),
    ] = None,
    enrolled_at: Annotated[
        str | None,
        typer.Option(
            help="Enrolment of the patients the job registers (default: each one's first record)."
        ),
    ] = None,
    writers: Annotated[int, typer.Option(help="Writer actors.", min=1, max=256)] = 2,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster address (default: the ray_address setting, a new local one)."
        ),
    ] = None,
) -> None:
    """Bulk-ingest FHIR or tabular records into the event log (Ray Data); report and quarantine."""
    from pydantic import ValidationError

    from deployments.pipelines.ingest import FORMATS, IngestJob, run_ingest
    from twin.schemas import IngestJobIn

    if source_format not in FORMATS:
        raise typer.BadParameter(f"--format: one of {', '.join(FORMATS)}")
    try:
        # The API's own rules for the job's fields (bounds, care-team form).
        request = IngestJobIn.model_validate(
            {"paths": ["cli"], "format": source_format, "care_team": care_team,
             "origin": _instant(origin, "--origin"),
             "enrolled_at": _instant(enrolled_at, "--enrolled-at")}
        )  # fmt: skip
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]).replace("_", "-")
        raise typer.BadParameter(f"--{where}: {first['msg']}"[:300]) from None
    job = IngestJob(
        tuple(paths), source_format, request.origin, str(out),  # type: ignore[arg-type]
        care_team=request.care_team, enrolled_at=request.enrolled_at,
    )  # fmt: skip
    with _on_ray("ingest", address) as settings:
        report = run_ingest(settings, job, writers=writers)
    console.print(f"job {report.job_id}: {report.records} records in {report.seconds:.1f} s")
    _rows([
        ("appended", f"{report.appended} (patients {report.patients})"),
        ("registered", report.registered),
        ("duplicates", report.duplicates),
        ("quarantined", f"{report.quarantined} -> {out / 'quarantine'}"),
    ])  # fmt: skip
    for reason, count in list(report.reasons.items())[:10]:
        console.print(f"    {count:>8}  {reason}", markup=False)


@app.command()
def cohort(
    request: Annotated[
        Path, typer.Argument(help="The run as JSON (the body of POST /v1/cohorts/runs).")
    ],
    out: Annotated[str, typer.Option(help="Folder (local or s3://) for the Parquet files.")],
    workers: Annotated[int, typer.Option(help="Forecast tasks run at once.", min=1, max=256)] = 2,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster address (default: the ray_address setting, a new local one).",
        ),
    ] = None,
) -> None:
    """Run a cohort what-if now (Ray Data): de-identified per-patient and aggregate results."""
    from pydantic import ValidationError

    from deployments.pipelines.cohorts import run_cohort
    from twin.schemas import CohortRunIn

    try:
        run = CohortRunIn.model_validate_json(request.read_bytes())
    except (OSError, ValidationError) as exc:
        raise typer.BadParameter(f"{request}: {str(exc)[:300]}") from None
    with _on_ray("cohort run", address) as settings:
        final = run_cohort(settings, run, output=out, workers=workers)
    console.print(
        f"run {final.job_id}: {final.patients_done} patients x {len(final.scenarios)} scenarios "
        f"in {final.seconds} s -> {out}"
    )
    for reason, count in final.skipped.items():
        console.print(f"  skipped {count:>8}  {reason}", markup=False)


@app.command()
def calibrate(
    care_team: Annotated[
        list[str] | None, typer.Option(help="Use every patient of this care team (repeatable).")
    ] = None,
    min_severity: Annotated[
        float | None,
        typer.Option(
            help="Use indexed twins with mean severity >= this.",
            min=0.0,
            max=27.0,
            callback=_finite,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Most twins used.", min=1, max=1_000_000)] = 1_000_000,
    activate: Annotated[bool, typer.Option(help="New twins take the fitted prior set.")] = False,
    n_sim: Annotated[
        int, typer.Option(help="Simulated patients per arm.", min=200, max=200_000)
    ] = 4000,
    max_evaluations: Annotated[
        int, typer.Option(help="Objective evaluations.", min=5, max=10_000)
    ] = 300,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster address (default: the ray_address setting, a new local one).",
        ),
    ] = None,
) -> None:
    """Fit the population priors to the twins' logs (SMM on Ray) into the model registry."""
    from deployments.pipelines.calibration import run_calibration
    from twin.schemas import CohortFilter

    if not care_team and min_severity is None:
        raise typer.BadParameter("select patients: --care-team and/or --min-severity")
    selection = (
        CohortFilter(min_severity=min_severity, limit=limit) if min_severity is not None else None
    )
    with _on_ray("calibration", address) as settings:
        record = run_calibration(
            settings, selection, care_teams=care_team or (), activate=activate,
            n_sim=n_sim, max_evaluations=max_evaluations,
        )  # fmt: skip
    ses = record.diagnostics["standard_errors"]
    console.print(f"prior set {record.version} ({'active' if activate else 'not activated'})")
    for name, value in record.overrides.items():
        console.print(f"  {name:8} {value:.5g}  (SE {ses[name]:.2g})")
    console.print(
        f"  courses {record.diagnostics['courses']}, excluded {record.diagnostics['excluded']}"
    )


@model_app.command("targets")
def model_targets(
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path(
        "docs/model-targets.md"
    ),
    patients: Annotated[
        int, typer.Option(help="Simulated patients per arm.", min=200, max=200_000)
    ] = 20_000,
    seed: Annotated[
        int, typer.Option(help="Seed of the simulated cohorts.", min=0, max=2**62 - 1)
    ] = 2026,
) -> None:
    """Run the literature battery and write every target's simulated value and band."""
    from twin.model import validation

    results = validation.run_battery(n=patients, seed=seed)
    out.write_text(validation.targets_table(results, n=patients, seed=seed))
    missed = [r for r in results if not r.passed]
    console.print(f"{len(results) - len(missed)} of {len(results)} targets in band -> {out}")
    for r in missed:
        console.print(f"  [red]{r.target} {r.quantity} = {r.value:.3f} ({r.low:g} .. {r.high:g})")


@model_app.command("fit")
def model_fit(
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path("docs/model-fit.md"),
    patients: Annotated[
        int, typer.Option(help="Simulated patients per arm.", min=500, max=100_000)
    ] = 4000,
    iterations: Annotated[int, typer.Option(help="Minimiser evaluations.", min=1, max=10_000)] = 30,
    workers: Annotated[int, typer.Option(help="Processes for the Jacobian.", min=1, max=256)] = 2,
    start: Annotated[
        str | None, typer.Option(help="Prior set to start from (a shipped version).")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the simulated cohorts.", min=0, max=2**62 - 1)
    ] = 2026,
    only: Annotated[
        list[str] | None, typer.Option(help="Fit only this parameter (repeatable).")
    ] = None,
) -> None:
    """Fit the model to every published target at once; write the table and the estimates."""
    import json
    from concurrent.futures import ProcessPoolExecutor

    from twin.analytics import joint
    from twin.model.priors import LITERATURE, SHIPPED

    start = start or LITERATURE.version
    if start not in SHIPPED:
        raise typer.BadParameter(f"start: one of {', '.join(SHIPPED)}")
    names = tuple(only or joint.PARAMETERS)
    unknown = [name for name in names if name not in joint.PARAMETERS]
    if unknown:
        raise typer.BadParameter(f"only: one of {', '.join(joint.PARAMETERS)}")
    base = SHIPPED[start].parameters()
    with ProcessPoolExecutor(workers) as pool:
        fit = joint.fit_targets(
            base, names=names, n=patients, seed=seed, max_iterations=iterations,
            mapper=lambda fn, jobs: list(pool.map(fn, jobs)),
            progress=lambda done, j: console.print(f"  evaluation {done}: J = {j:.1f}"),
        )  # fmt: skip
    out.write_text(joint.fit_table(fit, version=start))
    console.print(f"J = {fit.objective:.1f} ({fit.status}) -> {out}")
    console.print(json.dumps({k: float(f"{v:.4g}") for k, v in fit.estimates.items()}))


@priors_app.command("list")
def priors_list() -> None:
    """The prior sets in the model registry and which one new twins take."""
    from deployments.stores import open_documents
    from twin.service.priors import COLLECTION, DocumentPriorRegistry, PriorSetRecord

    async def listing() -> tuple[str, list[PriorSetRecord]]:
        async with open_documents(_settings()) as documents:
            active = (await DocumentPriorRegistry(documents).active()).version
            found = await documents.list(COLLECTION, after=None, limit=1000)
            return active, [PriorSetRecord.model_validate_json(d.body) for d in found]

    from twin.model.priors import BUILTIN, LITERATURE, LITERATURE_2026_12

    active, records = _run_job("listing", listing())
    shipped = {
        BUILTIN.version: "shipped: the defaults of docs/model.md §6",
        LITERATURE_2026_12.version: "shipped: the first joint fit, for the twins created with it",
        LITERATURE.version: "shipped: the joint fit of the published targets (docs/model-fit.md)",
    }
    for version, what in shipped.items():
        console.print(f"{'*' if active == version else ' '} {version}  ({what})")
    for r in records:
        values = ", ".join(f"{k}={v:.4g}" for k, v in r.overrides.items())
        console.print(
            f"{'*' if active == r.version else ' '} {r.version}  {r.created_at}  {values}"
        )


@priors_app.command("activate")
def priors_activate(
    version: Annotated[str, typer.Argument(help="A version from `novamind priors list`.")],
) -> None:
    """Make a prior set the one new twins take (``builtin`` returns to the defaults)."""
    from deployments.stores import open_documents
    from twin.service.priors import DocumentPriorRegistry

    async def activate() -> None:
        async with open_documents(_settings()) as documents:
            await DocumentPriorRegistry(documents).activate(version)

    _run_job("activation", activate())
    console.print(f"new twins now take prior set {version}; existing twins keep theirs")
