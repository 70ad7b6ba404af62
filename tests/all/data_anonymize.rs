//! Anonymisation over the real binary: `POST /v1/anonymize`, `POST /v1/deanonymize`,
//! `llmos anonymize` / `llmos deanonymize`, with the real `pii-ner` model, the vault sealed
//! in the store, and the `pii:*` key scopes.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::support::{Home, Server};

fn post(s: &Server, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut r = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .post(s.at(path))
        .json(body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn ok(s: &Server, path: &str, body: Value) -> Value {
    let (status, v) = post(s, path, None, &body);
    assert_eq!(status, 200, "{path} {body}: {v}");
    v
}

/// The entity of `kind` in an answer's `entities`.
fn entity<'a>(v: &'a Value, kind: &str) -> &'a Value {
    v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {v}"))
}

const TEXT: &str = "Café — note: Alice Johnson (alice.j@example.org, +49 30 1234567) pays with \
                    4111 1111 1111 1111 from DE89 3704 0044 0532 0130 00 via 192.168.1.20.";

#[test]
fn each_operator_with_character_offsets_and_invalid_checksums_left_alone() {
    let home = Home::new();
    let s = home.serve(&["--models", "pii-ner"]);
    let v = ok(
        &s,
        "/v1/anonymize",
        json!({"text": TEXT, "include_text": true, "operators": {
            "PERSON": "pseudonymize", "EMAIL": "mask", "PHONE": "redact", "CREDIT_CARD": "hash"}}),
    );
    let chars: Vec<char> = TEXT.chars().collect();
    for e in v["entities"].as_array().unwrap() {
        let (a, b) = (
            e["start"].as_u64().unwrap() as usize,
            e["end"].as_u64().unwrap() as usize,
        );
        // Offsets are characters: "é" and "—" before them shift byte offsets by three.
        assert_eq!(
            chars[a..b].iter().collect::<String>(),
            e["text"].as_str().unwrap(),
            "{e}"
        );
    }
    let person = entity(&v, "PERSON");
    assert_eq!(person["text"], "Alice Johnson");
    assert_eq!(person["source"], "model");
    let token = person["replacement"].as_str().unwrap();
    assert!(
        token.starts_with("<PERSON_") && token.len() == 17,
        "{token}"
    );
    assert_eq!(
        entity(&v, "EMAIL")["replacement"],
        "*".repeat("alice.j@example.org".len())
    );
    assert_eq!(entity(&v, "PHONE")["replacement"], "");
    let hash = entity(&v, "CREDIT_CARD")["replacement"].as_str().unwrap();
    assert!(
        hash.len() == 32 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    assert_eq!(entity(&v, "IBAN")["replacement"], "<IBAN>"); // default: tag
    assert_eq!(entity(&v, "IP")["replacement"], "<IP>");
    let out = v["text"].as_str().unwrap();
    // (The hash and the token are random hex per home: they may spell "4111" by chance.)
    let rest = out.replace(hash, "").replace(token, "");
    for original in [
        "Alice", "Johnson", "alice.j@", "1234567", "4111", "DE89", "192.168",
    ] {
        assert!(!rest.contains(original), "{original} left in {out}: {v}");
    }
    assert!(
        out.contains(&format!(
            "note: {token} (*******************, ) pays with {hash} from <IBAN> via <IP>."
        )),
        "{out}"
    );

    // A text far longer than the model's 512 tokens is read in pieces, not truncated: the
    // name at its end is found, at its character offset.
    let filler = "The quick brown fox jumps over the lazy dog. ".repeat(80);
    let long = format!("{filler}Please call Alice Johnson today.");
    let v = ok(
        &s,
        "/v1/anonymize",
        json!({"text": long, "entities": ["PERSON"]}),
    );
    let p = entity(&v, "PERSON");
    let at = filler.chars().count() + "Please call ".len();
    assert_eq!(
        (p["start"].as_u64(), p["end"].as_u64()),
        (Some(at as u64), Some(at as u64 + 13)),
        "{v}"
    );
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .ends_with("Please call <PERSON> today."),
        "{v}"
    );

    // Broken checksums are not cards or IBANs; the text is left as it is for them.
    let bad = "Order 4111 1111 1111 1112 and DE88 3704 0044 0532 0130 00, version 10.2.3.4.5.";
    let v = ok(
        &s,
        "/v1/anonymize",
        json!({"texts": [bad], "entities": ["CREDIT_CARD", "IBAN", "IP"]}),
    );
    assert_eq!(v["texts"][0], bad, "{v}");
    assert_eq!(v["entities"][0], json!([]));
    let v = ok(&s, "/v1/anonymize", json!({"text": bad}));
    assert!(
        v["entities"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] != "CREDIT_CARD" && e["type"] != "IBAN"),
        "{v}"
    );
}

