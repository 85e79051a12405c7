//! `/readyz` on the local host: the database takes a write, the broker accepts MQTT
//! connections, and the workers run (or are off here by configuration, to run as `portico
//! worker`). Each check has a deadline, so a stuck part answers 503 instead of hanging the probe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portico_http::{Check, Readiness};
use portico_sqlite::Database;

/// How long a check may take before it counts as failed.
const DEADLINE: Duration = Duration::from_secs(2);

pub struct LocalReadiness {
    pub database: Option<Database>,
    pub mqtt: SocketAddr,
    pub broker_running: Arc<AtomicBool>,
    /// `None` when the workers are off here (`worker.enabled = false`).
    pub workers_running: Option<Arc<AtomicBool>>,
}

fn check(part: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check { part: part.into(), ok, detail: detail.into() }
}

#[async_trait::async_trait]
impl Readiness for LocalReadiness {
    async fn check(&self) -> Vec<Check> {
        let database = match &self.database {
            None => check("database", true, "not this backend's"),
            Some(db) => match tokio::time::timeout(DEADLINE, db.probe_write()).await {
                Ok(Ok(())) => check("database", true, "takes writes"),
                Ok(Err(e)) => check("database", false, format!("does not take writes: {e}")),
                Err(_) => check("database", false, "a write did not finish within 2 s"),
            },
        };
        let broker = if !self.broker_running.load(Ordering::SeqCst) {
            check("mqtt", false, "the broker stopped")
        } else {
            match tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(self.mqtt)).await {
                Ok(Ok(_)) => check("mqtt", true, format!("accepts connections on {}", self.mqtt)),
                Ok(Err(e)) => {
                    check("mqtt", false, format!("refuses connections on {}: {e}", self.mqtt))
                }
                Err(_) => check("mqtt", false, format!("no answer on {} within 2 s", self.mqtt)),
            }
        };
        let workers = match &self.workers_running {
            None => check("workers", true, "off here (run `portico worker`)"),
            Some(flag) if flag.load(Ordering::SeqCst) => check("workers", true, "running"),
            Some(_) => check("workers", false, "stopped"),
        };
        vec![database, broker, workers]
    }
}
