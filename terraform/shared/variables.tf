# Shared by every environment root (symlinked); values in each terraform.tfvars.

variable "region" {
  description = "Primary AWS region."
  type        = string
}

variable "dr_region" {
  description = "Disaster-recovery region (another region than var.region)."
  type        = string
}

variable "availability_zones" {
  description = "Three availability zones of the primary region."
  type        = list(string)
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
