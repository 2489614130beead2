"""The model registry of population prior sets, kept as documents.

- ``prior_set/<version>``: a :class:`PriorSetRecord` (the fitted values, the estimator, its fit
  diagnostics and the data it was fitted on, as counts and moments, never a patient's value);
  immutable once written.
- ``prior_set_active/active``: which version new twins take (the shipped joint fit,
  ``twin.model.priors.LITERATURE``, when none was activated).
- ``prior_assignment/<patient id>``: the version a patient's twin was created with (a document
  of the patient: erasure deletes it). The twin's state records it too; this copy lets a twin
  rebuilt from its log alone (every checkpoint lost) keep its set.

The sets that ship with the code (``twin.model.priors.SHIPPED``: ``builtin``, the defaults of
docs/model.md §6, the first joint fit and the current joint fit of the published targets) are
always available.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field

from twin import errors, ports
from twin.model.parameters import PopulationParameters
from twin.model.priors import BUILTIN_VERSION, LITERATURE, SHIPPED, PriorSet

__all__ = [
    "ACTIVE",
    "ASSIGNMENT",
    "COLLECTION",
    "DocumentPriorRegistry",
    "PriorParameters",
    "PriorSetRecord",
]

COLLECTION = "prior_set"
ACTIVE = "prior_set_active"
ASSIGNMENT = "prior_assignment"


class PriorSetRecord(BaseModel):
    """A prior set in the registry, with how it was obtained."""

    version: str
    overrides: dict[str, float]
    estimator: str = Field(description="how the values were estimated")
    created_at: str = Field(description="UTC, ISO 8601")
    diagnostics: dict[str, Any] = Field(default_factory=dict)

    def prior_set(self) -> PriorSet:
        """The set itself (validated)."""
        return PriorSet(self.version, dict(self.overrides))


class DocumentPriorRegistry:
    """Prior sets over the :class:`twin.ports.DocumentStore` port.

    Args:
        documents: Where the records live.
        assign: Record the active set for a patient who has none yet (:meth:`for_patient`).
            ``False``: nothing is ever written (a read-only view, such as a drill's comparison
            of restored twins).
    """

    def __init__(self, documents: ports.DocumentStore, *, assign: bool = True) -> None:
        self._documents = documents
        self._assign = assign
        self._cache: dict[str, PriorSet] = dict(SHIPPED)

    async def save(self, record: PriorSetRecord) -> None:
        """Store a new version (refused if the version exists: records are immutable)."""
        record.prior_set()  # validates the version and values
        if record.version in SHIPPED or await self._documents.get(COLLECTION, record.version):
            raise errors.InvalidInputError(f"prior set {record.version!r} already exists")
        body = record.model_dump_json().encode()
        await self._documents.put(
            ports.Document(COLLECTION, record.version, None, body, time.time())
        )

    async def record(self, version: str) -> PriorSetRecord:
        """The stored record of a version.

        Raises:
            NotFoundError: No such version (the shipped sets have no record).
        """
        found = await self._documents.get(COLLECTION, version)
        if found is None:
            raise errors.NotFoundError(f"no prior set {version!r}")
        return PriorSetRecord.model_validate_json(found.body)

    async def get(self, version: str) -> PriorSet:
        """A prior set by version (cached: versions never change).

        Raises:
            NotFoundError: No such version.
        """
        cached = self._cache.get(version)
        if cached is None:
            cached = (await self.record(version)).prior_set()
            self._cache[version] = cached
        return cached

    async def activate(self, version: str) -> None:
        """Make ``version`` the one new twins take."""
        await self.get(version)  # it must exist
        body = json.dumps({"version": version}).encode()
        await self._documents.put(ports.Document(ACTIVE, "active", None, body, time.time()))

    async def active(self) -> PriorSet:
        """The set new twins take."""
        found = await self._documents.get(ACTIVE, "active")
        if found is None:
            return LITERATURE
        return await self.get(str(json.loads(found.body)["version"]))

    async def for_patient(self, patient_id: str) -> PriorSet:
        """The set recorded for the patient's twin, else the active one (recorded now)."""
        found = await self._documents.get(ASSIGNMENT, patient_id)
        if found is not None:
            return await self.get(str(json.loads(found.body)["version"]))
        chosen = await self.active()
        if not self._assign:
            return chosen
        body = json.dumps({"version": chosen.version}).encode()
        await self._documents.put(
            ports.Document(ASSIGNMENT, patient_id, patient_id, body, time.time())
        )
        return chosen


class PriorParameters:
    """Prior versions resolved to parameters, cached (versions never change).

    Args:
        registry: The model registry, or ``None`` (new twins then take the host's configured
            parameters, recorded as ``builtin``).
        builtin: The parameters of the built-in set (the host's configured parameters).
    """

    def __init__(
        self, registry: ports.PriorRegistry | None, builtin: PopulationParameters | None = None
    ) -> None:
        self._registry = registry
        self._params: dict[str, PopulationParameters] = {
            version: prior.parameters() for version, prior in SHIPPED.items()
        }
        self._params[BUILTIN_VERSION] = builtin or PopulationParameters()

    async def of(self, version: str) -> PopulationParameters:
        """The parameters of ``version``.

        Raises:
            NotFoundError: The twin names a version the registry does not have.
            ConfigurationError: A non-built-in version but no registry configured.
        """
        found = self._params.get(version)
        if found is None:
            if self._registry is None:
                raise errors.ConfigurationError(f"prior set {version!r} needs the model registry")
            found = (await self._registry.get(version)).parameters()
            self._params[version] = found
        return found

    async def for_new_twin(self, patient_id: str) -> tuple[str, PopulationParameters]:
        """The version (and its parameters) a twin built without a checkpoint starts from.

        That is the version recorded for the patient, or the active one for a new patient
        (built-in without a registry).
        """
        if self._registry is None:
            return BUILTIN_VERSION, self._params[BUILTIN_VERSION]
        version = (await self._registry.for_patient(patient_id)).version
        return version, await self.of(version)
