variable "name" {
  description = "Prefix of every resource name (e.g. portico-prod)."
  type        = string
  default     = "portico"
}

variable "package" {
  description = "The Lambda package made by deploy/package.sh (a zip holding `bootstrap`)."
  type        = string
  default     = "../../target/lambda/portico-lambda.zip"
}

variable "architecture" {
  description = "x86_64 or arm64, matching the package."
  type        = string
  default     = "x86_64"
}

variable "auth_issuer" {
  description = "The Okta authorization server issuer, e.g. https://example.okta.com/oauth2/default."
  type        = string
}

variable "auth_audience" {
  type    = string
  default = "api://default"
}

variable "required_scopes" {
  description = "Scopes every token must carry, comma-separated (e.g. portico.api); empty for none."
  type        = string
  default     = ""
}

variable "region_label" {
  description = "The name Portico records on every account number this region issues."
  type        = string
}

variable "account_number_start" {
  description = "First account number of this region's range; every region gets a disjoint range."
  type        = number
  default     = 100000
}

variable "account_number_end" {
  description = "End (exclusive) of this region's account-number range."
  type        = number
  default     = 100000000000
}

variable "replica_regions" {
  description = "Other regions the DynamoDB table is replicated to (a global table). Each region's stack needs its own account-number range."
  type        = list(string)
  default     = []
}

variable "iot_data_endpoint" {
  description = "https://<id>-ats.iot.<region>.amazonaws.com (aws iot describe-endpoint --endpoint-type iot:Data-ATS)."
  type        = string
}

variable "sendgrid_api_key" {
  description = "Empty keeps e-mails in the outbox table, marked sent by the local sink."
  type        = string
  default     = ""
  sensitive   = true
}

variable "log_level" {
  type    = string
  default = "info"
}

variable "cors_origins" {
  description = "Browser origins allowed to call the API (e.g. https://portal.example.com); [\"*\"] for any origin (never with credentials); empty for no cross-origin access."
  type        = list(string)
  default     = []
}

variable "neptune_endpoint" {
  description = "The Neptune cluster endpoint of the traceability graph (https://<cluster>:8182); empty for none (lot traces answer 503)."
  type        = string
  default     = ""
}

variable "neptune_cluster_resource_id" {
  description = "The Neptune cluster's resource id (cluster-ABC...), for the neptune-db IAM actions."
  type        = string
  default     = ""
}

variable "neptune_subnet_ids" {
  description = "Subnets of Neptune's VPC for the functions that reach it (with routes to DynamoDB, S3, SQS, IoT and the Okta issuer)."
  type        = list(string)
  default     = []
}

variable "neptune_security_group_ids" {
  description = "Security groups that Neptune admits on port 8182."
  type        = list(string)
  default     = []
}

variable "audit_retention_days" {
  description = "How long each object of the audit archive is locked (Object Lock, compliance mode)."
  type        = number
  default     = 3650
}

variable "alarm_topic_arn" {
  description = "An SNS topic the alarms notify; empty for alarms without actions."
  type        = string
  default     = ""
}

variable "snowflake_account" {
  description = "The Snowflake account (MYORG-MYACCOUNT) of the reporting warehouse; with a Neptune endpoint (neptune_streams=1), the graph's changes are loaded there and reports answer from it. Empty for no warehouse (reports answer 503)."
  type        = string
  default     = ""
}

variable "snowflake_user" {
  description = "The Snowflake user the loader signs in as (key-pair authentication)."
  type        = string
  default     = ""
}

variable "snowflake_key_secret_arn" {
  description = "A Secrets Manager secret whose SecretString is that user's RSA private key (PKCS#8 PEM)."
  type        = string
  default     = ""
}

variable "snowflake_database" {
  description = "The warehouse's database."
  type        = string
  default     = "PORTICO"
}

variable "snowflake_schema" {
  description = "The warehouse's schema."
  type        = string
  default     = "WAREHOUSE"
}

variable "snowflake_warehouse" {
  description = "The virtual warehouse statements run on; empty for the user's default."
  type        = string
  default     = ""
}
