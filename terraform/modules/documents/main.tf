# Amazon DocumentDB (MongoDB-compatible) for documents such as scenario reports (already sealed
# per patient by the application). Encrypted with a customer key, TLS required, audit and
# profiler logs exported, backups kept, deletion protection; the master password is generated
# by Secrets Manager and kept there.

resource "aws_docdb_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_security_group" "this" {
  name        = "${var.name}-docdb"
  description = "DocumentDB from the EKS nodes only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "DocumentDB (TLS) from the EKS nodes"
    from_port       = 27017
    to_port         = 27017
    protocol        = "tcp"
    security_groups = [var.client_security_group_id]
  }
}

resource "aws_docdb_cluster_parameter_group" "this" {
  name   = "${var.name}-docdb5"
  family = "docdb5.0"

  parameter {
    name  = "tls"
    value = "enabled"
  }
  parameter {
    name  = "audit_logs"
    value = "enabled"
  }
  parameter {
    name  = "profiler"
    value = "enabled"
  }
}

data "aws_secretsmanager_random_password" "master" {
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "master" {
  #checkov:skip=CKV2_AWS_57:Rotated by the documented procedure (docs/operations.md); DocumentDB rotation needs a Lambda we do not run
  name       = "${var.name}-docdb-master"
  kms_key_id = var.kms_key_arn
}

resource "aws_secretsmanager_secret_version" "master" {
  secret_id     = aws_secretsmanager_secret.master.id
  secret_string = data.aws_secretsmanager_random_password.master.random_password

  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_docdb_cluster" "this" {
  cluster_identifier              = var.name
  engine                          = "docdb"
  engine_version                  = "5.0.0"
  master_username                 = "novamind_admin"
  master_password                 = aws_secretsmanager_secret_version.master.secret_string
  db_subnet_group_name            = aws_docdb_subnet_group.this.name
  vpc_security_group_ids          = [aws_security_group.this.id]
  db_cluster_parameter_group_name = aws_docdb_cluster_parameter_group.this.name
  storage_encrypted               = true
  kms_key_id                      = var.kms_key_arn
  backup_retention_period         = var.backup_retention_days
  preferred_backup_window         = "03:00-04:00"
  enabled_cloudwatch_logs_exports = ["audit", "profiler"]
  deletion_protection             = true
  skip_final_snapshot             = false
  final_snapshot_identifier       = "${var.name}-docdb-final"
  tags                            = { backup = "novamind" }

  lifecycle {
    ignore_changes = [master_password]
  }
}

resource "aws_docdb_cluster_instance" "this" {
  count = var.instances

  identifier                 = "${var.name}-docdb-${count.index}"
  cluster_identifier         = aws_docdb_cluster.this.id
  instance_class             = var.instance_class
  auto_minor_version_upgrade = true
}
