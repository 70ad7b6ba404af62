//! Zero-shot classification: `/v1/classify` with `labels` on the real `minilm` embedding
//! model over real HTTP; the answer has a trained classifier's shape; bad labels get 400s that
//! name `labels[i]` and what is accepted; a plugin pipeline applies to it as to any request.

use serde_json::{Value, json};

use crate::plugins_common::{manifest, wasm};
use crate::support::{Home, Server, call, text};

const SENTENCES: [(&str, &str); 6] = [
    ("The striker scored twice in the cup final.", "sports"),
    (
        "The tennis champion won the match in straight sets.",
        "sports",
    ),
    (
        "Whisk the eggs, then fold in the flour and bake for twenty minutes.",
        "cooking",
    ),
    (
        "Simmer the tomato sauce with garlic and fresh basil.",
        "cooking",
    ),
    (
        "The central bank raised interest rates to fight inflation.",
        "finance",
    ),
    (
        "Shares fell sharply after the company's quarterly earnings report.",
        "finance",
    ),
];

fn classify(s: &Server, body: Value) -> (u16, Value) {
    call(s, "POST", "/v1/classify", None, Some(body))
}

fn inputs() -> Vec<&'static str> {
    SENTENCES.iter().map(|(t, _)| *t).collect()
}

/// Every answer is right and has the trained classifier's shape: labels sorted by score,
/// scores summing to 1, `label`/`score` the first of them.
fn assert_right(body: &Value, names: &[&str]) {
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), SENTENCES.len(), "{body}");
    for (i, (d, (sentence, want))) in data.iter().zip(SENTENCES).enumerate() {
        assert_eq!(d["object"], "classification");
        assert_eq!(d["index"], i);
        assert_eq!(d["label"], *want, "{sentence}: {d}");
        let scores = d["scores"].as_array().unwrap();
        assert_eq!(scores.len(), names.len());
        let s: Vec<f64> = scores
            .iter()
            .map(|x| x["score"].as_f64().unwrap())
            .collect();
        assert!(s.windows(2).all(|w| w[0] >= w[1]), "not sorted: {d}");
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{d}");
        assert_eq!(d["score"], scores[0]["score"]);
        let mut got: Vec<&str> = scores
            .iter()
            .map(|x| x["label"].as_str().unwrap())
            .collect();
        got.sort_unstable();
        let mut want_names = names.to_vec();
        want_names.sort_unstable();
        assert_eq!(got, want_names);
    }
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "minilm");
    assert!(
        body["usage"]["prompt_tokens"].as_u64().unwrap() > 6,
        "{body}"
    );
}

