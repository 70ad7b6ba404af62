//! Verification: walks the log from its first entry (anchored by the newest checkpoint when
//! older segments were removed) to the head record, and names the first problem.

use serde::Serialize;

use super::AuditRecord;
use super::chain::{
    CHECKPOINT_PREFIX, Checkpoint, GENESIS, HEAD_KEY, Hash, HeadRecord, checkpoint_key, hash,
    seq_of,
};
use crate::data::{Store, StoreError, Tree};

/// The first problem found, with where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Problem {
    /// An entry's sealed bytes do not open (altered bytes, or moved to another key).
    Unreadable {
        /// Its seq.
        seq: u64,
    },
    /// An entry is not a record (its JSON does not decode).
    Undecodable {
        /// Its seq.
        seq: u64,
        /// The decoder's message.
        message: String,
    },
    /// An entry's content changed after it was chained: its hash no longer matches what the
    /// next entry (or the head, or a checkpoint) recorded.
    Edited {
        /// The edited entry.
        seq: u64,
        /// The entry whose `prev` no longer matches it (`None`: the head record or a
        /// checkpoint recorded its hash).
        next: Option<u64>,
    },
    /// Entries are missing between two that remain.
    Removed {
        /// Last entry before the gap.
        after: u64,
        /// First entry after it.
        next: u64,
    },
    /// The entry stored at one seq carries another: entries were moved or swapped.
    Reordered {
        /// Where it is stored.
        seq: u64,
        /// The seq it says it has.
        carries: u64,
    },
    /// The newest entries are gone: the head record names a later one.
    Truncated {
        /// Newest entry found (0: none).
        last: u64,
        /// Newest entry the head recorded.
        head: u64,
    },
    /// Entries after the head record's were not written by llmos' append.
    Inserted {
        /// The head's seq.
        head: u64,
        /// Newest entry found.
        last: u64,
    },
    /// The oldest entries are gone and no checkpoint covers them.
    SegmentRemoved {
        /// First entry found.
        first: u64,
    },
    /// A checkpoint's MAC does not hold.
    ForgedCheckpoint {
        /// Its seq.
        seq: u64,
    },
    /// The head names a checkpoint that is not there.
    CheckpointRemoved {
        /// The checkpoint's seq.
        seq: u64,
    },
    /// The entry after a checkpoint does not continue from it.
    CheckpointMismatch {
        /// The checkpoint's seq.
        seq: u64,
    },
    /// The head record's MAC does not hold.
    ForgedHead,
    /// The log has chained entries and no head record.
    HeadMissing,
    /// llmos found the head missing or forged when it opened the log, and went on from the
    /// newest entry it found (a note in the log says so).
    Recovered {
        /// The note's seq.
        seq: u64,
    },
    /// An unchained (format v1) record after the chain started.
    Unchained {
        /// Its seq.
        seq: u64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unreadable { seq } => write!(
                f,
                "entry {seq} cannot be opened: its sealed bytes were altered or moved (or the master key is not this log's)"
            ),
            Problem::Undecodable { seq, message } => {
                write!(f, "entry {seq} is not an audit record: {message}")
            }
            Problem::Edited {
                seq,
                next: Some(n),
            } => write!(
                f,
                "entry {seq} was edited (or entry {n} replaced): the hash of {seq} does not match the prev recorded in {n}"
            ),
            Problem::Edited { seq, next: None } => write!(
                f,
                "entry {seq} was edited: its hash does not match the one the head record or its checkpoint recorded"
            ),
            Problem::Removed { after, next } => write!(
                f,
                "entries removed: {} to {} are missing between {after} and {next}",
                after.saturating_add(1),
                next.saturating_sub(1)
            ),
            Problem::Reordered { seq, carries } => write!(
                f,
                "entries reordered: the entry stored at {seq} is entry {carries}"
            ),
            Problem::Truncated { last, head } => write!(
                f,
                "newest entries removed: the head record names entry {head}, the newest found is {last}"
            ),
            Problem::Inserted { head, last } => write!(
                f,
                "entries {} to {last} were added after the head ({head}) without llmos' append",
                head.saturating_add(1)
            ),
            Problem::SegmentRemoved { first } => write!(
                f,
                "entries before {first} were removed without a checkpoint (segment or checkpoint removed)"
            ),
            Problem::ForgedCheckpoint { seq } => {
                write!(f, "the checkpoint at {seq} is forged: its MAC does not hold")
            }
            Problem::CheckpointRemoved { seq } => write!(
                f,
                "the checkpoint at {seq}, named by the head record, was removed"
            ),
            Problem::CheckpointMismatch { seq } => write!(
                f,
                "the entry after the checkpoint at {seq} does not continue from it (its prev differs)"
            ),
            Problem::ForgedHead => write!(f, "the head record is forged: its MAC does not hold"),
            Problem::HeadMissing => write!(f, "the head record was removed"),
            Problem::Recovered { seq } => write!(
                f,
                "at entry {seq} llmos found the head record missing or forged and went on from the newest entry found: newer entries may have been removed before it"
            ),
            Problem::Unchained { seq } => write!(
                f,
                "entry {seq} is not chained (format v1) but comes after chained entries"
            ),
        }
    }
}

