//! The API Gateway Lambda authorizer.
//!
//! Accepts TOKEN and REQUEST authorizer events (answered with an IAM policy) and HTTP API v2
//! events (answered with a simple response). The policy allows the whole API, not only the method
//! in the event, because API Gateway caches one policy per token for every method; which caller
//! may do what is decided by the functions themselves, from Portico's own records.
//!
//! A token that does not verify is `Unauthorized` (401, as the local gateway answers). A genuine
//! token without a scope the API requires (`PORTICO_AUTH_REQUIRED_SCOPES`) gets a Deny policy for
//! the whole API (403, cached like an Allow), or `isAuthorized: false` from an HTTP API.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayV2CustomAuthorizerSimpleResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use portico_auth::{AuthError, Claims, Verifier};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    /// API Gateway turns exactly this message into a 401 for the client.
    #[error("Unauthorized")]
    Unauthorized,
    #[error("not an API Gateway authorizer event: {0}")]
    BadEvent(String),
    /// Keys cannot be had right now; API Gateway answers 500 and the client may retry.
    #[error("authorizer unavailable: {0}")]
    Unavailable(String),
}

/// Answers one authorizer event.
pub async fn handle(verifier: &Verifier, event: Value) -> Result<Value, AuthorizerError> {
    let is_v2 = event.get("version").and_then(Value::as_str) == Some("2.0");
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    if is_v2 {
        let token = header(&event, "authorization").and_then(portico_http::bearer_token);
        let claims = match token {
            Some(token) => verify(verifier, token).await,
            None => Err(AuthorizerError::Unauthorized),
        };
        let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
        match claims {
            Ok(claims) => {
                response.is_authorized = true;
                response.context = context(&claims);
            }
            Err(AuthorizerError::Unauthorized) => response.is_authorized = false,
            Err(e) => return Err(e),
        }
        return to_value(&response);
    }
    let method_arn = event
        .get("methodArn")
        .and_then(Value::as_str)
        .ok_or_else(|| AuthorizerError::BadEvent("no methodArn".into()))?;
    let token = match kind {
        "TOKEN" => event
            .get("authorizationToken")
            .and_then(Value::as_str)
            .and_then(|t| portico_http::bearer_token(t).or(Some(t))),
        "REQUEST" => header(&event, "authorization").and_then(portico_http::bearer_token),
        other => return Err(AuthorizerError::BadEvent(format!("type {other:?}"))),
    };
    let token = token.ok_or(AuthorizerError::Unauthorized)?;
    let (principal, effect, context) = match verifier.verify(token).await {
        Ok(claims) => (claims.sub.clone(), IamPolicyEffect::Allow, context(&claims)),
        Err(AuthError::InsufficientScope { sub, scope }) => {
            tracing::info!(sub, scope, "token without a required scope: denied");
            (sub, IamPolicyEffect::Deny, json!({"reason": "insufficient_scope", "scope": scope}))
        }
        Err(e) => return Err(refusal(e)),
    };
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = effect;
    statement.resource = vec![whole_api(method_arn)?];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".into());
    policy.statement = vec![statement];
    let mut response = ApiGatewayCustomAuthorizerResponse::<Value>::default();
    response.principal_id = Some(principal);
    response.policy_document = policy;
    response.context = context;
    to_value(&response)
}

async fn verify(verifier: &Verifier, token: &str) -> Result<Claims, AuthorizerError> {
    verifier.verify(token).await.map_err(refusal)
}

/// A token that does not verify is refused as `Unauthorized`; keys that cannot be had make the
/// authorizer itself fail (API Gateway answers 500, the client may retry).
fn refusal(e: AuthError) -> AuthorizerError {
    if e.is_unavailable() {
        AuthorizerError::Unavailable(e.to_string())
    } else {
        tracing::info!(reason = %e, "token refused");
        AuthorizerError::Unauthorized
    }
}

/// A header of a REQUEST or v2 event, by case-insensitive name.
fn header<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event
        .get("headers")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))?
        .1
        .as_str()
}

/// `arn:aws:execute-api:region:account:api/stage/METHOD/path` -> `.../api/stage/*/*`.
fn whole_api(method_arn: &str) -> Result<String, AuthorizerError> {
    let mut parts = method_arn.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(api), Some(stage)) if api.starts_with("arn:") && !stage.is_empty() => {
            Ok(format!("{api}/{stage}/*/*"))
        }
        _ => Err(AuthorizerError::BadEvent(format!(
            "methodArn {method_arn:?} is not an execute-api ARN"
        ))),
    }
}

/// What downstream integrations see in `requestContext.authorizer` (string values only, as API
/// Gateway requires).
fn context(claims: &Claims) -> Value {
    json!({
        "sub": claims.sub,
        "uid": claims.uid.clone().unwrap_or_default(),
        "client_id": claims.cid.clone().unwrap_or_default(),
        "groups": claims.groups.join(","),
        "scope": claims.scp.join(" "),
    })
}

fn to_value<T: serde::Serialize>(response: &T) -> Result<Value, AuthorizerError> {
    serde_json::to_value(response).map_err(|e| AuthorizerError::Unavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_covers_every_method_of_the_stage() {
        assert_eq!(
            whole_api("arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/GET/v1/me")
                .expect("arn"),
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/*/*"
        );
        assert!(whole_api("nonsense").is_err());
    }
}
