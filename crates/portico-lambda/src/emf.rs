//! Metrics on Lambda as CloudWatch Embedded Metric Format (EMF) lines on stdout: CloudWatch Logs
//! turns each line into metric data points, so no API call (and no latency) is spent on metrics.
//!
//! The recorder collects what the functions record (`metrics` crate, the same calls the local
//! host exports to Prometheus) and `flush` writes one line per metric and label set at the end of
//! each invocation (before Lambda freezes the environment). Counters are sums since the last
//! flush; gauges their last value; histograms their recorded values (EMF takes up to 100 values
//! per line, so more make more lines). Labels become dimensions.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::{Map, Value, json};

/// EMF's limit of values per metric per line.
const MAX_VALUES: usize = 100;

#[derive(Default)]
struct State {
    counters: BTreeMap<Key, u64>,
    gauges: BTreeMap<Key, f64>,
    histograms: BTreeMap<Key, Vec<f64>>,
}

/// The recorder; cheap to clone (clones share what was recorded).
#[derive(Clone)]
pub struct Emf {
    namespace: String,
    state: Arc<Mutex<State>>,
}

struct Handle {
    key: Key,
    state: Arc<Mutex<State>>,
}

impl Handle {
    fn with(&self, f: impl FnOnce(&mut State)) {
        if let Ok(mut state) = self.state.lock() {
            f(&mut state);
        }
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.with(|s| *s.counters.entry(self.key.clone()).or_default() += value);
    }

    fn absolute(&self, value: u64) {
        self.with(|s| {
            s.counters.insert(self.key.clone(), value);
        });
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.with(|s| *s.gauges.entry(self.key.clone()).or_default() += value);
    }

    fn decrement(&self, value: f64) {
        self.with(|s| *s.gauges.entry(self.key.clone()).or_default() -= value);
    }

    fn set(&self, value: f64) {
        self.with(|s| {
            s.gauges.insert(self.key.clone(), value);
        });
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.with(|s| s.histograms.entry(self.key.clone()).or_default().push(value));
    }
}

impl Recorder for Emf {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(self.handle(key)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(self.handle(key)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(self.handle(key)))
    }
}

impl Emf {
    pub fn new(namespace: &str) -> Emf {
        Emf { namespace: namespace.to_string(), state: Arc::default() }
    }

    fn handle(&self, key: &Key) -> Handle {
        Handle { key: key.clone(), state: self.state.clone() }
    }

    /// The EMF lines for what was recorded since the last flush (counters and histograms start
    /// again from nothing; gauges keep their value).
    pub fn flush(&self, timestamp_ms: i64) -> Vec<String> {
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        for (key, value) in std::mem::take(&mut state.counters) {
            if value > 0 {
                lines.push(self.line(timestamp_ms, &key, "Count", json!(value)));
            }
        }
        for (key, value) in &state.gauges {
            lines.push(self.line(timestamp_ms, key, "None", json!(value)));
        }
        for (key, values) in std::mem::take(&mut state.histograms) {
            // Durations are recorded in seconds; CloudWatch gets them as such.
            let unit = if key.name().ends_with("_seconds") { "Seconds" } else { "None" };
            for chunk in values.chunks(MAX_VALUES) {
                lines.push(self.line(timestamp_ms, &key, unit, json!(chunk)));
            }
        }
        lines
    }

    /// Writes `flush()` to stdout, where the Lambda runtime sends it to CloudWatch Logs.
    pub fn flush_to_stdout(&self) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let lines = self.flush(now as i64);
        if lines.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    fn line(&self, timestamp_ms: i64, key: &Key, unit: &str, value: Value) -> String {
        let dimensions: Vec<&str> = key.labels().map(|l| l.key()).collect();
        let mut object = Map::new();
        object.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimensions],
                    "Metrics": [{"Name": key.name(), "Unit": unit}],
                }],
            }),
        );
        for label in key.labels() {
            object.insert(label.key().into(), json!(label.value()));
        }
        object.insert(key.name().into(), value);
        Value::Object(object).to_string()
    }
}

/// A service that flushes the metrics after each call: wraps every Lambda handler.
#[derive(Clone)]
pub struct Flushing<S> {
    inner: S,
    emf: Emf,
}

impl<S> Flushing<S> {
    pub fn new(inner: S, emf: Emf) -> Flushing<S> {
        Flushing { inner, emf }
    }
}

impl<S, R> tower::Service<R> for Flushing<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let answer = self.inner.call(request);
        let emf = self.emf.clone();
        Box::pin(async move {
            let result = answer.await;
            emf.flush_to_stdout();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_embedded_metric_format() {
        let emf = Emf::new("Portico");
        metrics::with_local_recorder(&emf, || {
            metrics::counter!("portico_function_invocations_total", "function" => "get_account")
                .increment(2);
            metrics::counter!("portico_function_invocations_total", "function" => "get_account")
                .increment(1);
            metrics::gauge!("portico_function_concurrent", "function" => "get_account").set(1.0);
            for n in 0..150 {
                metrics::histogram!("portico_function_duration_seconds", "function" => "get_account")
                    .record(f64::from(n) / 1000.0);
            }
        });
        let lines: Vec<Value> = emf
            .flush(1_764_244_800_000)
            .iter()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        // One counter line, one gauge line, two histogram lines (100 + 50 values).
        assert_eq!(lines.len(), 4, "{lines:?}");
        let counter = &lines[0];
        assert_eq!(counter["portico_function_invocations_total"], 3);
        assert_eq!(counter["function"], "get_account");
        let meta = &counter["_aws"];
        assert_eq!(meta["Timestamp"], 1_764_244_800_000_i64);
        assert_eq!(meta["CloudWatchMetrics"][0]["Namespace"], "Portico");
        assert_eq!(meta["CloudWatchMetrics"][0]["Dimensions"], json!([["function"]]));
        assert_eq!(
            meta["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "portico_function_invocations_total", "Unit": "Count"}])
        );
        assert_eq!(lines[1]["portico_function_concurrent"], 1.0);
        let durations = &lines[2];
        assert_eq!(durations["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "Seconds");
        assert_eq!(
            durations["portico_function_duration_seconds"].as_array().map(Vec::len),
            Some(100)
        );
        assert_eq!(
            lines[3]["portico_function_duration_seconds"].as_array().map(Vec::len),
            Some(50)
        );

        // Counters and histograms start again; the gauge keeps its value.
        let again = emf.flush(1_764_244_801_000);
        assert_eq!(again.len(), 1, "{again:?}");
        assert!(again[0].contains("portico_function_concurrent"));
    }
}
