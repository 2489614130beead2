"""Embedded adapters on the local filesystem: checkpoints and the key-encryption key file."""

from storage.local.checkpoints import LocalCheckpointStore
from storage.local.keys import LocalKeyProvider

__all__ = ["LocalCheckpointStore", "LocalKeyProvider"]
