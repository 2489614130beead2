# Shared by every environment root (symlinked): what kuberay/overlays/<env> and the secret
# store need (`terraform output -json platform`).

output "platform" {
  description = "Role ARN, bucket, KMS aliases, endpoints, load balancer and target group."
  value       = module.novamind
}
