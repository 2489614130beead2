"""S3 adapters (boto3): checkpoints, the erasure ledger and the audit anchors (SSE-KMS)."""

from storage.s3.audit_anchors import S3AuditAnchorStore
from storage.s3.checkpoints import S3CheckpointStore
from storage.s3.erasures import S3ErasureLedger

__all__ = ["S3AuditAnchorStore", "S3CheckpointStore", "S3ErasureLedger"]
