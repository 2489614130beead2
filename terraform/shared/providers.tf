# Shared by every environment root (symlinked): the provider versions, the two regions, tags.
# Each environment's main.tf sets local.environment and its state key.

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project     = "novamind"
      environment = local.environment
      data-class  = "phi"
    }
  }
}

# The disaster-recovery region: KMS replica keys, the checkpoint replica, backup copies.
provider "aws" {
  alias  = "dr"
  region = var.dr_region
  default_tags {
    tags = {
      project     = "novamind"
      environment = local.environment
      data-class  = "phi"
    }
  }
}
