use super::chain::{Checkpoint, checkpoint_key, entry_key, hash};
use super::*;

fn log() -> (tempfile::TempDir, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_home(dir.path()).unwrap();
    (dir, AuditLog::new(store))
}

fn reopen(dir: &tempfile::TempDir) -> AuditLog {
    AuditLog::new(Store::open_home(dir.path()).unwrap())
}

fn all(a: &AuditLog) -> Vec<AuditRecord> {
    a.page(None, usize::MAX, &AuditFilter::default())
        .unwrap()
        .records
}

fn fill(a: &AuditLog, n: usize) {
    for i in 0..n {
        a.record("granted", "p", Some("kv".into()), format!("#{i}"))
            .unwrap();
    }
}

fn problem(a: &AuditLog) -> Option<Problem> {
    let r = a.verify().unwrap();
    assert_eq!(r.ok, r.problem.is_none(), "{r:?}");
    r.problem
}

fn raw(a: &AuditLog, seq: u64) -> Vec<u8> {
    a.store.get(Tree::Audit, &entry_key(seq)).unwrap().unwrap()
}

/// Re-seals entry `seq` with `f` applied to its record, with the store's own sealer (what
/// someone holding the master key could do).
fn edit(a: &AuditLog, seq: u64, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&raw(a, seq)).unwrap();
    f(&mut v);
    a.store
        .put(Tree::Audit, &entry_key(seq), &serde_json::to_vec(&v).unwrap())
        .unwrap();
}

fn small(a: &AuditLog, max: u64, segment: u64) {
    a.set_limits(AuditLimits {
        max_records: max,
        segment_records: segment,
        ..AuditLimits::default()
    });
}

#[test]
fn entries_are_chained_with_who_what_target_outcome() {
    let (_d, a) = log();
    acting_as(Some("key123".into()), || {
        a.record("key-created", "key456", None, "scopes [admin]")
            .unwrap();
    });
    a.denied("probe", "kv", "not granted");
    let recs = all(&a);
    assert_eq!(recs.len(), 2);
    let (r1, r2) = (&recs[0], &recs[1]);
    assert_eq!((r1.v, r1.seq, r2.seq), (2, 1, 2));
    assert_eq!(
        (r1.who.as_str(), r1.what.as_str(), r1.target.as_str()),
        ("key123", "key-created", "key456")
    );
    assert_eq!(r1.outcome, "ok");
    assert_eq!(r1.prev.as_deref(), Some(hex::encode([0u8; 32]).as_str()));
    assert_eq!(
        (r2.who.as_str(), r2.outcome.as_str()),
        ("plugin:probe", "denied")
    );
    assert_eq!(r2.prev, Some(hex::encode(hash(&raw(&a, 1)))));
    // Outside any actor: llmos itself.
    a.record("installed", "p", None, "").unwrap();
    assert_eq!(all(&a)[2].who, SYSTEM_ACTOR);
    assert_eq!(problem(&a), None);
}

