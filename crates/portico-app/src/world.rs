//! A world to start from: accounts with users of every role, instruments, a catalogue with lots
//! shipped to accounts. It is made through the functions, as the platform admin, so what it
//! makes is exactly what the API would have made (numbers, ids, welcome e-mails). `--demo`, the
//! benchmarks and the tests all seed their data with it; they differ only in the `World` they ask
//! for.

use std::ops::Range;

use portico_core::domain::{Account, AccountKind, Caller, Role, User};
use portico_core::{Error, QcTest, Result};
use portico_functions::Context;
use portico_functions::accounts::{self, AddUser, CreateAccount};
use portico_functions::catalogue::{self, CreateLot, CreateProduct, CreateShipment};
use portico_functions::identity::{Identity, identify};
use portico_functions::instruments::{self, RegisterInstrument, RegisteredInstrument};

/// The platform admin the seeder acts as (provisioned from the admin group, as a token would).
pub const ADMIN_SUB: &str = "admin@portico.example";
/// The platform support user worlds usually include.
pub const SUPPORT_SUB: &str = "support@portico.example";

/// What to make.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// Platform support staff to provision, by subject (the admin always is).
    pub support: Vec<String>,
    pub accounts: Vec<AccountPlan>,
    pub lots: Vec<LotPlan>,
}

/// An account with its users and instruments.
#[derive(Debug, Clone)]
pub struct AccountPlan {
    pub name: String,
    pub kind: AccountKind,
    pub users: Vec<UserPlan>,
    /// Serials; each instrument is a "Sequencer X" named after the account.
    pub instruments: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct UserPlan {
    /// Also the user's e-mail address.
    pub sub: String,
    pub display_name: String,
    pub roles: Vec<Role>,
}

/// A product, one lot of it, and where the lot was shipped.
#[derive(Debug, Clone)]
pub struct LotPlan {
    pub product: CreateProduct,
    pub lot: CreateLot,
    /// In order: an onward shipment comes after the shipment that brought the lot.
    pub shipments: Vec<ShipmentPlan>,
}

/// A shipment of the plan's lot, between accounts by their index in `World::accounts`.
#[derive(Debug, Clone)]
pub struct ShipmentPlan {
    /// The distributor sending it on; `None` for the manufacturer.
    pub from: Option<usize>,
    pub to: usize,
    /// `YYYY-MM-DD`
    pub shipped_on: String,
    pub quantity: u32,
}

impl ShipmentPlan {
    /// From the manufacturer to account `to`.
    pub fn direct(to: usize, shipped_on: &str, quantity: u32) -> ShipmentPlan {
        ShipmentPlan { from: None, to, shipped_on: shipped_on.into(), quantity }
    }

    /// From distributor `from` on to account `to`.
    pub fn onward(from: usize, to: usize, shipped_on: &str, quantity: u32) -> ShipmentPlan {
        ShipmentPlan { from: Some(from), to, shipped_on: shipped_on.into(), quantity }
    }
}

impl AccountPlan {
    pub fn new(name: &str, kind: AccountKind) -> AccountPlan {
        AccountPlan { name: name.into(), kind, users: Vec::new(), instruments: Vec::new() }
    }

    pub fn user(mut self, sub: &str, display_name: &str, roles: &[Role]) -> AccountPlan {
        self.users.push(UserPlan {
            sub: sub.into(),
            display_name: display_name.into(),
            roles: roles.to_vec(),
        });
        self
    }

    pub fn instrument(mut self, serial: &str) -> AccountPlan {
        self.instruments.push(serial.into());
        self
    }
}

/// What was made, in the order of the plan.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub admin: Caller,
    pub support: Vec<User>,
    pub accounts: Vec<SeededAccount>,
}

#[derive(Debug, Clone)]
pub struct SeededAccount {
    pub account: Account,
    pub users: Vec<User>,
    /// With their one-time device secrets.
    pub instruments: Vec<RegisteredInstrument>,
}

/// Makes `world` in the backend behind `ctx`.
pub async fn seed(ctx: &Context, world: &World) -> Result<Seeded> {
    let admin = provision(ctx, ADMIN_SUB, &ctx.settings.admin_group).await?;
    let mut support = Vec::new();
    for sub in &world.support {
        let caller = provision(ctx, sub, &ctx.settings.support_group).await?;
        support.extend(caller.user);
    }
    let mut accounts = Vec::new();
    for plan in &world.accounts {
        accounts.push(seed_account(ctx, &admin, plan).await?);
    }
    for plan in &world.lots {
        catalogue::create_product(ctx, &admin, plan.product.clone()).await?;
        catalogue::create_lot(ctx, &admin, plan.lot.clone()).await?;
        for shipment in &plan.shipments {
            let account = |index: usize| {
                accounts.get(index).map(|a: &SeededAccount| a.account.id.clone()).ok_or_else(|| {
                    Error::invalid("shipments", format!("no account {index} in this world"))
                })
            };
            let shipment = CreateShipment {
                lot_number: plan.lot.lot_number.clone(),
                from_account_id: shipment.from.map(account).transpose()?,
                account_id: account(shipment.to)?,
                shipped_on: shipment.shipped_on.clone(),
                quantity: shipment.quantity,
            };
            catalogue::create_shipment(ctx, &admin, shipment).await?;
        }
    }
    Ok(Seeded { admin, support, accounts })
}

