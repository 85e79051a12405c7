output "api_url" {
  value = aws_apigatewayv2_api.portico.api_endpoint
}

output "table_name" {
  value = aws_dynamodb_table.portico.name
}

output "documents_bucket" {
  value = aws_s3_bucket.documents.bucket
}

output "audit_archive_bucket" {
  value = aws_s3_bucket.audit.bucket
}

output "uploads_queue_url" {
  value = aws_sqs_queue.uploads.id
}
