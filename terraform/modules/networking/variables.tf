variable "name" {
  description = "Name prefix, e.g. novamind-prod."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's /16 (kuberay/base NetworkPolicies assume 10.0.0.0/16)."
  type        = string
  default     = "10.0.0.0/16"
}

variable "availability_zones" {
  description = "At least three availability zones."
  type        = list(string)
  validation {
    condition     = length(var.availability_zones) >= 3
    error_message = "Three availability zones are needed (Multi-AZ databases, spread workers)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per AZ (dev only: cheaper, one AZ's failure cuts egress)."
  type        = bool
  default     = false
}

variable "logs_kms_key_arn" {
  description = "KMS key for the flow-log group."
  type        = string
}

variable "log_retention_days" {
  description = "Flow-log retention, days (at least a year)."
  type        = number
  default     = 365
}
