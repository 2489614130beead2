"""The error tree of Novamind. Every error is a :class:`TwinError`.

::

    TwinError
    ├── InvalidInputError (ValueError)        bad input from a caller; HTTP 422
    │   ├── ObservationRangeError            a value outside its valid range
    │   ├── UnknownDrugError                 a drug not in the model's table
    │   └── EventOrderError                  an event older than the twin's clock
    │       └── EventGapError                an event too far after the patient's last one
    ├── StateCorruptError                    serialized state that cannot be read back
    ├── ModelVersionError                    state written by an incompatible model
    ├── StorageUnavailableError              a store cannot be reached; retry (HTTP 503)
    │   ├── StorageFullError                 a store has no space left; retry once freed (503)
    │   └── KeyUnavailableError              a key-encryption key missing, damaged or refused;
    │                                        nothing erased; retry once fixed (503)
    ├── HostUnavailableError                 the twin's host is restarting; retry (HTTP 503)
    ├── ConfigurationError                   unsafe settings; the service refuses to start
    ├── AuthenticationError                  no valid credentials (HTTP 401)
    ├── AuthorizationError                   valid credentials, not allowed (HTTP 403)
    ├── NotFoundError                        no such resource (HTTP 404)
    ├── CheckpointCorruptError               a stored checkpoint is torn or tampered with
    ├── BackupCorruptError                   a backup archive is torn, truncated or tampered with
    ├── AuditAnchorCorruptError              a stored audit anchor is damaged, edited or removed
    ├── KeyAccessError                       a patient's data key was shredded (HTTP 410)
    │   └── DataKeyDamagedError              present but does not open: nothing erased;
    │                                        restore the key from a backup (HTTP 503)
    ├── JobNotFinishedError                  a job's results before it succeeded (HTTP 409)
    ├── IdentifierTakenError                 an identifier already names another patient (409)
    ├── JobCancelledError                    a batch job stopped on request
    ├── RateLimitedError                     the caller's request budget is spent (HTTP 429)
    │   └── ConcurrencyLimitError            as many jobs or live streams as allowed (HTTP 429)
    ├── OverloadedError                      the service's queues are full; retry (HTTP 503)
    │   └── VerificationRunningError         another audit verification runs here; retry (503)
    └── ApiError                             any other HTTP error (the SDK's fallback)
        └── UpstreamLostError                a gateway lost the server mid-request (SDK)

Every class pickles (errors cross Ray processes): each passes all its constructor arguments
positionally to ``super().__init__`` so ``BaseException.__reduce__`` rebuilds it. Messages never
carry PHI: they name fields, ranges and sequence numbers, not patients.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AuditAnchorCorruptError",
    "AuthenticationError",
    "AuthorizationError",
    "BackupCorruptError",
    "CheckpointCorruptError",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "DataKeyDamagedError",
    "EventGapError",
    "EventOrderError",
    "HostUnavailableError",
    "IdentifierTakenError",
    "InvalidInputError",
    "JobCancelledError",
    "JobNotFinishedError",
    "KeyAccessError",
    "KeyUnavailableError",
    "ModelVersionError",
    "NotFoundError",
    "ObservationRangeError",
    "OverloadedError",
    "PlatformRunningError",
    "RateLimitedError",
    "StateCorruptError",
    "StorageFullError",
    "StorageUnavailableError",
    "TwinError",
    "UnknownDrugError",
    "UpstreamLostError",
    "VerificationRunningError",
]


class TwinError(Exception):
    """Root of every error raised by Novamind code."""


class InvalidInputError(TwinError, ValueError):
    """A caller supplied input that the domain rejects."""


class ObservationRangeError(InvalidInputError):
    """An observed value lies outside the valid range of its field.

    Args:
        field: Name of the offending field, e.g. ``"phq9_total"``.
        value: The rejected value (as given; kept out of the message).
        valid: Human-readable valid range, e.g. ``"integer 0..27"``.
    """

    def __init__(self, field: str, value: object, valid: str) -> None:
        super().__init__(field, value, valid)
        self.field = field
        self.value = value
        self.valid = valid

    def __str__(self) -> str:
        # The value stays on the exception for the caller's code, never in the message: an
        # observed value is clinical data, and messages end up in logs and HTTP answers.
        return f"{self.field} is invalid: expected {self.valid}"


class UnknownDrugError(InvalidInputError):
    """A drug name that the pharmacology table does not know.

    Args:
        drug: The rejected name.
        known: The names the model knows.
    """

    def __init__(self, drug: str, known: tuple[str, ...]) -> None:
        super().__init__(drug, known)
        self.drug = drug
        self.known = known

    def __str__(self) -> str:
        return f"unknown drug {self.drug!r}: expected one of {', '.join(self.known)}"


class EventOrderError(InvalidInputError):
    """An event is older than the time the twin has already advanced to.

    Args:
        event_day: Time of the event, days since the twin's origin.
        twin_day: Time the twin's state is valid for, days since the origin.
    """

    def __init__(self, event_day: float, twin_day: float) -> None:
        super().__init__(event_day, twin_day)
        self.event_day = event_day
        self.twin_day = twin_day

    def __str__(self) -> str:
        return (
            f"event at day {self.event_day:g} is older than the twin's clock "
            f"(day {self.twin_day:g}); replay the log to insert it"
        )


class EventGapError(EventOrderError):
    """An event lies further after the patient's latest event than one event may move a twin.

    Args:
        event_day: Time of the event, days since the twin's origin.
        twin_day: Time of the patient's latest event (0 for a new patient).
        limit_days: The most days one event may lie after the latest.
    """

    def __init__(self, event_day: float, twin_day: float, limit_days: float) -> None:
        InvalidInputError.__init__(self, event_day, twin_day, limit_days)
        self.event_day = event_day
        self.twin_day = twin_day
        self.limit_days = limit_days

    def __str__(self) -> str:
        return (
            f"event at day {self.event_day:g} is more than {self.limit_days:g} days after the "
            f"patient's latest (day {self.twin_day:g}): check the time axis (its origin)"
        )


class StateCorruptError(TwinError):
    """Serialized twin state could not be decoded."""


class ModelVersionError(TwinError):
    """Serialized state was written by an incompatible model version.

    Args:
        found: Version in the serialized state.
        expected: Version this code implements.
    """

    def __init__(self, found: str, expected: str) -> None:
        super().__init__(found, expected)
        self.found = found
        self.expected = expected

    def __str__(self) -> str:
        return f"state has model version {self.found!r}, this code is {self.expected!r}"


class StorageUnavailableError(TwinError):
    """A store could not be reached or did not answer in time; the operation may be retried."""


#: Seconds a client is told to wait after a write the full disk refused: freeing space takes
#: an operator, not a moment, and the SDK's own backoff tops out at 10 s too.
STORAGE_FULL_RETRY_S = 10


class StorageFullError(StorageUnavailableError):
    """A store has no space left for a write; nothing of the write was kept. Retry once freed.

    Args:
        what: The store, e.g. ``"SQLite store"`` (never a path: folders are named per patient).
        retry_after_s: Seconds the caller should wait before trying again.
    """

    def __init__(self, what: str, retry_after_s: int = STORAGE_FULL_RETRY_S) -> None:
        super().__init__(what, retry_after_s)
        self.what = what
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.what} has no space left; retry after {self.retry_after_s} s"


class KeyUnavailableError(StorageUnavailableError):
    """A key-encryption key cannot be used now; no data key was lost and no patient erased.

    Its file is missing from the key folder (retired, or the folder not mounted) or damaged, or
    KMS refuses the key (disabled, access denied, not found). Unlike
    :class:`KeyAccessError`, which means the patient's data key is gone for good, this is
    retried once an operator has fixed the key (HTTP 503); a key re-wrap stops at the first.
    """


class AuthenticationError(TwinError):
    """A request without valid credentials. The message says why in general terms only."""


class AuthorizationError(TwinError):
    """The caller is authenticated but may not do this (the message names the rule, not data)."""


class NotFoundError(TwinError):
    """The addressed resource does not exist (or is not visible to the caller)."""


class ConfigurationError(TwinError):
    """Settings or a server configuration that would be unsafe (e.g. fsync off)."""


class PlatformRunningError(TwinError):
    """A platform already runs (or starts) on this data folder: it is not started twice."""


class HostUnavailableError(TwinError):
    """The host of a twin did not answer in time (it died or is restarting); retry."""


class CheckpointCorruptError(TwinError):
    """A stored checkpoint failed its integrity check (torn write or tampering)."""


class BackupCorruptError(TwinError):
    """A backup archive fails its integrity checks (digest, authentication tag or framing)."""


class AuditAnchorCorruptError(TwinError):
    """A stored audit anchor cannot be read as one, or the anchor record was edited or cut.

    Never skipped: a damaged anchor store is itself evidence of tampering.
    """


class JobNotFinishedError(TwinError):
    """A batch job's results were asked for before it succeeded (queued, running or failed)."""


