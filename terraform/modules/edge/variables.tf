variable "name" {
  description = "Name prefix, e.g. novamind-prod."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's range (the load balancer reaches Serve inside it)."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the load balancer."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate of the API's host name."
  type        = string
}

variable "allowed_cidrs" {
  description = "Who may connect (the clinics' ranges, or the internet)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "access_log_bucket" {
  description = "Bucket for the load balancer's access logs."
  type        = string
}

variable "rate_limit_per_5_minutes" {
  description = "Requests per client IP per 5 minutes before WAF blocks (the API also limits per caller)."
  type        = number
  default     = 6000
}

variable "logs_kms_key_arn" {
  description = "KMS key for the WAF log group."
  type        = string
}

variable "log_retention_days" {
  description = "WAF log retention, days."
  type        = number
  default     = 365
}
