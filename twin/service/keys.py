"""Re-wrapping every patient's data key under the current key-encryption key (KEK).

A re-wrap unwraps a patient's data key with the KEK that wrapped it and wraps the same key again
under the provider's current KEK; sealed payloads are never read or rewritten, and a process
that holds the unwrapped key in its cache keeps using it unchanged. The data keys themselves
never change: re-wrapping protects nothing against someone who already holds an old KEK and a
copy of the wrapped keys (that would need new data keys, re-sealing every payload).

Safe while the service runs:

- Each swap is a compare-and-swap (:meth:`twin.ports.DataKeyStore.replace_if`): a key destroyed
  between its read and its write (the patient erased) is never written back, and a key another
  run re-wrapped meanwhile is left as it is.
- Keys are read in pages in patient-id order (keyset paging), so new patients do not shift the
  pages. A key created during the run by a process that had not yet seen the new KEK can fall
  behind the cursor; after a pass, the keys still under another KEK than the provider's current
  one are counted, and while that finds some (and the pass had no failure) another pass runs,
  at most ``max_passes``.
- When a wrap comes back under another KEK than the pass began with (a newer KEK appeared), the
  run follows it: keys already under the newer one are not re-wrapped again.

Resumable without saved state: a run that stops (a crash, Ctrl-C, a KMS outage) is simply run
again; keys already under the current KEK are skipped without a call to the key provider, so a
repeat costs one read of the key table. No cursor is kept on disk: it would be a second truth
that goes stale (a key created behind it, a cursor left from an earlier rotation), and the
count per KEK already says what is left.

Failures: a key whose own blob does not unwrap (damaged, or not this patient's), or any error
that is not the store's, is reported and left as it was, and the run goes on. A KEK the provider
cannot use (:class:`~twin.errors.KeyUnavailableError`: a KEK file missing or damaged, KMS
refusing a key) stops the run at once, as do ``MAX_UNAVAILABLE_IN_A_ROW`` provider calls in a
row failing as unavailable (KMS down or throttling after the client's own retries): every
further key would only fail the same way. The data-key store failing stops it too.

Calls to the key provider (KMS ``Decrypt``/``Encrypt``) run at most ``concurrency`` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from twin import errors, ports

__all__ = ["RewrapProgress", "RewrapReport", "rewrap_data_keys"]

#: Failures kept, with their reasons, in a report (the count covers all of them).
MAX_FAILURES_LISTED = 20
#: Provider calls failing as unavailable, one after another, that stop a run.
MAX_UNAVAILABLE_IN_A_ROW = 5
_ATTEMPTS = 3

Outcome = Literal["rewrapped", "current", "erased", "failed", "stopped"]


@dataclass(frozen=True, slots=True)
class RewrapProgress:
    """Where a run stands, after each page.

    Attributes:
        kek_id: The KEK keys are being re-wrapped under.
        total: Data keys stored when the pass began.
        scanned: Keys looked at so far in this pass.
        rewrapped: Keys re-wrapped so far (all passes).
        already_current: Keys found under the current KEK (first pass).
        erased: Keys destroyed (patients erased) between their read and their swap.
        failed: Keys that could not be re-wrapped in this pass (left as they were).
        cursor: The last patient id looked at.
        pass_number: 1 for the first pass.
    """

    kek_id: str
    total: int
    scanned: int
    rewrapped: int
    already_current: int
    erased: int
    failed: int
    cursor: str | None
    pass_number: int


@dataclass(frozen=True, slots=True)
class RewrapReport:
    """What a run did.

    Attributes:
        kek_id: The current KEK at the end of the run.
        rewrapped: Keys re-wrapped under it.
        already_current: Keys that were under it already (first pass).
        erased: Keys destroyed meanwhile (never written back).
        failed: Keys left under their old KEK because unwrap or wrap failed (last pass).
        failures: ``patient id: reason`` for the first failures (at most 20).
        passes: Passes over the key table.
        remaining: Keys still under another KEK at the end, per KEK id.
    """

    kek_id: str
    rewrapped: int
    already_current: int
    erased: int
    failed: int
    failures: tuple[str, ...]
    passes: int
    remaining: dict[str, int] = field(default_factory=dict)


class _Run:
    """What the re-wraps of one pass share."""

    __slots__ = ("current", "stop", "unavailable")

    def __init__(self, current: str) -> None:
        self.current = current
        self.unavailable = 0  # provider calls failed as unavailable, one after another
        self.stop: errors.StorageUnavailableError | None = None

    def failed(self, exc: errors.StorageUnavailableError) -> None:
        self.unavailable += 1
        if isinstance(exc, errors.KeyUnavailableError) or (
            self.unavailable >= MAX_UNAVAILABLE_IN_A_ROW
        ):
            self.stop = self.stop or exc


async def _rewrap_one(
    keys: ports.KeyProvider,
    store: ports.DataKeyStore,
    run: _Run,
    patient_id: str,
    wrapped: ports.WrappedKey,
) -> tuple[Outcome, str]:
    for _ in range(_ATTEMPTS):
        if wrapped.kek_id == run.current:
            return "current", ""
        if run.stop is not None:
            return "stopped", ""
        try:
            data_key = await keys.unwrap(wrapped, context=patient_id)
            fresh = await keys.wrap(data_key, context=patient_id)
        except errors.StorageUnavailableError as exc:  # the provider, not this key
            run.failed(exc)
            return "failed", f"{type(exc).__name__}: {exc}"
        except errors.TwinError as exc:  # this key's blob: damaged, or not this patient's
            run.unavailable = 0
            return "failed", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # one malformed row must not stop every key after it
            run.unavailable = 0
            return "failed", type(exc).__name__  # its message could quote the row
        run.unavailable = 0
        run.current = fresh.kek_id  # a newer KEK appeared during the pass: follow it
        if await store.replace_if(patient_id, wrapped, fresh):
            return "rewrapped", ""
        stored = await store.get(patient_id)
        if stored is None:
            return "erased", ""
        wrapped = stored  # changed meanwhile (re-wrapped by another run): look again
    return "failed", "the stored key kept changing"


async def _gated(
    gate: asyncio.Semaphore,
    keys: ports.KeyProvider,
    store: ports.DataKeyStore,
    run: _Run,
    patient_id: str,
    wrapped: ports.WrappedKey,
) -> tuple[Outcome, str]:
    if wrapped.kek_id == run.current:  # nothing to call the provider for: no wait at the gate
        return "current", ""
    async with gate:
        return await _rewrap_one(keys, store, run, patient_id, wrapped)


async def rewrap_data_keys(
    keys: ports.KeyProvider,
    store: ports.DataKeyStore,
    *,
    batch: int = 200,
    concurrency: int = 8,
    max_passes: int = 3,
    progress: Callable[[RewrapProgress], None] | None = None,
) -> RewrapReport:
    """Re-wrap every stored data key that is not under the provider's current KEK.

    Args:
        keys: The key provider; its current KEK is read at the start of each pass.
        store: The data keys.
        batch: Keys per page (1 to 10,000).
        concurrency: Key-provider calls at once (1 to 256).
        max_passes: Passes at most (1 to 10); see the module docstring.
        progress: Called after each page; an exception it raises stops the run (what was
            re-wrapped stays re-wrapped; running again finishes it).

    Returns:
        The counts; keys that failed stay under their old KEK and are listed.

    Raises:
        ValueError: An argument out of its range.
        KeyUnavailableError: A KEK the provider cannot use; a note says how many keys were
            re-wrapped before the run stopped (they stay so).
        StorageUnavailableError: The data-key store failed, or the provider failed
            ``MAX_UNAVAILABLE_IN_A_ROW`` times in a row (run again once it is back).
    """
    for name, value, low, high in (
        ("batch", batch, 1, 10_000),
        ("concurrency", concurrency, 1, 256),
        ("max_passes", max_passes, 1, 10),
    ):
        if not low <= value <= high:
            raise ValueError(f"{name} must be within {low}..{high}, not {value}")
    gate = asyncio.Semaphore(concurrency)
    rewrapped = already_current = erased = 0
    failures: list[str] = []
    passes = 0
    current = await keys.current_kek_id()
    while True:
        passes += 1
        run = _Run(current)
        total = sum((await store.count_by_kek()).values())
        scanned = failed = pass_rewrapped = 0
        failures.clear()
        cursor: str | None = None
        while True:
            page = await store.scan(after=cursor, limit=batch)
            if not page:
                break
            outcomes = await asyncio.gather(
                *(_gated(gate, keys, store, run, pid, key) for pid, key in page)
            )
            for (pid, _), (outcome, reason) in zip(page, outcomes, strict=True):
                if outcome == "rewrapped":
                    pass_rewrapped += 1
                elif outcome == "current":
                    already_current += 1 if passes == 1 else 0
                elif outcome == "erased":
                    erased += 1
                elif outcome == "failed":
                    failed += 1
                    if len(failures) < MAX_FAILURES_LISTED:
                        failures.append(f"{pid}: {reason}")
            if run.stop is not None:
                run.stop.add_note(
                    f"the re-wrap stopped: {rewrapped + pass_rewrapped} data key(s) were "
                    "re-wrapped before (they stay so); run it again once this is fixed"
                )
                raise run.stop
            scanned += len(page)
            cursor = page[-1][0]
            if progress is not None:
                progress(
                    RewrapProgress(
                        kek_id=run.current,
                        total=total,
                        scanned=scanned,
                        rewrapped=rewrapped + pass_rewrapped,
                        already_current=already_current,
                        erased=erased,
                        failed=failed,
                        cursor=cursor,
                        pass_number=passes,
                    )
                )
            if len(page) < batch:
                break
        rewrapped += pass_rewrapped
        # The provider's view now, not the pass's: a KEK may have been added meanwhile.
        current = await keys.current_kek_id()
        remaining = {k: n for k, n in (await store.count_by_kek()).items() if k != current}
        if not remaining or failed or passes >= max_passes:
            return RewrapReport(
                current, rewrapped, already_current, erased, failed, tuple(failures), passes,
                remaining,
            )  # fmt: skip
