# Portico on AWS: the HTTP API behind API Gateway with the token authorizer, the document upload
# pipeline (S3 -> SQS -> Lambda), the IoT rule that turns instrument events into notifications,
# the scheduled e-mail sender, and the DynamoDB table. The same resources as
# deploy/cloudformation/portico.yaml. One package, one function per handler.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition
  prefix    = "${var.name}-"

  environment = merge(
    {
      PORTICO_BACKEND                       = "aws"
      PORTICO_REGION                        = var.region_label
      PORTICO_AUTH_ISSUER                   = var.auth_issuer
      PORTICO_AUTH_AUDIENCE                 = var.auth_audience
      PORTICO_AUTH_REQUIRED_SCOPES          = var.required_scopes
      PORTICO_AWS_TABLE                     = aws_dynamodb_table.portico.name
      PORTICO_AWS_BUCKET                    = aws_s3_bucket.documents.bucket
      PORTICO_AWS_QUEUE_PREFIX              = local.prefix
      PORTICO_AWS_IOT_ENDPOINT              = var.iot_data_endpoint
      PORTICO_SEQUENCE_ACCOUNT_NUMBER_START = tostring(var.account_number_start)
      PORTICO_SEQUENCE_ACCOUNT_NUMBER_END   = tostring(var.account_number_end)
      PORTICO_LOG                           = var.log_level
    },
    var.sendgrid_api_key == "" ? {} : { PORTICO_SENDGRID_API_KEY = var.sendgrid_api_key },
    var.neptune_endpoint == "" ? {} : { PORTICO_AWS_NEPTUNE_ENDPOINT = var.neptune_endpoint },
  )

  # The reporting warehouse on Snowflake (the reports read it, in `http`; the loader writes
  # it), and the stream that feeds it from Neptune Streams, which needs the graph too. Only
  # those two functions get the key.
  has_snowflake = var.snowflake_account != ""
  has_warehouse = local.has_neptune && local.has_snowflake
  snowflake_environment = merge(
    {
      PORTICO_SNOWFLAKE_ACCOUNT     = var.snowflake_account
      PORTICO_SNOWFLAKE_USER        = var.snowflake_user
      PORTICO_SNOWFLAKE_PRIVATE_KEY = local.has_snowflake ? data.aws_secretsmanager_secret_version.snowflake_key[0].secret_string : ""
      PORTICO_SNOWFLAKE_DATABASE    = var.snowflake_database
      PORTICO_SNOWFLAKE_SCHEMA      = var.snowflake_schema
    },
    var.snowflake_warehouse == "" ? {} : { PORTICO_SNOWFLAKE_WAREHOUSE = var.snowflake_warehouse },
  )

  # With a graph, the functions that reach Neptune run in its VPC.
  has_neptune    = var.neptune_endpoint != ""
  neptune_access = ["http", "graph-projector", "stream-poller"]

  # handler name => function settings
  functions = merge(
    {
      http             = { handler = "http", memory = 512, timeout = 30, extra = local.has_snowflake ? local.snowflake_environment : {} }
      authorizer       = { handler = "authorizer", memory = 256, timeout = 10, extra = {} }
      uploads          = { handler = "sqs", memory = 1024, timeout = 90, extra = {} }
      uploads-dead     = { handler = "sqs-dead", memory = 256, timeout = 30, extra = {} }
      instrument-alert = { handler = "iot-rule", memory = 256, timeout = 30, extra = { PORTICO_RULE_FUNCTION = "instrument_alert" } }
      lot-loaded       = { handler = "iot-rule", memory = 256, timeout = 30, extra = { PORTICO_RULE_FUNCTION = "record_lot_use" } }
      outbox           = { handler = "outbox", memory = 256, timeout = 60, extra = {} }
    },
    local.has_neptune ? { graph-projector = { handler = "graph-projector", memory = 512, timeout = 120, extra = {} } } : {},
    local.has_warehouse ? {
      stream-poller    = { handler = "stream-poller", memory = 256, timeout = 60, extra = { PORTICO_AWS_WAREHOUSE_STREAM = "${var.name}-warehouse" } }
      warehouse-loader = { handler = "kinesis", memory = 256, timeout = 120, extra = local.snowflake_environment }
    } : {},
  )
}

# --- data ----------------------------------------------------------------------------------------

