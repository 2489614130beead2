# Object storage:
# - checkpoints: SSE-KMS (bucket key), versioned, public access blocked, TLS-only, lifecycle for
#   old versions, access-logged, replicated to a bucket in the DR region (its own replica key).
# - audit anchors: Object Lock in COMPLIANCE mode (nobody, root included, can delete or shorten
#   retention) for the audit chain heads; versioned, SSE-S3 (no PHI in them, and no KMS key whose
#   deletion could make a locked anchor unreadable), TLS-only, and a policy that refuses a PUT
#   without COMPLIANCE mode, without SSE-S3, or with a customer-provided key (SSE-C).
# Bucket names end in var.bucket_suffix before the account: a DR copy of an environment
# (docs/operations.md §5) sets it, so that its buckets do not collide with the primary's, whose
# Object-Locked anchor bucket can be neither deleted nor renamed.
# - access logs: the server access logs of both (SSE-S3: log delivery cannot use SSE-KMS).

terraform {
  required_providers {
    aws = {
      source                = "hashicorp/aws"
      configuration_aliases = [aws.dr]
    }
  }
}

data "aws_caller_identity" "current" {}

locals {
  account = data.aws_caller_identity.current.account_id
}

# --- access logs -------------------------------------------------------------------------------

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV2_AWS_62:No consumer of bucket events on the access-log bucket
  #checkov:skip=CKV_AWS_18:This is the access-log bucket itself; logging it into itself would loop
  #checkov:skip=CKV_AWS_144:Access logs stay in-region; the data buckets they describe are replicated
  #checkov:skip=CKV_AWS_145:S3 server access log delivery supports SSE-S3 only, not SSE-KMS
  bucket = "${var.name}-access-logs${var.bucket_suffix}-${local.account}"
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    id     = "keep-six-years"
    status = "Enabled"
    filter {}
    expiration {
      days = 2192
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# --- data buckets ------------------------------------------------------------------------------
# One explicit resource per bucket (no for_each): checkov connects a bucket to its settings by
# reference, which it cannot follow through for_each instances.

resource "aws_s3_bucket" "checkpoints" {
  #checkov:skip=CKV2_AWS_62:No consumer of bucket events: the application writes and reads itself
  bucket = "${var.name}-checkpoints${var.bucket_suffix}-${local.account}"
}

resource "aws_s3_bucket_versioning" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "checkpoints" {
  bucket                  = aws_s3_bucket.checkpoints.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_logging" "checkpoints" {
  bucket        = aws_s3_bucket.checkpoints.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "checkpoints/"
}

resource "aws_s3_bucket_policy" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id
  policy = data.aws_iam_policy_document.tls_only["checkpoints"].json
}

resource "aws_s3_bucket" "audit_anchors" {
  #checkov:skip=CKV2_AWS_62:No consumer of bucket events: the application writes and reads itself
  #checkov:skip=CKV_AWS_144:Audit anchors are Object-Locked in place; AWS Backup copies them to the DR region
  #checkov:skip=CKV_AWS_145:Anchors hold no PHI (lengths, hashes, times); SSE-S3 so that no KMS key deletion can make COMPLIANCE-locked anchors unreadable
  bucket              = "${var.name}-audit-anchors${var.bucket_suffix}-${local.account}"
  object_lock_enabled = true
}

