output "checkpoint_bucket" {
  description = "Checkpoint bucket name (NOVAMIND_S3_BUCKET)."
  value       = aws_s3_bucket.checkpoints.bucket
}

output "checkpoint_bucket_arn" {
  description = "Checkpoint bucket ARN."
  value       = aws_s3_bucket.checkpoints.arn
}

output "audit_anchor_bucket" {
  description = "Object-Lock bucket for audit-chain heads (NOVAMIND_AUDIT_ANCHORS=s3://<it>/<env>)."
  value       = aws_s3_bucket.audit_anchors.bucket
}

output "audit_anchor_bucket_arn" {
  description = "Object-Lock bucket for audit-chain heads."
  value       = aws_s3_bucket.audit_anchors.arn
}

output "replica_bucket_arn" {
  description = "The checkpoint replica in the DR region."
  value       = aws_s3_bucket.replica.arn
}

output "access_log_bucket" {
  description = "Bucket for S3 server access logs and the load balancer's access logs."
  value       = aws_s3_bucket.access_logs.bucket
}

output "bucket_arns" {
  description = "Every PHI-bearing bucket (CloudTrail data events, AWS Backup)."
  value       = [aws_s3_bucket.checkpoints.arn, aws_s3_bucket.audit_anchors.arn]
}
