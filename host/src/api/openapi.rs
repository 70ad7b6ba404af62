//! `GET /openapi.json`: the API's OpenAPI 3.1 description, generated at start-up from the
//! route table (every route the router serves, with its access rule) and the request
//! types' `ToSchema` derives. Nothing here lists routes by hand: a route added to a table
//! appears here, and the test `openapi_describes_every_route` checks it.
//!
//! The description is public, like `/health`: it holds no secret (Triton and TEI serve
//! theirs openly), and clients and tools read it before they have a key.

use std::sync::OnceLock;

use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, Ref,
    Required, ResponseBuilder, Type,
};

use crate::api::routes::{Access, ApiRoute};

/// The OpenAI-shaped error body of `/v1`, `/admin` and the service routes.
#[derive(Serialize, ToSchema)]
pub struct OpenAiError {
    /// What went wrong.
    pub error: OpenAiErrorDetail,
}

/// The inside of [`OpenAiError`].
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    /// What was wrong and what is accepted.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `server_error`…
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// A stable code (`missing_api_key`, `missing_scope`, `body_too_large`…).
    pub code: Option<String>,
}

/// The KServe-shaped error body of `/v2`.
#[derive(Serialize, ToSchema)]
pub struct KServeError {
    /// What was wrong and what is accepted.
    pub error: String,
}

/// One input tensor of a KServe v2 inference request.
#[derive(Serialize, ToSchema)]
pub struct KServeInput {
    /// The graph input's name (GET /v2/models/{name} lists them).
    pub name: String,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// `FP32`, `FP16`, `INT64`, `INT32`, `BOOL`, `BYTES`.
    pub datatype: String,
    /// Row-major values (absent with `parameters.binary_data_size`).
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Vec<serde_json::Value>>,
    /// e.g. `binary_data_size` for the binary extension.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
}

/// A requested output of a KServe v2 inference request.
#[derive(Serialize, ToSchema)]
pub struct KServeOutput {
    /// The graph output's name.
    pub name: String,
    /// e.g. `binary_data: true`.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
}

/// `POST /v2/models/{name}/infer`: JSON, or with the binary extension
/// (`Inference-Header-Content-Length`) this JSON followed by the tensors' bytes.
#[derive(Serialize, ToSchema)]
pub struct KServeInferRequest {
    /// Echoed in the answer.
    pub id: Option<String>,
    /// Input tensors.
    pub inputs: Vec<KServeInput>,
    /// Outputs to return (default: all).
    pub outputs: Option<Vec<KServeOutput>>,
    /// Request parameters.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
}

/// The description, built once.
pub fn document() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| build(crate::api::all_routes()))
}

/// `GET /openapi.json`.
pub(crate) async fn serve_document() -> Response {
    match serde_json::to_vec(document()) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => crate::api::error::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("cannot write the API description: {e}"),
        )
        .into_response(),
    }
}

fn build(routes: Vec<ApiRoute>) -> OpenApi {
    let mut components =
        with_deps::<KServeInferRequest>(with_deps::<KServeError>(with_deps::<OpenAiError>(
            ComponentsBuilder::new(),
        )))
        .security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    let mut paths = utoipa::openapi::Paths::new();
    for r in &routes {
        if let Some(b) = r.body {
            let mut deps = Vec::new();
            (b.schemas)(&mut deps);
            components = components
                .schema((b.name)(), (b.schema)())
                .schemas_from_iter(deps);
        }
        let Some(method) = http_method(&r.method) else {
            continue;
        };
        paths.add_path_operation(openapi_path(r.path), vec![method], operation(r));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("llmos")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "OpenAI-compatible routes (/v1), KServe v2 (/v2), the admin API (/admin). \
                     Keys go in `Authorization: Bearer <key>`; without any key a loopback \
                     server serves /v1 and /v2 openly to loopback clients (admin never).",
                ))
                .build(),
        )
        .paths(PathsBuilder::from(paths))
        .components(Some(components.build()))
        .build()
}

/// Adds a schema and every schema it refers to.
fn with_deps<T: ToSchema>(c: ComponentsBuilder) -> ComponentsBuilder {
    let mut deps = Vec::new();
    T::schemas(&mut deps);
    c.schema(T::name(), T::schema()).schemas_from_iter(deps)
}

fn http_method(m: &Method) -> Option<HttpMethod> {
    match *m {
        Method::GET => Some(HttpMethod::Get),
        Method::POST => Some(HttpMethod::Post),
        Method::DELETE => Some(HttpMethod::Delete),
        Method::PUT => Some(HttpMethod::Put),
        Method::PATCH => Some(HttpMethod::Patch),
        _ => None,
    }
}

