output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "The VPC's address range."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Load balancer subnets."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "EKS node subnets."
  value       = aws_subnet.private[*].id
}

output "isolated_subnet_ids" {
  description = "Database subnets (no route out of the VPC)."
  value       = aws_subnet.isolated[*].id
}
