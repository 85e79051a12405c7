//! The Lambda host's integration tests: API Gateway, authorizer, SQS, IoT, Kinesis and CloudWatch
//! Logs events (JSON fixtures in `tests/fixtures/`) fed to the handlers over the real composition;
//! with `--features aws`, the same functions on the AWS adapters against moto, end to end.

#[cfg(feature = "aws")]
mod aws;
mod events;
#[cfg(feature = "aws")]
mod warehouse;