#[test]
fn zero_shot_labels_classify_obvious_sentences_with_minilm() {
    let home = Home::new();
    let s = home.serve(&["--models", "minilm,tiny-classifier"]);
    let names = ["sports", "cooking", "finance"];
    let (code, plain) = classify(
        &s,
        json!({"model": "minilm", "input": inputs(), "labels": names}),
    );
    assert_eq!(code, 200, "{plain}");
    assert_right(&plain, &names);
    // The same request again (prototypes now cached) gives the same answer.
    let (_, again) = classify(
        &s,
        json!({"model": "minilm", "input": inputs(), "labels": names}),
    );
    assert_eq!(again, plain);
    // Described labels with examples: the same decisions, from other prototypes.
    let described = json!([
        {"name": "sports", "description": "Games, athletes, matches and competitions.",
         "examples": ["The team won the league."]},
        {"name": "cooking", "description": "Recipes, ingredients and preparing food."},
        {"name": "finance", "examples": ["Stocks and bonds rallied.", "The loan's interest is due."]},
    ]);
    let (code, body) = classify(
        &s,
        json!({"model": "minilm", "input": inputs(), "labels": described}),
    );
    assert_eq!(code, 200, "{body}");
    assert_right(&body, &names);
    assert_ne!(body["data"][0]["scores"], plain["data"][0]["scores"]);
    // The same keys as a trained classifier's answer.
    let (code, trained) = classify(&s, json!({"model": "tiny-classifier", "input": ["good"]}));
    assert_eq!(code, 200, "{trained}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&trained), keys(&plain));
    assert_eq!(keys(&trained["data"][0]), keys(&plain["data"][0]));
    // The OpenAPI description documents `labels`.
    let (_, doc) = call(&s, "GET", "/openapi.json", None, None);
    let body = &doc["components"]["schemas"]["ClassifyRequest"];
    assert!(body["properties"]["labels"].is_object(), "{body}");
    assert!(doc["components"]["schemas"]["ZeroShotLabel"].is_object());
}

#[test]
fn zero_shot_refusals_name_the_label_and_what_is_accepted() {
    let home = Home::new();
    let s = home.serve(&["--models", "minilm,tiny-classifier"]);
    let many: Vec<String> = (0..65).map(|i| format!("l{i}")).collect();
    let examples: Vec<String> = (0..33).map(|i| format!("e{i}")).collect();
    let cases = [
        (
            json!({"model": "tiny-classifier", "input": "x", "labels": ["a", "b"]}),
            "model tiny-classifier has trained labels; labels is for embed models",
        ),
        (json!({"model": "minilm", "input": "x"}), "give `labels`"),
        (
            json!({"model": "minilm", "input": "x", "labels": ["only"]}),
            "has 1 labels; give 2 to 64",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": many}),
            "has 65 labels; give 2 to 64",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": "a,b"}),
            "must be an array of 2 to 64 labels",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": ["a", "a"]}),
            "labels[1] repeats the name \"a\": label names must be unique",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": ["a", " "]}),
            "labels[1] has an empty name",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": ["a", 3]}),
            "labels[1] is 3: each label must be a string",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": ["a", {"description": "d"}]}),
            "labels[1] has no `name`",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": ["a", {"name": "b", "example": ["e"]}]}),
            "labels[1] has the unknown key \"example\": accepted are name, description and examples",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": ["a", {"name": "b", "examples": examples}]}),
            "labels[1].examples has 33 examples; at most 32",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": [{"name": "a", "examples": [""]}, "b"]}),
            "labels[0].examples[0] is \"\": an example must be a non-empty string",
        ),
        (
            json!({"model": "minilm", "input": "x", "labels": [{"name": "a", "description": 7}, "b"]}),
            "labels[0].description is 7",
        ),
    ];
    for (body, needle) in cases {
        let (code, answer) = classify(&s, body.clone());
        assert_eq!(code, 400, "{body} → {answer}");
        let e = &answer["error"];
        assert_eq!(e["type"], "invalid_request_error", "{answer}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{body}: {answer}"
        );
        assert!(e["param"] == "labels" || e["param"] == "model", "{answer}");
    }
    // A duplicate `labels` key is refused by the strict body parser, not resolved either way.
    let r = reqwest::blocking::Client::new()
        .post(s.at("/v1/classify"))
        .header("content-type", "application/json")
        .body(r#"{"model":"minilm","input":"x","labels":["a","b"],"labels":["c","d"]}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: Value = r.json().unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key \"labels\""),
        "{e}"
    );
    // Still serving.
    let (code, _) = classify(
        &s,
        json!({"model": "minilm", "input": "x", "labels": ["a", "b"]}),
    );
    assert_eq!(code, 200);
}

#[test]
fn zero_shot_requests_go_through_the_models_pipeline() {
    let home = Home::new();
    let (w, m) = (wasm("content-policy"), manifest("content-policy"));
    let out = home
        .cmd(&[
            "plugin",
            "install",
            w.to_str().unwrap(),
            "--manifest",
            m.to_str().unwrap(),
            "--set",
            "denied_terms=forbidden",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let cfg = home.dir.path().join("llmos.toml");
    let mut t = std::fs::read_to_string(&cfg).unwrap();
    t.push_str("\n[pipelines.minilm]\nrequest_policies = [\"content-policy\"]\n");
    std::fs::write(&cfg, t).unwrap();
    let s = home.serve(&["--models", "minilm"]);
    let labels = json!(["sports", "cooking", "finance"]);
    let (code, body) = classify(
        &s,
        json!({"model": "minilm", "input": inputs(), "labels": labels}),
    );
    assert_eq!(code, 200, "{body}");
    assert_right(&body, &["sports", "cooking", "finance"]);
    let (code, body) = classify(
        &s,
        json!({"model": "minilm", "input": ["a forbidden recipe"], "labels": labels}),
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"]["code"], "policy_denied");
    // Token ids cannot skip a text pipeline.
    let (code, body) = classify(
        &s,
        json!({"model": "minilm", "input": [[101, 102]], "labels": labels}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("send texts"),
        "{body}"
    );
}
