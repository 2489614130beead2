output "endpoint" {
  description = "Cluster endpoint."
  value       = aws_docdb_cluster.this.endpoint
}

output "master_secret_arn" {
  description = "Secrets Manager secret with the master password."
  value       = aws_secretsmanager_secret.master.arn
}

output "arn" {
  description = "The cluster (AWS Backup selects it)."
  value       = aws_docdb_cluster.this.arn
}
