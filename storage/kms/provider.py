"""Data keys wrapped by AWS KMS: ``Encrypt``/``Decrypt`` with an encryption context.

The encryption context ``{"novamind:patient": <patient id>}`` is bound into the ciphertext by
KMS, so a wrapped key copied to another patient does not decrypt, and every unwrap appears in
CloudTrail with the patient it was for. Rotation: KMS rotates the key material behind the same
key id (old material stays usable for decryption); moving to a new key means setting its id and
re-wrapping every data key (``novamind keys rotate``). Unwrap needs no key id: the ciphertext
names its key, so keys under the old one keep unwrapping until that key is disabled.

A wrapped key records the key ARN that ``Encrypt`` answers with, whatever spelling the settings
use (key id, key ARN, alias name or alias ARN): one key has one id in the data-key table, so
counting the keys under it, and comparing with the current key, cannot be fooled by spellings.
The current key is the configured id resolved with ``DescribeKey`` (kept 60 s, so a re-pointed
alias is followed within a minute). It is the only source of "current": ``Encrypt``'s answer
never replaces it, since during an alias's propagation Encrypt may still answer with the old
key, and a rotation would then take the old key for current again.

KMS refusing a key (disabled, access denied, not found) is
:class:`~twin.errors.KeyUnavailableError`; KMS unreachable or throttling is
:class:`~twin.errors.StorageUnavailableError` (both 503: nothing is erased).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from twin import errors, ports
from twin.domain.patients import DATA_KEY_DAMAGED

__all__ = ["KmsKeyProvider"]

#: KMS answers that say the key itself is refused: retrying as it is will not help.
_REFUSED = frozenset({
    "AccessDeniedException",
    "DisabledException",
    "InvalidKeyUsageException",
    "KMSInvalidStateException",
    "NotFoundException",
    "UnrecognizedClientException",
})  # fmt: skip


#: ``DescribeKey`` answers that mean the id names no key (unknown, or not a key id at all).
_NO_SUCH_KEY = frozenset({"NotFoundException", "InvalidArnException", "ValidationException"})


def _failure(exc: ClientError | BotoCoreError) -> errors.StorageUnavailableError:
    """The error a failed KMS call is raised as (never the request, which holds key bytes)."""
    if isinstance(exc, BotoCoreError):
        return errors.StorageUnavailableError(f"KMS unavailable ({type(exc).__name__})")
    code = str(exc.response.get("Error", {}).get("Code", ""))[:64]
    if code in _REFUSED:
        return errors.KeyUnavailableError(f"KMS refuses the key ({code})")
    return errors.StorageUnavailableError(f"KMS error {code}; retry")


class KmsKeyProvider:
    """A :class:`twin.ports.KeyProvider` on AWS KMS.

    Args:
        client: A boto3 KMS client.
        key_id: Key id, key ARN, alias name or alias ARN of the key new keys are wrapped under.
        resolve_ttl_s: Seconds the configured key's ARN is kept before ``DescribeKey`` again.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        client: Any,
        key_id: str,
        *,
        resolve_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kms = client
        self._key_id = key_id
        self._ttl = resolve_ttl_s
        self._clock = clock
        self._current: tuple[str, float] | None = None

    @staticmethod
    def _context(context: str) -> dict[str, str]:
        return {"novamind:patient": context}

    async def _metadata(self, key_id: str) -> dict[str, Any] | None:
        """``DescribeKey``'s ``KeyMetadata`` for ``key_id`` (any spelling); ``None``: no such key.

        Raises:
            KeyUnavailableError: KMS refuses to describe it (access denied).
            StorageUnavailableError: KMS cannot be reached.
        """
        try:
            out = await asyncio.to_thread(self._kms.describe_key, KeyId=key_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NO_SUCH_KEY:
                return None
            raise _failure(exc) from None
        except BotoCoreError as exc:
            raise _failure(exc) from None
        metadata: dict[str, Any] = out["KeyMetadata"]
        return metadata

    async def describe(self, key_id: str) -> str | None:
        """The ARN of the key ``key_id`` names (any spelling); ``None`` when KMS has none.

        Raises:
            KeyUnavailableError: KMS refuses to describe it (access denied).
            StorageUnavailableError: KMS cannot be reached.
        """
        metadata = await self._metadata(key_id)
        return None if metadata is None else str(metadata["Arn"])

    async def key_state(self, key_id: str) -> str | None:
        """The KMS ``KeyState`` of the key ``key_id`` names (``"Enabled"``: it decrypts).

        Returns:
            ``"Enabled"``, ``"Disabled"``, ``"PendingDeletion"``, ...; ``None`` when KMS has no
            such key.

        Raises:
            KeyUnavailableError: KMS refuses to describe it (access denied).
            StorageUnavailableError: KMS cannot be reached.
        """
        metadata = await self._metadata(key_id)
        return None if metadata is None else str(metadata.get("KeyState", ""))[:64]

    async def current_kek_id(self) -> str:
        """The ARN of the configured key (``DescribeKey``, kept ``resolve_ttl_s``).

        Raises:
            KeyUnavailableError: KMS has no such key, or refuses it.
        """
        now = self._clock()
        if self._current is None or now - self._current[1] >= self._ttl:
            arn = await self.describe(self._key_id)
            if arn is None:
                raise errors.KeyUnavailableError("KMS has no key by the configured key id")
            self._current = (arn, now)
        return self._current[0]

    async def wrap(self, data_key: bytes, *, context: str) -> ports.WrappedKey:
        """KMS ``Encrypt`` bound to the patient, recorded under the key ARN KMS used."""
        try:
            out = await asyncio.to_thread(
                self._kms.encrypt,
                KeyId=self._key_id,
                Plaintext=data_key,
                EncryptionContext=self._context(context),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc) from None
        return ports.WrappedKey(str(out["KeyId"]), bytes(out["CiphertextBlob"]))

    async def unwrap(self, wrapped: ports.WrappedKey, *, context: str) -> bytes:
        """KMS ``Decrypt``; a wrong context or damaged blob is refused."""
        try:
            out = await asyncio.to_thread(
                self._kms.decrypt,
                CiphertextBlob=wrapped.blob,
                EncryptionContext=self._context(context),
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise errors.DataKeyDamagedError(DATA_KEY_DAMAGED) from None
            raise _failure(exc) from None
        except BotoCoreError as exc:
            raise _failure(exc) from None
        return bytes(out["Plaintext"])