resource "aws_dynamodb_table" "portico" {
  name             = var.name
  billing_mode     = "PAY_PER_REQUEST"
  hash_key         = "pk"
  range_key        = "sk"
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  dynamic "attribute" {
    for_each = ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk"]
    content {
      name = attribute.value
      type = "S"
    }
  }

  dynamic "global_secondary_index" {
    for_each = ["gsi1", "gsi2", "gsi3"]
    content {
      name            = global_secondary_index.value
      hash_key        = "${global_secondary_index.value}pk"
      range_key       = "${global_secondary_index.value}sk"
      projection_type = "ALL"
    }
  }

  # Global table: replicated last-writer-wins. Account numbers stay unique because every region
  # owns its sequence items and its own range (see crates/portico-aws/src/sequence.rs).
  dynamic "replica" {
    for_each = var.replica_regions
    content {
      region_name = replica.value
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}

# The audit trail's write-once archive: daily exports, locked in compliance mode (nobody, the
# root user included, can delete or overwrite an object before its retention ends). Portico's
# local backend writes the same exports to <data_dir>/audit; copy them here.
resource "aws_s3_bucket" "audit" {
  bucket              = "${var.name}-${local.account}-audit"
  object_lock_enabled = true
}

resource "aws_s3_bucket_versioning" "audit" {
  bucket = aws_s3_bucket.audit.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "audit" {
  bucket = aws_s3_bucket.audit.id
  rule {
    default_retention {
      mode = "COMPLIANCE"
      days = var.audit_retention_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.audit]
}

resource "aws_s3_bucket_public_access_block" "audit" {
  bucket                  = aws_s3_bucket.audit.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audit" {
  bucket = aws_s3_bucket.audit.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket" "documents" {
  bucket = "${var.name}-${local.account}-documents"
}

resource "aws_s3_bucket_public_access_block" "documents" {
  bucket                  = aws_s3_bucket.documents.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Browsers upload and download with presigned URLs.
resource "aws_s3_bucket_cors_configuration" "documents" {
  bucket = aws_s3_bucket.documents.id
  cors_rule {
    allowed_methods = ["GET", "PUT"]
    allowed_origins = ["*"]
    allowed_headers = ["*"]
    max_age_seconds = 3600
  }
}

resource "aws_sqs_queue" "uploads_dead" {
  name                      = "${local.prefix}document-uploads-dead"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "uploads" {
  name = "${local.prefix}document-uploads"
  # Six times the function timeout, as Lambda recommends for SQS event sources.
  visibility_timeout_seconds = 540
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.uploads_dead.arn
    maxReceiveCount     = 5
  })
}

resource "aws_sqs_queue_policy" "uploads" {
  queue_url = aws_sqs_queue.uploads.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "s3.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.uploads.arn
      Condition = {
        ArnLike      = { "aws:SourceArn" = aws_s3_bucket.documents.arn }
        StringEquals = { "aws:SourceAccount" = local.account }
      }
    }]
  })
}

resource "aws_s3_bucket_notification" "documents" {
  bucket = aws_s3_bucket.documents.id
  queue {
    queue_arn     = aws_sqs_queue.uploads.arn
    events        = ["s3:ObjectCreated:*"]
    filter_prefix = "documents/"
  }
  depends_on = [aws_sqs_queue_policy.uploads]
}

# --- functions -----------------------------------------------------------------------------------

resource "aws_iam_role" "functions" {
  name = "${var.name}-functions"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy_attachment" "logs" {
  role       = aws_iam_role.functions.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

resource "aws_iam_role_policy_attachment" "vpc" {
  count      = local.has_neptune ? 1 : 0
  role       = aws_iam_role.functions.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_iam_role_policy" "functions" {
  name = "portico"
  role = aws_iam_role.functions.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      {
        Effect = "Allow"
        # Users are written in a transaction with the claim on their sub; transactions are
        # authorised by the actions they contain.
        Action   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"]
        Resource = [aws_dynamodb_table.portico.arn, "${aws_dynamodb_table.portico.arn}/index/*"]
      },
      {
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
        Resource = "${aws_s3_bucket.documents.arn}/documents/*"
      },
      {
        Effect   = "Allow"
        Action   = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
        Resource = [aws_sqs_queue.uploads.arn, aws_sqs_queue.uploads_dead.arn]
      },
      {
        Effect = "Allow"
        Action = "iot:Publish"
        Resource = [
          "arn:${local.partition}:iot:${local.region}:${local.account}:topic/users/*",
          "arn:${local.partition}:iot:${local.region}:${local.account}:topic/accounts/*",
          "arn:${local.partition}:iot:${local.region}:${local.account}:topic/instruments/*",
        ]
      },
      {
        # The graph projector reads the table's stream.
        Effect   = "Allow"
        Action   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"]
        Resource = aws_dynamodb_table.portico.stream_arn
      },
      ], local.has_neptune ? [{
        Effect   = "Allow"
        Action   = ["neptune-db:connect", "neptune-db:ReadDataViaQuery", "neptune-db:WriteDataViaQuery", "neptune-db:DeleteDataViaQuery", "neptune-db:GetStreamRecords"]
        Resource = "arn:${local.partition}:neptune-db:${local.region}:${local.account}:${var.neptune_cluster_resource_id}/*"
      }] : [], local.has_warehouse ? [{
        # The stream-poller puts the graph's elements on the warehouse stream; the loader's
        # event source reads them.
        Effect   = "Allow"
        Action   = ["kinesis:PutRecords", "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:ListShards"]
        Resource = aws_kinesis_stream.warehouse[0].arn
    }] : [])
  })
}

