//! `Accept: text/html` on the task routes, through the real server: entities highlighted in
//! the text, classification as a table; whatever the caller sent is escaped (no `<script>`,
//! no event handler, no `javascript:` URL survives as markup); JSON stays the default; an
//! `Accept` allowing neither is a 406 naming both.

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::support::{Home, Server};

const INJECTED: &str = "Call John Smith at (415) 555-0132 <script>alert(1)</script> \
    <img src=x onerror=alert(2)> <a href=\"javascript:alert(3)\">x</a>";

/// The tags this module writes; anything else in a page came from the input.
const OURS: &[&str] = &[
    "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "section", "p", "mark", "table",
    "caption", "thead", "tbody", "tr", "th", "td",
];

fn post(s: &Server, path: &str, accept: Option<&str>, body: &Value) -> Response {
    let client = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut r = client.post(s.at(path)).json(body);
    if let Some(a) = accept {
        r = r.header("accept", a);
    }
    r.send().unwrap()
}

/// Every tag of `html` (the text between `<` and `>`), asserting each is one of ours and
/// carries no event handler or URL.
fn assert_only_our_markup(html: &str) {
    for tag in html.split('<').skip(1).filter_map(|t| t.split('>').next()) {
        let name = tag
            .trim_start_matches('/')
            .split([' ', '>'])
            .next()
            .unwrap();
        assert!(
            OURS.contains(&name),
            "tag <{tag}> came from the input:\n{html}"
        );
        let lower = tag.to_ascii_lowercase();
        for bad in ["onerror", "onclick", "href", "src", "javascript:"] {
            assert!(!lower.contains(bad), "<{tag}> has {bad}:\n{html}");
        }
    }
}

fn html_of(r: Response) -> String {
    if r.status().as_u16() != 200 {
        panic!("{}: {}", r.status(), r.text().unwrap());
    }
    let h = r.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    r.text().unwrap()
}

#[test]
fn entities_as_html_mark_the_spans_and_escape_the_rest() {
    let home = Home::new();
    let s = home.serve(&["--models", "pii-ner,tiny-classifier"]);
    let body = json!({"model": "pii-ner", "input": [INJECTED, "nothing here"]});
    let html = html_of(post(&s, "/v1/entities", Some("text/html"), &body));
    assert!(
        html.contains("<mark data-label=\"PHONE\">(415) 555-0132</mark>"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("data-index=\"1\"") && html.contains("<p>nothing here</p>"),
        "{html}"
    );
    assert_only_our_markup(&html);

    // A browser's Accept gets HTML; none, */* or JSON get the JSON answer, unchanged.
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    assert_only_our_markup(&html_of(post(&s, "/v1/entities", Some(browser), &body)));
    for accept in [
        None,
        Some("*/*"),
        Some("application/json"),
        Some("text/html;q=0.5, application/json"),
    ] {
        let r = post(&s, "/v1/entities", accept, &body);
        assert_eq!(r.status().as_u16(), 200, "{accept:?}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let v: Value = r.json().unwrap();
        assert_eq!(v["data"][1]["entities"], json!([]), "{v}");
    }
}

#[test]
fn classify_as_html_is_a_table_and_refusals_stay_json() {
    let home = Home::new();
    let s = home.serve(&["--models", "pii-ner,tiny-classifier"]);
    // The tiny classifier reads 16 tokens: truncation keeps the whole text in the caption.
    let body =
        json!({"model": "tiny-classifier", "input": ["I love it", INJECTED], "truncate": true});
    let html = html_of(post(&s, "/v1/classify", Some("text/html"), &body));
    assert!(html.contains("<caption>I love it</caption>"), "{html}");
    assert!(html.contains("<tr><td>positive</td><td>0."), "{html}");
    assert_eq!(html.matches("<table").count(), 2, "{html}");
    assert!(
        html.contains("<caption>Call John Smith at (415) 555-0132 &lt;script&gt;"),
        "{html}"
    );
    assert_only_our_markup(&html);

    // Accept allowing neither: 406 in OpenAI's error shape naming both, before any work.
    for (path, model) in [
        ("/v1/classify", "tiny-classifier"),
        ("/v1/entities", "pii-ner"),
    ] {
        let r = post(
            &s,
            path,
            Some("text/plain, image/png"),
            &json!({"model": model, "input": "x"}),
        );
        assert_eq!(r.status().as_u16(), 406, "{path}");
        let e: Value = r.json().unwrap();
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("application/json") && msg.contains("text/html"),
            "{e}"
        );
        assert_eq!(e["error"]["code"], "not_acceptable", "{e}");
    }
    // Errors are JSON whatever the Accept.
    let r = post(
        &s,
        "/v1/classify",
        Some("text/html"),
        &json!({"model": "nope", "input": "x"}),
    );
    assert_eq!(r.status().as_u16(), 404);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");

    // The API description says so.
    let doc: Value = reqwest::blocking::get(s.at("/openapi.json"))
        .unwrap()
        .json()
        .unwrap();
    let op = &doc["paths"]["/v1/classify"]["post"]["responses"];
    assert!(
        op["406"].is_object() && op["2XX"]["content"]["text/html"].is_object(),
        "{op}"
    );
}
