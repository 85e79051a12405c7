//! Portico's functions: the business logic, one async function per operation, over typed inputs
//! and a `Context` of ports. A function never knows which host runs it (the local server or a
//! Lambda) nor which adapters stand behind the ports.

pub mod accounts;
pub mod identity;
mod validate;

use std::sync::Arc;

use portico_core::{SequenceGenerator, Store};

/// What every function may use.
pub struct Context {
    pub store: Arc<dyn Store>,
    /// Region-safe numbering for functions that need their own sequences.
    pub sequence: Arc<dyn SequenceGenerator>,
    pub settings: Settings,
}

/// Deployment facts functions need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This deployment's region; the default home region of new accounts.
    pub region: String,
    /// Token group that makes a caller a platform admin.
    pub admin_group: String,
    /// Token group that makes a caller platform support staff.
    pub support_group: String,
}
