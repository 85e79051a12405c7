//! `portico serve --demo`: a small data set with every role, loaded into an empty data dir.

use portico_core::QcTest;
use portico_core::domain::Caller;
use portico_core::ports::PageRequest;
use portico_functions::accounts::{self, AddUser, CreateAccount};
use portico_functions::catalogue::{self, CreateLot, CreateProduct, CreateShipment};
use portico_functions::identity::{Identity, identify};
use portico_functions::instruments::{self, RegisterInstrument};

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
            format!(
                "portico token --sub {} --groups {}",
                self.sub,
                self.groups.join(",")
            )
        }
    }
}

/// (sub, display name, roles)
type DemoUser = (&'static str, &'static str, &'static [&'static str]);

/// (account name, kind, instrument serial, users)
const ACCOUNTS: &[(&str, &str, &str, &[DemoUser])] = &[
    (
        "Acme Research Labs",
        "customer",
        "SN-ACME-001",
        &[
            ("alice@acme.example", "Alice Admin", &["account_admin"]),
            ("bob@acme.example", "Bob Manager", &["lab_manager"]),
            ("carol@acme.example", "Carol Scientist", &["scientist"]),
        ],
    ),
    (
        "Globex Diagnostics",
        "customer",
        "SN-GLOBEX-001",
        &[
            (
                "dan@globex.example",
                "Dan Admin",
                &["account_admin", "lab_manager"],
            ),
            ("erin@globex.example", "Erin Scientist", &["scientist"]),
        ],
    ),
    (
        "Initech Distribution",
        "distributor",
        "SN-INITECH-001",
        &[("frank@initech.example", "Frank Manager", &["lab_manager"])],
    ),
];

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

/// Loads the demo data set if the store holds no accounts; returns what it created, or `None`
/// when the data dir was not empty.
pub async fn seed(composition: &Composition) -> anyhow::Result<Option<Demo>> {
    let ctx = composition.state.context();
    let any = ctx
        .accounts
        .list_accounts(None, &PageRequest::new(Some(1), None)?)
        .await?;
    if !any.items.is_empty() {
        return Ok(None);
    }
    let mut logins = Vec::new();
    let mut demo_instruments = Vec::new();
    let staff = [
        (
            "admin@portico.example",
            ctx.settings.admin_group.clone(),
            "platform admin",
        ),
        (
            "support@portico.example",
            ctx.settings.support_group.clone(),
            "platform support",
        ),
    ];
    let mut admin: Option<Caller> = None;
    for (sub, group, description) in staff {
        let caller = identify(
            ctx,
            &Identity {
                sub: sub.into(),
                groups: vec![group.clone()],
                email: Some(sub.into()),
            },
        )
        .await?;
        if admin.is_none() {
            admin = Some(caller);
        }
        logins.push(DemoLogin {
            sub: sub.into(),
            groups: vec![group],
            description: description.into(),
        });
    }
    let admin = admin.ok_or_else(|| anyhow::anyhow!("no demo admin"))?;
    let mut first_account = None;
    for (name, kind, serial, users) in ACCOUNTS {
        let account = accounts::create_account(
            ctx,
            &admin,
            CreateAccount {
                name: (*name).into(),
                kind: (*kind).into(),
                region: None,
            },
        )
        .await?;
        first_account.get_or_insert_with(|| account.id.clone());
        for (sub, display_name, roles) in *users {
            accounts::add_user(
                ctx,
                &admin,
                &account.id,
                AddUser {
                    sub: (*sub).into(),
                    email: (*sub).into(),
                    display_name: (*display_name).into(),
                    roles: roles.iter().map(|r| (*r).into()).collect(),
                },
            )
            .await?;
            logins.push(DemoLogin {
                sub: (*sub).into(),
                groups: Vec::new(),
                description: format!(
                    "{} of {name} (account {})",
                    roles.join(" + "),
                    account.account_number
                ),
            });
        }
        let registered = instruments::register(
            ctx,
            &admin,
            RegisterInstrument {
                serial: (*serial).into(),
                model: "Sequencer X".into(),
                account_id: account.id.clone(),
                name: format!("{name} sequencer"),
            },
        )
        .await?;
        demo_instruments.push(DemoInstrument {
            serial: (*serial).into(),
            device_secret: registered.device_secret,
            account: (*name).into(),
        });
    }
    // A product and a lot shipped to the first account, so its members can fetch a certificate.
    catalogue::create_product(
        ctx,
        &admin,
        CreateProduct {
            sku: "RGT-100".into(),
            name: "Taq Polymerase".into(),
            category: "Enzymes".into(),
        },
    )
    .await?;
    let qc = |name: &str, method: &str, specification: &str, result: &str, unit: &str| QcTest {
        name: name.into(),
        method: method.into(),
        specification: specification.into(),
        result: result.into(),
        unit: unit.into(),
        pass: true,
    };
    catalogue::create_lot(
        ctx,
        &admin,
        CreateLot {
            lot_number: "L2026-0042".into(),
            sku: "RGT-100".into(),
            manufactured_on: "2026-10-01".into(),
            expires_on: "2028-10-01".into(),
            qc_tests: vec![
                qc("Purity", "HPLC", ">= 98.0 %", "99.2", "%"),
                qc("Activity", "Fluorometric assay", "4.5 - 5.5", "5.1", "U/µL"),
                qc(
                    "Endonuclease contamination",
                    "Gel electrophoresis",
                    "Not detected",
                    "Not detected",
                    "",
                ),
            ],
        },
    )
    .await?;
    if let Some(first) = first_account {
        catalogue::create_shipment(
            ctx,
            &admin,
            CreateShipment {
                lot_number: "L2026-0042".into(),
                account_id: first,
                shipped_on: "2026-11-02".into(),
                quantity: 5,
            },
        )
        .await?;
    }
    Ok(Some(Demo {
        logins,
        instruments: demo_instruments,
    }))
}
