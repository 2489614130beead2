variable "name" {
  description = "Name prefix, e.g. novamind-prod."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key (storage) for SSE-KMS."
  type        = string
}

variable "dr_kms_key_arn" {
  description = "The storage key's replica in the DR region (replica bucket encryption)."
  type        = string
}

variable "audit_retention_days" {
  description = "Object Lock retention of audit-chain anchors, days (six years: 45 CFR 164.316)."
  type        = number
  default     = 2192
}

variable "bucket_suffix" {
  description = "Appended to every bucket name before the account (\"\" normally; e.g. \"-dr\" in a DR copy of an environment, docs/operations.md §5)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(-[a-z0-9]{1,8})?$", var.bucket_suffix))
    error_message = "bucket_suffix: empty, or a hyphen and 1-8 lowercase letters or digits."
  }
}
