# Customer-managed KMS keys, one per purpose, with yearly rotation and an explicit key policy
# (the account administers; only the named AWS services may use a key on the account's behalf).
#
# - data-keys: wraps every patient's data key (envelope encryption; crypto-shredding deletes
#   the wrapped key). Multi-Region, replicated to the DR region so a restore there can unwrap.
# - storage: S3 (checkpoints, backups), multi-Region for the replica bucket (audit anchors use
#   SSE-S3: they hold no PHI, and a key deletion must not make locked anchors unreadable).
# - database: RDS, ElastiCache, DocumentDB, Performance Insights.
# - logs: CloudWatch Logs, CloudTrail, VPC flow logs.
# - eks: Kubernetes secrets envelope encryption.

terraform {
  required_providers {
    aws = {
      source                = "hashicorp/aws"
      configuration_aliases = [aws.dr]
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  keys = {
    data-keys = { multi_region = true, services = [] }
    storage   = { multi_region = true, services = ["s3.amazonaws.com", "backup.amazonaws.com"] }
    database  = { multi_region = false, services = ["rds.amazonaws.com", "elasticache.amazonaws.com"] }
    logs = {
      multi_region = false
      services     = ["logs.${data.aws_region.current.name}.amazonaws.com", "cloudtrail.amazonaws.com", "delivery.logs.amazonaws.com"]
    }
    eks = { multi_region = false, services = ["eks.amazonaws.com"] }
  }
}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:A key policy's resource "*" is the key itself; the account root administers it (AWS default key policy)
  #checkov:skip=CKV_AWS_111:A key policy's resource "*" is the key itself; write access is the account's own
  #checkov:skip=CKV_AWS_356:In a key policy "*" can only mean this key
  for_each = local.keys

  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy "*" means this key
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  dynamic "statement" {
    for_each = length(each.value.services) > 0 ? [1] : []
    content {
      sid       = "ServicesUseTheKeyForThisAccount"
      actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant"]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = each.value.services
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  for_each = local.keys

  description             = "${var.name} ${each.key}"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  multi_region            = each.value.multi_region
  policy                  = data.aws_iam_policy_document.key[each.key].json
}

resource "aws_kms_alias" "this" {
  for_each = local.keys

  name          = "alias/${var.name}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}

# Replicas in the DR region: the same key material, so data keys and S3 replicas restored there
# decrypt without re-encryption.
resource "aws_kms_replica_key" "dr" {
  for_each = { for name, key in local.keys : name => key if key.multi_region }
  provider = aws.dr

  description             = "${var.name} ${each.key} (DR replica)"
  primary_key_arn         = aws_kms_key.this[each.key].arn
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key[each.key].json
}
