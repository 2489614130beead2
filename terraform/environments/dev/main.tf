# Novamind dev: every module composed once. `terraform/README.md` explains the order of
# operations; kuberay/overlays/dev consumes the outputs.

locals {
  name = "novamind-dev"
}

module "kms" {
  source    = "../../modules/kms"
  name      = local.name
  providers = { aws = aws, aws.dr = aws.dr }
}

module "networking" {
  source             = "../../modules/networking"
  name               = local.name
  availability_zones = var.availability_zones
  single_nat_gateway = true
  logs_kms_key_arn   = module.kms.key_arns["logs"]
}

module "storage" {
  source         = "../../modules/storage"
  name           = local.name
  kms_key_arn    = module.kms.key_arns["storage"]
  dr_kms_key_arn = module.kms.dr_key_arns["storage"]
  providers      = { aws = aws, aws.dr = aws.dr }
}

module "kubernetes" {
  source                  = "../../modules/kubernetes"
  name                    = local.name
  vpc_id                  = module.networking.vpc_id
  vpc_cidr                = module.networking.vpc_cidr
  private_subnet_ids      = module.networking.private_subnet_ids
  eks_kms_key_arn         = module.kms.key_arns["eks"]
  logs_kms_key_arn        = module.kms.key_arns["logs"]
  node_groups             = { twins = { instance_types = ["m6i.xlarge"], min_size = 1, max_size = 4 } }
  checkpoint_bucket_arn   = module.storage.checkpoint_bucket_arn
  audit_anchor_bucket_arn = module.storage.audit_anchor_bucket_arn
  app_kms_key_arns        = [module.kms.key_arns["data-keys"], module.kms.key_arns["storage"]]
}

module "database" {
  source                   = "../../modules/database"
  name                     = local.name
  vpc_id                   = module.networking.vpc_id
  subnet_ids               = module.networking.isolated_subnet_ids
  client_security_group_id = module.kubernetes.node_security_group_id
  kms_key_arn              = module.kms.key_arns["database"]
  dr_kms_key_arn           = module.kms.dr_key_arns["storage"]
  instance_class           = "db.t4g.medium"
  storage_gib              = 50
  multi_az                 = false
  backup_retention_days    = 7
  replicate_backups_to_dr  = false
  providers                = { aws = aws, aws.dr = aws.dr }
}

module "cache" {
  source                   = "../../modules/cache"
  name                     = local.name
  vpc_id                   = module.networking.vpc_id
  subnet_ids               = module.networking.isolated_subnet_ids
  client_security_group_id = module.kubernetes.node_security_group_id
  kms_key_arn              = module.kms.key_arns["database"]
  node_type                = "cache.t4g.small"
}

module "documents" {
  source                   = "../../modules/documents"
  name                     = local.name
  vpc_id                   = module.networking.vpc_id
  subnet_ids               = module.networking.isolated_subnet_ids
  client_security_group_id = module.kubernetes.node_security_group_id
  kms_key_arn              = module.kms.key_arns["database"]
  instance_class           = "db.t4g.medium"
  instances                = 1
  backup_retention_days    = 7
}

module "edge" {
  source            = "../../modules/edge"
  name              = local.name
  vpc_id            = module.networking.vpc_id
  vpc_cidr          = module.networking.vpc_cidr
  public_subnet_ids = module.networking.public_subnet_ids
  certificate_arn   = var.certificate_arn
  allowed_cidrs     = var.allowed_cidrs
  access_log_bucket = module.storage.access_log_bucket
  logs_kms_key_arn  = module.kms.key_arns["logs"]
}

module "backup" {
  source         = "../../modules/backup"
  name           = local.name
  kms_key_arn    = module.kms.key_arns["storage"]
  dr_kms_key_arn = module.kms.dr_key_arns["storage"]
  resource_arns  = concat([module.database.arn, module.documents.arn], module.storage.bucket_arns)
  providers      = { aws = aws, aws.dr = aws.dr }
}

module "logging" {
  source          = "../../modules/logging"
  name            = local.name
  kms_key_arn     = module.kms.key_arns["logs"]
  phi_bucket_arns = module.storage.bucket_arns
}