/// A platform staff member, provisioned from their group as their first token would.
async fn provision(ctx: &Context, sub: &str, group: &str) -> Result<Caller> {
    let identity = Identity {
        sub: sub.into(),
        groups: vec![group.into()],
        email: Some(sub.into()),
        sign_in: None,
    };
    identify(ctx, &identity).await
}

async fn seed_account(ctx: &Context, admin: &Caller, plan: &AccountPlan) -> Result<SeededAccount> {
    let create =
        CreateAccount { name: plan.name.clone(), kind: plan.kind.as_str().into(), region: None };
    let account = accounts::create_account(ctx, admin, create).await?;
    let mut users = Vec::new();
    for user in &plan.users {
        let add = AddUser {
            sub: user.sub.clone(),
            email: user.sub.clone(),
            display_name: user.display_name.clone(),
            roles: user.roles.iter().map(|r| r.as_str().into()).collect(),
        };
        users.push(accounts::add_user(ctx, admin, &account.id, add).await?);
    }
    let mut registered = Vec::new();
    for serial in &plan.instruments {
        let register = RegisterInstrument {
            serial: serial.clone(),
            model: "Sequencer X".into(),
            account_id: account.id.clone(),
            name: format!("{} sequencer", plan.name),
        };
        registered.push(instruments::register(ctx, admin, register).await?);
    }
    Ok(SeededAccount { account, users, instruments: registered })
}

impl World {
    /// `portico serve --demo`: three organisations with every role, an instrument each, and a
    /// lot shipped to the first and through the distributor to the second, so their members can
    /// fetch a certificate and the lot's impact has a path to show.
    pub fn demo() -> World {
        use Role::{AccountAdmin, LabManager, Scientist};
        let qc = |name: &str, method: &str, specification: &str, result: &str, unit: &str| QcTest {
            name: name.into(),
            method: method.into(),
            specification: specification.into(),
            result: result.into(),
            unit: unit.into(),
            pass: true,
        };
        World {
            support: vec![SUPPORT_SUB.into()],
            accounts: vec![
                AccountPlan::new("Acme Research Labs", AccountKind::Customer)
                    .user("alice@acme.example", "Alice Admin", &[AccountAdmin])
                    .user("bob@acme.example", "Bob Manager", &[LabManager])
                    .user("carol@acme.example", "Carol Scientist", &[Scientist])
                    .instrument("SN-ACME-001"),
                AccountPlan::new("Globex Diagnostics", AccountKind::Customer)
                    .user("dan@globex.example", "Dan Admin", &[AccountAdmin, LabManager])
                    .user("erin@globex.example", "Erin Scientist", &[Scientist])
                    .instrument("SN-GLOBEX-001"),
                AccountPlan::new("Initech Distribution", AccountKind::Distributor)
                    .user("frank@initech.example", "Frank Manager", &[LabManager])
                    .instrument("SN-INITECH-001"),
            ],
            lots: vec![LotPlan {
                product: CreateProduct {
                    sku: "RGT-100".into(),
                    name: "Taq Polymerase".into(),
                    category: "Enzymes".into(),
                },
                lot: CreateLot {
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
                // To Acme directly, and through Initech on to Globex.
                shipments: vec![
                    ShipmentPlan::direct(0, "2026-11-02", 5),
                    ShipmentPlan::direct(2, "2026-11-02", 20),
                    ShipmentPlan::onward(2, 1, "2026-11-09", 8),
                ],
            }],
        }
    }

    /// Many alike accounts, for load: accounts `{name} {n}` for each `n` in `numbers`, each with
    /// `users` members whose roles take turns (scientist, lab manager, account admin), subjects
    /// `{user_prefix}-{n}-{u}@bench.example`.
    pub fn generated(name: &str, user_prefix: &str, numbers: Range<usize>, users: usize) -> World {
        let roles = [Role::Scientist, Role::LabManager, Role::AccountAdmin];
        let accounts = numbers
            .map(|n| {
                let mut plan = AccountPlan::new(&format!("{name} {n}"), AccountKind::Customer);
                for u in 0..users {
                    plan = plan.user(
                        &generated_sub(user_prefix, n, u),
                        &format!("{name} user {u}"),
                        &[roles[u % roles.len()]],
                    );
                }
                plan
            })
            .collect();
        World { accounts, ..World::default() }
    }
}

/// The subject of user `u` of account `n` in `World::generated`.
pub fn generated_sub(user_prefix: &str, n: usize, u: usize) -> String {
    format!("{user_prefix}-{n}-{u}@bench.example")
}
