# An IAM role that one AWS service assumes, with AWS-managed and inline policies. Used for every
# service role of the platform (VPC flow logs, EKS, RDS monitoring, CloudTrail, AWS Backup, S3
# replication) so the trust policy is written once. Keys of the policy maps are static names, so
# plans never depend on ARNs that are unknown until apply.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = var.assume_actions
    principals {
      type        = "Service"
      identifiers = [var.service]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy_attachment" "this" {
  for_each = var.managed_policy_arns

  role       = aws_iam_role.this.name
  policy_arn = each.value
}

resource "aws_iam_role_policy" "this" {
  for_each = var.inline_policies

  name   = each.key
  role   = aws_iam_role.this.id
  policy = each.value
}
