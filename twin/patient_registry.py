"""The stored form of a patient's identifiers, which every PatientRegistry adapter calls.

Identifiers are stored only sealed under the patient's data key (:class:`twin.ports.Sealer`),
bound to the patient, the kind ``"identifiers"`` and version 1: once the key is shredded they
cannot be opened anywhere. This module sits beside :mod:`twin.ports`, not in
:mod:`twin.domain`, because it takes a port (the domain layer may not import the ports).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from twin.domain.patients import Identifiers
from twin.ports import Sealer

__all__ = ["open_identifiers", "seal_identifiers"]


async def seal_identifiers(sealer: Sealer, patient_id: str, identifiers: Identifiers) -> bytes:
    """Identifiers as stored: JSON sealed to (patient, "identifiers", 1)."""
    plain = json.dumps(asdict(identifiers), sort_keys=True).encode()
    return await sealer.seal(patient_id, kind="identifiers", version=1, plaintext=plain)


async def open_identifiers(sealer: Sealer, patient_id: str, sealed: bytes) -> Identifiers:
    """The inverse of :func:`seal_identifiers` (raises KeyAccessError once erased)."""
    plain = await sealer.open(patient_id, kind="identifiers", version=1, sealed=sealed)
    return Identifiers(**json.loads(plain))
