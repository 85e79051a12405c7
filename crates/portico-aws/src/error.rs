//! AWS SDK errors -> Portico errors. Throttling and transient failures are retried by the SDK
//! (standard retry mode, see `aws_config`); what still fails afterwards is `Unavailable`, so
//! callers answer 503 and queues redeliver, and nothing is lost.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use portico_core::Error;

/// Error codes that mean "try again later" rather than "this request is wrong".
const RETRYABLE: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "SlowDown",
    "ServiceUnavailable",
    "InternalServerError",
    "InternalError",
    "TransactionConflictException",
    "KMSThrottlingException",
    "AWS.SimpleQueueService.RequestThrottled",
];

pub(crate) fn sdk_error<E, R>(what: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Unavailable(format!("{what}: {}", describe(&error)))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            if RETRYABLE.contains(&code) {
                Error::Unavailable(format!("{what}: {}", describe(&error)))
            } else {
                Error::Unexpected(anyhow::anyhow!("{what}: {}", describe(&error)))
            }
        }
        _ => Error::Unexpected(anyhow::anyhow!("{what}: {}", describe(&error))),
    }
}

/// The code and message AWS sent, or the SDK's own account of the failure.
pub(crate) fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => format!(
            "{}: {}",
            service.err().code().unwrap_or("error"),
            service.err().message().unwrap_or("")
        ),
        other => format!("{}", aws_smithy_types::error::display::DisplayErrorContext(other)),
    }
}

/// Whether DynamoDB refused a write because its condition did not hold.
pub(crate) fn is_conditional_failure<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}
