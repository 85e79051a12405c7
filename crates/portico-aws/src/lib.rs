//! Portico's AWS adapters. Compiled only with the `aws` feature (see Cargo.toml for why).
#![cfg(feature = "aws")]
