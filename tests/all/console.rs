//! The operator console (issue 13, docs/console.md): served at `/` with strict headers,
//! turned off by `[server] console = false`, and driven in headless Chromium against a real
//! server (tests/browser/console.spec.mjs).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};

use crate::plugins_common::{manifest, wasm};
use serde_json::json;

use crate::support::{Home, Server, call, create_key, repo, text};

const JS: [&str; 5] = [
    "app.js",
    "api.js",
    "playground.js",
    "admin.js",
    "metrics.js",
];

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn get(s: &Server, path: &str) -> Response {
    client().get(s.at(path)).send().unwrap()
}

fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The headers every console file carries.
fn assert_strict(r: &Response, what: &str) {
    let csp = header(r, "content-security-policy");
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(part), "{what}: CSP {csp:?} lacks {part}");
    }
    assert!(
        !csp.contains("unsafe"),
        "{what}: CSP {csp:?} allows something unsafe"
    );
    assert_eq!(header(r, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(r, "x-content-type-options"), "nosniff", "{what}");
}

fn append_config(home: &Home, toml: &str) {
    let path = home.dir.path().join("llmos.toml");
    let mut cfg = std::fs::read_to_string(&path).unwrap();
    cfg.push_str(toml);
    std::fs::write(path, cfg).unwrap();
}

#[test]
fn console_is_served_with_strict_headers_and_can_be_turned_off() {
    let home = Home::new();
    let key = create_key(&home, &["models:*"]);
    let s = home.serve(&[]);

    // The page: HTML, strict headers, scripts and styles only from files (nothing inline,
    // nothing from another origin).
    let r = get(&s, "/");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    assert_strict(&r, "/");
    let html = r.text().unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/app.js"></script>"#));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "one script, from a file"
    );
    assert!(
        !html.contains("style=") && !html.contains("<style"),
        "no inline style"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no other origin"
    );

    // The modules: JavaScript, the same headers, and no HTML-parsing sinks.
    for f in JS {
        let r = get(&s, &format!("/console/{f}"));
        assert_eq!(r.status(), 200, "{f}");
        assert_eq!(
            header(&r, "content-type"),
            "text/javascript; charset=utf-8",
            "{f}"
        );
        assert_strict(&r, f);
        let js = r.text().unwrap();
        for sink in [
            "innerHTML",
            "outerHTML =",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(sink), "{f} uses {sink}");
        }
        assert!(
            !js.contains("localStorage"),
            "{f}: the key stays in sessionStorage"
        );
    }
    let r = get(&s, "/console/style.css");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/css; charset=utf-8");
    assert_strict(&r, "style.css");

    // An unknown file is a 404 naming the files there are.
    let r = get(&s, "/console/nope.js");
    assert_eq!(r.status(), 404);
    let msg = r.text().unwrap();
    assert!(msg.contains("nope.js") && msg.contains("app.js"), "{msg}");

    // The page is public; the API it calls is not.
    let r = get(&s, "/v1/models");
    assert_eq!(r.status(), 401, "{}", r.text().unwrap());
    let r = client()
        .get(s.at("/v1/models"))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // `console = false`: both routes 404 and say why; the API still answers. The server is
    // open (loopback, no key), so the page's same-origin requests must pass the browser
    // guards, and requests under another host name (DNS rebinding) must not.
    let off = Home::new();
    append_config(&off, "\n[server]\nconsole = false\n");
    let s = off.serve(&[]);
    for path in ["/", "/console/app.js"] {
        let r = get(&s, path);
        assert_eq!(r.status(), 404, "{path}");
        let msg = r.text().unwrap();
        assert!(msg.contains("console = false"), "{path}: {msg}");
    }
    assert_eq!(get(&s, "/health").status(), 200);
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let embed = |host: &str, origin: &str| {
        client()
            .post(s.at("/v1/embeddings"))
            .header("host", host)
            .header("origin", origin)
            .json(&serde_json::json!({"model": "minilm", "input": "hello"}))
            .send()
            .unwrap()
    };
    let same = format!("127.0.0.1:{port}");
    let r = embed(&same, &format!("http://{same}"));
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let r = embed(
        &format!("localhost:{port}"),
        &format!("http://localhost:{port}"),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let rebound = format!("evil.example:{port}");
    let r = embed(&rebound, &format!("http://{rebound}"));
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("host_not_loopback"));
}

