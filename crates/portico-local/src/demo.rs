//! `portico serve --demo`: the demo world (`World::demo`), loaded into an empty data dir, and the
//! logins and device secrets to try it with.

use portico_app::world::{self, World};
use portico_core::ports::PageRequest;

use crate::Composition;

/// One demo person and the command that mints their token.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub sub: String,
    pub groups: Vec<String>,
    pub description: String,
}

impl DemoLogin {
    pub fn token_command(&self) -> String {
        if self.groups.is_empty() {
            format!("portico token --sub {}", self.sub)
        } else {
            format!("portico token --sub {} --groups {}", self.sub, self.groups.join(","))
        }
    }
}

/// A demo instrument and its device secret (shown here because the demo is for trying things).
#[derive(Debug, Clone)]
pub struct DemoInstrument {
    pub serial: String,
    pub device_secret: String,
    pub account: String,
}

/// What `--demo` created.
#[derive(Debug, Clone)]
pub struct Demo {
    pub logins: Vec<DemoLogin>,
    pub instruments: Vec<DemoInstrument>,
}

/// Loads the demo world if the store holds no accounts; returns what it created, or `None`
/// when the data dir was not empty.
pub async fn seed(composition: &Composition) -> anyhow::Result<Option<Demo>> {
    let ctx = composition.state.context();
    let any = ctx.accounts.list_accounts(None, &PageRequest::new(Some(1), None)?).await?;
    if !any.items.is_empty() {
        return Ok(None);
    }
    // The demo's records are Portico's own doing, and the audit trail says so.
    let acting = portico_core::audit::Acting::new(portico_core::audit::Actor::system("demo"), None);
    let seeded = portico_core::audit::scope(acting, world::seed(ctx, &World::demo())).await?;
    let staff = |sub: &str, group: &str, description: &str| DemoLogin {
        sub: sub.into(),
        groups: vec![group.into()],
        description: description.into(),
    };
    let mut logins = vec![staff(world::ADMIN_SUB, &ctx.settings.admin_group, "platform admin")];
    for user in &seeded.support {
        logins.push(staff(&user.sub, &ctx.settings.support_group, "platform support"));
    }
    let mut instruments = Vec::new();
    for made in &seeded.accounts {
        let account = &made.account;
        for user in &made.users {
            let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
            logins.push(DemoLogin {
                sub: user.sub.clone(),
                groups: Vec::new(),
                description: format!(
                    "{} of {} (account {})",
                    roles.join(" + "),
                    account.name,
                    account.account_number
                ),
            });
        }
        for registered in &made.instruments {
            instruments.push(DemoInstrument {
                serial: registered.instrument.serial.clone(),
                device_secret: registered.device_secret.clone(),
                account: account.name.clone(),
            });
        }
    }
    Ok(Some(Demo { logins, instruments }))
}

impl Demo {
    /// What a person needs to try the demo, as commands they can paste: the logins' token
    /// commands (run with `portico`, the binary at `portico`), and for each instrument a
    /// `mosquitto_pub` of a critical event.
    /// The logins' token commands and a `mosquitto_pub` per instrument, for `mqtt` (a TLS
    /// listener when `tls`: plaintext is off).
    pub fn guide(&self, portico: &str, mqtt: std::net::SocketAddr, tls: bool) -> String {
        let mut out = String::from("Demo logins (each command prints an access token):\n");
        for login in &self.logins {
            let command = login.token_command().replacen("portico", portico, 1);
            out.push_str(&format!("  {:<44} {command}\n", login.description));
        }
        out.push_str("\nDemo instruments (each command sends a critical event):\n");
        // Over TLS, mosquitto checks the server's certificate against the system's CAs; a
        // certificate from a private CA needs `--cafile` with that CA instead.
        let tls_option = if tls { " --tls-use-os-certs" } else { "" };
        for i in &self.instruments {
            out.push_str(&format!(
                "  {} of {}:\n    mosquitto_pub -h {} -p {}{tls_option} -i {serial} -u {serial} -P {} -t instruments/{serial}/events -m '{{\"severity\":\"critical\",\"message\":\"Pump pressure too high\"}}'\n",
                i.serial,
                i.account,
                mqtt.ip(),
                mqtt.port(),
                i.device_secret,
                serial = i.serial
            ));
        }
        if tls {
            out.push_str("  (a certificate from your own CA: --cafile YOUR-CA.pem in place of --tls-use-os-certs)\n");
        }
        out
    }
}

/// Where the demo's guide is kept, so a restart can show it again (owner-only: it holds the
/// instruments' device secrets).
pub fn guide_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("demo.txt")
}

/// Writes the guide to `<data_dir>/demo.txt`, readable by its owner only.
pub fn save_guide(data_dir: &std::path::Path, guide: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let path = guide_path(data_dir);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file =
        options.open(&path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    file.write_all(guide.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}
