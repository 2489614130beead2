terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # State in S3 with native locking (bucket and key per account; `init -backend-config=...`).
  backend "s3" {
    key          = "novamind/dev/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project     = "novamind"
      environment = "dev"
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
      environment = "dev"
      data-class  = "phi"
    }
  }
}
