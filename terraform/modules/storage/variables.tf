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