#[test]
fn paging_returns_every_record_exactly_once() {
    let (_d, a) = log();
    for i in 0..250 {
        let kind = if i % 3 == 0 { "granted" } else { "denied" };
        a.record(kind, &format!("p{}", i % 5), None, format!("#{i}"))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let p = a.page(after, 100, &AuditFilter::default()).unwrap();
        pages += 1;
        assert!(p.records.len() <= 100);
        seen.extend(p.records.iter().map(|e| e.detail.clone()));
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert!(pages <= 4, "{pages} pages");
    let want: Vec<String> = (0..250).map(|i| format!("#{i}")).collect();
    assert_eq!(seen, want);
    // Filtered: target p1 and what denied, all of them once, across pages of 7.
    let f = AuditFilter {
        target: Some("p1".into()),
        what: Some("denied".into()),
        ..AuditFilter::default()
    };
    let (mut got, mut after) = (Vec::new(), None);
    loop {
        let p = a.page(after, 7, &f).unwrap();
        got.extend(p.records.into_iter().map(|e| e.detail));
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let want: Vec<String> = (0..250)
        .filter(|i| i % 5 == 1 && i % 3 != 0)
        .map(|i| format!("#{i}"))
        .collect();
    assert_eq!(got, want);
    assert!(all(&a).iter().all(|e| e.v == 2));
    // The tail: the newest, oldest first.
    let t = a.tail(3).unwrap();
    assert_eq!(
        t.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![248, 249, 250]
    );
    assert_eq!(a.tail(1000).unwrap().len(), 250);
    assert!(a.tail(0).unwrap().is_empty());
}

#[test]
fn segments_are_dropped_whole_behind_a_checkpoint_and_verify_stays_green() {
    let (d, a) = log();
    small(&a, 100, 10);
    fill(&a, 300);
    let recs = all(&a);
    assert!(recs.len() <= 100, "{} entries", recs.len());
    // Whole segments: the oldest entry left starts one.
    assert_eq!(recs[0].seq % 10, 1, "{}", recs[0].seq);
    let notes: Vec<&AuditRecord> = recs
        .iter()
        .filter(|e| e.what == "audit-truncated")
        .collect();
    assert!(!notes.is_empty());
    assert!(
        notes[0].detail.contains("at most 100") && notes[0].detail.contains("checkpoint at seq"),
        "{}",
        notes[0].detail
    );
    let kept: Vec<&str> = recs
        .iter()
        .filter(|e| e.what == "granted")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(kept.last(), Some(&"#299"));
    assert!(!kept.contains(&"#0"));
    let r = a.verify().unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.checkpoint, Some(recs[0].seq - 1));
    assert!(r.checkpoints >= 1);
    // Reopened: the chain goes on and still verifies from the checkpoint.
    drop(a);
    let b = reopen(&d);
    small(&b, 100, 10);
    fill(&b, 55);
    let r = b.verify().unwrap();
    assert!(r.ok, "{r:?}");
    assert!(all(&b).len() <= 100);
}

#[test]
fn a_removal_interrupted_after_its_checkpoint_still_verifies_and_is_finished_later() {
    let (_d, a) = log();
    small(&a, 1000, 10);
    fill(&a, 25);
    // What a removal does, stopped after the checkpoint and 4 of its 10 entries.
    let cp = Checkpoint::new(&a.store, 10, &hash(&raw(&a, 10)), 1, 10);
    let t = super::chain::Tip {
        seq: 25,
        hash: hash(&raw(&a, 25)),
        checkpoint: Some(10),
    };
    a.store
        .put_json(Tree::AuditMeta, &checkpoint_key(10), &cp)
        .unwrap();
    a.store
        .put_json(Tree::AuditMeta, b"head", &super::chain::HeadRecord::of(&a.store, &t))
        .unwrap();
    a.store.remove_first(Tree::Audit, 4).unwrap();
    let r = a.verify().unwrap();
    assert!(r.ok, "{r:?}");
    // A leftover edited is still caught against the checkpoint.
    let ten = raw(&a, 10);
    edit(&a, 10, |v| v["detail"] = "x".into());
    assert_eq!(problem(&a), Some(Problem::Edited { seq: 10, next: None }));
    a.store.put(Tree::Audit, &entry_key(10), &ten).unwrap();
    assert!(a.verify().unwrap().ok);
    // The next removal takes the leftovers, and the checkpoint stays where it was.
    let d = a.archive(11, &mut |_: &[Vec<u8>]| Ok(())).unwrap();
    assert_eq!((d[0].first, d[0].last, d[0].records), (5, 10, 6));
    let r = a.verify().unwrap();
    assert!(r.ok && r.first == Some(11) && r.checkpoint == Some(10), "{r:?}");
}

#[test]
fn the_chain_goes_on_across_a_restart() {
    let (d, a) = log();
    fill(&a, 5);
    let h5 = hash(&raw(&a, 5));
    drop(a);
    let b = reopen(&d);
    fill(&b, 5);
    let recs = all(&b);
    assert_eq!(
        recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(recs[5].prev, Some(hex::encode(h5)));
    assert_eq!(problem(&b), None);
}

#[test]
fn concurrent_appends_keep_the_chain_linear() {
    let (_d, a) = log();
    // A second handle on the same store shares the chain.
    let other = AuditLog::new(a.store.clone());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let l = if t % 2 == 0 { a.clone() } else { other.clone() };
            std::thread::spawn(move || {
                for i in 0..40 {
                    if i % 4 == 0 {
                        l.refusal(&format!("10.0.{t}.{i}"), "anonymous", "no key");
                    } else {
                        l.record("granted", &format!("t{t}"), None, format!("{i}"))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let recs = all(&a);
    assert_eq!(recs.len(), 8 * 40);
    assert_eq!(
        recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=320).collect::<Vec<_>>()
    );
    assert_eq!(problem(&a), None);
}

#[test]
fn verify_while_appending_and_removing_segments_finds_nothing_wrong() {
    let (_d, a) = log();
    small(&a, 100, 10);
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let l = a.clone();
            std::thread::spawn(move || {
                for i in 0..150 {
                    l.record("granted", &format!("t{t}"), None, format!("{i}"))
                        .unwrap();
                }
            })
        })
        .collect();
    let mut runs = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let r = a.verify().unwrap();
        assert!(r.ok, "{r:?}");
        runs += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(runs > 0);
    let r = a.verify().unwrap();
    assert!(r.ok && r.checkpoint.is_some(), "{r:?}");
}

#[test]
fn an_edited_entry_is_named() {
    let (_d, a) = log();
    fill(&a, 10);
    edit(&a, 5, |v| v["detail"] = "nothing happened".into());
    assert_eq!(problem(&a), Some(Problem::Edited { seq: 5, next: Some(6) }));
    // The newest one: caught by the head record.
    let (_d, b) = log();
    fill(&b, 10);
    edit(&b, 10, |v| v["outcome"] = "denied".into());
    assert_eq!(problem(&b), Some(Problem::Edited { seq: 10, next: None }));
}

#[test]
fn a_flipped_byte_is_caught_by_the_seal_and_named() {
    let (d, a) = log();
    fill(&a, 10);
    drop(a);
    {
        // The dropped log's sled flusher thread lets go of the lock a moment later.
        let db = crate::data::backend::open_waiting(&d.path().join("store")).unwrap();
        let t = db.open_tree("audit").unwrap();
        let mut v = t.get(entry_key(5)).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        t.insert(entry_key(5), v).unwrap();
        db.flush().unwrap();
    }
    let a = reopen(&d);
    assert_eq!(problem(&a), Some(Problem::Unreadable { seq: 5 }));
    let r = a.verify().unwrap();
    assert!(r.message.unwrap().contains("entry 5 cannot be opened"));
}

#[test]
fn a_removed_entry_is_named() {
    let (_d, a) = log();
    fill(&a, 10);
    a.store.remove(Tree::Audit, &entry_key(5)).unwrap();
    assert_eq!(problem(&a), Some(Problem::Removed { after: 4, next: 6 }));
    let r = a.verify().unwrap();
    assert!(
        r.message.as_deref().unwrap().contains("5 to 5 are missing between 4 and 6"),
        "{r:?}"
    );
}

#[test]
fn an_entry_added_past_the_head_is_named() {
    let (_d, a) = log();
    fill(&a, 3);
    // A well-formed, well-linked entry 4, sealed with the store's key, but not appended.
    let mut v: serde_json::Value = serde_json::from_slice(&raw(&a, 3)).unwrap();
    v["seq"] = 4.into();
    v["prev"] = hex::encode(hash(&raw(&a, 3))).into();
    a.store
        .put(Tree::Audit, &entry_key(4), &serde_json::to_vec(&v).unwrap())
        .unwrap();
    assert_eq!(problem(&a), Some(Problem::Inserted { head: 3, last: 4 }));
}

#[test]
fn swapped_entries_are_named() {
    let (_d, a) = log();
    fill(&a, 10);
    let (five, six) = (raw(&a, 5), raw(&a, 6));
    a.store.put(Tree::Audit, &entry_key(5), &six).unwrap();
    a.store.put(Tree::Audit, &entry_key(6), &five).unwrap();
    assert_eq!(
        problem(&a),
        Some(Problem::Reordered { seq: 5, carries: 6 })
    );
    // Swapped and renumbered: the links do not hold.
    let (_d, b) = log();
    fill(&b, 10);
    let (five, six) = (raw(&b, 5), raw(&b, 6));
    b.store.put(Tree::Audit, &entry_key(5), &six).unwrap();
    b.store.put(Tree::Audit, &entry_key(6), &five).unwrap();
    edit(&b, 5, |v| v["seq"] = 5.into());
    edit(&b, 6, |v| v["seq"] = 6.into());
    assert_eq!(problem(&b), Some(Problem::Edited { seq: 4, next: Some(5) }));
}

#[test]
fn removed_newest_entries_are_named_even_after_a_restart() {
    let (d, a) = log();
    fill(&a, 10);
    a.store.remove(Tree::Audit, &entry_key(10)).unwrap();
    a.store.remove(Tree::Audit, &entry_key(9)).unwrap();
    assert_eq!(problem(&a), Some(Problem::Truncated { last: 8, head: 10 }));
    // The next run goes on from the head: the gap stays visible.
    drop(a);
    let b = reopen(&d);
    fill(&b, 1);
    assert_eq!(problem(&b), Some(Problem::Removed { after: 8, next: 11 }));
}

#[test]
fn a_segment_removed_without_a_checkpoint_is_named() {
    let (_d, a) = log();
    fill(&a, 25);
    assert_eq!(a.store.remove_first(Tree::Audit, 10).unwrap(), 10);
    assert_eq!(problem(&a), Some(Problem::SegmentRemoved { first: 11 }));
}

#[test]
fn forged_and_removed_checkpoints_are_named() {
    let (_d, a) = log();
    small(&a, 100, 10);
    fill(&a, 150);
    let cp_seq = a.verify().unwrap().checkpoint.unwrap();
    let key = checkpoint_key(cp_seq);
    let cp: Checkpoint = a.store.get_json(Tree::AuditMeta, &key).unwrap().unwrap();
    // A checkpoint whose hash was changed: its MAC no longer holds.
    let forged = Checkpoint {
        hash: hex::encode([7u8; 32]),
        ..cp.clone()
    };
    a.store.put_json(Tree::AuditMeta, &key, &forged).unwrap();
    assert_eq!(
        problem(&a),
        Some(Problem::ForgedCheckpoint { seq: cp_seq })
    );
    // Removed: the head names it.
    a.store.remove(Tree::AuditMeta, &key).unwrap();
    assert_eq!(
        problem(&a),
        Some(Problem::CheckpointRemoved { seq: cp_seq })
    );
    a.store.put_json(Tree::AuditMeta, &key, &cp).unwrap();
    assert_eq!(problem(&a), None);
    // A checkpoint made up to hide a removed segment (no MAC key: its MAC is a guess).
    let first = all(&a)[0].seq;
    let end = first + 9;
    let n = a.store.remove_first(Tree::Audit, 10).unwrap();
    assert_eq!(n, 10);
    let fake = Checkpoint {
        seq: end,
        hash: hex::encode(hash(b"whatever")),
        first,
        records: 10,
        time: 0,
        mac: hex::encode([1u8; 32]),
    };
    a.store
        .put_json(Tree::AuditMeta, &checkpoint_key(end), &fake)
        .unwrap();
    assert_eq!(problem(&a), Some(Problem::ForgedCheckpoint { seq: end }));
}

#[test]
fn a_removed_or_forged_head_is_named_and_recovery_is_recorded() {
    let (d, a) = log();
    fill(&a, 5);
    a.store.remove(Tree::AuditMeta, b"head").unwrap();
    assert_eq!(problem(&a), Some(Problem::HeadMissing));
    drop(a);
    // Reopened without a head: llmos goes on, and says so in the log.
    let b = reopen(&d);
    fill(&b, 1);
    let recs = all(&b);
    assert_eq!(recs[5].what, "audit-recovered");
    assert_eq!(problem(&b), Some(Problem::Recovered { seq: 6 }));
    // A head whose seq was moved back: its MAC no longer holds.
    let mut h: serde_json::Value = b.store.get_json(Tree::AuditMeta, b"head").unwrap().unwrap();
    h["seq"] = 3.into();
    b.store.put_json(Tree::AuditMeta, b"head", &h).unwrap();
    assert_eq!(problem(&b), Some(Problem::ForgedHead));
}

#[test]
fn format_1_records_are_read_and_the_chain_starts_after_them() {
    let (d, a) = log();
    for i in 0..3 {
        let old = serde_json::json!({"v": 1, "timestamp_ms": 5, "kind": "granted", "subject": "p", "capability": null, "detail": format!("old {i}")});
        a.store
            .append(Tree::Audit, &serde_json::to_vec(&old).unwrap())
            .unwrap();
    }
    drop(a);
    let b = reopen(&d);
    fill(&b, 2);
    let recs = all(&b);
    assert_eq!(recs.len(), 6, "{recs:?}");
    assert_eq!(
        (recs[0].v, recs[0].what.as_str(), recs[0].target.as_str()),
        (1, "granted", "p")
    );
    assert_eq!(recs[3].what, "audit-upgraded");
    let r = b.verify().unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!((r.legacy, r.checked), (3, 3));
}

#[test]
fn archive_exports_whole_segments_then_removes_them_behind_a_checkpoint() {
    let (_d, a) = log();
    small(&a, 1000, 10);
    fill(&a, 35);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let dropped = a
        .archive(25, &mut |seg: &[Vec<u8>]| {
            lines.extend_from_slice(seg);
            Ok(())
        })
        .unwrap();
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert_eq!((dropped[0].first, dropped[1].last), (1, 20));
    assert_eq!(lines.len(), 20);
    let first: AuditRecord = serde_json::from_slice(&lines[0]).unwrap();
    assert_eq!(first.seq, 1);
    let recs = all(&a);
    assert_eq!(recs[0].seq, 21);
    assert_eq!(recs.last().unwrap().what, "audit-archived");
    let r = a.verify().unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.checkpoint, Some(20));
    // A failing export removes nothing.
    let before = all(&a).len();
    let err = a.archive(1000, &mut |_: &[Vec<u8>]| Err(std::io::Error::other("disk full")));
    assert!(err.unwrap_err().to_string().contains("disk full"));
    assert_eq!(all(&a).len(), before);
}

#[test]
fn refusals_are_written_once_per_source_and_window_then_summarised() {
    let (_d, a) = log();
    a.set_limits(AuditLimits {
        refusal_window: Duration::from_millis(300),
        ..AuditLimits::default()
    });
    for i in 0..500 {
        a.refusal(
            "10.0.0.1",
            "anonymous",
            &format!("/v1/models: no API key #{i}"),
        );
    }
    a.refusal("10.0.0.2", "unknown", "/v1/models: not a valid key");
    let recs = all(&a);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(
        (recs[1].who.as_str(), recs[1].target.as_str()),
        ("unknown", "10.0.0.2")
    );
    a.flush_refusals();
    let recs = all(&a);
    assert_eq!(recs.len(), 3, "{recs:?}");
    let s = &recs[2];
    assert_eq!((s.what.as_str(), s.outcome.as_str()), ("auth-denied-summary", "denied"));
    assert_eq!(s.target, "10.0.0.1");
    assert!(
        s.detail.starts_with("499 more refusals from 10.0.0.1"),
        "{}",
        s.detail
    );
    assert!(s.detail.contains("#499"), "{}", s.detail);
    // After the window: the next refusal is written again.
    std::thread::sleep(Duration::from_millis(350));
    a.refusal("10.0.0.1", "anonymous", "/v1/models: no API key again");
    assert_eq!(all(&a).len(), 4);
    assert_eq!(problem(&a), None);
}

#[test]
fn traps_are_written_three_per_plugin_and_window_then_summarised() {
    let (_d, a) = log();
    a.set_limits(AuditLimits {
        refusal_window: Duration::from_millis(300),
        ..AuditLimits::default()
    });
    // A plugin trapping in a loop: 3 entries, then one summary of the other 997.
    for i in 0..1000 {
        a.trap("spinner", &format!("time limit exceeded (#{i}) in invoke"));
    }
    a.trap("other", &format!("trap: {}\n{}", "x".repeat(400), "next line"));
    let recs = all(&a);
    assert_eq!(recs.len(), 4, "{recs:?}");
    for r in &recs[..3] {
        assert_eq!(
            (r.what.as_str(), r.who.as_str(), r.target.as_str(), r.outcome.as_str()),
            ("trap", "plugin:spinner", "spinner", "failed")
        );
    }
    assert_eq!(recs[2].detail, "time limit exceeded (#2) in invoke");
    // A long detail is cut, on one line.
    let other = &recs[3].detail;
    assert_eq!(other.chars().count(), MAX_TRAP_DETAIL, "{other}");
    assert!(other.ends_with('…') && !other.contains('\n'), "{other}");
    a.flush_refusals();
    let recs = all(&a);
    assert_eq!(recs.len(), 5, "{recs:?}");
    let s = &recs[4];
    assert_eq!((s.what.as_str(), s.target.as_str()), ("trap", "spinner"));
    assert!(
        s.detail
            .starts_with("997 more traps within 0 s of the first (last: time limit exceeded (#999)"),
        "{}",
        s.detail
    );
    // Summarised once: a second flush writes nothing new; after the window, 3 again.
    a.flush_refusals();
    assert_eq!(all(&a).len(), 5);
    std::thread::sleep(Duration::from_millis(350));
    for _ in 0..5 {
        a.trap("spinner", "memory limit exceeded in preprocess");
    }
    a.flush_refusals();
    assert_eq!(all(&a).len(), 5 + 3 + 1);
    assert_eq!(problem(&a), None);
}

/// The cost of a durable append: the store's plain append (what `record` did before the
/// chain) against the chained one. `cargo test -p llmos --lib append_cost -- --ignored
/// --nocapture`.
#[test]
#[ignore = "a measurement"]
fn append_cost() {
    let (_d, a) = log();
    let n = 500;
    let bytes = serde_json::to_vec(&AuditRecord::note("granted", "x".repeat(60))).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n {
        a.store.append(Tree::Audit, &bytes).unwrap();
    }
    let before = t.elapsed() / n;
    let (_d2, b) = log();
    let t = std::time::Instant::now();
    for _ in 0..n {
        b.record("granted", "p", None, "x".repeat(60)).unwrap();
    }
    let after = t.elapsed() / n;
    let t = std::time::Instant::now();
    for i in 0..n {
        b.refusal(&format!("10.1.{}.{}", i / 250, i % 250), "anonymous", "no key");
    }
    b.flush().unwrap();
    let buffered = t.elapsed() / n;
    let t = std::time::Instant::now();
    let r = b.verify().unwrap();
    assert!(r.ok);
    eprintln!(
        "durable append: plain {before:?}, chained {after:?}; buffered refusal {buffered:?}; verify of {} entries {:?}",
        r.checked,
        t.elapsed()
    );
}
