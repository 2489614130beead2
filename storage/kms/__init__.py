"""AWS KMS key provider (boto3)."""

from storage.kms.provider import KmsKeyProvider

__all__ = ["KmsKeyProvider"]
