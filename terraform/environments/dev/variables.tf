variable "region" {
  description = "Primary AWS region."
  type        = string
  default     = "us-east-1"
}

variable "dr_region" {
  description = "Disaster-recovery region (must differ from region)."
  type        = string
  default     = "us-west-2"
  validation {
    condition     = length(var.dr_region) > 0
    error_message = "A DR region is required."
  }
}

variable "availability_zones" {
  description = "Three availability zones of the primary region."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b", "us-east-1c"]
}

variable "certificate_arn" {
  description = "ACM certificate of the API host name."
  type        = string
}

variable "allowed_cidrs" {
  description = "Client ranges admitted by the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}
