//! Text tasks on the tiny fixture models: labels, entity merging, offsets.

use serde_json::json;

use crate::support::Home;

#[test]
fn classify_returns_sorted_label_scores() {
    let home = Home::new();
    let out = home.json(&[
        "classify",
        "-m",
        "tiny-classifier",
        "I love this great movie",
        "the food was awful",
        "it is a movie",
    ]);
    let r = out["results"].as_array().unwrap();
    assert_eq!(r[0]["label"], "positive");
    assert_eq!(r[1]["label"], "negative");
    assert_eq!(r[2]["label"], "neutral");
    let scores = r[0]["scores"].as_array().unwrap();
    let total: f64 = scores.iter().map(|s| s["score"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-5, "{scores:?}");
    assert!(
        scores
            .windows(2)
            .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64())
    );
}

#[test]
fn entities_merge_word_pieces_and_bio_with_character_offsets() {
    let home = Home::new();
    // "Robertson" is two word-pieces (robert, ##son); "New York" is B-LOC I-LOC;
    // the leading "Ünïcode " shifts byte offsets but not character offsets.
    let text = "Ünïcode Alice Robertson met Bob in New York and Paris.";
    let out = home.json(&["ner", "-m", "tiny-ner", text]);
    let ents = out["results"][0]["entities"].as_array().unwrap();
    let got: Vec<_> = ents
        .iter()
        .map(|e| {
            (
                e["label"].clone(),
                e["text"].clone(),
                e["start"].clone(),
                e["end"].clone(),
            )
        })
        .collect();
    let want = vec![
        (json!("PER"), json!("Alice"), json!(8), json!(13)),
        (json!("PER"), json!("Robertson"), json!(14), json!(23)),
        (json!("PER"), json!("Bob"), json!(28), json!(31)),
        (json!("LOC"), json!("New York"), json!(35), json!(43)),
        (json!("LOC"), json!("Paris"), json!(48), json!(53)),
    ];
    assert_eq!(got, want, "{out}");
    let chars: Vec<char> = text.chars().collect();
    for e in ents {
        let (s, t) = (
            e["start"].as_u64().unwrap() as usize,
            e["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            chars[s..t].iter().collect::<String>(),
            e["text"].as_str().unwrap()
        );
    }
}

#[test]
fn texts_from_stdin_as_json_or_lines() {
    use std::io::Write;
    let home = Home::new();
    for input in ["[\"great\", \"awful\"]", "great\n\nawful\n"] {
        let mut child = home
            .cmd(&["classify", "-m", "tiny-classifier"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let labels: Vec<_> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["label"].clone())
            .collect();
        assert_eq!(
            labels,
            vec![json!("positive"), json!("negative")],
            "{input:?}"
        );
    }
}
