//! Collections over HTTP against the real binary: create, list, get, delete, JSON and
//! multipart uploads, large uploads as jobs, search by text, vector and filter, document
//! get/delete, chunk sizes in model tokens, data scopes on every route, and the
//! collection's preprocessor chain (real plugins) applied to every chunk.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, Server, call, create_key as key};

/// Polls a job until it is no longer queued or running.
fn wait_job(s: &Server, id: &str, key: Option<&str>) -> Value {
    let start = Instant::now();
    loop {
        let (code, job) = call(s, "GET", &format!("/v1/jobs/{id}"), key, None);
        assert_eq!(code, 200, "{job}");
        if !matches!(job["state"].as_str(), Some("queued" | "running")) {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "job did not finish: {job}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn hits(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["document"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn collections_over_http_ingest_search_jobs_and_deletes() {
    let home = Home::new();
    let s = home.serve(&["--models", "minilm"]);
    // Names and settings are checked, saying what is accepted; nothing is created.
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/bad*name",
        None,
        Some(json!({})),
    );
    assert_eq!(code, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ASCII letters"),
        "{e}"
    );
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/docs",
        None,
        Some(json!({"chunk_tokens": 3})),
    );
    assert!(
        code == 400
            && e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("accepted 8 to 256"),
        "{e}"
    );
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/docs",
        None,
        Some(json!({"colour": 1})),
    );
    assert!(
        code == 400 && e["error"]["message"].as_str().unwrap().contains("colour"),
        "{e}"
    );
    assert_eq!(
        call(&s, "GET", "/v1/collections", None, None).1["data"],
        json!([])
    );

    let (code, c) = call(&s, "POST", "/v1/collections/docs", None, Some(json!({})));
    assert_eq!(
        (code, c["model"].as_str(), c["chunk_tokens"].as_u64()),
        (201, Some("minilm"), Some(256)),
        "{c}"
    );
    let (code, c) = call(
        &s,
        "POST",
        "/v1/collections/docs",
        None,
        Some(json!({"overlap_tokens": 16})),
    );
    assert_eq!((code, c["overlap_tokens"].as_u64()), (200, Some(16)), "{c}");

    let docs = json!({"documents": [
        {"id": "cats", "text": "Cats sleep for most of the day in warm sunny spots.", "metadata": {"year": 2020, "kind": "pet"}},
        {"id": "rust", "text": "Rust guarantees memory safety without a garbage collector.", "metadata": {"year": 2024, "kind": "code"}},
        {"text": "The Eiffel Tower is in Paris, the capital of France.", "metadata": {"year": 2022, "kind": "place"}},
    ]});
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/docs/documents",
        None,
        Some(docs.clone()),
    );
    assert_eq!(
        (
            code,
            r["documents_stored"].as_u64(),
            r["chunks_stored"].as_u64()
        ),
        (200, Some(3), Some(3)),
        "{r}"
    );
    let (_, r) = call(
        &s,
        "POST",
        "/v1/collections/docs/documents",
        None,
        Some(docs),
    );
    assert_eq!(r["documents_unchanged"], 3, "{r}");
    for (body, param) in [
        (
            json!({"documents": [{"id": "a/b", "text": "x"}]}),
            "documents[0].id",
        ),
        (
            json!({"documents": [{"text": "ok"}, {"text": "  "}]}),
            "documents[1].text",
        ),
        (json!({"documents": []}), "documents"),
    ] {
        let (code, e) = call(
            &s,
            "POST",
            "/v1/collections/docs/documents",
            None,
            Some(body),
        );
        assert_eq!(
            (code, e["error"]["param"].as_str()),
            (400, Some(param)),
            "{e}"
        );
    }
    // Open mode takes JSON only: a web page could post a multipart form to loopback.
    let (ctype, bytes) = multipart(&[], &[("a.txt", "text")]);
    let r = Client::new()
        .post(s.at("/v1/collections/docs/documents"))
        .header("content-type", ctype)
        .body(bytes)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/nope/documents",
        None,
        Some(json!({"documents": [{"text": "x"}]})),
    );
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (404, Some("collection_not_found")),
        "{e}"
    );

    // Search: by text, by vector, with filters; bad requests say what is accepted.
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/docs/search",
        None,
        Some(json!({"query": "which city is the capital of France", "top_k": 2})),
    );
    assert_eq!(code, 200, "{r}");
    assert!(
        r["data"][0]["text"].as_str().unwrap().contains("Eiffel"),
        "{r}"
    );
    assert_eq!(r["data"].as_array().unwrap().len(), 2);
    let first = &r["data"][0];
    assert!(first["score"].as_f64().unwrap() > r["data"][1]["score"].as_f64().unwrap());
    assert_eq!(
        first["chunk"],
        format!("{}:0", first["document"].as_str().unwrap())
    );
    let (_, emb) = call(
        &s,
        "POST",
        "/v1/embeddings",
        None,
        Some(json!({"model": "minilm", "input": "programming language safety"})),
    );
    let v = emb["data"][0]["embedding"].clone();
    let (_, r) = call(
        &s,
        "POST",
        "/v1/collections/docs/search",
        None,
        Some(json!({"vector": v, "top_k": 1})),
    );
    assert_eq!(hits(&r), ["rust"], "{r}");
    let (_, r) = call(
        &s,
        "POST",
        "/v1/collections/docs/search",
        None,
        Some(
            json!({"query": "animals", "filter": {"year": {"gte": 2021}, "kind": {"in": ["code", "place"]}}}),
        ),
    );
    assert!(
        !hits(&r).contains(&"cats".to_string()) && hits(&r).len() == 2,
        "{r}"
    );
    for (body, want) in [
        (
            json!({"vector": [0.5, 0.5]}),
            "has 2 dimensions; this collection's model makes 384",
        ),
        (
            json!({"query": "x", "vector": [1.0]}),
            "exactly one of `query`",
        ),
        (json!({}), "exactly one of `query`"),
        (json!({"query": "x", "top_k": 0}), "accepted 1 to 1000"),
        (
            json!({"query": "x", "filter": {"year": {"near": 1}}}),
            "unknown operator",
        ),
    ] {
        let (code, e) = call(
            &s,
            "POST",
            "/v1/collections/docs/search",
            None,
            Some(body.clone()),
        );
        assert_eq!(code, 400, "{body}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(want),
            "{body}: {e}"
        );
    }

    // Documents: get, delete (gone from search), 404s.
    let (code, d) = call(&s, "GET", "/v1/collections/docs/documents/cats", None, None);
    assert_eq!(
        (code, d["metadata"]["kind"].as_str()),
        (200, Some("pet")),
        "{d}"
    );
    assert!(
        d["chunks"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Cats sleep"),
        "{d}"
    );
    let (code, _) = call(
        &s,
        "DELETE",
        "/v1/collections/docs/documents/cats",
        None,
        None,
    );
    assert_eq!(code, 200);
    let (_, r) = call(
        &s,
        "POST",
        "/v1/collections/docs/search",
        None,
        Some(json!({"query": "cats sleeping in the sun", "top_k": 10})),
    );
    assert!(!hits(&r).contains(&"cats".to_string()), "{r}");
    let (code, e) = call(&s, "GET", "/v1/collections/docs/documents/cats", None, None);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (404, Some("document_not_found")),
        "{e}"
    );
    let (_, c) = call(&s, "GET", "/v1/collections/docs", None, None);
    assert_eq!(
        (c["documents"].as_u64(), c["chunks"].as_u64()),
        (Some(2), Some(2)),
        "{c}"
    );

    // Chunks are cut by the model's tokens: none longer than chunk_tokens.
    call(
        &s,
        "POST",
        "/v1/collections/small",
        None,
        Some(json!({"chunk_tokens": 32, "overlap_tokens": 8})),
    );
    let long: String = (0..30)
        .map(|i| format!("Paragraph {i} describes the weather on day {i} with words. "))
        .collect();
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/small/documents",
        None,
        Some(json!({"documents": [{"id": "long", "text": long}]})),
    );
    assert_eq!(code, 200, "{r}");
    let (_, d) = call(
        &s,
        "GET",
        "/v1/collections/small/documents/long",
        None,
        None,
    );
    let texts: Vec<String> = d["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect();
    assert!(texts.len() >= 10, "{d}");
    let (_, t) = call(
        &s,
        "POST",
        "/v1/tokenize",
        None,
        Some(json!({"model": "minilm", "input": texts})),
    );
    for c in t["data"].as_array().unwrap() {
        assert!(c["count"].as_u64().unwrap() <= 32, "{t}");
    }

    // A large upload runs as a job with progress; its documents are stored when it ends.
    let many: Vec<Value> = (0..300).map(|i| json!({"id": format!("n{i}"), "text": format!("Note {i}: item {} costs {} euros.", i * 3, i % 17)})).collect();
    let (code, job) = call(
        &s,
        "POST",
        "/v1/collections/docs/documents",
        None,
        Some(json!({"documents": many})),
    );
    assert_eq!((code, job["object"].as_str()), (202, Some("job")), "{job}");
    assert_eq!(
        job["url"],
        format!("/v1/jobs/{}", job["id"].as_str().unwrap())
    );
    let done = wait_job(&s, job["id"].as_str().unwrap(), None);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        (
            done["progress"]["documents_done"].as_u64(),
            done["result"]["documents_stored"].as_u64()
        ),
        (Some(300), Some(300)),
        "{done}"
    );
    let (_, c) = call(&s, "GET", "/v1/collections/docs", None, None);
    assert_eq!(c["documents"], 302, "{c}");
    let (code, e) = call(&s, "GET", "/v1/jobs/0000000000000000", None, None);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (404, Some("job_not_found")),
        "{e}"
    );

    // Deleting the collection removes everything.
    let (code, d) = call(&s, "DELETE", "/v1/collections/docs", None, None);
    assert_eq!((code, d["documents"].as_u64()), (200, Some(302)), "{d}");
    let (code, e) = call(&s, "GET", "/v1/collections/docs", None, None);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (404, Some("collection_not_found")),
        "{e}"
    );
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/docs/search",
        None,
        Some(json!({"query": "x"})),
    );
    assert_eq!(code, 404, "{e}");
}

