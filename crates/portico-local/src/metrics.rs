//! The Prometheus recorder (one per process) and the `/metrics` endpoint.

use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Function durations in seconds: fine below 10 ms, where healthy requests live, coarse above.
const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process-wide recorder, installed on first use (tests run several servers in one process).
pub(crate) fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().map_err(|_| anyhow::anyhow!("metrics recorder lock poisoned"))?;
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)?
        .install_recorder()?;
    // Histograms need periodic upkeep; a thread, so it outlives any one async runtime.
    let upkeep = handle.clone();
    std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        }
    })?;
    *slot = Some(handle.clone());
    Ok(handle)
}

pub(crate) fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], handle.render()) }
        }),
    )
}
