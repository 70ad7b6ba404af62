//! `webhook`: an integration that POSTs each event as JSON to the configured `url`.
//!
//! Outbound HTTP goes through `wasi:http/outgoing-handler`; the host refuses every host the
//! operator did not grant (`http:<host>[:<port>]`), before any connection is attempted.

wit_bindgen::generate!({
    world: "integration",
    path: "../../wit/llmos-plugin@0.1.0",
});

use llmos::plugin::{config, secrets};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

struct Webhook;

/// Largest event body sent (the host buffers one chunk of 1 MiB before the request starts).
const MAX_BODY: usize = 1 << 20;

/// Splits `http(s)://authority/path?query`.
fn parse_url(url: &str) -> Result<(Scheme, String, String), Error> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else {
        return Err(Error::InvalidInput(format!(
            "url {url:?}: expected http://… or https://…"
        )));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(Error::InvalidInput(format!("url {url:?} has no host")));
    }
    Ok((scheme, authority.to_string(), path.to_string()))
}

fn body_json(event: &Event) -> String {
    let c = &event.context;
    let payload: serde_json::Value =
        serde_json::from_str(&event.payload_json).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "kind": event.kind,
        "timestamp_ms": event.timestamp_ms,
        "request_id": c.request_id,
        "key_id": c.key_id,
        "model": c.model,
        "task": c.task,
        "route": c.route,
        "payload": payload,
    })
    .to_string()
}

fn post(url: &str, body: &[u8], token: Option<String>) -> Result<u16, Error> {
    let (scheme, authority, path) = parse_url(url)?;
    if body.len() > MAX_BODY {
        return Err(Error::LimitExceeded(format!(
            "event is {} bytes; at most {MAX_BODY} are sent",
            body.len()
        )));
    }
    let mut headers = vec![
        ("content-type".to_string(), b"application/json".to_vec()),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ];
    if let Some(t) = token {
        headers.push((
            "authorization".to_string(),
            format!("Bearer {t}").into_bytes(),
        ));
    }
    let fields =
        Fields::from_list(&headers).map_err(|e| Error::InvalidInput(format!("headers: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let bad = |what: &str| Error::InvalidInput(format!("url {url:?}: invalid {what}"));
    request
        .set_method(&Method::Post)
        .map_err(|_| bad("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|_| bad("scheme"))?;
    request
        .set_authority(Some(&authority))
        .map_err(|_| bad("host"))?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|_| bad("path"))?;
    let outgoing = request.body().map_err(|_| bad("body"))?;
    let unavailable = |what: &str, e: &dyn std::fmt::Debug| {
        Error::Unavailable(format!("POST {url}: {what}: {e:?}"))
    };
    // The host buffers the body until the request starts: write it in one piece (no flush,
    // which would wait for a reader), then send.
    {
        let stream = outgoing.write().map_err(|e| unavailable("body", &e))?;
        let permit = stream.check_write().map_err(|e| unavailable("body", &e))?;
        if (permit as usize) < body.len() {
            return Err(Error::LimitExceeded(format!(
                "event is {} bytes; the host accepts {permit} at once",
                body.len()
            )));
        }
        stream.write(body).map_err(|e| unavailable("body", &e))?;
    }
    let future = outgoing_handler::handle(request, None).map_err(|e| unavailable("refused", &e))?;
    OutgoingBody::finish(outgoing, None).map_err(|e| unavailable("body", &e))?;
    let response = loop {
        match future.get() {
            Some(r) => break r,
            None => future.subscribe().block(),
        }
    };
    let response = response
        .map_err(|e| unavailable("response", &e))?
        .map_err(|e| unavailable("failed", &e))?;
    Ok(response.status())
}

impl Guest for Webhook {
    fn on_event(event: Event) -> Result<(), Error> {
        let url = config::get("url")
            .ok_or_else(|| Error::InvalidInput("config url is not set".into()))?;
        let events = config::get("events").unwrap_or_default();
        if !events.lines().any(|k| k.trim() == event.kind) {
            return Ok(());
        }
        // The token is optional: denied (not granted) or not found (not set) means no auth.
        let token = secrets::get("token").ok();
        let status = post(&url, body_json(&event).as_bytes(), token)?;
        if !(200..300).contains(&status) {
            return Err(Error::Unavailable(format!(
                "POST {url}: HTTP status {status}"
            )));
        }
        Ok(())
    }
}

export!(Webhook);
