# Novamind dev: the platform at dev sizes. providers.tf, variables.tf and outputs.tf are
# links to terraform/shared; values in terraform.tfvars (from terraform.tfvars.example).

locals {
  environment = "dev"
}

terraform {
  # State in S3 with native locking (`init -backend-config=bucket=<state bucket>`).
  backend "s3" {
    key          = "novamind/dev/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

module "novamind" {
  source    = "../../modules/platform"
  providers = { aws = aws, aws.dr = aws.dr }

  name                     = "novamind-dev"
  bucket_suffix            = var.bucket_suffix
  availability_zones       = var.availability_zones
  certificate_arn          = var.certificate_arn
  allowed_cidrs            = var.allowed_cidrs
  single_nat_gateway       = true
  node_groups              = { twins = { instance_types = ["m6i.xlarge"], min_size = 1, max_size = 4 } }
  database_instance_class  = "db.t4g.medium"
  database_storage_gib     = 50
  multi_az                 = false
  backup_retention_days    = 7
  replicate_backups_to_dr  = false
  cache_node_type          = "cache.t4g.small"
  documents_instance_class = "db.t4g.medium"
  documents_instances      = 1
}
