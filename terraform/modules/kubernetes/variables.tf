variable "name" {
  description = "Cluster name, e.g. novamind-prod."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.32"
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's address range (API access from inside it only)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Subnets for the control-plane interfaces and the nodes."
  type        = list(string)
}

variable "eks_kms_key_arn" {
  description = "KMS key for Kubernetes secrets and node volumes."
  type        = string
}

variable "logs_kms_key_arn" {
  description = "KMS key for the control-plane log group."
  type        = string
}

variable "log_retention_days" {
  description = "Control-plane log retention, days."
  type        = number
  default     = 365
}

variable "node_disk_gib" {
  description = "Root volume size of a node, GiB."
  type        = number
  default     = 100
}

variable "node_groups" {
  description = "Managed node groups: instance types and size bounds."
  type = map(object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
  }))
}

variable "app_namespace" {
  description = "Namespace of the application's ServiceAccount."
  type        = string
  default     = "novamind"
}

variable "app_service_account" {
  description = "The application's ServiceAccount (kuberay/base/serviceaccount.yaml)."
  type        = string
  default     = "novamind"
}

variable "checkpoint_bucket_arn" {
  description = "The checkpoint bucket the application reads and writes."
  type        = string
}

variable "audit_anchor_bucket_arn" {
  description = "The Object-Lock bucket for audit-chain heads."
  type        = string
}

variable "app_kms_key_arns" {
  description = "KMS keys the application uses (data keys, storage)."
  type        = list(string)
}
