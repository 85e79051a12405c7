//! Which function a deployment of the bootstrap runs (`PORTICO_LAMBDA_HANDLER`), as one enum: the
//! names are written once, here, and `main` matches on the variants.

/// A Lambda entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// API Gateway proxy integration (REST v1 and HTTP API v2): the whole HTTP API.
    Http,
    /// API Gateway Lambda authorizer (TOKEN, REQUEST, HTTP API simple responses).
    Authorizer,
    /// S3 upload events through SQS: the document worker.
    Sqs,
    /// The upload queue's dead-letter queue: those documents are marked failed.
    SqsDead,
    /// A schedule (EventBridge): sends the e-mails due in the outbox.
    Outbox,
    /// An AWS IoT rule action: the function `PORTICO_RULE_FUNCTION` names.
    IotRule,
    /// Kinesis stream batches.
    Kinesis,
    /// CloudWatch Logs subscription payloads.
    Logs,
    /// The table's DynamoDB stream: change records projected into the graph (Neptune).
    GraphProjector,
    /// A schedule: Neptune Streams (the graph's elements) -> Kinesis, for the warehouse.
    StreamPoller,
}

impl Handler {
    pub const ALL: [Handler; 10] = [
        Handler::Http,
        Handler::Authorizer,
        Handler::Sqs,
        Handler::SqsDead,
        Handler::Outbox,
        Handler::IotRule,
        Handler::Kinesis,
        Handler::Logs,
        Handler::GraphProjector,
        Handler::StreamPoller,
    ];

    /// The value of `PORTICO_LAMBDA_HANDLER` that selects it.
    pub fn name(self) -> &'static str {
        match self {
            Handler::Http => "http",
            Handler::Authorizer => "authorizer",
            Handler::Sqs => "sqs",
            Handler::SqsDead => "sqs-dead",
            Handler::Outbox => "outbox",
            Handler::IotRule => "iot-rule",
            Handler::Kinesis => "kinesis",
            Handler::Logs => "logs",
            Handler::GraphProjector => "graph-projector",
            Handler::StreamPoller => "stream-poller",
        }
    }

    /// The handler `value` names (unset = `http`); an unknown one is an error listing them all.
    pub fn from_env_value(value: Option<&str>) -> Result<Handler, String> {
        let value = value.unwrap_or("http");
        Handler::ALL.into_iter().find(|h| h.name() == value).ok_or_else(|| {
            let names: Vec<&str> = Handler::ALL.iter().map(|h| h.name()).collect();
            format!("PORTICO_LAMBDA_HANDLER={value:?}: expected one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_selects_its_handler_and_others_are_refused() {
        for handler in Handler::ALL {
            assert_eq!(Handler::from_env_value(Some(handler.name())), Ok(handler));
        }
        assert_eq!(Handler::from_env_value(None), Ok(Handler::Http));
        let err = Handler::from_env_value(Some("sqs_dead")).expect_err("unknown");
        assert!(err.contains("sqs-dead") && err.contains("logs"), "{err}");
    }
}
