"""The operations on one patient's twin: defined once, forwarded generically.

:class:`TwinOperations` is the one definition. :class:`twin.service.host.TwinHost` implements
it in a process; everything between a caller and a host forwards it without restating it: the
Ray host actor receives ``(operation, patient id, arguments)`` and calls :func:`invoke`, and the
runtime that reaches hosts on Ray subclasses :class:`Forwarding`, whose attributes are the
operations. An operation added here is reachable everywhere at once; a name not listed here is
refused by both ends.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from twin import errors, ports
from twin.domain.specs import Scenario
from twin.forecast.summary import Contrast, Forecast
from twin.schemas import TwinOut as TwinSummary
from twin.service.results import IngestResult

__all__ = ["OPERATIONS", "Forwarding", "TwinOperations", "invoke"]


@runtime_checkable
class TwinOperations(Protocol):
    """What can be done to one patient's twin, wherever it lives."""

    async def ingest(
        self, patient_id: str, batch: Sequence[ports.NewEvent], *, wait: bool = True
    ) -> IngestResult:
        """Append durably (the acknowledgement), then apply (``wait=False``: in the background).

        Safe to retry with the same idempotency keys.
        """
        ...

    async def state_bytes(self, patient_id: str) -> bytes:
        """The twin's serialized state, caught up with the log."""
        ...

    async def summary(self, patient_id: str) -> TwinSummary:
        """The twin's posterior summary, caught up with the log."""
        ...

    async def forecast(
        self, patient_id: str, scenarios: Sequence[Scenario], *, weeks: int = 12
    ) -> list[Forecast]:
        """Forecasts under each scenario (common random numbers)."""
        ...

    async def compare(
        self, patient_id: str, scenarios: Sequence[Scenario], *, weeks: int = 12
    ) -> tuple[list[Forecast], list[Contrast]]:
        """Forecasts under each scenario and paired contrasts against the first."""
        ...

    async def passivate(self, patient_id: str) -> bool:
        """Checkpoint the twin and drop it from memory; False when it was not active."""
        ...

    async def erase(self, patient_id: str) -> None:
        """Drop the twin and crypto-shred what its host holds (state, checkpoints, data key)."""
        ...


#: The operation names, read from the protocol itself.
OPERATIONS: frozenset[str] = frozenset(
    name
    for name, value in vars(TwinOperations).items()
    if not name.startswith("_") and callable(value)
)


def _check(operation: str) -> None:
    if operation not in OPERATIONS:
        raise errors.InvalidInputError(f"no twin operation {operation!r}")


async def invoke(
    target: TwinOperations,
    operation: str,
    patient_id: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
) -> Any:
    """Call ``operation`` on ``target`` (the receiving end of a forwarded call).

    Raises:
        InvalidInputError: ``operation`` is not one of :data:`OPERATIONS`.
    """
    _check(operation)
    return await getattr(target, operation)(patient_id, *args, **(kwargs or {}))


class Forwarding(abc.ABC):
    """A :class:`TwinOperations` whose every operation goes through :meth:`forward`.

    Subclasses implement :meth:`forward` (how a call reaches the twin's host); the operations
    are not restated.
    """

    @abc.abstractmethod
    async def forward(
        self, operation: str, patient_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Deliver one operation call to the patient's twin and return its result."""

    def __getattr__(self, operation: str) -> Any:
        if operation not in OPERATIONS:
            raise AttributeError(operation)

        async def call(patient_id: str, *args: Any, **kwargs: Any) -> Any:
            # Sequences become lists: they cross a process boundary as plain values.
            plain = tuple(list(a) if isinstance(a, tuple | list) else a for a in args)
            return await self.forward(operation, patient_id, plain, kwargs)

        call.__name__ = operation
        return call
