"""Embedded adapters on the local filesystem.

Checkpoints, the key-encryption key file, the erasure ledger, the audit anchors and local
development secrets.
"""

from storage.local.audit_anchors import LocalAuditAnchorStore
from storage.local.checkpoints import LocalCheckpointStore
from storage.local.erasures import LocalErasureLedger
from storage.local.keys import LocalKeyProvider
from storage.local.secrets import local_secret, read_local_secret

__all__ = [
    "LocalAuditAnchorStore",
    "LocalCheckpointStore",
    "LocalErasureLedger",
    "LocalKeyProvider",
    "local_secret",
    "read_local_secret",
]
