//! Request extractors: the bearer-token authorizer, strict JSON bodies, and list paging.
//! Each rejects with a problem document that says what was wrong.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use portico_core::audit::{Actor, ActorKind};
use portico_core::domain::Caller;
use portico_core::ports::PageRequest;
use portico_core::{Error, FieldError};
use portico_functions::identity::{Identity, identify};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::problem::Problem;

/// Where the authorizer leaves the caller's `sub` for the invocation log line.
#[derive(Clone, Default)]
pub(crate) struct PrincipalSlot(pub Arc<OnceLock<String>>);

/// The verified caller of a function: `Authorization: Bearer <access token>`.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("the Authorization header is missing"))?;
        let token = value.to_str().ok().and_then(bearer_token).ok_or_else(|| {
            Problem::unauthorized("the Authorization header is not `Bearer <token>`")
        })?;
        let (claims, fresh) = state.verifier().verify_seen(token).await.map_err(|e| {
            if e.is_unavailable() {
                tracing::warn!(error = %e, "cannot verify tokens");
                Problem::from(Error::Unavailable("tokens cannot be verified right now".into()))
            } else if e.is_insufficient_scope() {
                Problem::insufficient_scope(e.to_string())
            } else {
                Problem::unauthorized(e.to_string())
            }
        })?;
        if let Some(slot) = parts.extensions.get::<PrincipalSlot>() {
            let _ = slot.0.set(claims.sub.clone());
        }
        // A first sign-in writes the caller's record: it is theirs, by their `sub`.
        portico_core::audit::set_actor(Actor {
            kind: ActorKind::User,
            id: claims.sub.clone(),
            sub: Some(claims.sub.clone()),
            roles: Vec::new(),
        });
        let sign_in = fresh.then(|| claims.issued());
        let identity =
            Identity { sub: claims.sub, groups: claims.groups, email: claims.email, sign_in };
        let caller = identify(state.context(), &identity).await?;
        portico_core::audit::set_actor(Actor::caller(&caller));
        Ok(Authenticated(caller))
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A JSON request body: `Content-Type: application/json` (415 otherwise), within the body limit
/// (413), syntactically valid (400), and of the right shape (422 naming the field).
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    "the request body is larger than this API accepts",
                )
            } else {
                Problem::bad_request(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                let field = if path == "." {
                    named_field(&message).unwrap_or_else(|| "body".into())
                } else {
                    path
                };
                let message = message.split(" at line ").next().unwrap_or(&message).to_string();
                Problem::validation(vec![FieldError::new(field, message)])
            }
            _ => Problem::bad_request(format!("the body is not valid JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// The field a "missing field `x`" or "unknown field `x`" message is about.
fn named_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// `?limit=&cursor=` of a list route.
pub struct Paging(pub PageRequest);

/// The paging parameters every list takes, documented once (`Paging` reads them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read by `Paging`; this type only documents them
pub struct PageParams {
    /// 1 to 200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        #[derive(Deserialize)]
        struct Raw {
            limit: Option<String>,
            cursor: Option<String>,
        }
        let Query(raw) = Query::<Raw>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::bad_request(e.body_text()))?;
        let limit = match raw.limit {
            None => None,
            Some(l) => Some(l.parse::<u32>().map_err(|_| {
                Problem::validation(vec![FieldError::new("limit", "must be a whole number")])
            })?),
        };
        let cursor = raw.cursor.filter(|c| !c.is_empty());
        PageRequest::new(limit, cursor).map(Paging).map_err(Problem::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        name: String,
        roles: Vec<String>,
    }

    fn problem(body: &str) -> Problem {
        match parse_json::<Input>(body.as_bytes()) {
            Ok(v) => panic!("accepted {v:?}"),
            Err(p) => p,
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(problem(r#"{"name": "x"#).status, 400);
        assert_eq!(problem(r#"{"name": "x", "roles": []} trailing"#).status, 400);
        let p = problem(r#"{"name": 5, "roles": []}"#);
        assert_eq!((p.status, p.errors[0].field.as_str()), (422, "name"));
        let p = problem(r#"{"name": "x", "roles": ["a", 2]}"#);
        assert_eq!(p.errors[0].field, "roles[1]");
        let p = problem(r#"{"name": "x"}"#);
        assert_eq!(p.errors[0].field, "roles");
        let p = problem(r#"{"name": "x", "roles": [], "admin": true}"#);
        assert_eq!(p.errors[0].field, "admin");
    }

    #[test]
    fn bearer_scheme() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}

/// Which listener a request came in on; the local host's HTTPS listener adds `Transport::Tls`
/// to each request, and without it a request came in plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    Tls,
}

/// What makes a host-relative link absolute: the request's Host, the scheme a proxy in front
/// says it served (`x-forwarded-proto`), and whether this server's own listener was TLS.
pub struct Links {
    host: Option<String>,
    forwarded_proto: Option<&'static str>,
    tls: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Links {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let text = |name| parts.headers.get(name).and_then(|h| h.to_str().ok());
        let forwarded_proto = match text("x-forwarded-proto") {
            Some("https") => Some("https"),
            Some("http") => Some("http"),
            _ => None,
        };
        Ok(Links {
            host: text(axum::http::header::HOST.as_str()).map(str::to_string),
            forwarded_proto,
            tls: parts.extensions.get::<Transport>() == Some(&Transport::Tls),
        })
    }
}

impl Links {
    /// Makes a host-relative URL absolute: with the configured public URL; else with the Host
    /// the caller sent, but only a loopback one (a developer's own machine): any other Host
    /// header is the caller's to choose, so it never names this server in a link, and the link
    /// stays host-relative. The scheme is https when this server's listener was TLS.
    pub fn absolute(&self, public_url: Option<&str>, url: String) -> String {
        if !url.starts_with('/') {
            return url;
        }
        if let Some(base) = public_url {
            return format!("{base}{url}");
        }
        let Some(host) = self.host.as_deref().filter(|h| is_loopback_host(h)) else {
            return url;
        };
        let scheme = match (self.tls, self.forwarded_proto) {
            (true, _) => "https",
            (false, Some(proto)) => proto,
            (false, None) => "http",
        };
        format!("{scheme}://{host}{url}")
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