resource "aws_lambda_function" "portico" {
  for_each = local.functions

  function_name    = "${var.name}-${each.key}"
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  filename         = var.package
  source_code_hash = filebase64sha256(var.package)
  role             = aws_iam_role.functions.arn
  memory_size      = each.value.memory
  timeout          = each.value.timeout
  # One e-mail sender at a time is enough; more would only contend for the same claims.
  # (and one stream-poller run at a time: the lease would make a second wait anyway).
  reserved_concurrent_executions = contains(["outbox", "stream-poller"], each.key) ? 1 : -1

  environment {
    variables = merge(local.environment, { PORTICO_LAMBDA_HANDLER = each.value.handler }, each.value.extra)
  }

  dynamic "vpc_config" {
    for_each = local.has_neptune && contains(local.neptune_access, each.key) ? [1] : []
    content {
      subnet_ids         = var.neptune_subnet_ids
      security_group_ids = var.neptune_security_group_ids
    }
  }
}

# The table's stream into the graph, in order per item; a failing batch is retried from the
# record the function reports.
resource "aws_lambda_event_source_mapping" "graph" {
  count                   = local.has_neptune ? 1 : 0
  event_source_arn        = aws_dynamodb_table.portico.stream_arn
  function_name           = aws_lambda_function.portico["graph-projector"].arn
  starting_position       = "TRIM_HORIZON"
  batch_size              = 100
  function_response_types = ["ReportBatchItemFailures"]
}

# --- the reporting warehouse: Neptune Streams -> Kinesis -> Snowflake ---------------------------

data "aws_secretsmanager_secret_version" "snowflake_key" {
  count     = local.has_snowflake ? 1 : 0
  secret_id = var.snowflake_key_secret_arn
}

# One shard keeps every element's versions in order (the partition key is the element id); add
# shards for throughput, order still holds per element.
resource "aws_kinesis_stream" "warehouse" {
  count            = local.has_warehouse ? 1 : 0
  name             = "${var.name}-warehouse"
  shard_count      = 1
  retention_period = 168
  encryption_type  = "KMS"
  kms_key_id       = "alias/aws/kinesis"
}

resource "aws_cloudwatch_event_rule" "stream_poller" {
  count               = local.has_warehouse ? 1 : 0
  name                = "${var.name}-stream-poller"
  description         = "Moves the graph's changes from Neptune Streams to the warehouse stream."
  schedule_expression = "rate(1 minute)"
}

resource "aws_cloudwatch_event_target" "stream_poller" {
  count = local.has_warehouse ? 1 : 0
  rule  = aws_cloudwatch_event_rule.stream_poller[0].name
  arn   = aws_lambda_function.portico["stream-poller"].arn
}

resource "aws_lambda_permission" "stream_poller" {
  count         = local.has_warehouse ? 1 : 0
  function_name = aws_lambda_function.portico["stream-poller"].function_name
  action        = "lambda:InvokeFunction"
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.stream_poller[0].arn
}

# A failing batch is delivered again from the record the function reports (the whole batch:
# loads are idempotent).
resource "aws_lambda_event_source_mapping" "warehouse" {
  count                              = local.has_warehouse ? 1 : 0
  event_source_arn                   = aws_kinesis_stream.warehouse[0].arn
  function_name                      = aws_lambda_function.portico["warehouse-loader"].arn
  starting_position                  = "TRIM_HORIZON"
  batch_size                         = 500
  maximum_batching_window_in_seconds = 5
  function_response_types            = ["ReportBatchItemFailures"]
}

