# EKS for the KubeRay cluster: private API endpoint only, Kubernetes secrets envelope-encrypted
# with KMS, every control-plane log type shipped to an encrypted log group, managed node groups
# in the private subnets (IMDSv2 only, encrypted volumes), and an OIDC provider so pods get AWS
# permissions through IAM roles for service accounts. The application role (`app_role_arn`,
# annotated on the `novamind` ServiceAccount) may use the checkpoint bucket, the audit-anchor
# bucket and the two KMS keys, nothing else.

data "aws_partition" "current" {}

resource "aws_cloudwatch_log_group" "cluster" {
  # EKS writes here; the name is fixed by EKS.
  name              = "/aws/eks/${var.name}/cluster"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn
}

module "cluster_role" {
  source         = "../service-role"
  name           = "${var.name}-eks-cluster"
  service        = "eks.amazonaws.com"
  assume_actions = ["sts:AssumeRole", "sts:TagSession"]
  managed_policy_arns = {
    cluster = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
  }
}

resource "aws_security_group" "cluster" {
  name        = "${var.name}-eks-cluster"
  description = "EKS control plane: HTTPS from inside the VPC only"
  vpc_id      = var.vpc_id

  ingress {
    description = "Kubernetes API from the VPC (operators come in through the VPN/bastion)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
}

resource "aws_eks_cluster" "this" {
  name                      = var.name
  version                   = var.kubernetes_version
  role_arn                  = module.cluster_role.arn
  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  vpc_config {
    subnet_ids              = var.private_subnet_ids
    security_group_ids      = [aws_security_group.cluster.id]
    endpoint_private_access = true
    endpoint_public_access  = false
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = var.eks_kms_key_arn
    }
  }

  access_config {
    authentication_mode = "API"
  }

  depends_on = [module.cluster_role, aws_cloudwatch_log_group.cluster]
}

module "node_role" {
  source  = "../service-role"
  name    = "${var.name}-eks-node"
  service = "ec2.amazonaws.com"
  managed_policy_arns = {
    for policy in ["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"] :
    policy => "arn:${data.aws_partition.current.partition}:iam::aws:policy/${policy}"
  }
}

resource "aws_launch_template" "node" {
  name_prefix = "${var.name}-node-"

  # IMDSv2 only, one hop: pods cannot reach the node's credentials (they use IRSA).
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = var.node_disk_gib
      volume_type = "gp3"
      encrypted   = true
      kms_key_id  = var.eks_kms_key_arn
    }
  }
}

resource "aws_eks_node_group" "this" {
  for_each = var.node_groups

  cluster_name    = aws_eks_cluster.this.name
  node_group_name = each.key
  node_role_arn   = module.node_role.arn
  subnet_ids      = var.private_subnet_ids
  instance_types  = each.value.instance_types
  labels          = { "novamind.io/pool" = each.key }

  scaling_config {
    min_size     = each.value.min_size
    desired_size = each.value.min_size
    max_size     = each.value.max_size
  }

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  update_config {
    max_unavailable = 1
  }

  lifecycle {
    # The Ray/cluster autoscaler moves desired_size; Terraform owns the bounds.
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [module.node_role]
}


resource "aws_iam_openid_connect_provider" "this" {
  url            = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list = ["sts.amazonaws.com"]
}

locals {
  oidc_host = replace(aws_iam_openid_connect_provider.this.url, "https://", "")
}

data "aws_iam_policy_document" "app_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.this.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = ["system:serviceaccount:${var.app_namespace}:${var.app_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "app" {
  name               = "${var.name}-app"
  assume_role_policy = data.aws_iam_policy_document.app_assume.json
}

data "aws_iam_policy_document" "app" {
  statement {
    sid       = "Checkpoints"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectVersion"]
    resources = ["${var.checkpoint_bucket_arn}/*"]
  }
  statement {
    sid       = "ListCheckpoints"
    actions   = ["s3:ListBucket"]
    resources = [var.checkpoint_bucket_arn]
  }
  # Audit anchors: written (each with its own COMPLIANCE retention) and listed, every version
  # (an anchor's key is the whole anchor: nothing is read back); nothing that deletes or
  # replaces one (docs/operations.md, "Audit anchors").
  statement {
    sid       = "AnchorAuditChainHeads"
    actions   = ["s3:PutObject", "s3:PutObjectRetention"]
    resources = ["${var.audit_anchor_bucket_arn}/*"]
  }
  statement {
    sid       = "ListAuditChainAnchors"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [var.audit_anchor_bucket_arn]
  }
  statement {
    sid       = "EnvelopeKeys"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = var.app_kms_key_arns
  }
}

resource "aws_iam_role_policy" "app" {
  name   = "novamind-app"
  role   = aws_iam_role.app.id
  policy = data.aws_iam_policy_document.app.json
}
