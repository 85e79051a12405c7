//! Device secrets: the password an instrument connects with. Shown once at registration, stored
//! only as a slow salted hash (PBKDF2-HMAC-SHA256), compared in constant time.

use std::num::NonZeroU32;

use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Iterations of PBKDF2. The secrets carry 256 random bits, so this guards a stolen database
/// against nothing a brute force could win anyway; it is here so that a leaked hash is useless
/// even if secrets were ever weakened, at ~30 ms per instrument connect.
const ITERATIONS: u32 = 100_000;
const PREFIX: &str = "pbkdf2-sha256";

/// A new random device secret (43 characters, base64url).
pub fn generate() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of `secret`: `pbkdf2-sha256$<iterations>$<salt>$<hash>`.
pub fn hash(secret: &str) -> Option<String> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).ok()?;
    let iterations = NonZeroU32::new(ITERATIONS)?;
    let mut out = [0u8; 32];
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, secret.as_bytes(), &mut out);
    Some(format!(
        "{PREFIX}${ITERATIONS}${}${}",
        URL_SAFE_NO_PAD.encode(salt),
        URL_SAFE_NO_PAD.encode(out)
    ))
}

/// A hash no secret matches, made like every stored one: checking a secret for an unknown serial
/// against it costs what a wrong secret for a known serial costs, so timing tells no serial apart.
pub fn unknown_serial_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        generate()
            .and_then(|secret| hash(&secret))
            // Without randomness, a hash of the wrong form: `verify` rejects it at once.
            .unwrap_or_default()
    })
}

/// Whether `secret` is the one `stored` was made from.
pub fn verify(secret: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(PREFIX), Some(iterations), Some(salt), Some(expected), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(iterations), Ok(salt), Ok(expected)) = (
        iterations.parse::<u32>().ok().and_then(NonZeroU32::new),
        URL_SAFE_NO_PAD.decode(salt),
        URL_SAFE_NO_PAD.decode(expected),
    ) else {
        return false;
    };
    pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, secret.as_bytes(), &expected)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_against_their_own_hash() {
        let secret = generate().expect("secret");
        assert_eq!(secret.len(), 43);
        let stored = hash(&secret).expect("hash");
        assert!(stored.starts_with("pbkdf2-sha256$100000$"));
        assert!(!stored.contains(&secret));
        assert!(verify(&secret, &stored));
        assert!(!verify("wrong", &stored));
        assert!(!verify(&secret, "garbage"));
        assert_ne!(hash(&secret), Some(stored), "salted");
    }
}
