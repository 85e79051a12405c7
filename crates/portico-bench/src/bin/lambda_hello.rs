//! The smallest Rust Lambda function (echoes its event): the baseline the Portico Lambda
//! binaries' cold start is compared with in `portico-bench lambda`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