resource "aws_lambda_event_source_mapping" "uploads" {
  event_source_arn        = aws_sqs_queue.uploads.arn
  function_name           = aws_lambda_function.portico["uploads"].arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]
}

resource "aws_lambda_event_source_mapping" "uploads_dead" {
  event_source_arn        = aws_sqs_queue.uploads_dead.arn
  function_name           = aws_lambda_function.portico["uploads-dead"].arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]
}

resource "aws_cloudwatch_event_rule" "outbox" {
  name                = "${var.name}-outbox"
  description         = "Sends the e-mails due in Portico's outbox."
  schedule_expression = "rate(1 minute)"
}

resource "aws_cloudwatch_event_target" "outbox" {
  rule = aws_cloudwatch_event_rule.outbox.name
  arn  = aws_lambda_function.portico["outbox"].arn
}

resource "aws_lambda_permission" "outbox" {
  function_name = aws_lambda_function.portico["outbox"].function_name
  action        = "lambda:InvokeFunction"
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.outbox.arn
}

# --- IoT ------------------------------------------------------------------------------------------

resource "aws_iot_topic_rule" "instrument_alert" {
  name        = replace("${var.name}_instrument_alert", "-", "_")
  description = "Instrument errors and critical events become notifications."
  enabled     = true
  sql         = "SELECT *, topic(2) AS serial FROM 'instruments/+/events' WHERE severity IN ('error', 'critical')"
  sql_version = "2016-03-23"
  lambda {
    function_arn = aws_lambda_function.portico["instrument-alert"].arn
  }
}

resource "aws_lambda_permission" "instrument_alert" {
  function_name  = aws_lambda_function.portico["instrument-alert"].function_name
  action         = "lambda:InvokeFunction"
  principal      = "iot.amazonaws.com"
  source_arn     = aws_iot_topic_rule.instrument_alert.arn
  source_account = local.account
}

resource "aws_iot_topic_rule" "lot_loaded" {
  name        = replace("${var.name}_lot_loaded", "-", "_")
  description = "Instruments that report loading a lot: the lot use is recorded."
  enabled     = true
  sql         = "SELECT *, topic(2) AS serial, timestamp() AS received_at FROM 'instruments/+/events' WHERE type = 'lot_loaded'"
  sql_version = "2016-03-23"
  lambda {
    function_arn = aws_lambda_function.portico["lot-loaded"].arn
  }
}

resource "aws_lambda_permission" "lot_loaded" {
  function_name  = aws_lambda_function.portico["lot-loaded"].function_name
  action         = "lambda:InvokeFunction"
  principal      = "iot.amazonaws.com"
  source_arn     = aws_iot_topic_rule.lot_loaded.arn
  source_account = local.account
}

# --- API ------------------------------------------------------------------------------------------

resource "aws_apigatewayv2_api" "portico" {
  name          = var.name
  protocol_type = "HTTP"

  # API Gateway answers preflights itself (before the authorizer) and sets these headers on every
  # answer; the same origins as PORTICO_HTTP_CORS_ORIGINS on the local host.
  dynamic "cors_configuration" {
    for_each = length(var.cors_origins) > 0 ? [1] : []
    content {
      allow_origins     = var.cors_origins
      allow_methods     = ["GET", "POST", "PUT"]
      allow_headers     = ["authorization", "content-type", "x-request-id"]
      expose_headers    = ["x-request-id", "location"]
      allow_credentials = false
      max_age           = 600
    }
  }
}

resource "aws_apigatewayv2_authorizer" "token" {
  api_id                            = aws_apigatewayv2_api.portico.id
  name                              = "portico-token"
  authorizer_type                   = "REQUEST"
  authorizer_payload_format_version = "2.0"
  enable_simple_responses           = true
  identity_sources                  = ["$request.header.Authorization"]
  authorizer_result_ttl_in_seconds  = 300
  authorizer_uri                    = aws_lambda_function.portico["authorizer"].invoke_arn
}

resource "aws_apigatewayv2_integration" "http" {
  api_id                 = aws_apigatewayv2_api.portico.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.portico["http"].invoke_arn
  payload_format_version = "2.0"
}

