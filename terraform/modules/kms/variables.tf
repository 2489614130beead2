variable "name" {
  description = "Name prefix, e.g. novamind-prod."
  type        = string
}
