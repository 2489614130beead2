"""S3 adapters (boto3): checkpoints and the erasure ledger, with SSE-KMS on every object."""

from storage.s3.checkpoints import S3CheckpointStore
from storage.s3.erasures import S3ErasureLedger

__all__ = ["S3CheckpointStore", "S3ErasureLedger"]
