//! Bench data through `portico_local::world`, the seeder `--demo` and the tests use: the bench
//! composes the server's backend from the same configuration (its SQLite file or its AWS table)
//! and makes its world through the functions, as the platform admin.

use portico_config::Config;
use portico_local::world::{self, Seeded, World};

pub(crate) async fn seed(config: &Config, plan: &World) -> anyhow::Result<Seeded> {
    let composition = portico_local::compose_backend(config).await?;
    Ok(world::seed(&composition.context, plan).await?)
}

/// A bench run's own name, so that runs against one data dir do not collide.
pub(crate) fn run_name(what: &str) -> String {
    format!("{what} {}", std::process::id())
}
