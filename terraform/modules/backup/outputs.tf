output "vault_arn" {
  description = "Primary backup vault."
  value       = aws_backup_vault.primary.arn
}

output "dr_vault_arn" {
  description = "Copy vault in the DR region."
  value       = aws_backup_vault.dr.arn
}
