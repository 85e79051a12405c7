//! The Lambda bootstrap. `PORTICO_LAMBDA_HANDLER` selects the function this deployment runs:
//! `http` (API Gateway proxy integration), `authorizer` (API Gateway Lambda authorizer), `sqs`
//! (S3 upload events through SQS) or `iot-rule` (an AWS IoT rule action; the function is named by
//! `PORTICO_RULE_FUNCTION`).

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use portico_config::Config;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTICO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time() // CloudWatch stamps every line itself
        .init();
    let config = Config::from_process_env(None)?;
    let handler = std::env::var("PORTICO_LAMBDA_HANDLER").unwrap_or_else(|_| "http".into());
    // Composition is cheap (no network): keys are fetched on the first event, not at init.
    let composition = portico_local::compose(&config)?;
    match handler.as_str() {
        "http" => {
            let app = portico_http::app(composition.state);
            lambda_http::run(portico_lambda::http::service(app)).await
        }
        "authorizer" => {
            let verifier = composition.verifier;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
                let verifier = Arc::clone(&verifier);
                async move {
                    portico_lambda::authorizer::handle(&verifier, event.payload)
                        .await
                        .map_err(lambda_runtime::Error::from)
                }
            }))
            .await
        }
        other => {
            Err(format!("PORTICO_LAMBDA_HANDLER={other:?}: expected `http` or `authorizer`").into())
        }
    }
}
