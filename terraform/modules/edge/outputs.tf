output "dns_name" {
  description = "The load balancer's DNS name (CNAME the API host name to it)."
  value       = aws_lb.this.dns_name
}

output "target_group_arn" {
  description = "Target group for the TargetGroupBinding of the serve Service."
  value       = aws_lb_target_group.serve.arn
}
