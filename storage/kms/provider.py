"""Data keys wrapped by AWS KMS: ``Encrypt``/``Decrypt`` with an encryption context.

The encryption context ``{"novamind:patient": <patient id>}`` is bound into the ciphertext by
KMS, so a wrapped key copied to another patient does not decrypt, and every unwrap appears in
CloudTrail with the patient it was for. Rotation: KMS rotates the key material behind the same
key id (old material stays usable for decryption); moving to a new key id means setting it and
re-wrapping every data key (``novamind keys rotate``). Unwrap needs no key id: the ciphertext
names its key, so keys under the old id keep unwrapping until that key is disabled.
"""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from twin import errors, ports

__all__ = ["KmsKeyProvider"]


class KmsKeyProvider:
    """A :class:`twin.ports.KeyProvider` on AWS KMS.

    Args:
        client: A boto3 KMS client.
        key_id: Key id, ARN or alias used for new wraps.
    """

    def __init__(self, client: Any, key_id: str) -> None:
        self._kms = client
        self._key_id = key_id

    @staticmethod
    def _context(context: str) -> dict[str, str]:
        return {"novamind:patient": context}

    async def current_kek_id(self) -> str:
        """The configured key id."""
        return self._key_id

    async def wrap(self, data_key: bytes, *, context: str) -> ports.WrappedKey:
        """KMS ``Encrypt`` bound to the patient."""
        try:
            out = await asyncio.to_thread(
                self._kms.encrypt,
                KeyId=self._key_id,
                Plaintext=data_key,
                EncryptionContext=self._context(context),
            )
        except (ClientError, BotoCoreError) as exc:
            raise errors.StorageUnavailableError(
                f"KMS unavailable ({type(exc).__name__})"
            ) from None
        return ports.WrappedKey(self._key_id, bytes(out["CiphertextBlob"]))

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
                raise errors.KeyAccessError("data key does not unwrap for this context") from None
            raise errors.StorageUnavailableError(f"KMS error {code}; retry") from None
        except BotoCoreError as exc:
            raise errors.StorageUnavailableError(
                f"KMS unavailable ({type(exc).__name__})"
            ) from None
        return bytes(out["Plaintext"])
