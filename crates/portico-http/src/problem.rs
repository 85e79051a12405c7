//! Errors as `application/problem+json` (RFC 9457). Every error response of the API has this shape,
//! including the ones axum and tower produce themselves (404 for unknown routes, 405, 413).

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portico_core::{Error, FieldError};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The problem slug (and RFC 6750 error) of a token without a required scope.
const INSUFFICIENT_SCOPE: &str = "insufficient_scope";

/// An error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Per-field errors, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:portico:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// A genuine token without a scope the API requires (RFC 6750 `insufficient_scope`).
    pub fn insufficient_scope(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, INSUFFICIENT_SCOPE, detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "the request has invalid fields",
        );
        p.errors = errors;
        p
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        match error {
            Error::Unauthenticated(m) => Problem::unauthorized(m),
            Error::Forbidden(m) => Problem::new(StatusCode::FORBIDDEN, "forbidden", m),
            Error::NotFound(m) => Problem::new(StatusCode::NOT_FOUND, "not-found", m),
            Error::Conflict(m) => Problem::new(StatusCode::CONFLICT, "conflict", m),
            Error::TooLarge(m) => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", m),
            Error::Validation(errors) => Problem::validation(errors),
            Error::BadRequest(error) => {
                let mut p = Problem::new(StatusCode::BAD_REQUEST, "bad-request", &error.message);
                p.errors = vec![error];
                p
            }
            Error::Unavailable(m) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            Error::Unexpected(e) => {
                // Logged once here, inside the request's span; the caller sees no internals.
                tracing::error!(error = format!("{e:#}"), "unexpected error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an unexpected error occurred; it has been logged",
                )
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        } else if self.kind.ends_with(INSUFFICIENT_SCOPE) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
            );
        }
        response
    }
}

/// Turns error responses that are not problem documents (axum's own 404/405/413, a timeout) into
/// problem documents, keeping their status and headers.
pub async fn normalize_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (slug, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method-not-allowed", "this route does not accept that method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("too-large", "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        _ => ("error", "the request failed"),
    };
    let problem = Problem::new(status, slug, detail).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(parts, problem.into_body())
}
