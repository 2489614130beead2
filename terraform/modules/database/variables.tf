variable "name" {
  description = "Instance identifier, e.g. novamind-prod."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Isolated database subnets (three AZs)."
  type        = list(string)
}

variable "client_security_group_id" {
  description = "Security group of the EKS nodes (the only clients)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key (database) for storage, Performance Insights and the master secret."
  type        = string
}

variable "dr_kms_key_arn" {
  description = "KMS key in the DR region for the replicated automated backups."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL version."
  type        = string
  default     = "16.6"
}

variable "instance_class" {
  description = "Instance class."
  type        = string
}

variable "storage_gib" {
  description = "Allocated storage, GiB (autoscaling up to four times this)."
  type        = number
}

variable "multi_az" {
  description = "Synchronous standby in a second AZ (prod and staging)."
  type        = bool
}

variable "backup_retention_days" {
  description = "Automated backup and point-in-time recovery window, days (30 in prod, 7 elsewhere)."
  type        = number
  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "Backups are kept 7 to 35 days (RDS maximum 35)."
  }
}

variable "replicate_backups_to_dr" {
  description = "Copy automated backups to the DR region."
  type        = bool
  default     = false
}
