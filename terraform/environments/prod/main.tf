# Novamind prod: the platform at prod sizes. providers.tf, variables.tf and outputs.tf are
# links to terraform/shared; values in terraform.tfvars (from terraform.tfvars.example).

locals {
  environment = "prod"
}

terraform {
  # State in S3 with native locking (`init -backend-config=bucket=<state bucket>`).
  backend "s3" {
    key          = "novamind/prod/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

module "novamind" {
  source    = "../../modules/platform"
  providers = { aws = aws, aws.dr = aws.dr }

  name                     = "novamind-prod"
  bucket_suffix            = var.bucket_suffix
  availability_zones       = var.availability_zones
  certificate_arn          = var.certificate_arn
  allowed_cidrs            = var.allowed_cidrs
  single_nat_gateway       = false
  node_groups              = { twins = { instance_types = ["m6i.4xlarge"], min_size = 3, max_size = 31 } }
  database_instance_class  = "db.r6g.2xlarge"
  database_storage_gib     = 500
  multi_az                 = true
  backup_retention_days    = 30
  replicate_backups_to_dr  = true
  cache_node_type          = "cache.r6g.xlarge"
  documents_instance_class = "db.r6g.xlarge"
  documents_instances      = 3
}
