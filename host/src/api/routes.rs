//! The route table: every route the server answers, with its method, path and what it
//! needs from the caller. The router is built from this table only, so the table (which
//! tests and tools read through [`route_list`]) is always exactly the router's.

use std::borrow::Cow;
use std::sync::Arc;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};
use utoipa::ToSchema;
use utoipa::openapi::{RefOr, Schema};

use crate::api::AppState;

/// What a route needs from the caller (enforced by `access::auth`; the auth matrix test
/// checks that the two agree on every route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open to anyone in every mode (liveness, the API description).
    Public,
    /// A key unless the server is open; any scope.
    Key,
    /// A key (unless open) whose scopes include the model named by the path or body.
    Model,
    /// A key with the admin scope, in every mode.
    Admin,
    /// A key (unless open) with this scope (e.g. `pii:deanonymize`).
    Scope(&'static str),
    /// A key (unless open) with a data scope for the collection the path names: to read
    /// (`data:<collection>`, `data:*`, or either with `:write`) or, with `write`, to change
    /// it (`data:<collection>:write`, `data:*:write`).
    Data {
        /// Whether the route changes the collection.
        write: bool,
    },
    /// A key (unless open) with `tools:<id>` (or `tools:*`) for the tool the path names
    /// (`/v1/tools/{id}/…`, docs/tools.md).
    Tool,
}

/// One route of the router.
pub struct ApiRoute {
    /// HTTP method.
    pub method: Method,
    /// Path in axum's syntax (`/v2/models/{name}`).
    pub path: &'static str,
    /// What the caller needs.
    pub access: Access,
    /// The JSON body the route reads, for the API description.
    pub body: Option<BodySchema>,
    /// Whether the route also answers `text/html` when `Accept` asks for it (`api/html.rs`).
    pub html: bool,
    pub(crate) handler: MethodRouter<Arc<AppState>>,
}

/// A request type's schema, from its `utoipa::ToSchema` derive.
#[derive(Clone, Copy)]
pub struct BodySchema {
    /// Component name.
    pub name: fn() -> Cow<'static, str>,
    /// The schema itself.
    pub schema: fn() -> RefOr<Schema>,
    /// The schemas it refers to.
    pub schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
}

impl ApiRoute {
    /// Declares the JSON body type the handler reads (described in `/openapi.json`).
    pub(crate) fn body<T: ToSchema>(mut self) -> Self {
        self.body = Some(BodySchema {
            name: T::name,
            schema: T::schema,
            schemas: T::schemas,
        });
        self
    }

    /// Declares that the route answers `text/html` too (negotiated from `Accept`).
    pub(crate) fn html(mut self) -> Self {
        self.html = true;
        self
    }
}

fn route<H, T>(
    method: Method,
    filter: MethodFilter,
    path: &'static str,
    access: Access,
    h: H,
) -> ApiRoute
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    ApiRoute {
        method,
        path,
        access,
        body: None,
        html: false,
        handler: on(filter, h),
    }
}

/// A GET route.
pub(crate) fn get<H, T>(path: &'static str, access: Access, h: H) -> ApiRoute
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    route(Method::GET, MethodFilter::GET, path, access, h)
}

/// A POST route.
pub(crate) fn post<H, T>(path: &'static str, access: Access, h: H) -> ApiRoute
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    route(Method::POST, MethodFilter::POST, path, access, h)
}

/// A DELETE route.
pub(crate) fn delete<H, T>(path: &'static str, access: Access, h: H) -> ApiRoute
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    route(Method::DELETE, MethodFilter::DELETE, path, access, h)
}

/// The access of the route with this method and (axum) path, from the route table.
pub fn access_of(method: &Method, path: &str) -> Option<Access> {
    static TABLE: std::sync::OnceLock<Vec<(Method, &'static str, Access)>> =
        std::sync::OnceLock::new();
    TABLE
        .get_or_init(route_list)
        .iter()
        .find(|(m, p, _)| m == method && *p == path)
        .map(|r| r.2)
}

/// Every route: (method, path, access), from the same table the router is built from.
pub fn route_list() -> Vec<(Method, &'static str, Access)> {
    crate::api::all_routes()
        .into_iter()
        .map(|r| (r.method, r.path, r.access))
        .collect()
}
