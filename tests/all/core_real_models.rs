//! The default models, for real: MiniLM embeddings against a reference computed with
//! Python onnxruntime, and the PII NER model on a sentence with personal data.

use serde_json::Value;

use crate::support::{Home, cosine, floats, repo};

fn reference() -> Value {
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/minilm_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn minilm_matches_the_python_reference() {
    let home = Home::new();
    let r = reference();
    let sentences: Vec<&str> = r["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let mut args = vec!["embed", "-m", "minilm"];
    args.extend(&sentences);
    let out = home.json(&args);
    let got = out["embeddings"].as_array().unwrap();
    assert_eq!(got.len(), sentences.len());
    for (i, (g, want)) in got
        .iter()
        .zip(r["embeddings"].as_array().unwrap())
        .enumerate()
    {
        let (g, want) = (floats(g), floats(want));
        assert_eq!(g.len(), 384);
        let norm: f64 = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "sentence {i} not normalised: {norm}"
        );
        let c = cosine(&g, &want);
        assert!(
            c >= 0.9999,
            "sentence {i}: cosine to the Python reference is {c}"
        );
    }
    let tokens: u64 = r["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_array().unwrap().len() as u64)
        .sum();
    assert_eq!(
        out["tokens"], tokens,
        "token count differs from the reference tokenizer"
    );
}

#[test]
fn minilm_paraphrase_is_closer_than_unrelated_and_batching_does_not_change_results() {
    let home = Home::new();
    let out = home.json(&[
        "embed",
        "The cat sits on the mat.",
        "A cat is sitting on a mat.",
        "Stock markets fell sharply on Tuesday.",
    ]);
    let e: Vec<Vec<f64>> = out["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    let (para, unrelated) = (cosine(&e[0], &e[1]), cosine(&e[0], &e[2]));
    assert!(
        para > 0.8 && unrelated < 0.3 && para > unrelated,
        "paraphrase {para}, unrelated {unrelated}"
    );
    // Alone (no padding) vs in a padded batch: the same vector.
    let alone = home.json(&["embed", "A cat is sitting on a mat."]);
    let c = cosine(&floats(&alone["embeddings"][0]), &e[1]);
    assert!(c > 0.99999, "batched vs alone cosine {c}");
}

#[test]
fn pii_ner_finds_name_phone_email_and_street_with_offsets() {
    let home = Home::new();
    let text = "My name is John Smith, call me at (415) 555-0132 or email john.smith@example.com. \
                I live at 1600 Pennsylvania Avenue, Washington, DC 20500.";
    let out = home.json(&["ner", text]);
    let ents = out["results"][0]["entities"].as_array().unwrap();
    let find = |label: &str| {
        ents.iter()
            .find(|e| e["label"] == label)
            .unwrap_or_else(|| panic!("no {label} in {ents:?}"))
    };
    let chars: Vec<char> = text.chars().collect();
    for (label, want) in [
        ("GIVEN_NAME", "John"),
        ("SURNAME", "Smith"),
        ("PHONE", "(415) 555-0132"),
        ("EMAIL", "john.smith@example.com"),
        ("BUILDING_NUMBER", "1600"),
        ("STREET_NAME", "Pennsylvania Avenue"),
    ] {
        let e = find(label);
        assert_eq!(e["text"], want, "{label}: {e}");
        let (s, t) = (
            e["start"].as_u64().unwrap() as usize,
            e["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            chars[s..t].iter().collect::<String>(),
            want,
            "{label} offsets"
        );
        assert!(e["score"].as_f64().unwrap() > 0.5, "{label}: {e}");
    }
}

#[test]
fn pii_ner_info_carries_the_cc_by_attribution() {
    let home = Home::new();
    let info = home.json(&["models", "info", "pii-ner"]);
    assert_eq!(info["license"], "CC-BY-4.0");
    let attribution = info["attribution"].as_str().unwrap();
    assert!(
        attribution.contains("National Design Studio") && attribution.contains("CC BY 4.0"),
        "{attribution}"
    );
    assert_eq!(info["loaded"]["labels"].as_array().unwrap().len(), 35);
    assert!(
        info["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "LICENSE" && f["state"] == "ok")
    );
}