/// A multipart/form-data body with text fields and files.
fn multipart(fields: &[(&str, &str)], files: &[(&str, &str)]) -> (String, Vec<u8>) {
    let b = "llmos-test-boundary-7f3a";
    let mut body = String::new();
    for (n, v) in fields {
        body += &format!("--{b}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n");
    }
    for (name, content) in files {
        body += &format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n{content}\r\n"
        );
    }
    body += &format!("--{b}--\r\n");
    (
        format!("multipart/form-data; boundary={b}"),
        body.into_bytes(),
    )
}

#[test]
fn data_scopes_guard_every_collection_route_and_multipart_uploads_work() {
    let home = Home::new();
    let write = key(&home, &["data:docs:write"]);
    let read = key(&home, &["data:docs"]);
    let other = key(&home, &["data:other:write"]);
    let models = key(&home, &["models:*"]);
    let read_all = key(&home, &["data:*"]);
    let admin = key(&home, &["admin"]);
    let s = home.serve(&["--models", "minilm"]);
    let missing = |code: u16, e: &Value, scope: &str| {
        assert_eq!(
            (code, e["error"]["code"].as_str()),
            (403, Some("missing_scope")),
            "{e}"
        );
        assert!(
            e["error"]["message"].as_str().unwrap().contains(scope),
            "{e}"
        );
    };
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/docs",
        Some(&read),
        Some(json!({})),
    );
    missing(code, &e, "data:docs:write");
    let (code, _) = call(
        &s,
        "POST",
        "/v1/collections/docs",
        Some(&write),
        Some(json!({})),
    );
    assert_eq!(code, 201);
    call(
        &s,
        "POST",
        "/v1/collections/other",
        Some(&other),
        Some(json!({})),
    );
    let body = json!({"documents": [{"id": "d1", "text": "Scoped data is only for its readers."}]});
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/docs/documents",
        Some(&read),
        Some(body.clone()),
    );
    missing(code, &e, "data:docs:write");
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/docs/documents",
        Some(&read_all),
        Some(body.clone()),
    );
    missing(code, &e, "data:docs:write");
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/docs/documents",
        Some(&write),
        Some(body),
    );
    assert_eq!(code, 200, "{r}");
    let q = json!({"query": "readers"});
    for k in [&write, &read, &read_all] {
        let (code, r) = call(
            &s,
            "POST",
            "/v1/collections/docs/search",
            Some(k),
            Some(q.clone()),
        );
        assert_eq!((code, hits(&r)), (200, vec!["d1".to_string()]), "{r}");
        assert_eq!(
            call(
                &s,
                "GET",
                "/v1/collections/docs/documents/d1",
                Some(k),
                None
            )
            .0,
            200
        );
    }
    for k in [&other, &models] {
        let (code, e) = call(
            &s,
            "POST",
            "/v1/collections/docs/search",
            Some(k),
            Some(q.clone()),
        );
        missing(code, &e, "data:docs");
        let (code, e) = call(&s, "GET", "/v1/collections/docs", Some(k), None);
        missing(code, &e, "data:docs");
    }
    let (code, e) = call(
        &s,
        "DELETE",
        "/v1/collections/docs/documents/d1",
        Some(&read),
        None,
    );
    missing(code, &e, "data:docs:write");
    let (code, e) = call(&s, "DELETE", "/v1/collections/docs", Some(&other), None);
    missing(code, &e, "data:docs:write");
    // The list shows only what the key may read.
    let names = |k: &str| -> Vec<String> {
        call(&s, "GET", "/v1/collections", Some(k), None).1["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&read), ["docs"]);
    assert_eq!(names(&other), ["other"]);
    assert_eq!(names(&read_all), ["docs", "other"]);
    assert!(names(&models).is_empty());

    // Multipart: files by extension, the text column chosen by a form field; a bad row is
    // reported with file and line while the others are stored.
    let csv = "id,body,lang\nm1,Multipart rows become documents.,en\nm2,too,many,fields\nm3,Another row arrives by upload.,de\n";
    let (ctype, bytes) = multipart(
        &[("text_column", "body")],
        &[
            ("rows.csv", csv),
            ("note.md", "# Note\nMarkdown travels too."),
        ],
    );
    let client = Client::new();
    let send = |k: &str| {
        let r = client
            .post(s.at("/v1/collections/docs/documents"))
            .bearer_auth(k)
            .header("content-type", &ctype)
            .body(bytes.clone())
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    let (code, e) = send(&read);
    missing(code, &e, "data:docs:write");
    let (code, r) = send(&write);
    assert_eq!(
        (code, r["documents_stored"].as_u64()),
        (200, Some(3)),
        "{r}"
    );
    assert_eq!(
        r["errors"],
        json!([{"file": "rows.csv", "line": 3, "message": r["errors"][0]["message"]}]),
        "{r}"
    );
    let (_, d) = call(
        &s,
        "GET",
        "/v1/collections/docs/documents/m3",
        Some(&read),
        None,
    );
    assert_eq!(d["metadata"], json!({"lang": "de"}), "{d}");

    // A job is readable only with the collection's scope.
    let many: Vec<Value> = (0..260)
        .map(|i| json!({"text": format!("Row {i} of a big upload.")}))
        .collect();
    let (code, job) = call(
        &s,
        "POST",
        "/v1/collections/docs/documents",
        Some(&write),
        Some(json!({"documents": many})),
    );
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    let (code, e) = call(&s, "GET", &format!("/v1/jobs/{id}"), Some(&other), None);
    missing(code, &e, "data:docs");
    assert_eq!(wait_job(&s, id, Some(&read))["state"], "succeeded");

    // Every write is in the audit log with the writing key and the collection (refusals are
    // recorded by the auth layer as denials); reads, searches included, are not.
    let (_, audit) = call(
        &s,
        "GET",
        "/admin/audit?what=data-write&limit=100",
        Some(&admin),
        None,
    );
    let writes = audit["records"].as_array().unwrap();
    let write_id = write.split('_').nth(1).unwrap();
    assert!(
        writes.iter().any(|r| r["who"] == write_id
            && r["target"] == "collection:docs"
            && r["outcome"] == "ok"
            && r["detail"]
                .as_str()
                .unwrap()
                .starts_with("POST /v1/collections/docs/documents")),
        "{audit:#}"
    );
    assert!(
        writes.iter().all(|r| r["detail"]
            .as_str()
            .is_some_and(|d| !d.starts_with("GET") && !d.contains("/search"))),
        "{audit:#}"
    );
}

#[test]
fn the_collections_preprocessor_chain_runs_on_every_chunk_and_query() {
    let home = Home::new();
    for p in ["normalize", "pii-redact", "content-policy"] {
        let w = wasm(p).display().to_string();
        let m = manifest(p).display().to_string();
        let out = home
            .cmd(&[
                "plugin",
                "install",
                &w,
                "--manifest",
                &m,
                "--approve-limits",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", crate::support::text(&out));
    }
    let s = home.serve(&["--models", "minilm"]);
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/safe",
        None,
        Some(json!({"preprocessors": ["nope"]})),
    );
    assert_eq!(code, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("installed preprocessors: normalize, pii-redact"),
        "{e}"
    );
    let (code, e) = call(
        &s,
        "POST",
        "/v1/collections/safe",
        None,
        Some(json!({"preprocessors": ["content-policy"]})),
    );
    assert!(
        code == 400
            && e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is a policy plugin"),
        "{e}"
    );
    let (code, c) = call(
        &s,
        "POST",
        "/v1/collections/safe",
        None,
        Some(json!({"preprocessors": ["normalize", "pii-redact"]})),
    );
    assert_eq!(code, 201, "{c}");
    let text = "Invoice   questions:\u{200b} write to   jane.doe@example.com or call the desk.";
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/safe/documents",
        None,
        Some(json!({"documents": [{"id": "inv", "text": text}]})),
    );
    assert_eq!(code, 200, "{r}");
    let (_, d) = call(&s, "GET", "/v1/collections/safe/documents/inv", None, None);
    let stored = d["chunks"][0]["text"].as_str().unwrap();
    assert_eq!(
        stored, "Invoice questions: write to [EMAIL] or call the desk.",
        "{d}"
    );
    // The query goes through the same chain: an e-mail in it is redacted too.
    let (code, r) = call(
        &s,
        "POST",
        "/v1/collections/safe/search",
        None,
        Some(json!({"query": "invoice e-mail john@example.org", "top_k": 1})),
    );
    assert_eq!((code, hits(&r)), (200, vec!["inv".to_string()]), "{r}");
    assert!(!r.to_string().contains("jane.doe"), "{r}");
}