/// What `llmos audit verify` and `GET /admin/audit/verify` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// No problem found.
    pub ok: bool,
    /// The first problem, and a sentence naming it.
    pub problem: Option<Problem>,
    /// `problem` in words.
    pub message: Option<String>,
    /// Entries whose link was checked.
    pub checked: u64,
    /// Unchained records (format v1, from before the chain) at the start, not verifiable.
    pub legacy: u64,
    /// First entry found.
    pub first: Option<u64>,
    /// Newest entry found.
    pub last: Option<u64>,
    /// The head record's seq.
    pub head: Option<u64>,
    /// Newest checkpoint (the chain is verified from there).
    pub checkpoint: Option<u64>,
    /// Checkpoints kept.
    pub checkpoints: u64,
}

struct Walk {
    report: VerifyReport,
    /// (last seq, first seq, hash) of each checkpoint.
    checkpoints: Vec<(u64, u64, Hash)>,
    /// Seq and hash of the previous entry.
    prev: Option<(u64, Hash)>,
    chained: bool,
}

type Step = Result<(), Problem>;

/// What verification starts from, read while no append runs: the head record as stored
/// (`Err`: it does not decode or open), and the first entry after it, if any.
pub(crate) struct Snapshot {
    head: Result<Option<HeadRecord>, ()>,
    beyond: Option<u64>,
    /// The newest entry to walk to: the head's, or without a head the newest then stored.
    limit: u64,
}

/// Entries opened per read while walking.
const BATCH: usize = 1000;

/// Reads a [`Snapshot`] (buffered entries must have been written).
pub(crate) fn snapshot(store: &Store) -> Result<Snapshot, StoreError> {
    let head = match store.get_json::<HeadRecord>(Tree::AuditMeta, HEAD_KEY) {
        Ok(h) => Ok(h),
        Err(StoreError::Seal { .. } | StoreError::Decode { .. }) => Err(()),
        Err(e) => return Err(e),
    };
    let beyond = match &head {
        Ok(Some(h)) => {
            let after = h.seq.to_be_bytes();
            match store.page(Tree::Audit, Some(&after), 1) {
                Ok(p) => p.first().map(|(k, _)| seq_of(k)).transpose()?,
                // Something is there, and it does not even open.
                Err(StoreError::Seal { .. }) => Some(h.seq.saturating_add(1)),
                Err(e) => return Err(e),
            }
        }
        _ => None,
    };
    let limit = match &head {
        Ok(Some(h)) => h.seq,
        _ => match store.keys(Tree::Audit, b"", usize::MAX)?.last() {
            Some(k) => seq_of(k)?,
            None => 0,
        },
    };
    Ok(Snapshot {
        head,
        beyond,
        limit,
    })
}

/// Verifies the log of `store` from `snap`: entries appended since are not looked at.
pub(crate) fn verify(store: &Store, snap: Snapshot) -> Result<VerifyReport, StoreError> {
    let mut w = Walk {
        report: VerifyReport {
            ok: true,
            problem: None,
            message: None,
            checked: 0,
            legacy: 0,
            first: None,
            last: None,
            head: None,
            checkpoint: None,
            checkpoints: 0,
        },
        checkpoints: Vec::new(),
        prev: None,
        chained: false,
    };
    let r = w.run(store, snap)?;
    if let Err(p) = r {
        w.report.ok = false;
        w.report.message = Some(p.to_string());
        w.report.problem = Some(p);
    }
    Ok(w.report)
}