resource "aws_s3_bucket_versioning" "audit_anchors" {
  bucket = aws_s3_bucket.audit_anchors.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audit_anchors" {
  bucket = aws_s3_bucket.audit_anchors.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "audit_anchors" {
  bucket                  = aws_s3_bucket.audit_anchors.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_logging" "audit_anchors" {
  bucket        = aws_s3_bucket.audit_anchors.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "audit-anchors/"
}

resource "aws_s3_bucket_policy" "audit_anchors" {
  bucket = aws_s3_bucket.audit_anchors.id
  policy = data.aws_iam_policy_document.tls_only["audit_anchors"].json
}

# TLS (1.2 or later) only. No static checkov check covers this (security-reliability.md §3):
# tests/deploy/test_terraform.py asserts it for every bucket policy.
data "aws_iam_policy_document" "tls_only" {
  for_each = {
    checkpoints   = aws_s3_bucket.checkpoints.arn
    audit_anchors = aws_s3_bucket.audit_anchors.arn
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value, "${each.value}/*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyTlsBelow12"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value, "${each.value}/*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }

  # Audit anchors: every PUT carries COMPLIANCE mode (an anchor without it would take only the
  # bucket's default, which an explicit date could shorten), SSE-S3 and no customer-provided
  # key (an SSE-C anchor could be read by no one else). The application always sends all three.
  dynamic "statement" {
    for_each = each.key == "audit_anchors" ? [each.value] : []
    content {
      sid       = "AnchorsOnlyInComplianceMode"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${statement.value}/*"]
      principals {
        type        = "AWS"
        identifiers = ["*"]
      }
      condition {
        test     = "StringNotEquals"
        variable = "s3:x-amz-object-lock-mode"
        values   = ["COMPLIANCE"]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "audit_anchors" ? [each.value] : []
    content {
      sid       = "AnchorsOnlyUnderSseS3"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${statement.value}/*"]
      principals {
        type        = "AWS"
        identifiers = ["*"]
      }
      condition {
        test     = "StringNotEquals"
        variable = "s3:x-amz-server-side-encryption"
        values   = ["AES256"]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "audit_anchors" ? [each.value] : []
    content {
      sid       = "NoCustomerKeysOnAnchors"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${statement.value}/*"]
      principals {
        type        = "AWS"
        identifiers = ["*"]
      }
      condition {
        test     = "Null"
        variable = "s3:x-amz-server-side-encryption-customer-algorithm"
        values   = ["false"]
      }
    }
  }

  # The erasure ledger (docs/operations.md §7) only grows: an erasure, once noted, stays, or a
  # restore could bring the patient back. Lifecycle rules are not subject to bucket policies.
  dynamic "statement" {
    for_each = each.key == "checkpoints" ? [each.value] : []
    content {
      sid       = "KeepTheErasureLedger"
      effect    = "Deny"
      actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
      resources = ["${statement.value}/erasure-ledger/*"]
      principals {
        type        = "AWS"
        identifiers = ["*"]
      }
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id
  rule {
    # Checkpoints are derived (event log + replay rebuilds them): old versions go after 30 days.
    id     = "old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "audit_anchors" {
  bucket = aws_s3_bucket.audit_anchors.id
  rule {
    id     = "abort-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_object_lock_configuration" "audit_anchors" {
  bucket = aws_s3_bucket.audit_anchors.id
  rule {
    default_retention {
      mode = "COMPLIANCE"
      days = var.audit_retention_days
    }
  }
}

# --- replication to the DR region --------------------------------------------------------------

resource "aws_s3_bucket" "replica" {
  provider = aws.dr
  #checkov:skip=CKV_AWS_144:This is the replication destination
  #checkov:skip=CKV2_AWS_62:No consumer of bucket events on the replica
  #checkov:skip=CKV_AWS_18:The DR replica is written only by S3 replication (logged at the source)

  bucket = "${var.name}-checkpoints${var.bucket_suffix}-dr-${local.account}"
}

resource "aws_s3_bucket_versioning" "replica" {
  provider = aws.dr

  bucket = aws_s3_bucket.replica.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "replica" {
  provider = aws.dr

  bucket = aws_s3_bucket.replica.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.dr_kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "replica" {
  provider = aws.dr

  bucket                  = aws_s3_bucket.replica.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "replica" {
  provider = aws.dr

  bucket = aws_s3_bucket.replica.id
  rule {
    id     = "old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "replication" {
  statement {
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.checkpoints.arn]
  }
  statement {
    actions   = ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"]
    resources = ["${aws_s3_bucket.checkpoints.arn}/*"]
  }
  statement {
    actions   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
    resources = ["${aws_s3_bucket.replica.arn}/*"]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
  statement {
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.dr_kms_key_arn]
  }
}

module "replication_role" {
  source          = "../service-role"
  name            = "${var.name}-s3-replication"
  service         = "s3.amazonaws.com"
  inline_policies = { replicate-checkpoints = data.aws_iam_policy_document.replication.json }
}

resource "aws_s3_bucket_replication_configuration" "checkpoints" {
  bucket = aws_s3_bucket.checkpoints.id
  role   = module.replication_role.arn

  rule {
    id     = "to-dr-region"
    status = "Enabled"
    filter {}
    delete_marker_replication {
      status = "Enabled"
    }
    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }
    destination {
      bucket        = aws_s3_bucket.replica.arn
      storage_class = "STANDARD"
      encryption_configuration {
        replica_kms_key_id = var.dr_kms_key_arn
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.checkpoints, aws_s3_bucket_versioning.replica]
}

# The load balancer writes its access logs into the access-log bucket; TLS only for everyone.
data "aws_elb_service_account" "this" {}

data "aws_iam_policy_document" "access_logs" {
  statement {
    sid       = "LoadBalancerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${local.account}/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.this.arn]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json
}
