//! `llmos data` from the command line: ingest of every format from a folder (bad records
//! reported with file and line while the rest is stored), re-runs that skip what is stored,
//! de-duplication, replacing, listing, export, search and removal, against the real binary
//! and the real `minilm` model.

use serde_json::Value;

use crate::support::{Home, repo, text};

fn formats() -> String {
    repo()
        .join("tests/fixtures/data/formats")
        .display()
        .to_string()
}

fn search(home: &Home, coll: &str, query: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["data", "search", "--collection", coll];
    args.extend(extra);
    args.push(query);
    home.json(&args)["data"].as_array().unwrap().clone()
}

#[test]
fn a_folder_of_every_format_is_ingested_and_bad_records_name_file_and_line() {
    let home = Home::new();
    let dir = formats();
    let out = home
        .cmd(&[
            "data",
            "ingest",
            &dir,
            "--collection",
            "kb",
            "--text-column",
            "body",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["report"];
    // notes.txt, guide.md (in a subfolder), page.html, 3 CSV rows, 3 JSONL lines.
    assert_eq!(v["files"], 5, "{v:#}");
    assert_eq!(r["documents_stored"], 9, "{v:#}");
    let errors: Vec<String> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["file"].as_str().unwrap().rsplit('/').next().unwrap(),
                e["line"]
            )
        })
        .collect();
    assert_eq!(
        errors,
        ["lines.jsonl:2", "lines.jsonl:4", "rows.csv:4"],
        "{v:#}"
    );
    // Also on stderr, one line each, with file and line.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rows.csv:4: malformed CSV record"),
        "{stderr}"
    );
    assert!(stderr.contains("lines.jsonl:2: malformed JSON"), "{stderr}");
    // The PDF is refused with the reason, the rest went on.
    let skipped = v["skipped_files"].to_string();
    assert!(
        skipped.contains("scan.pdf") && skipped.contains("PDF is not read"),
        "{skipped}"
    );

    // Each format's text is found by a question about it, best first.
    for (q, want) in [
        (
            "how do bees tell each other where flowers are",
            "waggle dance",
        ),
        (
            "how often should I feed my sourdough starter",
            "equal weights of flour",
        ),
        ("what warns ships at night", "rotating beam"),
        ("rainfall in the desert", "250 millimetres"),
        ("where are stars born", "giant cloud of gas"),
    ] {
        let hits = search(&home, "kb", q, &["--top-k", "3"]);
        let best = hits[0]["text"].as_str().unwrap();
        assert!(best.contains(want), "{q}: {best} ({hits:#?})");
    }
    // HTML: text only, no markup, no script or style.
    let hits = search(&home, "kb", "lighthouse lantern", &["--top-k", "1"]);
    let t = hits[0]["text"].as_str().unwrap();
    assert!(
        !t.contains('<') && !t.contains("tracking pixel") && !t.contains("color"),
        "{t}"
    );
    // CSV: the other columns are metadata (numbers as numbers), the id column the id.
    let hits = search(
        &home,
        "kb",
        "ice",
        &["--filter", r#"{"year":{"gte":2020,"lt":2022}}"#],
    );
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0]["document"], "glacier");
    assert_eq!(hits[0]["metadata"]["region"], "alps");
    let hits = search(&home, "kb", "space", &["--filter", r#"{"kind":"space"}"#]);
    let docs: Vec<&str> = hits
        .iter()
        .map(|h| h["document"].as_str().unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{hits:#?}");
    assert!(docs.contains(&"comet") && docs.contains(&"nebula"));

    // Re-running skips everything stored; the counts do not move.
    let again = home.json(&[
        "data",
        "ingest",
        &dir,
        "--collection",
        "kb",
        "--text-column",
        "body",
        "--quiet",
    ]);
    assert_eq!(again["report"]["documents_unchanged"], 9, "{again:#}");
    assert_eq!(again["report"]["documents_stored"], 0);
    assert_eq!(again["report"]["chunks_stored"], 0);
    let ls = home.json(&["data", "ls"]);
    assert_eq!(ls["collections"][0]["documents"], 9, "{ls:#}");
    assert_eq!(ls["collections"][0]["chunks"], 9, "{ls:#}");

    // A bad --filter or --top-k is refused, saying what is accepted.
    let e = home.fails(&[
        "data",
        "search",
        "--collection",
        "kb",
        "--filter",
        r#"{"year":{"near":1}}"#,
        "x",
    ]);
    assert!(e.contains("unknown operator") && e.contains("gte"), "{e}");
    let e = home.fails(&["data", "search", "--collection", "kb", "--top-k", "0", "x"]);
    assert!(e.contains("accepted 1 to 1000"), "{e}");
    let e = home.fails(&["data", "search", "--collection", "nope", "x"]);
    assert!(e.contains("no collection \"nope\""), "{e}");
}

#[test]
fn long_texts_are_chunked_with_overlap_duplicates_skipped_and_documents_replaced() {
    let home = Home::new();
    let dir = tempfile::tempdir().unwrap();
    // A long text: 40 distinct numbered sentences.
    let long: String = (0..40)
        .map(|i| {
            format!(
                "Sentence number {i} talks about topic {} in some detail. ",
                i * 7
            )
        })
        .collect();
    let jl = dir.path().join("docs.jsonl");
    let line = |id: &str, text: &str, tag: &str| {
        serde_json::json!({"id": id, "text": text, "tag": tag}).to_string()
    };
    std::fs::write(
        &jl,
        [
            line("long", &long, "a"),
            line("one", "Penguins cannot fly but swim very well.", "a"),
            line("two", "Penguins cannot fly but swim very well.", "b"),
        ]
        .join("\n"),
    )
    .unwrap();
    let jl = jl.display().to_string();
    let made = home.json(&[
        "data",
        "create",
        "c",
        "--chunk-tokens",
        "48",
        "--overlap-tokens",
        "12",
    ]);
    assert_eq!(
        (
            made["chunk_tokens"].as_u64(),
            made["overlap_tokens"].as_u64()
        ),
        (Some(48), Some(12)),
        "{made}"
    );
    let ack = dir.path().join("acks.log");
    let v = home.json(&[
        "data",
        "ingest",
        &jl,
        "--collection",
        "c",
        "--quiet",
        "--ack-log",
        ack.to_str().unwrap(),
    ]);
    let r = &v["report"];
    assert_eq!(r["documents_stored"], 3, "{v:#}");
    // The same text in another document is stored once.
    assert_eq!(r["chunks_skipped"], 1, "{v:#}");
    let acks = std::fs::read_to_string(&ack).unwrap();
    let mut acked: Vec<&str> = acks.lines().collect();
    acked.sort();
    assert_eq!(acked, ["long", "one", "two"]);

    // The long document: several chunks, consecutive ones overlapping, together covering
    // every sentence.
    let export = home.cmd(&["data", "export", "c"]).output().unwrap();
    assert!(export.status.success(), "{}", text(&export));
    let lines: Vec<Value> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let chunks: Vec<&str> = lines
        .iter()
        .filter(|l| l["object"] == "chunk" && l["document"] == "long")
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(chunks.len() >= 8, "{} chunks: {chunks:#?}", chunks.len());
    for i in 0..40 {
        let s = format!("Sentence number {i} ");
        assert!(chunks.iter().any(|c| c.contains(&s)), "{s} is in no chunk");
    }
    for pair in chunks.windows(2) {
        let tail: Vec<&str> = pair[0].split_whitespace().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        assert!(
            pair[1].contains(&tail.join(" ")),
            "no overlap between {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
    // Export is decrypted JSON: the document records, then each chunk with its embedding.
    let two = lines
        .iter()
        .find(|l| l["object"] == "document" && l["id"] == "two")
        .unwrap();
    assert_eq!(
        (two["chunks"].as_u64(), two["duplicates"].as_u64()),
        (Some(1), Some(1)),
        "{two}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l["object"] == "chunk")
            .all(|l| l["embedding"].as_str().unwrap().len() == 2048)
    );

    // A changed record with the same id replaces the old one; its chunks go with it.
    std::fs::write(
        dir.path().join("docs.jsonl"),
        line("one", "Ostriches run fast on long legs.", "a"),
    )
    .unwrap();
    let v = home.json(&["data", "ingest", &jl, "--collection", "c", "--quiet"]);
    assert_eq!(
        (
            v["report"]["documents_replaced"].as_u64(),
            v["report"]["documents_stored"].as_u64()
        ),
        (Some(1), Some(1)),
        "{v:#}"
    );
    let hits = search(
        &home,
        "c",
        "penguins swimming",
        &["--filter", r#"{"tag":"a"}"#],
    );
    assert!(
        hits.iter()
            .filter(|h| h["document"] == "one")
            .all(|h| h["text"] == "Ostriches run fast on long legs."),
        "{hits:#?}"
    );
    let hits = search(&home, "c", "fast running bird", &["--top-k", "1"]);
    assert_eq!(hits[0]["document"], "one");
    // The penguin text "one" held moved to "two", which has it too.
    let hits = search(&home, "c", "penguins swimming", &["--top-k", "1"]);
    assert_eq!(
        (&hits[0]["document"], &hits[0]["text"]),
        (
            &"two".into(),
            &"Penguins cannot fly but swim very well.".into()
        ),
        "{hits:#?}"
    );

    // rm --document removes it from search; rm removes the collection.
    let v = home.json(&["data", "rm", "c", "--document", "long"]);
    assert_eq!(v["deleted"], true);
    let hits = search(
        &home,
        "c",
        "Sentence number 12 talks about topic",
        &["--top-k", "50"],
    );
    assert!(hits.iter().all(|h| h["document"] != "long"), "{hits:#?}");
    let ls = home.json(&["data", "ls", "c"]);
    assert_eq!(ls["documents"].as_array().unwrap().len(), 2, "{ls:#}");
    assert_eq!(ls["collection"]["documents"], 2);
    let e = home.fails(&["data", "rm", "c", "--document", "long"]);
    assert!(e.contains("has no document \"long\""), "{e}");
    home.json(&["data", "rm", "c"]);
    assert_eq!(
        home.json(&["data", "ls"])["collections"],
        serde_json::json!([])
    );
}

#[test]
fn settings_are_checked_and_say_what_is_accepted() {
    let home = Home::new();
    for (args, want) in [
        (vec!["data", "create", "bad name"], "ASCII letters"),
        (
            vec!["data", "create", "c", "--chunk-tokens", "4"],
            "accepted 8 to 256",
        ),
        (
            vec!["data", "create", "c", "--chunk-tokens", "100000"],
            "accepted 8 to 256",
        ),
        (
            vec![
                "data",
                "create",
                "c",
                "--chunk-tokens",
                "64",
                "--overlap-tokens",
                "40",
            ],
            "accepted 0 to 32",
        ),
        (
            vec!["data", "create", "c", "--model", "pii-ner"],
            "needs an embedding model",
        ),
        (
            vec!["data", "create", "c", "--model", "no-such-model"],
            "no-such-model",
        ),
        (
            vec!["data", "create", "c", "--preprocessor", "normalize"],
            "no preprocessor plugin \"normalize\" is installed",
        ),
    ] {
        let e = home.fails(&args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    assert_eq!(
        home.json(&["data", "ls"])["collections"],
        serde_json::json!([])
    );
}

/// Every file under `dir` (recursively) that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_holding(&p, needle));
        } else if std::fs::read(&p)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
        {
            out.push(p);
        }
    }
    out
}

#[test]
fn nothing_ingested_appears_in_clear_in_any_file_of_the_data_folder() {
    let home = Home::new();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("plain-file-marker-3391.txt"),
        "The zephyr-text-marker-4471 crossed the harbour at dawn.",
    )
    .unwrap();
    std::fs::write(
        src.path().join("records.jsonl"),
        concat!(
            r#"{"id": "docid-marker-5123", "text": "A lantern-text-marker-6620 hung by the door.", "#,
            r#""owner": "metadata-marker-9034"}"#,
            "\n"
        ),
    )
    .unwrap();
    let coll = "coll-marker-7788";
    let dir = src.path().display().to_string();
    let v = home.json(&["data", "ingest", &dir, "--collection", coll, "--quiet"]);
    assert_eq!(v["report"]["documents_stored"], 2, "{v:#}");
    // Searching opens the collection (vectors decrypted in memory only) and finds the text.
    let hits = search(&home, coll, "a lantern by the door", &[]);
    assert!(
        hits[0]["text"]
            .as_str()
            .unwrap()
            .contains("lantern-text-marker-6620"),
        "{hits:?}"
    );
    // Every process has exited: whatever the store holds is on disk now.
    for m in [
        "zephyr-text-marker-4471",
        "lantern-text-marker-6620",
        "docid-marker-5123",
        "metadata-marker-9034",
        "plain-file-marker-3391",
        coll,
    ] {
        let found = files_holding(home.dir.path(), m);
        assert!(found.is_empty(), "{m} in clear in {found:?}");
    }
    // The scan does find what is kept in clear (the config file names the models folder).
    assert!(!files_holding(home.dir.path(), "manifest_dirs").is_empty());
}

/// Chunks of a collection as `llmos data export` shows them, by document.
fn exported_chunks(home: &Home, coll: &str) -> Vec<Value> {
    let out = home.cmd(&["data", "export", coll]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["object"] == "chunk")
        .collect()
}

/// Data-key records of collections in the store's clear metadata (read without any key).
fn collection_keys(home: &Home) -> usize {
    use llmos::data::backend::{Backend, SledBackend};
    let b = SledBackend::open(&home.dir.path().join("store")).unwrap();
    b.scan_prefix("store-meta", b"data-key\0c").unwrap().count()
}

#[test]
fn a_paragraph_two_documents_share_stays_findable_until_the_last_of_them_is_deleted() {
    let home = Home::new();
    let dir = tempfile::tempdir().unwrap();
    let shared = "The harbour lighthouse was rebuilt in granite after the storm of 1881, and its \
                  keeper logged every passing ship by lantern light through forty winters of \
                  fog, gales and ice on the northern sea.";
    let a = format!("{shared} Apples from the valley orchards ripen late in October.");
    let b = format!("{shared} Copper kettles hang above the bakery ovens on Mill Street.");
    let line = |id: &str, text: &str, tag: &str| {
        serde_json::json!({"id": id, "text": text, "tag": tag}).to_string()
    };
    let jl = dir.path().join("docs.jsonl");
    std::fs::write(&jl, [line("a", &a, "a"), line("b", &b, "b")].join("\n")).unwrap();
    let jl = jl.display().to_string();
    home.json(&[
        "data",
        "create",
        "c",
        "--chunk-tokens",
        "32",
        "--overlap-tokens",
        "4",
    ]);
    let v = home.json(&["data", "ingest", &jl, "--collection", "c", "--quiet"]);
    assert_eq!(v["report"]["chunks_skipped"], 1, "{v:#}");
    let query = "granite lighthouse keeper logged ships by lantern";
    let top = |home: &Home| search(home, "c", query, &["--top-k", "1"]);
    let first = top(&home);
    assert_eq!(first[0]["chunk"], "a:0", "{first:#?}");
    let text_of = first[0]["text"].clone();
    assert!(
        text_of
            .as_str()
            .unwrap()
            .starts_with("The harbour lighthouse"),
        "{first:#?}"
    );

    // Deleting a: the paragraph is now b's (its metadata), and counts match what is stored.
    home.json(&["data", "rm", "c", "--document", "a"]);
    let hits = top(&home);
    assert_eq!(
        (&hits[0]["chunk"], &hits[0]["text"]),
        (&"b:0".into(), &text_of),
        "{hits:#?}"
    );
    assert_eq!(hits[0]["metadata"]["tag"], "b");
    let stored = exported_chunks(&home, "c");
    assert!(stored.iter().all(|c| c["document"] == "b"), "{stored:#?}");
    let ls = home.json(&["data", "ls", "c"]);
    assert_eq!(ls["collection"]["documents"], 1, "{ls:#}");
    assert_eq!(ls["collection"]["chunks"], stored.len(), "{ls:#}");
    assert_eq!(ls["documents"][0]["duplicates"], 0, "{ls:#}");

    // Deleting b too: the paragraph is gone.
    home.json(&["data", "rm", "c", "--document", "b"]);
    assert!(top(&home).is_empty());
    let ls = home.json(&["data", "ls", "c"]);
    assert_eq!(
        (&ls["collection"]["documents"], &ls["collection"]["chunks"]),
        (&0.into(), &0.into()),
        "{ls:#}"
    );

    // Ingesting b again stores every chunk of it, the paragraph included.
    std::fs::write(dir.path().join("docs.jsonl"), line("b", &b, "b")).unwrap();
    let v = home.json(&["data", "ingest", &jl, "--collection", "c", "--quiet"]);
    assert_eq!(v["report"]["chunks_skipped"], 0, "{v:#}");
    assert_eq!(v["report"]["chunks_stored"], stored.len(), "{v:#}");
    assert_eq!(top(&home)[0]["chunk"], "b:0");

    // Deleting the collection removes its data key; a new one of that name gets its own
    // and the whole store still opens (`llmos store check`).
    assert_eq!(collection_keys(&home), 1);
    home.json(&["data", "rm", "c"]);
    assert_eq!(
        collection_keys(&home),
        0,
        "the deleted collection's key is gone"
    );
    home.json(&["store", "check"]);
    home.json(&["data", "ingest", &jl, "--collection", "c", "--quiet"]);
    assert_eq!(collection_keys(&home), 1);
    let check = home.json(&["store", "check"]);
    assert_eq!(check["errors"], serde_json::json!([]), "{check:#}");
    assert_eq!(top(&home)[0]["chunk"], "b:0");
}

#[test]
fn files_are_ingested_a_group_at_a_time_with_every_document_acknowledged() {
    let home = Home::new();
    let src = tempfile::tempdir().unwrap();
    for (i, topic) in [
        "glaciers carve valleys",
        "bees dance to share directions",
        "tides follow the moon",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(
            src.path().join(format!("f{i}.txt")),
            format!("Note {i}: {topic}."),
        )
        .unwrap();
    }
    let acks = src.path().join("acks.log");
    let dir = src.path().display().to_string();
    let ingest = |extra: &[&str]| {
        let mut args = vec![
            "data",
            "ingest",
            dir.as_str(),
            "--collection",
            "g",
            "--quiet",
        ];
        args.extend(extra);
        home.json(&args)
    };
    // One byte per group: every file is read, chunked and stored on its own.
    let ack = acks.display().to_string();
    let v = ingest(&["--group-bytes", "1", "--ack-log", &ack]);
    assert_eq!(v["report"]["documents_stored"], 3, "{v:#}");
    assert_eq!(std::fs::read_to_string(&acks).unwrap().lines().count(), 3);
    let hits = search(&home, "g", "how do bees communicate", &[]);
    assert!(
        hits[0]["text"].as_str().unwrap().contains("bees"),
        "{hits:?}"
    );
    // Stored groups are skipped by a re-run, whatever the grouping.
    let v = ingest(&[]);
    assert_eq!(v["report"]["documents_stored"], 0, "{v:#}");
    assert_eq!(v["report"]["documents_unchanged"], 3, "{v:#}");
}
