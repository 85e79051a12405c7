//! The behaviour every adapter of a port must show, written once and run against each adapter
//! family (SQLite and files locally, AWS services against moto in CI). Each function takes the
//! adapter under test (or a way to make one) and panics, like a test, when the contract is broken.
//!
//! Adapters differ in clock resolution (SQS counts visibility in whole seconds), so the suites
//! use one-second timeouts; a run takes a few seconds.
#![allow(clippy::unwrap_used)] // test code: a panic is the report

pub mod graph;
pub mod moto;
pub mod objects;
pub mod queue;
pub mod records;
pub mod sequence;
