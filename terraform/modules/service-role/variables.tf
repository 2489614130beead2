variable "name" {
  description = "Role name."
  type        = string
}

variable "service" {
  description = "The service principal that assumes the role, e.g. backup.amazonaws.com."
  type        = string
}

variable "assume_actions" {
  description = "Actions the service may call on the role."
  type        = list(string)
  default     = ["sts:AssumeRole"]
}

variable "managed_policy_arns" {
  description = "AWS-managed policies to attach, by a static name."
  type        = map(string)
  default     = {}
}

variable "inline_policies" {
  description = "Inline policy documents (JSON), by policy name."
  type        = map(string)
  default     = {}
}
