"""Embedded adapters on the local filesystem.

Checkpoints, the key-encryption key file, the erasure ledger and local development secrets.
"""

from storage.local.checkpoints import LocalCheckpointStore
from storage.local.erasures import LocalErasureLedger
from storage.local.keys import LocalKeyProvider
from storage.local.secrets import local_secret

__all__ = ["LocalCheckpointStore", "LocalErasureLedger", "LocalKeyProvider", "local_secret"]
