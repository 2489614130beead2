"""Embedded adapters on the local filesystem.

Checkpoints, the key-encryption key file and local development secrets.
"""

from storage.local.checkpoints import LocalCheckpointStore
from storage.local.keys import LocalKeyProvider
from storage.local.secrets import local_secret

__all__ = ["LocalCheckpointStore", "LocalKeyProvider", "local_secret"]
