//! HTML answers: Markdown rendered to sanitised HTML (for generation's
//! `response_format: {"type": "html"}`), and `Accept: text/html` on the task routes
//! (`/v1/entities`: the text with its entities highlighted; `/v1/classify`: a table of labels
//! and scores). JSON stays the default; an `Accept` that allows neither is a 406.
//!
//! Everything taken from a request or a model is escaped ([`escape`]) or, for Markdown,
//! passed through ammonia's allow-list (no `<script>`, no event-handler attributes, only
//! http/https/mailto URLs), so a page never runs what a caller or a model wrote.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::error::ApiError;

/// The most a task route's JSON answer is read back to be rendered (it is ours, made just
/// before; the bound only keeps a bug from holding unbounded memory).
const MAX_JSON: usize = 64 << 20;

/// The answer's format, chosen from the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json` (the default, and the choice on a tie).
    Json,
    /// `text/html`.
    Html,
}

/// Markdown (CommonMark with tables, strikethrough and task lists) → HTML, sanitised.
pub fn markdown_to_html(markdown: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut raw = String::with_capacity(markdown.len().saturating_mul(2));
    html::push_html(&mut raw, Parser::new_ext(markdown, options));
    sanitize(&raw)
}

/// ammonia's defaults: an allow-list of tags and attributes; `script`/`style` are dropped with
/// their content, event handlers and `style` attributes removed, links limited to safe URL
/// schemes and given `rel="noopener noreferrer"`.
pub fn sanitize(html: &str) -> String {
    ammonia::Builder::default().clean(html).to_string()
}

/// Text → HTML text or attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The format the request's `Accept` header asks for: the acceptable one with the higher
/// quality (`q`), JSON on a tie or without the header; 406 when it allows neither.
pub fn negotiate(headers: &HeaderMap) -> Result<Format, ApiError> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Ok(Format::Json);
    }
    let accept = values.join(",");
    let json = quality(&accept, "application", "json");
    let html = quality(&accept, "text", "html");
    match (json, html) {
        (j, h) if j > 0.0 && j >= h => Ok(Format::Json),
        (_, h) if h > 0.0 => Ok(Format::Html),
        _ => Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "invalid_request_error",
            format!(
                "`Accept: {accept}` allows neither application/json nor text/html; this route answers in one of those two (JSON without an Accept header)"
            ),
        )
        .with_param(Some("Accept".into()))
        .with_code("not_acceptable")),
    }
}

/// The quality `Accept` gives `kind/sub`: that of the most specific matching range
/// (`kind/sub` over `kind/*` over `*/*`), 0 when none matches.
fn quality(accept: &str, kind: &str, sub: &str) -> f32 {
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let Some((t, s)) = media.split_once('/') else {
            continue;
        };
        let specificity = match (t == kind, s == sub) {
            (true, true) => 2,
            (true, false) if s == "*" => 1,
            (false, false) if t == "*" && s == "*" => 0,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .filter(|q| (0.0..=1.0).contains(q))
            .unwrap_or(1.0);
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

/// Turns a task route's JSON answer into HTML with `render` when `format` is HTML; errors
/// and JSON answers pass unchanged. The response keeps its status, headers and extensions.
pub async fn respond(
    format: Format,
    resp: Response,
    render: impl FnOnce(&Value) -> String,
) -> Response {
    if format == Format::Json || !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let json = match axum::body::to_bytes(body, MAX_JSON).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes).ok(),
        Err(_) => None,
    };
    let Some(json) = json else {
        let e = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the answer could not be rendered as HTML; ask for application/json",
        );
        return e.into_response();
    };
    let page = render(&json);
    parts.headers.remove(header::CONTENT_LENGTH);
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        // The page is inert: no script, style sheet, frame or image may load from it.
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in headers {
        parts.headers.insert(name, HeaderValue::from_static(value));
    }
    Response::from_parts(parts, Body::from(page))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>mark{{padding:0 .2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.2em .5em}}</style>\
         </head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

fn items(json: &Value) -> &[Value] {
    json.get("data").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn model(json: &Value) -> &str {
    json.get("model").and_then(Value::as_str).unwrap_or("")
}

/// `/v1/entities` as HTML: each text with its entities in `<mark data-label="…">`, then a
/// table of them. `texts` are the request's texts, in order.
pub fn entities_page(json: &Value, texts: &[String]) -> String {
    let mut body = String::new();
    for (i, item) in items(json).iter().enumerate() {
        let entities = item.get("entities").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        let text = texts.get(i).map_or("", String::as_str);
        body.push_str(&format!(
            "<section class=\"entities\" data-index=\"{i}\">\n<p>{}</p>\n",
            marked(text, entities)
        ));
        body.push_str("<table><thead><tr><th>label</th><th>text</th><th>start</th><th>end</th><th>score</th></tr></thead><tbody>\n");
        for e in entities {
            let field = |k: &str| e.get(k).map_or(String::new(), |v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(&field("label")),
                escape(&field("text")),
                escape(&field("start")),
                escape(&field("end")),
                escape(&field("score")),
            ));
        }
        body.push_str("</tbody></table>\n</section>\n");
    }
    page(&format!("entities ({})", model(json)), &body)
}

