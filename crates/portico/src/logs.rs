//! `portico logs search` and `portico logs tail`: the local log store from the command line,
//! beside a running server or after it stopped.

use std::time::Duration;

use anyhow::Context as _;
use portico_config::Config;
use portico_core::logs::{LogHit, LogSearch, LogStore};
use portico_core::ports::PageRequest;

fn store(config: &Config) -> anyhow::Result<portico_logs::SqliteLogs> {
    let dir = config.data_dir.join("logs");
    anyhow::ensure!(
        portico_logs::path(&dir).exists(),
        "no log store in {} (it is made by `portico serve` or `portico worker` with logs.store on)",
        dir.display()
    );
    portico_logs::SqliteLogs::open(&dir).map_err(|e| anyhow::anyhow!("{e:#}"))
}

fn search_of(query: &str, since: Option<&str>, until: Option<&str>) -> anyhow::Result<LogSearch> {
    portico_functions::logs::search_of(query, since, until).map_err(|e| match e {
        portico_core::Error::BadRequest(f) => anyhow::anyhow!("{}", f.message),
        portico_core::Error::Validation(errors) => anyhow::anyhow!(
            "{}",
            errors
                .iter()
                .map(|f| format!("{}: {}", option(&f.field), f.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!("{other:#}"),
    })
}

/// The option a field of the search came from.
fn option(field: &str) -> &str {
    match field {
        "from" => "--since",
        "to" => "--until",
        other => other,
    }
}

/// One line for a person: time, level, target, message, then `field=value`s.
fn human(hit: &LogHit) -> String {
    let line = &hit.line;
    let at = portico_core::domain::from_unix_ms(line.timestamp_ms)
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let mut out = format!("{at} {:5} {} {}", line.level, line.target, line.message);
    for (name, value) in &line.fields {
        match value {
            serde_json::Value::String(s) => out.push_str(&format!(" {name}={s}")),
            other => out.push_str(&format!(" {name}={other}")),
        }
    }
    out
}

/// The line as it was logged (JSON, with the fields at the top level).
fn json(hit: &LogHit) -> String {
    let mut object = serde_json::Map::new();
    object.insert("timestamp_ms".into(), hit.line.timestamp_ms.into());
    object.insert("level".into(), hit.line.level.clone().into());
    object.insert("target".into(), hit.line.target.clone().into());
    object.insert("message".into(), hit.line.message.clone().into());
    for (name, value) in &hit.line.fields {
        object.entry(name.clone()).or_insert_with(|| value.clone());
    }
    serde_json::Value::Object(object).to_string()
}

fn print(hits: &[LogHit], as_json: bool) {
    for hit in hits {
        println!("{}", if as_json { json(hit) } else { human(hit) });
    }
}

/// Matching lines in time order (the newest `limit` of them).
pub fn search(
    config: &Config,
    query: &str,
    since: Option<&str>,
    until: Option<&str>,
    limit: u32,
    as_json: bool,
) -> anyhow::Result<()> {
    let search = search_of(query, since, until)?;
    let store = store(config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let page = PageRequest::new(Some(limit.clamp(1, PageRequest::MAX_LIMIT)), None)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut hits =
            store.search(&search, &page).await.map_err(|e| anyhow::anyhow!("{e:#}"))?.items;
        hits.reverse();
        print(&hits, as_json);
        if hits.is_empty() && !as_json {
            eprintln!("no matching lines");
        }
        Ok(())
    })
}

/// The last lines that match, then (with `follow`) every new one as it is stored.
pub fn tail(config: &Config, query: &str, follow: bool, as_json: bool) -> anyhow::Result<()> {
    let search = search_of(query, None, None)?;
    let store = store(config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let page = PageRequest { limit: 20, cursor: None };
        let mut hits =
            store.search(&search, &page).await.map_err(|e| anyhow::anyhow!("{e:#}"))?.items;
        hits.reverse();
        print(&hits, as_json);
        let mut last = hits.last().map(|h| h.id.clone());
        if last.is_none() {
            // Nothing matched yet: follow from the newest line of any kind.
            let everything =
                LogSearch { query: portico_core::logs::Query::All, from_ms: None, to_ms: None };
            let newest = store.search(&everything, &PageRequest { limit: 1, cursor: None }).await;
            last = newest.ok().and_then(|p| p.items.into_iter().next().map(|h| h.id));
        }
        if !follow {
            return Ok(());
        }
        loop {
            let new = store
                .after(&search, last.as_deref(), 500)
                .await
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
            print(&new, as_json);
            if let Some(hit) = new.last() {
                last = Some(hit.id.clone());
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        }
    })
}
