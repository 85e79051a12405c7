//! The AWS adapters against moto (`moto_server`, PyPI `moto[server]`): the shared contract suite,
//! the two-region sequence, presigned URLs, IoT publishes and throttling.
//!
//! The endpoint is `PORTICO_TEST_AWS_ENDPOINT` when set (`.ci/run` starts one moto for the run);
//! otherwise each test process starts its own `moto_server` on a free loopback port. Every test
//! uses its own table, queue prefix and bucket, so tests never see each other's data.
#![allow(clippy::unwrap_used)]

mod adapters;
mod harness;
mod regions;
mod throttling;