/// The seq of the first entry after `cursor` (the one a read failed to open).
fn unreadable_after(store: &Store, cursor: Option<u64>) -> Result<u64, StoreError> {
    for k in store.keys(Tree::Audit, b"", usize::MAX)? {
        let seq = seq_of(&k)?;
        if cursor.is_none_or(|c| seq > c) {
            return Ok(seq);
        }
    }
    Ok(cursor.map_or(0, |c| c.saturating_add(1)))
}

impl Walk {
    fn run(&mut self, store: &Store, snap: Snapshot) -> Result<Step, StoreError> {
        let Ok(head) = snap.head else {
            return Ok(Err(Problem::ForgedHead));
        };
        self.report.head = head.as_ref().map(|h| h.seq);
        let tip = match &head {
            Some(h) => match h.tip(store) {
                Some(t) => Some(t),
                None => return Ok(Err(Problem::ForgedHead)),
            },
            None => None,
        };
        if let Err(p) = self.checkpoints(store, tip.and_then(|t| t.checkpoint))? {
            return Ok(Err(p));
        }
        let limit = snap.limit;
        let mut cursor: Option<u64> = None;
        // After a batch failed to open: one entry at a time, to find which one.
        let mut want = BATCH;
        loop {
            let after = cursor.map(u64::to_be_bytes);
            let batch = match store.page(Tree::Audit, after.as_ref().map(|a| a.as_slice()), want) {
                Ok(b) => b,
                Err(StoreError::Seal { .. }) if want > 1 => {
                    want = 1;
                    continue;
                }
                Err(StoreError::Seal { .. }) => {
                    return Ok(Err(Problem::Unreadable {
                        seq: unreadable_after(store, cursor)?,
                    }));
                }
                Err(e) => return Err(e),
            };
            let full = batch.len() == want;
            for (key, bytes) in batch {
                let seq = seq_of(&key)?;
                if seq > limit {
                    return Ok(self.end(tip.map(|t| (t.seq, t.hash)), snap.beyond));
                }
                if let Err(p) = self.entry(seq, &bytes) {
                    return Ok(Err(p));
                }
                cursor = Some(seq);
            }
            if !full {
                break;
            }
        }
        Ok(self.end(tip.map(|t| (t.seq, t.hash)), snap.beyond))
    }

