variable "name" {
  description = "Name prefix, e.g. novamind-prod."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Isolated subnets (three AZs)."
  type        = list(string)
}

variable "client_security_group_id" {
  description = "Security group of the EKS nodes."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key (database) for storage and the master secret."
  type        = string
}

variable "instance_class" {
  description = "Instance class."
  type        = string
}

variable "instances" {
  description = "Instances (one primary, the rest replicas in other AZs)."
  type        = number
  default     = 2
}

variable "backup_retention_days" {
  description = "Backup retention, days."
  type        = number
  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "DocumentDB keeps backups 7 to 35 days here."
  }
}