#[test]
fn pseudonyms_are_stable_per_scope_round_trip_and_the_vault_holds_no_plaintext() {
    let home = Home::new();
    let s = home.serve(&["--models", "pii-ner"]);
    let ops = json!({"PERSON": "pseudonymize", "EMAIL": "pseudonymize", "IBAN": "pseudonymize"});
    let anon = |scope: &str| {
        ok(
            &s,
            "/v1/anonymize",
            json!({"text": TEXT, "operators": ops, "scope": scope}),
        )
    };
    let (a1, a2, b) = (anon("tenant-a"), anon("tenant-a"), anon("tenant-b"));
    assert_eq!(a1["text"], a2["text"], "same scope, same tokens");
    assert_eq!(a1["scope"], "tenant-a");
    for kind in ["PERSON", "EMAIL", "IBAN"] {
        assert_ne!(
            entity(&a1, kind)["replacement"],
            entity(&b, kind)["replacement"],
            "{kind}"
        );
    }
    let tokens = a1["text"].as_str().unwrap().to_string();
    let back = ok(
        &s,
        "/v1/deanonymize",
        json!({"text": tokens, "scope": "tenant-a"}),
    );
    assert_eq!(back["restored"], 3, "{back}");
    let want = TEXT
        .replace("4111 1111 1111 1111", "<CREDIT_CARD>")
        .replace("+49 30 1234567", "<PHONE>")
        .replace("192.168.1.20", "<IP>");
    assert_eq!(back["text"], want.as_str());
    // Another scope restores nothing; the default scope neither.
    for scope in [json!("tenant-b"), Value::Null] {
        let other = ok(
            &s,
            "/v1/deanonymize",
            json!({"text": tokens, "scope": scope}),
        );
        assert_eq!(
            (&other["text"], &other["restored"], &other["unknown"]),
            (&json!(tokens), &json!(0), &json!(3))
        );
    }
    // After a clean stop, no file of the data location holds an original.
    assert!(s.terminate());
    let originals = [
        "Alice Johnson",
        "alice.j@example.org",
        "DE89 3704 0044 0532 0130 00",
        "Johnson",
    ];
    let mut files = 0;
    for f in walk(home.dir.path()) {
        files += 1;
        let bytes = std::fs::read(&f).unwrap();
        for o in originals {
            assert!(
                !bytes.windows(o.len()).any(|w| w == o.as_bytes()),
                "{o} in {}",
                f.display()
            );
        }
    }
    assert!(files > 3, "scanned {files} files");
    // The mapping survives a restart.
    let s = home.serve(&["--models", "minilm"]);
    let back = ok(
        &s,
        "/v1/deanonymize",
        json!({"text": tokens, "scope": "tenant-a"}),
    );
    assert_eq!(back["text"], want.as_str());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn bad_requests_are_400s_that_name_what_is_accepted() {
    let home = Home::new();
    let s = home.serve(&["--models", "minilm"]);
    let cases = [
        (
            json!({"text": "x", "operators": {"EMAIL": "blur"}}),
            "operators.EMAIL",
            "redact, mask, tag, hash, pseudonymize",
        ),
        (
            json!({"text": "x", "operators": {"ORG": "mask"}}),
            "operators",
            "PERSON, LOC, ADDRESS, EMAIL",
        ),
        (
            json!({"text": "x", "entities": ["SSN"]}),
            "entities",
            "CREDIT_CARD, IBAN, IP",
        ),
        (
            json!({"text": "x", "scope": "a/b"}),
            "scope",
            "A-Z, a-z, 0-9",
        ),
        (json!({"text": "x", "texts": ["y"]}), "text", "not both"),
        (json!({"texts": []}), "texts", "at least one"),
        (json!({"operators": {}}), "text", "missing `text`"),
    ];
    for (body, param, says) in cases {
        let (status, v) = post(&s, "/v1/anonymize", None, &body);
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {v}"
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let (status, v) = post(
        &s,
        "/v1/anonymize",
        None,
        &json!({"text": "x", "model": "pii-ner"}),
    );
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `model`"),
        "{v}"
    );
    // More text than the model takes in one request (2,048 pieces): refused before any
    // model time is spent, in words about text, not about the pieces' count.
    let huge = "word ".repeat(230_000);
    let (status, v) = post(&s, "/v1/anonymize", None, &json!({"text": huge}));
    assert_eq!((status, &v["error"]["param"]), (400, &json!("text")), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("send less text per request"),
        "{v}"
    );
    let (status, v) = post(
        &s,
        "/v1/deanonymize",
        None,
        &json!({"text": "x", "scope": ""}),
    );
    assert_eq!(
        (status, &v["error"]["param"]),
        (400, &json!("scope")),
        "{v}"
    );
}

#[test]
fn each_route_needs_its_own_scope() {
    let home = Home::new();
    let key = |scope: &str| {
        home.json(&["keys", "create", "--scope", scope])["secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (anon, deanon, models) = (
        key("pii:anonymize"),
        key("pii:deanonymize"),
        key("models:*"),
    );
    let admin = key("admin");
    let tenant_a = home.json(&[
        "keys",
        "create",
        "--scope",
        "pii:anonymize:tenant-a",
        "--scope",
        "pii:deanonymize:tenant-a",
    ])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let s = home.serve(&["--models", "minilm"]);
    let body = json!({"text": "mail ann@example.org", "entities": ["EMAIL", "IBAN"], "operators": {"EMAIL": "pseudonymize"}});
    let (status, v) = post(&s, "/v1/anonymize", Some(&anon), &body);
    assert_eq!(status, 200, "{v}");
    let tokens = json!({"text": v["text"]});
    for k in [&deanon, &models] {
        let (status, v) = post(&s, "/v1/anonymize", Some(k), &body);
        assert_eq!(status, 403, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("pii:anonymize"),
            "{v}"
        );
    }
    for k in [&anon, &models] {
        let (status, v) = post(&s, "/v1/deanonymize", Some(k), &tokens);
        assert_eq!(status, 403, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("pii:deanonymize"),
            "{v}"
        );
    }
    assert_eq!(post(&s, "/v1/deanonymize", None, &tokens).0, 401);
    let (status, v) = post(&s, "/v1/deanonymize", Some(&deanon), &tokens);
    assert_eq!(
        (status, v["text"].as_str()),
        (200, Some("mail ann@example.org")),
        "{v}"
    );
    // A key narrowed to one vault scope uses that one only (another tenant's tokens would
    // let it test guesses against that tenant's data).
    let in_scope = |scope: &str| {
        let mut b = body.clone();
        b["scope"] = json!(scope);
        b
    };
    let (status, a) = post(&s, "/v1/anonymize", Some(&tenant_a), &in_scope("tenant-a"));
    assert_eq!(status, 200, "{a}");
    let back = json!({"text": a["text"], "scope": "tenant-a"});
    let (status, v) = post(&s, "/v1/deanonymize", Some(&tenant_a), &back);
    assert_eq!((status, v["restored"].as_u64()), (200, Some(1)), "{v}");
    for (path, b) in [
        ("/v1/anonymize", in_scope("tenant-b")),
        ("/v1/anonymize", body.clone()),
        (
            "/v1/deanonymize",
            json!({"text": a["text"], "scope": "tenant-b"}),
        ),
        ("/v1/deanonymize", tokens.clone()),
    ] {
        let (status, v) = post(&s, path, Some(&tenant_a), &b);
        assert_eq!(
            (status, &v["error"]["param"]),
            (403, &json!("scope")),
            "{path} {b}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(":tenant-a"),
            "{v}"
        );
    }
    // Deanonymising is audited with the key's id, the scope and the counts, never the text.
    let deanon_id = deanon.split('_').nth(1).unwrap();
    let audit: Value = Client::new()
        .get(s.at("/admin/audit"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let records = audit["records"].as_array().unwrap();
    let r = records
        .iter()
        .find(|r| r["what"] == "pii-deanonymize" && r["who"] == deanon_id)
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(r["target"], "vault:default", "{r}");
    assert_eq!(r["detail"], "1 tokens restored, 0 unknown", "{r}");
    assert!(!audit.to_string().contains("ann@example.org"), "{audit}");
}

#[test]
fn the_cli_anonymizes_and_restores() {
    let home = Home::new();
    let v = home.json(&[
        "anonymize",
        "--operator",
        "PERSON=pseudonymize",
        "--operator",
        "EMAIL=hash",
        "--scope",
        "cli",
        "Bob Meyer wrote to bob@example.org",
    ]);
    let text = v["text"].as_str().unwrap();
    assert!(
        text.starts_with("<PERSON_") && !text.contains("bob@"),
        "{v}"
    );
    let again = home.json(&[
        "anonymize",
        "--operator",
        "PERSON=pseudonymize",
        "--scope",
        "cli",
        "Bob Meyer wrote",
    ]);
    assert_eq!(
        again["entities"][0]["replacement"],
        v["entities"][0]["replacement"]
    );
    let back = home.json(&["deanonymize", "--scope", "cli", text]);
    assert!(
        back["text"]
            .as_str()
            .unwrap()
            .starts_with("Bob Meyer wrote to "),
        "{back}"
    );
    assert_eq!(back["restored"], 1);
    let err = home.fails(&["anonymize", "--operator", "EMAIL", "x"]);
    assert!(err.contains("expected TYPE=OP"), "{err}");
    let err = home.fails(&["anonymize", "--operator", "EMAIL=blur", "x"]);
    assert!(
        err.contains("accepted operators are redact, mask, tag, hash, pseudonymize"),
        "{err}"
    );
}