/// Debian's chromium, or the path in `LLMOS_CHROMIUM`; fails saying what to install.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("LLMOS_CHROMIUM") {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        for name in ["chromium", "chromium-browser"] {
            let p = PathBuf::from(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the console's browser test needs Chromium: install Debian's package \
         (`sudo apt-get install -y chromium`; ./scripts/test.sh does it when run as root) \
         or set LLMOS_CHROMIUM to a Chromium binary"
    )
}

/// The cached `playwright-core` that scripts/test.sh installs from tests/browser/package-lock.json.
fn browser_modules() -> PathBuf {
    let dir = std::env::var_os("LLMOS_BROWSER_MODULES").map_or_else(
        || {
            let cache = std::env::var_os("LLMOS_CACHE").map_or_else(
                || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/llmos"),
                PathBuf::from,
            );
            cache.join("browser/node_modules")
        },
        PathBuf::from,
    );
    assert!(
        dir.join("playwright-core/package.json").is_file(),
        "the console's browser test needs playwright-core in {}: run ./scripts/test.sh, or \
         `mkdir -p DIR && cp tests/browser/package*.json DIR && (cd DIR && npm ci)` with \
         LLMOS_BROWSER_MODULES=DIR/node_modules",
        dir.display()
    );
    dir
}

#[test]
fn console_in_headless_chromium() {
    let chromium = chromium();
    let modules = browser_modules();
    let home = Home::new();
    // content-policy refuses "forbidden" before `sentiment` runs; pii-redact runs first and,
    // not granted the NER model it asks for, gets a denial the audit log records.
    let install = |dir: &str, set: &[&str]| {
        let (w, m) = (wasm(dir), manifest(dir));
        let mut args = vec![
            "plugin",
            "install",
            w.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
        ];
        args.extend(set);
        let out = home.cmd(&args).output().unwrap();
        assert!(out.status.success(), "llmos {args:?}:\n{}", text(&out));
    };
    install("content-policy", &["--set", "denied_terms=forbidden"]);
    install("pii-redact", &["--approve-limits"]);
    // pii-redact's own 200 ms would include its denial's durable audit write: on a loaded
    // CI disk that alone can take longer, and the test is about the console, not that limit.
    let out = home
        .cmd(&["plugin", "limits", "pii-redact", "--timeout-ms", "5000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // test-panic traps on every call: spam's requests fail, and the Plugins view lists the trap.
    install("testing/panic", &[]);
    append_config(
        &home,
        "\n[pipelines.sentiment]\npreprocessors = [\"pii-redact\"]\nrequest_policies = [\"content-policy\"]\n\n[pipelines.spam]\npreprocessors = [\"test-panic\"]\n",
    );
    let key = create_key(
        &home,
        &["admin", "models:*", "pii:anonymize", "data:*:write"],
    );
    let s = home.serve(&[]);
    // A collection for the Search tab; one document holds HTML, which must stay text.
    let (status, body) = call(
        &s,
        "POST",
        "/v1/collections/notes",
        Some(&key),
        Some(json!({})),
    );
    assert_eq!(status, 201, "{body}");
    let docs = json!({"documents": [
        {"id": "heron", "text": "The heron waits in the reeds before striking at fish."},
        {"id": "html", "text": "Markup in a document: <img src=x onerror=window.__xss=3> stays text."},
    ]});
    let (status, body) = call(
        &s,
        "POST",
        "/v1/collections/notes/documents",
        Some(&key),
        Some(docs),
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    let shots = repo().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let started = Instant::now();
    let out = Command::new("node")
        .arg(repo().join("tests/browser/console.spec.mjs"))
        .env("LLMOS_URL", &s.url)
        .env("LLMOS_KEY", &key)
        .env("CHROMIUM", &chromium)
        .env("SHOTS", &shots)
        .env("LLMOS_BROWSER_MODULES", &modules)
        .output()
        .expect("running node (Node.js 18+ is needed for the console's browser test)");
    eprintln!(
        "browser checks took {:.1} s:\n{}",
        started.elapsed().as_secs_f64(),
        text(&out)
    );
    assert!(
        out.status.success(),
        "the browser checks failed:\n{}",
        text(&out)
    );
    for view in [
        "playground-chat",
        "playground-ask",
        "plugins",
        "plugins-trap",
        "audit",
        "models",
        "metrics",
        "phone-playground",
    ] {
        assert!(shots.join(format!("{view}.png")).is_file(), "{view}.png");
    }
}
