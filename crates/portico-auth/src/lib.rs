//! Who is calling: the one token verifier that guards every door (HTTP, MQTT, the API Gateway
//! authorizer), and the local dev issuer that stands in for Okta when no issuer is configured.

mod dev_issuer;
pub mod device_secret;
mod jwks;
pub mod secret_file;
mod verifier;

pub use dev_issuer::{DevIssuer, DevIssuerError, TokenRequest};
pub use jwks::JwksSettings;
pub use verifier::{AuthError, Claims, Verifier, VerifierSettings};

/// The current time in whole seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
