variable "name" {
  description = "Name prefix, e.g. novamind-prod."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key (logs) for the trail, its bucket, log group and topic."
  type        = string
}

variable "log_retention_days" {
  description = "CloudWatch retention of the trail, days (six years)."
  type        = number
  default     = 2192
}

variable "phi_bucket_arns" {
  description = "Buckets whose object reads and writes are recorded (data events)."
  type        = list(string)
}
