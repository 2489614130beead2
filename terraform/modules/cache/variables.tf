variable "name" {
  description = "Name prefix, e.g. novamind-prod."
  type        = string
}

variable "groups" {
  description = "Replication groups to create."
  type        = list(string)
  default     = ["app", "gcs"]
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
  description = "KMS key (database) for at-rest encryption and the auth-token secrets."
  type        = string
}

variable "node_type" {
  description = "Cache node type."
  type        = string
}

variable "replicas_per_group" {
  description = "Nodes per group (primary + replicas), at least 2 for failover."
  type        = number
  default     = 2
  validation {
    condition     = var.replicas_per_group >= 2
    error_message = "Automatic failover needs a replica."
  }
}

variable "snapshot_retention_days" {
  description = "Daily snapshots kept, days."
  type        = number
  default     = 7
}
