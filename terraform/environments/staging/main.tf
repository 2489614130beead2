# Novamind staging: the platform at staging sizes. providers.tf, variables.tf and outputs.tf are
# links to terraform/shared; values in terraform.tfvars (from terraform.tfvars.example).

locals {
  environment = "staging"
}

terraform {
  # State in S3 with native locking (`init -backend-config=bucket=<state bucket>`).
  backend "s3" {
    key          = "novamind/staging/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

module "novamind" {
  source    = "../../modules/platform"
  providers = { aws = aws, aws.dr = aws.dr }

  name                     = "novamind-staging"
  bucket_suffix            = var.bucket_suffix
  availability_zones       = var.availability_zones
  certificate_arn          = var.certificate_arn
  allowed_cidrs            = var.allowed_cidrs
  single_nat_gateway       = false
  node_groups              = { twins = { instance_types = ["m6i.2xlarge"], min_size = 2, max_size = 9 } }
  database_instance_class  = "db.r6g.large"
  database_storage_gib     = 100
  multi_az                 = true
  backup_retention_days    = 7
  replicate_backups_to_dr  = false
  cache_node_type          = "cache.r6g.large"
  documents_instance_class = "db.r6g.large"
  documents_instances      = 2
}
