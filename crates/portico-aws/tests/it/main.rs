//! The AWS adapters against moto (`moto_server`, PyPI `moto[server]`): the shared contract suite,
//! the two-region sequence, presigned URLs, IoT publishes and throttling.
//!
//! moto is found or started by `portico_contract::moto`. Every test uses its own table, queue
//! prefix and bucket, so tests never see each other's data.
#![allow(clippy::unwrap_used)]

mod adapters;
mod gremlin;
mod harness;
mod opensearch;
mod regions;
mod throttling;
