//! The one error type of Portico's functions and ports.
//!
//! Expected failures (validation, not found, forbidden, conflict) are typed variants that carry a
//! message safe to show the caller; everything else is `Unexpected`, logged once by the host and
//! answered without internals.

use serde::Serialize;
use utoipa::ToSchema;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credentials, or credentials that do not verify.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Valid credentials, but the caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The thing does not exist, or the caller may not know that it exists.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the current state (a duplicate, for example).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request body is larger than allowed.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The request is well-formed but its values are not acceptable.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A request that cannot be read at all (a query that does not parse): 400, naming where.
    #[error("bad request: {}", .0.message)]
    BadRequest(FieldError),
    /// A dependency is temporarily unable to answer; retrying later can help.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Error {
    /// A validation error about a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }
}

/// One rejected field of a request: `field` is a JSON path such as `roles[1]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}