/// axum's `{name}` is OpenAPI's `{name}` too; kept as a function in case either changes.
fn openapi_path(path: &str) -> String {
    path.to_string()
}

fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// The success answer; routes that render HTML (`Accept: text/html`) say so.
fn success(html: bool) -> utoipa::openapi::Response {
    if !html {
        return ResponseBuilder::new()
            .description("success (JSON; KServe binary tensors with the binary extension)")
            .build();
    }
    let any = || ContentBuilder::new().build();
    ResponseBuilder::new()
        .description("success: JSON, or a sanitised HTML page when Accept prefers text/html")
        .content("application/json", any())
        .content("text/html", any())
        .build()
}

fn operation(r: &ApiRoute) -> utoipa::openapi::path::Operation {
    let kserve = r.path.starts_with("/v2");
    let tag = r.path.split('/').nth(1).unwrap_or("service");
    let error = if kserve { "KServeError" } else { "OpenAiError" };
    let error_response = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(error)))
                    .build(),
            )
            .build()
    };
    let mut op = OperationBuilder::new()
        .operation_id(Some(format!(
            "{}{}",
            r.method.as_str().to_ascii_lowercase(),
            r.path.replace(['/', '{', '}', '.'], "_")
        )))
        .tag(tag)
        .response("2XX", success(r.html))
        .response(
            "400",
            error_response("bad request: names the field and what is accepted"),
        )
        .response("404", error_response("unknown route, model or item"))
        .response("500", error_response("server fault"));
    for p in path_params(r.path) {
        op = op.parameter(
            ParameterBuilder::new()
                .name(p)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
    }
    if r.html {
        op = op.response(
            "406",
            error_response("Accept allows neither application/json nor text/html"),
        );
    } else if r.path == "/mcp" {
        op = op.response(
            "406",
            error_response("Accept does not allow application/json and text/event-stream (MCP)"),
        );
    }
    if let Some(b) = r.body {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name((b.name)())))
            .build();
        op = op
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", content)
                    .required(Some(Required::True))
                    .build(),
            ))
            .response("413", error_response("body over the size limit"))
            .response("415", error_response("Content-Type not JSON (open mode)"));
    } else if kserve && r.method == Method::POST {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("KServeInferRequest")))
            .build();
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", content.clone())
                .content("application/octet-stream", content)
                .required(Some(Required::True))
                .build(),
        ));
    }
    match r.access {
        Access::Public => op,
        Access::Admin => op
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .response("401", error_response("missing or invalid key"))
            .response("403", error_response("the key lacks the admin scope")),
        Access::Data { .. } => op
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .security(SecurityRequirement::default())
            .response("401", error_response("missing or invalid key"))
            .response(
                "403",
                error_response(
                    "the key lacks the collection's data scope (data:<collection>, or :write to change it)",
                ),
            )
            .response(
                "502",
                error_response("a preprocessor plugin or the model failed during ingest or a text query"),
            ),
        Access::Key | Access::Model => op
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            // Open loopback mode: no key at all.
            .security(SecurityRequirement::default())
            .response("401", error_response("missing or invalid key"))
            .response(
                "403",
                error_response(
                    "the key lacks the model's scope, or (open mode) a foreign Host or Origin",
                ),
            ),
        Access::Tool => op
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .security(SecurityRequirement::default())
            .response("401", error_response("missing or invalid key"))
            .response(
                "403",
                error_response(
                    "the key lacks the tool's scope (tools:<id> or tools:*), or (open mode) a foreign Host or Origin",
                ),
            )
            .response("404", error_response("no tool of this id")),
        Access::Scope(_) => op
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .security(SecurityRequirement::default())
            .response("401", error_response("missing or invalid key"))
            .response(
                "403",
                error_response(
                    "the key lacks the route's scope, or (open mode) a foreign Host or Origin",
                ),
            ),
    }
    .response("429", error_response("busy: retry after Retry-After"))
    .response(
        "504",
        error_response("the request took longer than the limit"),
    )
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_describes_every_route() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        for (method, path, access) in crate::api::routes::route_list() {
            let op = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} is not described");
            let secured = op.get("security").is_some();
            assert_eq!(secured, access != Access::Public, "{method} {path}");
        }
        let embed = &doc["components"]["schemas"]["EmbeddingsRequest"];
        assert!(embed["properties"]["model"].is_object(), "{embed}");
        assert!(doc["components"]["schemas"]["TextOrIdsInput"].is_object());
        assert!(doc["components"]["schemas"]["CreateKey"].is_object());
    }
}
