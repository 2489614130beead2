output "trail_arn" {
  description = "The CloudTrail trail."
  value       = aws_cloudtrail.this.arn
}

output "trail_bucket_arn" {
  description = "The trail's bucket."
  value       = aws_s3_bucket.trail.arn
}
