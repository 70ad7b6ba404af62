//! Training classifiers the way a user does (docs/classification.md): `llmos train
//! classifier` on a CSV file, `POST /admin/train` on a running server, `llmos models pull` of
//! a trained model; then the model is served by `/v1/classify`, KServe and `/v1/models`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Home, call, create_key};

const BILLING: [&str; 12] = [
    "I was charged twice for my subscription this month",
    "Please refund the extra payment on my credit card",
    "My invoice shows a fee I never agreed to",
    "Why did the price on my bill go up",
    "The payment failed but my card was still debited",
    "I need a copy of last month's invoice for my accountant",
    "Cancel the automatic renewal charge on my account",
    "You billed me for a plan I downgraded weeks ago",
    "How do I update the card used for payments",
    "There is an unknown charge from your company on my statement",
    "I want my money back for the duplicate transaction",
    "The receipt total does not match what my bank took",
];

const DELIVERY: [&str; 12] = [
    "My package has not arrived and the tracking stopped",
    "The courier left the parcel at the wrong address",
    "When will my order be shipped",
    "The box arrived crushed and the item inside is broken",
    "Tracking says delivered but nothing is at my door",
    "Can I change the delivery address of my shipment",
    "The parcel has been stuck in customs for two weeks",
    "Delivery was promised for Monday and it is now Friday",
    "The driver never rang the bell and took the parcel back",
    "Half of my order is missing from the shipment",
    "Is express shipping available to my country",
    "The tracking number you sent does not work",
];

fn toy_csv(home: &Home) -> std::path::PathBuf {
    let mut csv = String::from("text,label\n");
    for t in BILLING {
        csv.push_str(&format!("\"{t}\",billing\n"));
    }
    for t in DELIVERY {
        csv.push_str(&format!("\"{t}\",delivery\n"));
    }
    let path = home.dir.path().join("tickets.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn sha_of(report: &Value, file: &str) -> String {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == file)
        .unwrap_or_else(|| panic!("no {file} in {report:#}"))["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn cli_training_is_deterministic_reaches_100_percent_and_is_served_after_a_restart() {
    let home = Home::new();
    let data = toy_csv(&home);
    let data = data.to_str().unwrap();
    let first = home.json(&[
        "train",
        "classifier",
        "--data",
        data,
        "--name",
        "t-cli-tickets",
        "--seed",
        "7",
    ]);
    assert_eq!(first["labels"], json!(["billing", "delivery"]), "{first:#}");
    assert_eq!(first["metrics"]["accuracy"], json!(1.0), "{first:#}");
    assert_eq!(first["metrics"]["macro_f1"], json!(1.0), "{first:#}");
    let confusion = &first["metrics"]["confusion"];
    assert_eq!(confusion.as_array().unwrap().len(), 2, "{first:#}");

    // Same data and seed: the very same file. Another seed: another file.
    let again = home.json(&[
        "train",
        "classifier",
        "--data",
        data,
        "--name",
        "t-cli-tickets2",
        "--seed",
        "7",
    ]);
    assert_eq!(sha_of(&first, "model.onnx"), sha_of(&again, "model.onnx"));
    assert_eq!(
        again["embedded"],
        json!(0),
        "the second run re-embeds nothing: {again:#}"
    );
    let other = home.json(&[
        "train",
        "classifier",
        "--data",
        data,
        "--name",
        "t-cli-tickets3",
        "--seed",
        "8",
    ]);
    assert_ne!(sha_of(&first, "model.onnx"), sha_of(&other, "model.onnx"));

    // A name in use is refused.
    let err = home.fails(&[
        "train",
        "classifier",
        "--data",
        data,
        "--name",
        "t-cli-tickets",
    ]);
    assert!(err.contains("exists already"), "{err}");

    let info = home.json(&["models", "info", "t-cli-tickets"]);
    assert_eq!(info["task"], "classify");
    assert_eq!(info["metrics"]["accuracy"], json!(1.0), "{info:#}");
    assert_eq!(info["training"]["base"], "minilm", "{info:#}");

    for round in 0..2 {
        // The second round is a restart: the model is read back from its manifest.
        let s = home.serve(&["--models", "minilm,t-cli-tickets"]);
        let (status, v) = call(
            &s,
            "POST",
            "/v1/classify",
            None,
            Some(json!({"model": "t-cli-tickets", "input": [
                "I have been charged a second time for the same order",
                "The parcel still has not been delivered",
            ]})),
        );
        assert_eq!(status, 200, "round {round}: {v:#}");
        let top: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["label"].as_str().unwrap_or_else(|| panic!("{v:#}")))
            .collect();
        assert_eq!(top, ["billing", "delivery"], "round {round}: {v:#}");

        let (status, m) = call(&s, "GET", "/v1/models/t-cli-tickets", None, None);
        assert_eq!(status, 200);
        assert_eq!(m["metrics"]["accuracy"], json!(1.0), "{m:#}");
        assert_eq!(m["labels"], json!(["billing", "delivery"]), "{m:#}");

        let (status, k) = call(
            &s,
            "POST",
            "/v2/models/t-cli-tickets/infer",
            None,
            Some(
                json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                "data": ["my refund never came through"]}]}),
            ),
        );
        assert_eq!(status, 200, "{k:#}");
        let label = k["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "label")
            .unwrap_or_else(|| panic!("{k:#}"));
        assert_eq!(label["data"], json!(["billing"]), "{k:#}");
        assert!(s.terminate());
    }

    // Files gone: pull trains it again from its recipe and finds the same digests.
    home.cmd(&["models", "rm", "t-cli-tickets"])
        .output()
        .unwrap();
    let out = home
        .cmd(&["models", "pull", "t-cli-tickets"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("every file matches"), "{err}");
    home.json(&["models", "verify", "t-cli-tickets"]);
}

