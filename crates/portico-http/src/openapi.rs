//! The OpenAPI 3 document, generated from the handlers' annotations and the types they use.

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(title = "Portico API", description = "The customer portal backend."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The document's frame (title, security scheme); the routes add their paths to it.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// Every operation documents every error status the gateway can answer for it, each as an
/// `application/problem+json` Problem: derived here from what the operation takes (a token, path
/// parameters, a JSON body, paging), once for all routes, so no handler can forget one.
struct ProblemAnswers;

const PROBLEM: &str = "application/problem+json";

impl utoipa::Modify for ProblemAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{Operation, ParameterIn};
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        let problem = || {
            ResponseBuilder::new()
                .content(PROBLEM, Content::new(Some(Ref::from_schema_name("Problem"))))
        };
        let answers = |op: &mut Operation| {
            let params: Vec<_> = op
                .parameters
                .iter()
                .flatten()
                .filter_map(|p| match p {
                    RefOr::T(p) => Some((p.name.clone(), p.parameter_in.clone())),
                    RefOr::Ref(_) => None,
                })
                .collect();
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_path = params.iter().any(|(_, at)| matches!(at, ParameterIn::Path));
            let has_query = params.iter().any(|(_, at)| matches!(at, ParameterIn::Query));
            let json_body = op.request_body.is_some();
            let mut statuses: Vec<(&str, &str)> = vec![
                ("500", "Unexpected error (logged; no internals in the answer)"),
                ("503", "A dependency is unavailable, or the request took too long"),
            ];
            if secured {
                statuses.push(("401", "No token, or one that does not verify"));
                statuses.push(("403", "A genuine token that may not do this"));
            }
            if has_path {
                statuses.push(("404", "Not found, or not visible to the caller"));
            }
            if has_query || json_body {
                statuses.push(("400", "The query string or the JSON body cannot be read"));
                statuses.push(("422", "A parameter or field is invalid; `errors` names each"));
            }
            if json_body {
                statuses.push(("413", "The body is larger than the API accepts"));
                statuses.push(("415", "The body is not `application/json`"));
            }
            for (status, description) in statuses {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| problem().description(description).build().into());
            }
            // Error answers are problem documents, whatever the annotation's default said.
            for response in op.responses.responses.values_mut() {
                if let RefOr::T(response) = response
                    && let Some(json) = response.content.shift_remove("application/json")
                {
                    let is_problem = matches!(
                        &json,
                        RefOr::T(Content { schema: Some(RefOr::Ref(r)), .. })
                            if r.ref_location.ends_with("/Problem")
                    );
                    let key = if is_problem { PROBLEM } else { "application/json" };
                    response.content.insert(key.to_string(), json);
                }
            }
        };
        for item in openapi.paths.paths.values_mut() {
            for op in
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
                    .into_iter()
                    .flatten()
            {
                answers(op);
            }
        }
    }
}

/// The document, built once from the same routes the server serves.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let base = utoipa_axum::router::OpenApiRouter::with_openapi(base());
        let (_, mut doc) = crate::api(base).split_for_parts();
        // After the paths are in: it documents what each operation takes.
        utoipa::Modify::modify(&ProblemAnswers, &mut doc);
        doc
    })
}