class IdentifierTakenError(TwinError):
    """An external identifier (system and value) already names another registered patient."""


class KeyAccessError(TwinError):
    """A patient's data key no longer exists (the patient was erased), or does not open."""


class DataKeyDamagedError(KeyAccessError):
    """A patient's wrapped data key is stored but does not open: no patient was erased.

    Its stored bytes are damaged, or it was wrapped for another patient (its encryption
    context), or under a key this provider does not hold for it. A :class:`KeyAccessError`
    still, so that a listing or a batch passes over the patient as over one it cannot read;
    but a request for that patient answers HTTP 503 ("damaged, nothing erased"), never 410
    ("erased"), and an operator restores the key's row from a backup (docs/operations.md §7).
    """


class RateLimitedError(TwinError):
    """The caller exceeded its request budget; retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"rate limit exceeded; retry after {self.retry_after_s} s"


class ConcurrencyLimitError(RateLimitedError):
    """The caller already holds as many of something (jobs, live streams) as it may."""

    def __init__(self, retry_after_s: int, what: str) -> None:
        TwinError.__init__(self, retry_after_s, what)
        self.retry_after_s = retry_after_s
        self.what = what

    def __str__(self) -> str:
        return f"{self.what}; retry after {self.retry_after_s} s"


class JobCancelledError(TwinError):
    """A batch job stopped because its cancellation was requested."""


class OverloadedError(TwinError):
    """The service's queues are full; retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"the service is at capacity; retry after {self.retry_after_s} s"


