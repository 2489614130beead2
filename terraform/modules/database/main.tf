# RDS PostgreSQL: the event log, audit trail, registry, data keys and index. Encrypted with a
# customer key, TLS enforced by the parameter group, IAM authentication on, master password
# managed by Secrets Manager (never in state or code), Multi-AZ and 30-day backups in prod
# (7 elsewhere) with point-in-time recovery, deletion protection, logs to CloudWatch, and in
# prod the automated backups replicated to the DR region.

terraform {
  required_providers {
    aws = {
      source                = "hashicorp/aws"
      configuration_aliases = [aws.dr]
    }
  }
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_security_group" "this" {
  name        = "${var.name}-postgres"
  description = "PostgreSQL from the EKS nodes only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "PostgreSQL from the EKS nodes"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [var.client_security_group_id]
  }
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.name}-postgres16"
  family = "postgres16"

  # TLS for every connection (the app connects with sslmode=verify-full).
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  # Durability: an acknowledged event is committed to the WAL on disk (never turned off).
  parameter {
    name  = "synchronous_commit"
    value = "on"
  }
  # Statement logging without PHI: DDL and slow statements, never bind parameter values.
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
  parameter {
    name  = "log_parameter_max_length"
    value = "0"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
  parameter {
    name  = "log_disconnections"
    value = "1"
  }
}

data "aws_partition" "current" {}

module "monitoring_role" {
  source  = "../service-role"
  name    = "${var.name}-rds-monitoring"
  service = "monitoring.rds.amazonaws.com"
  managed_policy_arns = {
    monitoring = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
  }
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_157:Multi-AZ is an input: true in staging and prod, false in dev to halve its cost (asserted by tests/deploy/test_terraform.py)
  identifier                            = var.name
  engine                                = "postgres"
  engine_version                        = var.engine_version
  instance_class                        = var.instance_class
  allocated_storage                     = var.storage_gib
  max_allocated_storage                 = var.storage_gib * 4
  storage_type                          = "gp3"
  storage_encrypted                     = true
  kms_key_id                            = var.kms_key_arn
  db_name                               = "novamind"
  username                              = "novamind_admin"
  manage_master_user_password           = true
  master_user_secret_kms_key_id         = var.kms_key_arn
  iam_database_authentication_enabled   = true
  db_subnet_group_name                  = aws_db_subnet_group.this.name
  vpc_security_group_ids                = [aws_security_group.this.id]
  parameter_group_name                  = aws_db_parameter_group.this.name
  publicly_accessible                   = false
  multi_az                              = var.multi_az
  backup_retention_period               = var.backup_retention_days
  backup_window                         = "03:00-04:00"
  maintenance_window                    = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot                 = true
  deletion_protection                   = true
  skip_final_snapshot                   = false
  final_snapshot_identifier             = "${var.name}-final"
  auto_minor_version_upgrade            = true
  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = module.monitoring_role.arn
  tags                                  = { backup = "novamind" }
}

# Automated backups (snapshots + transaction logs: point-in-time restore) copied to the DR region.
resource "aws_db_instance_automated_backups_replication" "dr" {
  count    = var.replicate_backups_to_dr ? 1 : 0
  provider = aws.dr

  source_db_instance_arn = aws_db_instance.this.arn
  kms_key_id             = var.dr_kms_key_arn
  retention_period       = var.backup_retention_days
}
