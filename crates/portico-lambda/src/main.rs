//! The Lambda bootstrap. `PORTICO_LAMBDA_HANDLER` selects the function this deployment runs:
//! `http` (API Gateway proxy integration), `authorizer` (API Gateway Lambda authorizer), `sqs`
//! (S3 upload events through SQS), `sqs-dead` (their dead-letter queue: documents marked failed),
//! `outbox` (scheduled: sends the e-mails due), `iot-rule` (an AWS IoT rule action; the function is named by
//! `PORTICO_RULE_FUNCTION`), `kinesis` (stream batches), `logs` (CloudWatch Logs subscription) or
//! `graph-projector` (the table's DynamoDB stream into the graph; AWS builds only).
//!
//! Every handler's metrics leave as CloudWatch EMF lines at the end of each invocation.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use portico_config::Config;
use portico_lambda::emf::{Emf, Flushing};
use portico_lambda::handler::Handler;
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
    let emf = Emf::new("Portico");
    metrics::set_global_recorder(emf.clone())
        .map_err(|e| format!("installing the metrics recorder: {e}"))?;
    let config = Config::from_process_env(None)?;
    let handler = Handler::from_env_value(std::env::var("PORTICO_LAMBDA_HANDLER").ok().as_deref())?;
    // Composition is cheap (no network): keys are fetched on the first event, not at init.
    let composition = portico_app::compose_backend(&config).await?;
    match handler {
        Handler::Http => {
            let app = portico_http::app(composition.state);
            lambda_http::run(Flushing::new(portico_lambda::http::service(app), emf)).await
        }
        Handler::Authorizer => {
            let verifier = composition.verifier;
            lambda_runtime::run(Flushing::new(
                service_fn(move |event: LambdaEvent<Value>| {
                    let verifier = Arc::clone(&verifier);
                    async move {
                        portico_lambda::authorizer::handle(&verifier, event.payload)
                            .await
                            .map_err(lambda_runtime::Error::from)
                    }
                }),
                emf,
            ))
            .await
        }
        Handler::Sqs | Handler::SqsDead => {
            // The upload queue, or its dead-letter queue (whose documents are marked failed).
            let dead_letters = handler == Handler::SqsDead;
            let context = composition.context;
            lambda_runtime::run(Flushing::new(
                service_fn(move |event: LambdaEvent<SqsEvent>| {
                    let context = Arc::clone(&context);
                    async move {
                        let response = if dead_letters {
                            portico_lambda::sqs::handle_dead_letters(&context, event.payload).await
                        } else {
                            portico_lambda::sqs::handle(&context, event.payload).await
                        };
                        Ok::<_, lambda_runtime::Error>(response)
                    }
                }),
                emf,
            ))
            .await
        }
        Handler::Outbox => {
            // Invoked on a schedule (EventBridge): sends what is due, for at most 50 s.
            let context = composition.context;
            let settings = portico_app::worker_settings(&config);
            lambda_runtime::run(Flushing::new(
                service_fn(move |_: LambdaEvent<Value>| {
                    let context = Arc::clone(&context);
                    async move {
                        let started = std::time::Instant::now();
                        let mut sent = 0;
                        while started.elapsed() < std::time::Duration::from_secs(50) {
                            let claimed =
                                portico_app::worker::send_due_emails(&context, settings).await;
                            if claimed == 0 {
                                break;
                            }
                            sent += claimed;
                        }
                        Ok::<_, lambda_runtime::Error>(serde_json::json!({ "claimed": sent }))
                    }
                }),
                emf,
            ))
            .await
        }
        Handler::IotRule => {
            let function = std::env::var("PORTICO_RULE_FUNCTION")
                .unwrap_or_else(|_| "instrument_alert".into());
            let context = composition.context;
            lambda_runtime::run(Flushing::new(
                service_fn(move |event: LambdaEvent<Value>| {
                    let context = Arc::clone(&context);
                    let function = function.clone();
                    async move {
                        portico_lambda::iot::handle(&context, &function, event.payload)
                            .await
                            .map_err(lambda_runtime::Error::from)
                    }
                }),
                emf,
            ))
            .await
        }
        Handler::Kinesis => {
            // The warehouse's stream: graph elements, loaded into Snowflake. Its tables are
            // made on the first batch (no network call during init).
            let warehouse = Arc::new(snowflake(&config)?);
            let schema = Arc::new(tokio::sync::OnceCell::new());
            lambda_runtime::run(Flushing::new(
                service_fn(move |event: LambdaEvent<Value>| {
                    let (warehouse, schema) = (Arc::clone(&warehouse), Arc::clone(&schema));
                    async move {
                        schema
                            .get_or_try_init(|| warehouse.ensure_schema())
                            .await
                            .map_err(|e| lambda_runtime::Error::from(e.to_string()))?;
                        let outcome =
                            portico_lambda::warehouse::load(&event.payload, &warehouse).await;
                        Ok::<_, lambda_runtime::Error>(outcome.response())
                    }
                }),
                emf,
            ))
            .await
        }
        Handler::Logs => {
            let logs = config.logs.clone();
            let sink = portico_app::opensearch_sink(&config).await?.map(Arc::new);
            let context = composition.context;
            lambda_runtime::run(Flushing::new(
                service_fn(move |event: LambdaEvent<Value>| {
                    let (sink, context) = (sink.clone(), Arc::clone(&context));
                    let prefix = logs.opensearch_index_prefix.clone();
                    async move {
                        match portico_lambda::logs::decode(&event.payload) {
                            Ok(Some(batch)) => match &sink {
                                Some(sink) => {
                                    portico_lambda::logs::ship(
                                        sink,
                                        context.queue.as_ref(),
                                        &batch,
                                        &prefix,
                                    )
                                    .await
                                    .map_err(lambda_runtime::Error::from)?;
                                }
                                None => tracing::warn!(
                                    log_group = batch.log_group,
                                    events = batch.log_events.len(),
                                    "log batch not shipped: no logs.opensearch_url"
                                ),
                            },
                            Ok(None) => tracing::info!("CloudWatch Logs control message skipped"),
                            // Retrying cannot fix a payload that does not decode: log it and move on.
                            Err(e) => tracing::warn!(error = %e, "log payload dropped"),
                        }
                        Ok::<_, lambda_runtime::Error>(Value::Null)
                    }
                }),
                emf,
            ))
            .await
        }
        #[cfg(feature = "aws")]
        Handler::GraphProjector => {
            let context = composition.context;
            lambda_runtime::run(Flushing::new(
                service_fn(move |event: LambdaEvent<Value>| {
                    let context = Arc::clone(&context);
                    async move {
                        let outcome =
                            portico_lambda::graph::handle(context.graph.as_ref(), &event.payload)
                                .await;
                        Ok::<_, lambda_runtime::Error>(outcome.response())
                    }
                }),
                emf,
            ))
            .await
        }
        #[cfg(not(feature = "aws"))]
        Handler::GraphProjector => {
            Err("PORTICO_LAMBDA_HANDLER=graph-projector needs a build with the `aws` feature"
                .into())
        }
        #[cfg(feature = "aws")]
        Handler::StreamPoller => {
            let poller = Arc::new(portico_lambda::poller::Parts::new(&config).await?);
            lambda_runtime::run(Flushing::new(
                service_fn(move |event: LambdaEvent<Value>| {
                    let poller = Arc::clone(&poller);
                    async move {
                        let polled = poller.run(&event.context).await?;
                        Ok::<_, lambda_runtime::Error>(polled)
                    }
                }),
                emf,
            ))
            .await
        }
        #[cfg(not(feature = "aws"))]
        Handler::StreamPoller => {
            Err("PORTICO_LAMBDA_HANDLER=stream-poller needs a build with the `aws` feature".into())
        }
    }
}

/// The Snowflake warehouse `snowflake.*` names; an error naming what is missing otherwise.
fn snowflake(
    config: &portico_config::Config,
) -> anyhow::Result<portico_snowflake::SnowflakeWarehouse> {
    let settings = portico_snowflake::Settings::from_config(&config.snowflake)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the kinesis handler loads the warehouse into Snowflake: set snowflake.account (PORTICO_SNOWFLAKE_ACCOUNT)"
        )
    })?;
    Ok(portico_snowflake::SnowflakeWarehouse::new(settings)?)
}
