"""S3 checkpoint store (boto3), with SSE-KMS on every object."""

from storage.s3.checkpoints import S3CheckpointStore

__all__ = ["S3CheckpointStore"]