/// `POST /admin/train` with `body`.
fn train_req(s: &crate::support::Server, key: &str, body: Value) -> (u16, Value) {
    call(s, "POST", "/admin/train", Some(key), Some(body))
}

/// Waits for a training job to leave queued/running.
fn wait_job(s: &crate::support::Server, key: &str, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, v) = call(s, "GET", &format!("/admin/train/{id}"), Some(key), None);
        assert_eq!(status, 200, "{v:#}");
        if !matches!(v["state"].as_str(), Some("queued" | "running")) {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "job {id} never finished: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rows(n_each: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    for i in 0..n_each {
        let b = BILLING[i % BILLING.len()];
        let d = DELIVERY[i % DELIVERY.len()];
        rows.push(json!({"text": format!("{b} (ticket {i})"), "label": "billing"}));
        rows.push(json!({"text": format!("{d} (ticket {i})"), "label": "delivery"}));
    }
    rows
}

#[test]
fn admin_train_runs_in_the_background_serves_at_once_and_cancels() {
    let home = Home::new();
    let admin = create_key(&home, &["admin"]);
    let user = create_key(&home, &["models:*"]);
    let writer = create_key(&home, &["data:*:write"]);
    let s = home.serve(&["--models", "minilm"]);

    let body = json!({"name": "t-admin-tickets", "data": {"rows": rows(12)}, "seed": 3});
    let (status, v) = call(&s, "POST", "/admin/train", Some(&user), Some(body.clone()));
    assert_eq!(status, 403, "training needs the admin scope: {v:#}");
    let (status, v) = call(&s, "POST", "/admin/train", Some(&admin), Some(body));
    assert_eq!(status, 202, "{v:#}");
    let id = v["id"].as_str().unwrap().to_string();
    let done = wait_job(&s, &admin, &id);
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(
        done["result"]["metrics"]["accuracy"],
        json!(1.0),
        "{done:#}"
    );

    // Served at once, no restart.
    let (status, v) = call(
        &s,
        "POST",
        "/v1/classify",
        Some(&user),
        Some(json!({"model": "t-admin-tickets", "input": "where is my parcel"})),
    );
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["data"][0]["label"], "delivery", "{v:#}");
    let (_, list) = call(&s, "GET", "/v1/models", Some(&user), None);
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "t-admin-tickets"),
        "{list:#}"
    );

    // Bad requests name what is wrong.
    let (status, v) = call(
        &s,
        "POST",
        "/admin/train",
        Some(&admin),
        Some(
            json!({"name": "t-admin-bad", "data": {"rows": [{"text": "only one", "label": "a"}],
            "csv": "text,label\n"}}),
        ),
    );
    assert_eq!(status, 400, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one"),
        "{v:#}"
    );
    let (status, v) = train_req(
        &s,
        &admin,
        json!({"name": "t-admin-tickets", "data": {"rows": rows(3)}}),
    );
    assert_eq!(status, 409, "{v:#}");
    for (data, want) in [
        (
            json!({"rows": [{"text": "a", "label": "x"}, {"text": "b", "label": "x"},
                         {"text": "c", "label": "x"}, {"text": "d", "label": "x"}]}),
            "every row has the label \"x\"",
        ),
        (
            json!({"csv": "text,label\nfine,a\nalso fine,b\n,a\nmore,b\n"}),
            "data.csv:4",
        ),
        (
            json!({"jsonl": "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n"}),
            "data.jsonl:2",
        ),
        (
            json!({"rows": [{"text": "a"}]}),
            "data.rows[0] has no `label`",
        ),
    ] {
        let (status, v) = train_req(&s, &admin, json!({"name": "t-admin-bad", "data": data}));
        assert_eq!(status, 400, "{v:#}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }

    // A collection: each chunk a row, the document metadata field `topic` its label.
    let (status, v) = call(
        &s,
        "POST",
        "/v1/collections/tickets",
        Some(&writer),
        Some(json!({})),
    );
    assert_eq!(status, 201, "{v:#}");
    let docs: Vec<Value> = BILLING
        .iter()
        .map(|t| ("billing", t))
        .chain(DELIVERY.iter().map(|t| ("delivery", t)))
        .enumerate()
        .map(|(i, (topic, t))| json!({"id": format!("d{i:02}"), "text": t, "metadata": {"topic": topic}}))
        .collect();
    let (status, v) = call(
        &s,
        "POST",
        "/v1/collections/tickets/documents",
        Some(&writer),
        Some(json!({"documents": docs})),
    );
    assert_eq!(status, 200, "{v:#}");
    let (status, v) = call(
        &s,
        "POST",
        "/admin/train",
        Some(&admin),
        Some(
            json!({"name": "t-admin-from-collection", "data": {"collection": "tickets"},
                    "label_column": "topic"}),
        ),
    );
    assert_eq!(status, 202, "{v:#}");
    let done = wait_job(&s, &admin, v["id"].as_str().unwrap());
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(
        done["result"]["labels"],
        json!(["billing", "delivery"]),
        "{done:#}"
    );
    let seen =
        done["result"]["embedded"].as_u64().unwrap() + done["result"]["cached"].as_u64().unwrap();
    assert_eq!(seen, 24, "one row per chunk: {done:#}");
    let (_, m) = call(
        &s,
        "GET",
        "/v1/models/t-admin-from-collection",
        Some(&user),
        None,
    );
    assert_eq!(m["training"]["data"], "collection tickets", "{m:#}");

    // Cancel: a larger job is stopped between embedding chunks; no model appears.
    let (status, v) = train_req(
        &s,
        &admin,
        json!({"name": "t-admin-cancelled", "data": {"rows": rows(1500)}}),
    );
    assert_eq!(status, 202, "{v:#}");
    let id = v["id"].as_str().unwrap().to_string();
    let (status, v) = train_req(
        &s,
        &admin,
        json!({"name": "t-admin-cancelled", "data": {"rows": rows(3)}}),
    );
    assert_eq!(status, 409, "one job per name at a time: {v:#}");
    let (status, v) = call(
        &s,
        "DELETE",
        &format!("/admin/train/{id}"),
        Some(&admin),
        None,
    );
    assert_eq!(status, 200, "{v:#}");
    let done = wait_job(&s, &admin, &id);
    assert_eq!(done["state"], "failed", "{done:#}");
    assert!(
        done["error"].as_str().unwrap().contains("cancel"),
        "{done:#}"
    );
    let (status, _) = call(&s, "GET", "/v1/models/t-admin-cancelled", Some(&user), None);
    assert_eq!(status, 404);
    let (status, v) = call(
        &s,
        "DELETE",
        &format!("/admin/train/{id}"),
        Some(&admin),
        None,
    );
    assert_eq!(status, 409, "a finished job cannot be cancelled: {v:#}");
}

#[test]
fn bad_data_is_refused_with_the_file_and_line() {
    let home = Home::new();
    let write = |name: &str, body: &str| {
        let p = home.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let mut good = String::from("text,label\n");
    for t in BILLING.iter().take(4) {
        good.push_str(&format!("\"{t}\",billing\n"));
    }
    for t in DELIVERY.iter().take(4) {
        good.push_str(&format!("\"{t}\",delivery\n"));
    }
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (
            write("one.csv", "text,label\na,x\nb,x\nc,x\nd,x\ne,x\n"),
            vec![],
            vec![
                "one.csv",
                "every row has the label \"x\"",
                "at least two classes",
            ],
        ),
        (
            write(
                "empty.csv",
                &good.replacen("\"I was charged", "\"  \",billing\n\"I was charged", 1),
            ),
            vec![],
            vec!["empty.csv:2", "the text is empty"],
        ),
        (
            write("cols.csv", &good),
            vec!["--text-column", "body"],
            vec!["cols.csv", "no text column \"body\"", "text", "label"],
        ),
        (
            write("small.csv", &format!("{good}\"a lonely row\",refund\n")),
            vec![],
            vec!["small.csv:10", "class \"refund\" has only 1 row"],
        ),
        (
            write("few.csv", "text,label\na,x\nb,y\n"),
            vec![],
            vec!["few.csv", "2 usable rows", "at least"],
        ),
        (
            write(
                "mixed.csv",
                "text,label\na,1\nb,2\nc,spam\nd,1\ne,2\nf,spam\n",
            ),
            vec![],
            vec!["mixed.csv", "mixes types", "line 2", "line 4"],
        ),
        (
            write(
                "bad.jsonl",
                "{\"text\": \"a\", \"label\": \"x\"}\nnot json\n",
            ),
            vec![],
            vec!["bad.jsonl:2"],
        ),
        (
            write("rows.txt", &good),
            vec![],
            vec!["cannot tell the format", "--format csv|tsv|jsonl|trec"],
        ),
    ];
    for (i, (path, extra, want)) in cases.iter().enumerate() {
        let name = format!("t-bad-{i}");
        // The models folder is shared by the tests of every run.
        let _ = std::fs::remove_dir_all(home.models.join(&name));
        let mut args = vec![
            "train",
            "classifier",
            "--data",
            path.as_str(),
            "--name",
            &name,
        ];
        args.extend(extra.iter().copied());
        let err = home.fails(&args);
        for w in want {
            assert!(err.contains(w), "case {path}: {w:?} not in:\n{err}");
        }
        // Nothing half-written: no manifest and no model folder.
        assert!(
            !home.manifests().join(format!("{name}.toml")).exists(),
            "{path}"
        );
        assert!(!home.models.join(&name).exists(), "{path}");
    }
}

#[test]
fn cli_classify_scores_zero_shot_labels_on_an_embed_model() {
    let home = Home::new();
    let v = home.json(&[
        "classify",
        "-m",
        "minilm",
        "--label",
        "sports",
        "--label",
        "cooking",
        "--label",
        "finance=Money, markets and banks.",
        "The striker scored twice in the final",
        "Whisk the eggs with the sugar",
        "Interest rates rose again",
    ]);
    let top: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["sports", "cooking", "finance"], "{v:#}");
    let err = home.fails(&["classify", "-m", "minilm", "--label", "only", "text"]);
    assert!(err.contains("give 2 to 64"), "{err}");
    let err = home.fails(&[
        "classify",
        "-m",
        "sentiment",
        "--label",
        "a",
        "--label",
        "b",
        "text",
    ]);
    assert!(err.contains("--label is for embed models"), "{err}");
}
