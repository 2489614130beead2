variable "name" {
  description = "Name prefix, e.g. novamind-prod."
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
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (dev only)."
  type        = bool
}

variable "node_groups" {
  description = "EKS managed node groups: instance types and size bounds."
  type = map(object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
  }))
}

variable "database_instance_class" {
  description = "RDS instance class."
  type        = string
}

variable "database_storage_gib" {
  description = "RDS allocated storage, GiB."
  type        = number
}

variable "multi_az" {
  description = "RDS Multi-AZ standby (staging, prod)."
  type        = bool
}

variable "backup_retention_days" {
  description = "RDS and DocumentDB backup retention, days (30 in prod, 7 elsewhere)."
  type        = number
}

variable "replicate_backups_to_dr" {
  description = "Copy RDS automated backups to the DR region (prod)."
  type        = bool
}

variable "cache_node_type" {
  description = "ElastiCache node type."
  type        = string
}

variable "documents_instance_class" {
  description = "DocumentDB instance class."
  type        = string
}

variable "documents_instances" {
  description = "DocumentDB instances."
  type        = number
}

variable "bucket_suffix" {
  description = "Appended to every S3 bucket name before the account: \"\" normally, e.g. \"-dr\" in a DR copy of an environment (docs/operations.md §5), whose buckets must not collide with the primary's."
  type        = string
  default     = ""
}