    /// Reads and checks every checkpoint; the head's must be there.
    fn checkpoints(
        &mut self,
        store: &Store,
        named: Option<u64>,
    ) -> Result<Step, StoreError> {
        for key in store.keys(Tree::AuditMeta, CHECKPOINT_PREFIX, usize::MAX)? {
            let seq = key
                .get(CHECKPOINT_PREFIX.len()..)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let cp = match store.get_json::<Checkpoint>(Tree::AuditMeta, &key) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(StoreError::Seal { .. } | StoreError::Decode { .. }) => {
                    return Ok(Err(Problem::ForgedCheckpoint { seq }));
                }
                Err(e) => return Err(e),
            };
            match cp.verified_hash(store) {
                Some(h) if cp.seq == seq && key == checkpoint_key(seq) => {
                    self.checkpoints.push((seq, cp.first, h));
                }
                _ => return Ok(Err(Problem::ForgedCheckpoint { seq })),
            }
        }
        self.report.checkpoints = u64::try_from(self.checkpoints.len()).unwrap_or(u64::MAX);
        let newest = self.checkpoints.iter().map(|c| c.0).max();
        self.report.checkpoint = newest;
        if let Some(c) = named
            && !self.checkpoints.iter().any(|(s, _, _)| *s == c)
        {
            return Ok(Err(Problem::CheckpointRemoved { seq: c }));
        }
        // A checkpoint newer than the head's: not written by llmos.
        if let Some(n) = newest
            && named.is_none_or(|c| n > c)
        {
            return Ok(Err(Problem::ForgedCheckpoint { seq: n }));
        }
        Ok(Ok(()))
    }

    fn checkpoint(&self, seq: u64) -> Option<Hash> {
        self.checkpoints
            .iter()
            .find(|(s, _, _)| *s == seq)
            .map(|(_, _, h)| *h)
    }

    /// Whether `seq` lies in a segment a checkpoint says was removed: an entry left there by
    /// a removal that was interrupted (the checkpoint is written first).
    fn covered(&self, seq: u64) -> bool {
        self.checkpoints
            .iter()
            .any(|(last, first, _)| (*first..=*last).contains(&seq))
    }

    /// Checks one entry against the one before it.
    fn entry(&mut self, seq: u64, bytes: &[u8]) -> Step {
        let rec: AuditRecord = serde_json::from_slice(bytes).map_err(|e| Problem::Undecodable {
            seq,
            message: e.to_string(),
        })?;
        let h = hash(bytes);
        self.report.first.get_or_insert(seq);
        self.report.last = Some(seq);
        let Some(prev_hex) = rec.prev.as_deref() else {
            // A format-v1 record: only before the chain starts.
            if self.chained {
                return Err(Problem::Unchained { seq });
            }
            self.report.legacy = self.report.legacy.saturating_add(1);
            self.prev = Some((seq, h));
            return Ok(());
        };
        if rec.seq != seq {
            return Err(Problem::Reordered {
                seq,
                carries: rec.seq,
            });
        }
        let prev = super::chain::parse_hash(prev_hex).unwrap_or(GENESIS);
        match self.prev {
            Some((p, ph)) if self.chained || p.checked_add(1) == Some(seq) => {
                if p.checked_add(1) != Some(seq) {
                    return Err(Problem::Removed {
                        after: p,
                        next: seq,
                    });
                }
                if ph != prev {
                    return Err(Problem::Edited {
                        seq: p,
                        next: Some(seq),
                    });
                }
            }
            // The first chained entry: after legacy records (checked above), a checkpoint,
            // or the start of the log.
            _ => match seq.checked_sub(1).and_then(|c| self.checkpoint(c)) {
                Some(cp) if cp != prev => {
                    return Err(Problem::CheckpointMismatch {
                        seq: seq.saturating_sub(1),
                    });
                }
                Some(_) => {}
                None if seq == 1 && prev == GENESIS => {}
                // Left by an interrupted removal: checked from here on (and against the
                // checkpoint when its last entry comes).
                None if self.prev.is_none() && self.covered(seq) => {}
                None if self.prev.is_none() => return Err(Problem::SegmentRemoved { first: seq }),
                None => {
                    return Err(Problem::Removed {
                        after: self.prev.map_or(0, |p| p.0),
                        next: seq,
                    });
                }
            },
        }
        // An entry still present at a checkpoint's seq must be the one it recorded.
        if self.checkpoint(seq).is_some_and(|c| c != h) {
            return Err(Problem::Edited { seq, next: None });
        }
        if rec.what == "audit-recovered" {
            return Err(Problem::Recovered { seq });
        }
        self.chained = true;
        self.prev = Some((seq, h));
        self.report.checked = self.report.checked.saturating_add(1);
        Ok(())
    }

    /// The newest entry against the head record (and `beyond`: an entry after it).
    fn end(&self, head: Option<(u64, Hash)>, beyond: Option<u64>) -> Step {
        if let (Some((hs, _)), Some(b)) = (head, beyond) {
            return Err(Problem::Inserted { head: hs, last: b });
        }
        let last = self.prev;
        match (head, last) {
            (None, None) => Ok(()),
            (None, Some(_)) if !self.chained => Ok(()),
            (None, Some(_)) => Err(Problem::HeadMissing),
            (Some((hs, _)), None) => {
                // Every entry gone: fine only if the checkpoint is the head.
                if self.report.checkpoint == Some(hs) || hs == 0 {
                    Ok(())
                } else {
                    Err(Problem::Truncated { last: 0, head: hs })
                }
            }
            (Some((hs, hh)), Some((ls, lh))) => {
                if ls < hs {
                    Err(Problem::Truncated { last: ls, head: hs })
                } else if ls > hs {
                    Err(Problem::Inserted { head: hs, last: ls })
                } else if lh != hh {
                    Err(Problem::Edited {
                        seq: ls,
                        next: None,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }
}
