output "key_arns" {
  description = "KMS key ARN by purpose (data-keys, storage, database, logs, eks)."
  value       = { for name, key in aws_kms_key.this : name => key.arn }
}

output "dr_key_arns" {
  description = "DR-region replica key ARN by purpose (multi-Region keys only)."
  value       = { for name, key in aws_kms_replica_key.dr : name => key.arn }
}

output "aliases" {
  description = "KMS alias by purpose."
  value       = { for name, alias in aws_kms_alias.this : name => alias.name }
}
