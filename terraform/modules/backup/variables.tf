variable "name" {
  description = "Name prefix, e.g. novamind-prod."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key (storage) of the primary vault."
  type        = string
}

variable "dr_kms_key_arn" {
  description = "KMS key in the DR region for the copy vault."
  type        = string
}

variable "retention_days" {
  description = "Recovery points kept, days."
  type        = number
  default     = 30
}

variable "resource_arns" {
  description = "What is backed up: the RDS instance, the DocumentDB cluster, the S3 buckets."
  type        = list(string)
}
