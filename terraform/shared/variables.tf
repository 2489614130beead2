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

variable "bucket_suffix" {
  description = "Appended to every S3 bucket name before the account: \"\" normally, e.g. \"-dr\" in a DR copy of an environment (docs/operations.md §5), whose buckets must not collide with the primary's."
  type        = string
  default     = ""
}