/// `text`, escaped, with each entity whose character span `[start, end)` is in order, does not
/// overlap the previous one and holds the entity's `text` wrapped in a `<mark>`.
fn marked(text: &str, entities: &[Value]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let slice = |a: usize, b: usize| chars.get(a..b).map(|c| c.iter().collect::<String>());
    let mut out = String::new();
    let mut at = 0;
    for e in entities {
        let num = |k: &str| e.get(k).and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
        let (Some(start), Some(end)) = (num("start"), num("end")) else {
            continue;
        };
        let label = e.get("label").and_then(Value::as_str).unwrap_or("");
        let (Some(before), Some(inner)) = (slice(at, start), slice(start, end)) else {
            continue;
        };
        if start >= end || e.get("text").and_then(Value::as_str) != Some(inner.as_str()) {
            continue;
        }
        out.push_str(&escape(&before));
        out.push_str(&format!("<mark data-label=\"{}\">{}</mark>", escape(label), escape(&inner)));
        at = end;
    }
    out.push_str(&escape(&slice(at, chars.len()).unwrap_or_default()));
    out
}

/// `/v1/classify` as HTML: one table of labels and scores per input. `texts` are the
/// request's texts (empty when it sent token ids).
pub fn classes_page(json: &Value, texts: &[String]) -> String {
    let mut body = String::new();
    for (i, item) in items(json).iter().enumerate() {
        let caption = texts.get(i).map_or_else(|| format!("input {i}"), |t| escape(t));
        body.push_str(&format!(
            "<table class=\"classes\" data-index=\"{i}\"><caption>{caption}</caption>\
             <thead><tr><th>label</th><th>score</th></tr></thead><tbody>\n"
        ));
        let scores = item.get("scores").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        for s in scores {
            let label = s.get("label").and_then(Value::as_str).unwrap_or("");
            let score = s.get("score").and_then(Value::as_f64).unwrap_or(f64::NAN);
            body.push_str(&format!(
                "<tr><td>{}</td><td>{score:.4}</td></tr>\n",
                escape(label)
            ));
        }
        body.push_str("</tbody></table>\n");
    }
    page(&format!("classification ({})", model(json)), &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accept(v: &str) -> Result<Format, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        negotiate(&h)
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(&HeaderMap::new()).unwrap(), Format::Json);
        assert_eq!(accept("*/*").unwrap(), Format::Json);
        assert_eq!(accept("application/json").unwrap(), Format::Json);
        assert_eq!(accept("text/html").unwrap(), Format::Html);
        assert_eq!(accept("text/*").unwrap(), Format::Html);
        // A browser's Accept.
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(accept(browser).unwrap(), Format::Html);
        assert_eq!(accept("text/html;q=0.5, application/json;q=0.9").unwrap(), Format::Json);
        assert_eq!(accept("application/json;q=0, */*").unwrap(), Format::Html);
        for refused in ["text/plain", "image/png, text/csv", "text/html;q=0, application/json;q=0"] {
            let e = accept(refused).unwrap_err();
            assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
            assert!(e.message.contains("application/json") && e.message.contains("text/html"), "{}", e.message);
        }
    }

    #[test]
    fn markdown_renders_and_injections_are_removed() {
        let md = "# Title\n\n**bold** and a [link](https://example.org) and `code`\n\n\
                  | a | b |\n|---|---|\n| 1 | 2 |\n\n\
                  <script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n\
                  [bad](javascript:alert(3)) <a href=\"javascript:alert(4)\">x</a>\n\n\
                  <iframe src=\"https://evil.example\"></iframe><p style=\"x\" onclick=\"y\">p</p>";
        let html = markdown_to_html(md);
        assert!(html.contains("<h1>Title</h1>") && html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("<a href=\"https://example.org\" rel=\"noopener noreferrer\">"), "{html}");
        assert!(html.contains("<table>") && html.contains("<code>code</code>"), "{html}");
        let lower = html.to_ascii_lowercase();
        for bad in ["<script", "alert(1)", "onerror", "javascript:", "<iframe", "onclick", "style="] {
            assert!(!lower.contains(bad), "{bad} survived: {html}");
        }
    }

    #[test]
    fn entities_are_marked_and_escaped() {
        let text = "Call <b>Jöhn</b> & \"Smith\" now";
        let chars: Vec<char> = text.chars().collect();
        let span = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
        let json = json!({"model": "m", "data": [{"index": 0, "entities": [
            {"label": "PER", "start": 5, "end": 16, "text": span(5, 16), "score": 0.9},
            {"label": "<x onmouseover=y>", "start": 19, "end": 26, "text": span(19, 26), "score": 0.8},
            {"label": "BAD", "start": 0, "end": 3, "text": "not the text", "score": 0.1}
        ]}]});
        let html = entities_page(&json, &[text.to_string()]);
        assert!(
            html.contains("Call <mark data-label=\"PER\">&lt;b&gt;Jöhn&lt;/b&gt;</mark> &amp; <mark data-label=\"&lt;x onmouseover=y&gt;\">&quot;Smith&quot;</mark> now"),
            "{html}"
        );
        assert!(!html.contains("<b>") && !html.contains("<x "), "{html}");
        // The span whose text does not match is listed, not marked.
        assert!(html.contains("<td>BAD</td>") && !html.contains("data-label=\"BAD\""), "{html}");
    }

    #[test]
    fn classes_table() {
        let json = json!({"model": "m", "data": [{"index": 0, "label": "POS", "score": 0.75,
            "scores": [{"label": "POS", "score": 0.75}, {"label": "<i>NEG</i>", "score": 0.25}]}]});
        let html = classes_page(&json, &["<script>x</script>".into()]);
        assert!(html.contains("<caption>&lt;script&gt;x&lt;/script&gt;</caption>"), "{html}");
        assert!(html.contains("<tr><td>POS</td><td>0.7500</td></tr>"), "{html}");
        assert!(html.contains("<td>&lt;i&gt;NEG&lt;/i&gt;</td>") && !html.contains("<script"), "{html}");
        assert!(classes_page(&json, &[]).contains("<caption>input 0</caption>"));
    }
}
