output "cluster_name" {
  description = "The EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Private API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "node_security_group_id" {
  description = "The cluster security group EKS attaches to nodes (databases admit it)."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "app_role_arn" {
  description = "IRSA role for the novamind ServiceAccount (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.app.arn
}
