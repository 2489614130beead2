output "primary_endpoints" {
  description = "Primary endpoint address by group (app, gcs)."
  value       = { for name, group in aws_elasticache_replication_group.this : name => group.primary_endpoint_address }
}

output "auth_secret_arns" {
  description = "Secrets Manager secret with each group's auth token."
  value       = { for name, secret in aws_secretsmanager_secret.auth : name => secret.arn }
}
