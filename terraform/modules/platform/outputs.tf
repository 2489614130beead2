output "app_role_arn" {
  description = "ServiceAccount annotation eks.amazonaws.com/role-arn."
  value       = module.kubernetes.app_role_arn
}

output "checkpoint_bucket" {
  description = "NOVAMIND_S3_BUCKET."
  value       = module.storage.checkpoint_bucket
}

output "audit_anchor_bucket" {
  description = "NOVAMIND_AUDIT_ANCHORS: s3://<this bucket>/<environment> (Object Lock, COMPLIANCE)."
  value       = module.storage.audit_anchor_bucket
}

output "kms_aliases" {
  description = "NOVAMIND_KMS_KEY_ID (data-keys) and NOVAMIND_S3_KMS_KEY_ID (storage)."
  value       = module.kms.aliases
}

output "database_endpoint" {
  description = "Host of NOVAMIND_DATABASE_URL (credentials in the master secret / IAM auth)."
  value       = module.database.endpoint
}

output "redis_endpoints" {
  description = "app: NOVAMIND_REDIS_URL host; gcs: the gcs-redis Service's externalName."
  value       = module.cache.primary_endpoints
}

output "documents_endpoint" {
  description = "Host of NOVAMIND_MONGO_URL."
  value       = module.documents.endpoint
}

output "load_balancer_dns_name" {
  description = "CNAME target of the API host name."
  value       = module.edge.dns_name
}

output "serve_target_group_arn" {
  description = "TargetGroupBinding target for the RayService serve Service."
  value       = module.edge.target_group_arn
}
