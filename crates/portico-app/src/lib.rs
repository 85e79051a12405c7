//! Portico's composition, shared by both hosts: which adapter stands behind each port
//! (`compose_backend`, by configuration), the queue workers, and the wire shape of upload events.
//! `world` seeds a data set through the functions (the demo, the benchmarks and the tests use it).
//! The local host adds the embedded broker and serves HTTP; the Lambda host feeds events in.
//! Nothing here knows rmqtt: the local host hands its broker's publisher to `compose_local`.

pub mod audit_export;
pub mod backup;
mod compose;
pub mod graph;
pub mod s3_events;
pub mod warehouse;
pub mod worker;
pub mod world;

#[cfg(feature = "aws")]
pub use compose::aws_settings;
pub use compose::{
    Composition, compose_backend, compose_local, dev_issuer_url, load_dev_issuer,
    opensearch_cluster, opensearch_sink, worker_settings,
};
