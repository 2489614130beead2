# The whole Novamind AWS platform, composed once; terraform/environments/<env> call it with
# their sizes. Every module is used exactly here.

terraform {
  required_providers {
    aws = {
      source                = "hashicorp/aws"
      configuration_aliases = [aws.dr]
    }
  }
}

module "kms" {
  source    = "../kms"
  name      = var.name
  providers = { aws = aws, aws.dr = aws.dr }
}

module "networking" {
  source             = "../networking"
  name               = var.name
  availability_zones = var.availability_zones
  single_nat_gateway = var.single_nat_gateway
  logs_kms_key_arn   = module.kms.key_arns["logs"]
}

module "storage" {
  source         = "../storage"
  name           = var.name
  bucket_suffix  = var.bucket_suffix
  kms_key_arn    = module.kms.key_arns["storage"]
  dr_kms_key_arn = module.kms.dr_key_arns["storage"]
  providers      = { aws = aws, aws.dr = aws.dr }
}

module "kubernetes" {
  source                  = "../kubernetes"
  name                    = var.name
  vpc_id                  = module.networking.vpc_id
  vpc_cidr                = module.networking.vpc_cidr
  private_subnet_ids      = module.networking.private_subnet_ids
  eks_kms_key_arn         = module.kms.key_arns["eks"]
  logs_kms_key_arn        = module.kms.key_arns["logs"]
  node_groups             = var.node_groups
  checkpoint_bucket_arn   = module.storage.checkpoint_bucket_arn
  audit_anchor_bucket_arn = module.storage.audit_anchor_bucket_arn
  app_kms_key_arns        = [module.kms.key_arns["data-keys"], module.kms.key_arns["storage"]]
}

module "database" {
  source                   = "../database"
  name                     = var.name
  vpc_id                   = module.networking.vpc_id
  subnet_ids               = module.networking.isolated_subnet_ids
  client_security_group_id = module.kubernetes.node_security_group_id
  kms_key_arn              = module.kms.key_arns["database"]
  dr_kms_key_arn           = module.kms.dr_key_arns["storage"]
  instance_class           = var.database_instance_class
  storage_gib              = var.database_storage_gib
  multi_az                 = var.multi_az
  backup_retention_days    = var.backup_retention_days
  replicate_backups_to_dr  = var.replicate_backups_to_dr
  providers                = { aws = aws, aws.dr = aws.dr }
}

module "cache" {
  source                   = "../cache"
  name                     = var.name
  vpc_id                   = module.networking.vpc_id
  subnet_ids               = module.networking.isolated_subnet_ids
  client_security_group_id = module.kubernetes.node_security_group_id
  kms_key_arn              = module.kms.key_arns["database"]
  node_type                = var.cache_node_type
}

module "documents" {
  source                   = "../documents"
  name                     = var.name
  vpc_id                   = module.networking.vpc_id
  subnet_ids               = module.networking.isolated_subnet_ids
  client_security_group_id = module.kubernetes.node_security_group_id
  kms_key_arn              = module.kms.key_arns["database"]
  instance_class           = var.documents_instance_class
  instances                = var.documents_instances
  backup_retention_days    = var.backup_retention_days
}

module "edge" {
  source            = "../edge"
  name              = var.name
  vpc_id            = module.networking.vpc_id
  vpc_cidr          = module.networking.vpc_cidr
  public_subnet_ids = module.networking.public_subnet_ids
  certificate_arn   = var.certificate_arn
  allowed_cidrs     = var.allowed_cidrs
  access_log_bucket = module.storage.access_log_bucket
  logs_kms_key_arn  = module.kms.key_arns["logs"]
}

module "backup" {
  source         = "../backup"
  name           = var.name
  kms_key_arn    = module.kms.key_arns["storage"]
  dr_kms_key_arn = module.kms.dr_key_arns["storage"]
  resource_arns  = concat([module.database.arn, module.documents.arn], module.storage.bucket_arns)
  providers      = { aws = aws, aws.dr = aws.dr }
}

module "logging" {
  source          = "../logging"
  name            = var.name
  kms_key_arn     = module.kms.key_arns["logs"]
  phi_bucket_arns = module.storage.bucket_arns
}