class VerificationRunningError(OverloadedError):
    """Another verification of the audit chain is running in this process (one at a time).

    A verification reads the whole chain; one at a time keeps a replica's memory and database
    connections for the requests it serves.
    """

    def __str__(self) -> str:
        return (
            "another verification of the audit chain is running here; retry after "
            f"{self.retry_after_s} s"
        )


class ApiError(TwinError):
    """An HTTP API error with no more specific class (the SDK's fallback mapping)."""

    def __init__(self, status: int, title: str, detail: str | None = None) -> None:
        super().__init__(status, title, detail)
        self.status = status
        self.title = title
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.status} {self.title}" + (f": {self.detail}" if self.detail else "")


class UpstreamLostError(ApiError):
    """A gateway answered for a server it lost mid-request: the request's outcome is unknown.

    The API itself always answers with a problem document; a bare 500, 502 or 504 is a proxy's
    (Ray Serve's, for a replica that died), and so is a bare 404 (Ray Serve's proxy before its
    routes are known again, after a restart). A request with an idempotency key, or a read, is
    safe to send again and the SDK does; anything else may or may not have taken effect.
    """

    def __init__(self, status: int) -> None:
        super().__init__(status, "the server was lost mid-request; the outcome is unknown")

    def __reduce__(self) -> tuple[type[UpstreamLostError], tuple[int]]:
        return (type(self), (self.status,))
