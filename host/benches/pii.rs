//! Anonymisation quality: precision, recall and F1 per entity type on the labelled set
//! `bench/pii/set.jsonl` (made by `bench/pii/make_set.py`; how is said there), with the
//! real `pii-ner` model plus the validated patterns, merged exactly as `POST /v1/anonymize`
//! merges them (`llmos::data::anonymize::detect`). Also the patterns alone, and throughput.
//!
//! A prediction is *exact* when type, start and end equal a gold span's, *overlap* when the
//! type is equal and the spans share a character (each gold span is matched at most once).
//! Types the set has no gold for (ADDRESS, URL, ...) are counted apart, not scored.
//!
//! `cargo bench -p llmos --bench pii` with the models where `llmos` finds them
//! (`LLMOS_HOME`, its `llmos.toml`; `llmos models pull pii-ner` first).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use llmos::config::{Config, Paths};
use llmos::core::Core;
use llmos::data::anonymize::{ENTITY_TYPES, NER_MODEL, detect};
use llmos_pii::Span;
use serde_json::Value;

const GOLD_TYPES: [&str; 8] = [
    "PERSON",
    "LOC",
    "ORG",
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "IP",
];

/// (type, start, end) in characters.
type Labelled = (String, usize, usize);

#[derive(Default, Clone, Copy)]
struct Counts {
    gold: usize,
    predicted: usize,
    exact: usize,
    overlap: usize,
}

fn chars(text: &str, spans: &[Span]) -> Vec<Labelled> {
    let at = |b: usize| text[..b].chars().count();
    spans
        .iter()
        .map(|s| (s.kind.clone(), at(s.start), at(s.end)))
        .collect()
}

fn score(gold: &[Vec<Labelled>], predicted: &[Vec<Labelled>]) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for (g, p) in gold.iter().zip(predicted) {
        for (t, ..) in g {
            out.entry(t.clone()).or_default().gold += 1;
        }
        for (t, ..) in p {
            out.entry(t.clone()).or_default().predicted += 1;
        }
        let mut used_exact = vec![false; g.len()];
        let mut used_overlap = vec![false; g.len()];
        for (t, s, e) in p {
            let c = out.entry(t.clone()).or_default();
            if let Some(i) = (0..g.len()).find(|&i| !used_exact[i] && g[i] == (t.clone(), *s, *e)) {
                used_exact[i] = true;
                c.exact += 1;
            }
            if let Some(i) = (0..g.len())
                .find(|&i| !used_overlap[i] && g[i].0 == *t && g[i].1 < *e && *s < g[i].2)
            {
                used_overlap[i] = true;
                c.overlap += 1;
            }
        }
    }
    out
}

fn prf(tp: usize, predicted: usize, gold: usize) -> String {
    let p = if predicted == 0 {
        f64::NAN
    } else {
        tp as f64 / predicted as f64
    };
    let r = if gold == 0 {
        f64::NAN
    } else {
        tp as f64 / gold as f64
    };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    let show = |x: f64| {
        if x.is_nan() {
            "–".to_string()
        } else {
            format!("{x:.2}")
        }
    };
    format!("{} | {} | {}", show(p), show(r), show(f))
}

fn table(title: &str, counts: &BTreeMap<String, Counts>, types: &[&str]) {
    println!("\n{title}\n");
    println!(
        "| type | gold | predicted | P (exact) | R (exact) | F1 (exact) | P (overlap) | R (overlap) | F1 (overlap) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut all = Counts::default();
    for t in types {
        let c = counts.get(*t).copied().unwrap_or_default();
        all.gold += c.gold;
        all.predicted += c.predicted;
        all.exact += c.exact;
        all.overlap += c.overlap;
        println!(
            "| {t} | {} | {} | {} | {} |",
            c.gold,
            c.predicted,
            prf(c.exact, c.predicted, c.gold),
            prf(c.overlap, c.predicted, c.gold)
        );
    }
    println!(
        "| **all** | {} | {} | {} | {} |",
        all.gold,
        all.predicted,
        prf(all.exact, all.predicted, all.gold),
        prf(all.overlap, all.predicted, all.gold)
    );
    let other: Vec<String> = counts
        .iter()
        .filter(|(t, c)| !types.contains(&t.as_str()) && c.predicted > 0)
        .map(|(t, c)| format!("{t} {}", c.predicted))
        .collect();
    if !other.is_empty() {
        println!(
            "\nPredicted types without gold (not scored): {}",
            other.join(", ")
        );
    }
}

fn main() -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let set = std::fs::read_to_string(repo.join("bench/pii/set.jsonl"))?;
    let mut texts = Vec::new();
    let mut gold = Vec::new();
    for line in set.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        texts.push(v["text"].as_str().unwrap_or_default().to_string());
        gold.push(
            v["spans"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| {
                            let n = |k: &str| s[k].as_u64().unwrap_or_default() as usize;
                            (
                                s["type"].as_str().unwrap_or_default().to_string(),
                                n("start"),
                                n("end"),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        );
    }
    let home = std::env::var_os("LLMOS_HOME").map_or_else(Paths::default_home, PathBuf::from);
    let mut config = Config::load(&home.join("llmos.toml"))?;
    config.apply_env()?;
    let core = Core::new(config.clone(), Paths::resolve(home, &config))?;
    let model = core.model(NER_MODEL)?;
    let types: Vec<String> = ENTITY_TYPES.iter().map(|t| t.to_string()).collect();

    detect(Some(&model), &texts[..8], &types, None)?; // warm-up
    let start = Instant::now();
    let merged = detect(Some(&model), &texts, &types, None)?;
    let took = start.elapsed().as_secs_f64();
    let patterns = detect(None, &texts, &types, None)?;
    let to_chars = |all: &[Vec<Span>]| -> Vec<Vec<Labelled>> {
        texts.iter().zip(all).map(|(t, s)| chars(t, s)).collect()
    };
    let gold_spans: usize = gold.iter().map(Vec::len).sum();
    println!(
        "set: {} sentences, {gold_spans} gold spans (bench/pii/set.jsonl); model {NER_MODEL}; \
         {:.0} sentences/s for model + patterns ({} cores, one call of {} texts)",
        texts.len(),
        texts.len() as f64 / took,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        texts.len()
    );
    table(
        "pii-ner + patterns (what POST /v1/anonymize does)",
        &score(&gold, &to_chars(&merged)),
        &GOLD_TYPES,
    );
    table(
        "patterns alone",
        &score(&gold, &to_chars(&patterns)),
        &["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP"],
    );
    if std::env::args().any(|a| a == "--errors") {
        let preds = to_chars(&merged);
        for ((t, g), p) in texts.iter().zip(&gold).zip(&preds) {
            let scored = |x: &&Labelled| GOLD_TYPES.contains(&x.0.as_str());
            let p: Vec<&Labelled> = p.iter().filter(scored).collect();
            if g.iter().collect::<Vec<_>>() != p {
                println!("\n{t}\n  gold: {g:?}\n  got:  {p:?}");
            }
        }
    }
    Ok(())
}
