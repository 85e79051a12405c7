//! `portico ship-logs`: the CLI around `portico_logs::ship` (what Logstash did for the worker's
//! log files): which sink, where the state is, until when.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use portico_config::Config;
use portico_logs::ship::{OpenSearchSink, Settings, Shipper, Sink, StoreSink};

pub struct Options {
    pub globs: Vec<String>,
    pub opensearch: Option<String>,
    pub store: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub poll: String,
    pub once: bool,
}

pub fn run(mut config: Config, options: Options) -> anyhow::Result<()> {
    let poll = humantime::parse_duration(&options.poll).with_context(|| {
        format!("--poll {:?} is not a duration such as 250ms or 2s", options.poll)
    })?;
    anyhow::ensure!(
        poll >= Duration::from_millis(10) && poll <= Duration::from_secs(3600),
        "--poll must be between 10ms and 1h"
    );
    if let Some(url) = options.opensearch {
        config.logs.opensearch_url = Some(url);
    }
    if options.store.is_some() {
        config.logs.opensearch_url = None;
    }
    let logs = crate::init_logging(&config)?;
    let settings = Settings {
        globs: options.globs,
        state_dir: options.state.unwrap_or_else(|| config.data_dir.join("ship-logs")),
        poll,
        once: options.once,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let outcome = runtime.block_on(async {
        let mut shipper = Shipper::open(settings)?;
        let (sink, to): (Box<dyn Sink>, String) = match portico_local::opensearch_cluster(&config)
            .await?
        {
            Some(cluster) => {
                let bulk = portico_logs::opensearch::BulkSink::on(cluster);
                let prefix = &config.logs.opensearch_index_prefix;
                (Box::new(OpenSearchSink::new(bulk, prefix)), format!("OpenSearch ({prefix}-*)"))
            }
            None => {
                let data_dir = options.store.unwrap_or_else(|| config.data_dir.clone());
                let retention = portico_logs::Retention::parse(&config.logs.retention)
                    .map_err(|e| anyhow::anyhow!("logs.retention: {e}"))?;
                let dir = data_dir.join("logs");
                let sink = StoreSink::open(&dir, retention)?;
                (Box::new(sink), format!("the log store in {}", dir.display()))
            }
        };
        tracing::info!(to, once = options.once, "portico ship-logs starting");
        let totals = shipper.run(sink.as_ref(), crate::shutdown_signal()).await?;
        tracing::info!(
            lines = totals.lines,
            batches = totals.batches,
            refused = totals.refused,
            "portico ship-logs stopped"
        );
        Ok(())
    });
    if let Some(logs) = logs {
        logs.flush();
    }
    outcome
}
