"""Envelope encryption: one AES-256-GCM data key per patient, wrapped by a key provider.

Why ``cryptography``: its AESGCM is the audited OpenSSL implementation; hand-rolled crypto is
never an option for PHI.

Sealed format: ``b"NMS1"`` ‖ 12-byte random nonce ‖ ciphertext ‖ 16-byte tag. The associated data
is ``patient_id | kind | version``: a ciphertext copied to another patient, another object kind
or another sequence number fails authentication. Unwrapped data keys are cached in this process
(bounded LRU); :meth:`EnvelopeSealer.shred` drops the cached key and destroys the stored one.
Re-wrapping a data key under a new key-encryption key (``twin.service.keys``) leaves the data
key itself, and so this cache, valid.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from twin import errors, ports

__all__ = ["EnvelopeSealer"]

_MAGIC = b"NMS1"
_NONCE = 12


def _aad(patient_id: str, kind: str, version: int) -> bytes:
    return f"novamind|{patient_id}|{kind}|{version}".encode()


class EnvelopeSealer:
    """A :class:`twin.ports.Sealer` over a key provider and a data-key store.

    Args:
        keys: Wraps and unwraps data keys (KMS or a local key file).
        store: Where each patient's wrapped data key lives.
        cache_size: Unwrapped data keys kept in memory.
    """

    def __init__(
        self, keys: ports.KeyProvider, store: ports.DataKeyStore, *, cache_size: int = 4096
    ) -> None:
        self._keys = keys
        self._store = store
        # Ready AESGCM objects per patient (constructing one costs more than an encryption).
        self._cache: OrderedDict[str, AESGCM] = OrderedDict()
        self._cache_size = cache_size

    async def _cipher(self, patient_id: str, *, create: bool) -> AESGCM:
        cached = self._cache.get(patient_id)
        if cached is not None:
            self._cache.move_to_end(patient_id)
            return cached
        wrapped = await self._store.get(patient_id)
        if wrapped is None:
            if not create:
                raise errors.KeyAccessError("no data key: the patient's data was erased")
            fresh = AESGCM.generate_key(bit_length=256)
            wrapped = await self._store.put_if_absent(
                patient_id, await self._keys.wrap(fresh, context=patient_id)
            )
        cipher = AESGCM(await self._keys.unwrap(wrapped, context=patient_id))
        self._cache[patient_id] = cipher
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return cipher

    async def seal(self, patient_id: str, *, kind: str, version: int, plaintext: bytes) -> bytes:
        """Encrypt under the patient's data key (created on first use)."""
        cipher = await self._cipher(patient_id, create=True)
        nonce = os.urandom(_NONCE)
        return _MAGIC + nonce + cipher.encrypt(nonce, plaintext, _aad(patient_id, kind, version))

    async def open(self, patient_id: str, *, kind: str, version: int, sealed: bytes) -> bytes:
        """Decrypt and authenticate; any alteration or misplacement is refused."""
        if sealed[:4] != _MAGIC or len(sealed) < 4 + _NONCE + 16:
            raise errors.CheckpointCorruptError("not a sealed object")
        cipher = await self._cipher(patient_id, create=False)
        nonce, body = sealed[4 : 4 + _NONCE], sealed[4 + _NONCE :]
        try:
            return cipher.decrypt(nonce, body, _aad(patient_id, kind, version))
        except InvalidTag:
            raise errors.CheckpointCorruptError(
                f"integrity check failed for a sealed {kind}: altered, or not this patient's"
            ) from None

    async def shred(self, patient_id: str) -> bool:
        """Destroy the patient's data key (crypto-shredding)."""
        self._cache.pop(patient_id, None)
        return await self._store.delete(patient_id)
