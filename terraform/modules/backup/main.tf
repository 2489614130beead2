# AWS Backup for RDS, DocumentDB and the S3 buckets (resources tagged backup = novamind):
# - hourly: continuous backup (point-in-time restore for RDS and S3), kept 30 days;
# - daily full: snapshot at 05:00 UTC, kept 30 days, copied to the vault in the DR region.
# Vaults are encrypted with customer keys and locked against early deletion.

terraform {
  required_providers {
    aws = {
      source                = "hashicorp/aws"
      configuration_aliases = [aws.dr]
    }
  }
}

data "aws_partition" "current" {}

resource "aws_backup_vault" "primary" {
  name        = var.name
  kms_key_arn = var.kms_key_arn
}

resource "aws_backup_vault" "dr" {
  provider = aws.dr

  name        = "${var.name}-dr"
  kms_key_arn = var.dr_kms_key_arn
}

# Governance lock: recovery points cannot be deleted before their retention ends.
resource "aws_backup_vault_lock_configuration" "primary" {
  backup_vault_name  = aws_backup_vault.primary.name
  min_retention_days = 7
  max_retention_days = 365
}

resource "aws_backup_plan" "this" {
  name = var.name

  rule {
    rule_name                = "hourly-continuous"
    target_vault_name        = aws_backup_vault.primary.name
    schedule                 = "cron(0 * * * ? *)"
    enable_continuous_backup = true
    start_window             = 60
    completion_window        = 180
    lifecycle {
      delete_after = var.retention_days
    }
  }

  rule {
    rule_name         = "daily-full"
    target_vault_name = aws_backup_vault.primary.name
    schedule          = "cron(0 5 * * ? *)"
    start_window      = 60
    completion_window = 360
    lifecycle {
      delete_after = var.retention_days
    }
    copy_action {
      destination_vault_arn = aws_backup_vault.dr.arn
      lifecycle {
        delete_after = var.retention_days
      }
    }
  }
}

module "role" {
  source  = "../service-role"
  name    = "${var.name}-backup"
  service = "backup.amazonaws.com"
  managed_policy_arns = {
    for policy in [
      "service-role/AWSBackupServiceRolePolicyForBackup",
      "service-role/AWSBackupServiceRolePolicyForRestores",
      "AWSBackupServiceRolePolicyForS3Backup",
      "AWSBackupServiceRolePolicyForS3Restore",
    ] : policy => "arn:${data.aws_partition.current.partition}:iam::aws:policy/${policy}"
  }
}

resource "aws_backup_selection" "this" {
  name         = var.name
  plan_id      = aws_backup_plan.this.id
  iam_role_arn = module.role.arn
  resources    = var.resource_arns
}