# Everything under /v1 needs a token; health and the API description do not.
resource "aws_apigatewayv2_route" "v1" {
  api_id             = aws_apigatewayv2_api.portico.id
  route_key          = "ANY /v1/{proxy+}"
  authorization_type = "CUSTOM"
  authorizer_id      = aws_apigatewayv2_authorizer.token.id
  target             = "integrations/${aws_apigatewayv2_integration.http.id}"
}

resource "aws_apigatewayv2_route" "public" {
  api_id    = aws_apigatewayv2_api.portico.id
  route_key = "$default"
  target    = "integrations/${aws_apigatewayv2_integration.http.id}"
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.portico.id
  name        = "$default"
  auto_deploy = true
}

resource "aws_lambda_permission" "api_http" {
  function_name = aws_lambda_function.portico["http"].function_name
  action        = "lambda:InvokeFunction"
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.portico.execution_arn}/*"
}

resource "aws_lambda_permission" "api_authorizer" {
  function_name = aws_lambda_function.portico["authorizer"].function_name
  action        = "lambda:InvokeFunction"
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.portico.execution_arn}/authorizers/${aws_apigatewayv2_authorizer.token.id}"
}

# --- alarms and dashboard --------------------------------------------------------------------------

locals {
  alarmed_functions = ["http", "uploads", "outbox", "instrument-alert"]
  alarm_actions     = var.alarm_topic_arn == "" ? [] : [var.alarm_topic_arn]
  email_categories  = { welcome = "welcome", alert = "instrument_alert", ready = "document_ready", recall = "lot_recall" }
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  for_each            = toset(local.alarmed_functions)
  alarm_name          = "${var.name}-${each.key}-errors"
  alarm_description   = "Portico ${each.key}: function errors in 5 minutes"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.portico[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "throttles" {
  for_each            = toset(local.alarmed_functions)
  alarm_name          = "${var.name}-${each.key}-throttles"
  alarm_description   = "Portico ${each.key}: throttled invocations in 5 minutes"
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.portico[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "http_duration" {
  alarm_name          = "${var.name}-http-duration-p99"
  alarm_description   = "Portico http: p99 duration over 5 s"
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = aws_lambda_function.portico["http"].function_name }
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 1
  threshold           = 5000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "uploads_age" {
  alarm_name          = "${var.name}-uploads-age"
  alarm_description   = "Portico uploads: the oldest queued upload event is over 10 minutes old"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.uploads.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 600
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "uploads_dead" {
  alarm_name          = "${var.name}-uploads-dead-letters"
  alarm_description   = "Portico uploads: upload events in the dead-letter queue"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.uploads_dead.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

# The outbox function's EMF metric, one series per e-mail category, summed.
resource "aws_cloudwatch_metric_alarm" "outbox_failures" {
  alarm_name          = "${var.name}-outbox-failures"
  alarm_description   = "Portico outbox: e-mails given up as failed in 15 minutes (every category)"
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions

  metric_query {
    id          = "failed"
    expression  = "SUM([${join(", ", keys(local.email_categories))}])"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = local.email_categories
    content {
      id = metric_query.key
      metric {
        namespace   = "Portico"
        metric_name = "portico_emails_failed_total"
        dimensions  = { category = metric_query.value }
        period      = 900
        stat        = "Sum"
      }
    }
  }
}

resource "aws_cloudwatch_dashboard" "portico" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title = "Invocations", region = local.region, stat = "Sum", period = 60
          metrics = [for f in local.alarmed_functions : ["AWS/Lambda", "Invocations", "FunctionName", aws_lambda_function.portico[f].function_name]]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title = "Errors and throttles", region = local.region, stat = "Sum", period = 60
          metrics = concat(
            [for f in local.alarmed_functions : ["AWS/Lambda", "Errors", "FunctionName", aws_lambda_function.portico[f].function_name]],
            [for f in local.alarmed_functions : ["AWS/Lambda", "Throttles", "FunctionName", aws_lambda_function.portico[f].function_name]],
          )
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title = "HTTP duration p50 / p99", region = local.region, period = 60
          metrics = [
            ["AWS/Lambda", "Duration", "FunctionName", aws_lambda_function.portico["http"].function_name, { stat = "p50" }],
            ["AWS/Lambda", "Duration", "FunctionName", aws_lambda_function.portico["http"].function_name, { stat = "p99" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title = "Upload queue", region = local.region, stat = "Maximum", period = 60
          metrics = [
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", aws_sqs_queue.uploads.name],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.uploads_dead.name],
          ]
        }
      },
    ]
  })
}
