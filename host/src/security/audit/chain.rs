//! The hash chain under the audit log: one head per store, appends under one lock, segments
//! dropped behind a checkpoint.
//!
//! - **Entries** (`Tree::Audit`, key = big-endian `seq`): the record's JSON as written is its
//!   canonical form; its hash is SHA-256 of those bytes, and the next entry's `prev` is that
//!   hash. Sequence numbers are the chain's own: consecutive, starting at 1.
//! - **Head** (`Tree::AuditMeta`, key `head`): newest seq and hash and the newest checkpoint's
//!   seq, MAC'd with a key derived from the master key ([`Store::fingerprint`]). Written in
//!   the same atomic batch as the entries it covers, so removing the newest entries shows.
//! - **Checkpoints** (`Tree::AuditMeta`, key `checkpoint \0 seq`): left by a removed segment:
//!   its last seq and hash, MAC'd, so the chain stays verifiable from there.
//! - **One chain per store in a process**: every [`super::AuditLog`] over the same store shares
//!   one [`Chain`] (found through a random id kept in the store), so two handles never fork it.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AuditRecord, lock, now_ms};
use crate::data::{Store, StoreError, Tree};

/// A SHA-256 hash.
pub(crate) type Hash = [u8; 32];
/// The `prev` of the first entry of a log.
pub(crate) const GENESIS: Hash = [0; 32];

pub(crate) const HEAD_KEY: &[u8] = b"head";
const INSTANCE_KEY: &[u8] = b"instance";
pub(crate) const CHECKPOINT_PREFIX: &[u8] = b"checkpoint\0";
const HEAD_CONTEXT: &str = "llmos audit head v1";
const CHECKPOINT_CONTEXT: &str = "llmos audit checkpoint v1";

/// Buffered entries are written once this many are waiting…
const PENDING_MAX: usize = 64;
/// …or once the oldest has waited this long.
const PENDING_AGE: Duration = Duration::from_secs(1);

/// SHA-256 of an entry's canonical bytes.
pub(crate) fn hash(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// The key of entry `seq`.
pub(crate) fn entry_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The seq of an entry key.
pub(crate) fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| decode_err(Tree::Audit, key, "the key is not an 8-byte sequence number"))
}

pub(crate) fn decode_err(tree: Tree, key: &[u8], message: impl Into<String>) -> StoreError {
    StoreError::Decode {
        tree: tree.name(),
        key: hex::encode(key),
        message: message.into(),
    }
}

pub(crate) fn checkpoint_key(seq: u64) -> Vec<u8> {
    let mut k = CHECKPOINT_PREFIX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The last seq of the segment holding `seq` (segments: `1..=S`, `S+1..=2S`, …).
pub(crate) fn segment_end(seq: u64, size: u64) -> u64 {
    let size = size.max(1);
    seq.saturating_sub(1)
        .checked_div(size)
        .unwrap_or(0)
        .saturating_add(1)
        .saturating_mul(size)
}

fn to_json<T: Serialize>(tree: Tree, key: &[u8], v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| decode_err(tree, key, e.to_string()))
}

/// The MAC'd head record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeadRecord {
    /// Newest entry's seq.
    pub seq: u64,
    /// Newest entry's hash (hex).
    pub hash: String,
    /// Newest checkpoint's seq, if a segment was ever removed.
    pub checkpoint: Option<u64>,
    /// MAC over the fields above (hex).
    pub mac: String,
}

fn head_mac(store: &Store, seq: u64, hash: &Hash, checkpoint: Option<u64>) -> String {
    let mut m = seq.to_be_bytes().to_vec();
    m.extend_from_slice(hash);
    match checkpoint {
        Some(c) => {
            m.push(1);
            m.extend_from_slice(&c.to_be_bytes());
        }
        None => m.push(0),
    }
    hex::encode(store.fingerprint(HEAD_CONTEXT, &m))
}

impl HeadRecord {
    pub(crate) fn of(store: &Store, tip: &Tip) -> Self {
        Self {
            seq: tip.seq,
            hash: hex::encode(tip.hash),
            checkpoint: tip.checkpoint,
            mac: head_mac(store, tip.seq, &tip.hash, tip.checkpoint),
        }
    }

    /// The tip it records, when its MAC holds.
    pub(crate) fn tip(&self, store: &Store) -> Option<Tip> {
        let hash = parse_hash(&self.hash)?;
        (head_mac(store, self.seq, &hash, self.checkpoint) == self.mac).then_some(Tip {
            seq: self.seq,
            hash,
            checkpoint: self.checkpoint,
        })
    }
}

/// What a removed segment leaves: its last entry's seq and hash, MAC'd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Last seq of the removed segment.
    pub seq: u64,
    /// That entry's hash (hex).
    pub hash: String,
    /// First seq of the removed segment.
    pub first: u64,
    /// Entries removed.
    pub records: u64,
    /// When, milliseconds since the Unix epoch.
    pub time: u64,
    /// MAC over the fields above (hex).
    pub mac: String,
}

fn checkpoint_mac(store: &Store, c: &Checkpoint) -> String {
    let mut m = Vec::with_capacity(96);
    for n in [c.seq, c.first, c.records, c.time] {
        m.extend_from_slice(&n.to_be_bytes());
    }
    m.extend_from_slice(c.hash.as_bytes());
    hex::encode(store.fingerprint(CHECKPOINT_CONTEXT, &m))
}

impl Checkpoint {
    pub(crate) fn new(store: &Store, seq: u64, hash: &Hash, first: u64, records: u64) -> Self {
        let mut c = Self {
            seq,
            hash: hex::encode(hash),
            first,
            records,
            time: now_ms(),
            mac: String::new(),
        };
        c.mac = checkpoint_mac(store, &c);
        c
    }

    /// The recorded hash, when the MAC holds.
    pub(crate) fn verified_hash(&self, store: &Store) -> Option<Hash> {
        (checkpoint_mac(store, self) == self.mac)
            .then(|| parse_hash(&self.hash))
            .flatten()
    }
}

pub(crate) fn parse_hash(s: &str) -> Option<Hash> {
    hex::decode(s).ok().and_then(|b| Hash::try_from(b).ok())
}

/// The chain's newest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tip {
    pub seq: u64,
    pub hash: Hash,
    pub checkpoint: Option<u64>,
}

/// What a removed segment was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// First seq removed.
    pub first: u64,
    /// Last seq removed (the checkpoint's).
    pub last: u64,
    /// Entries removed.
    pub records: u64,
}

#[derive(Default)]
struct State {
    /// `None` until read from the store.
    tip: Option<Tip>,
    /// Entries in the store; `None` until counted.
    count: Option<u64>,
    /// Buffered entries not yet written, in chain order.
    pending: Vec<(u64, Vec<u8>)>,
    pending_since: Option<Instant>,
    /// Segments removed by this process (verification restarts when one goes meanwhile).
    drops: u64,
}

/// The chain of one store.
pub(crate) struct Chain {
    store: Store,
    state: Mutex<State>,
}

static CHAINS: Mutex<Vec<(String, Weak<Chain>)>> = Mutex::new(Vec::new());

/// The chain of `store`, shared by every handle on it in this process.
pub(crate) fn chain_of(store: &Store) -> Result<Arc<Chain>, StoreError> {
    let mut chains = lock(&CHAINS);
    chains.retain(|(_, w)| w.strong_count() > 0);
    let id = match store.get(Tree::AuditMeta, INSTANCE_KEY)? {
        Some(id) => hex::encode(id),
        None => {
            let mut seed = now_ms().to_be_bytes().to_vec();
            seed.extend_from_slice(&std::process::id().to_be_bytes());
            seed.extend_from_slice(format!("{:p}", store).as_bytes());
            let id = store.fingerprint("llmos audit instance", &seed);
            let id = id.get(..16).unwrap_or(&id).to_vec();
            store.put(Tree::AuditMeta, INSTANCE_KEY, &id)?;
            hex::encode(id)
        }
    };
    if let Some(c) = chains
        .iter()
        .find(|(i, _)| *i == id)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(c);
    }
    let c = Arc::new(Chain {
        store: store.clone(),
        state: Mutex::default(),
    });
    chains.push((id, Arc::downgrade(&c)));
    Ok(c)
}

/// Takes a segment's entries (canonical bytes, oldest first) before they are removed, and
/// returns once they are safely elsewhere.
pub(crate) type Archive<'a> = dyn FnMut(&[Vec<u8>]) -> std::io::Result<()> + 'a;

impl Chain {
    /// Appends `rec` (its `seq` and `prev` are set here). Durable: written and flushed, with
    /// every buffered entry before it, before returning. Buffered: written with the next
    /// durable one, or when [`PENDING_MAX`] wait or the oldest waited [`PENDING_AGE`].
    /// Past `max_records` the oldest whole segments are removed behind a checkpoint.
    pub(crate) fn append(
        &self,
        rec: AuditRecord,
        durable: bool,
        max_records: u64,
        segment: u64,
    ) -> Result<u64, StoreError> {
        let mut st = lock(&self.state);
        let seq = self.push(&mut st, rec)?;
        let due = st.pending.len() >= PENDING_MAX
            || st.pending_since.is_some_and(|t| t.elapsed() >= PENDING_AGE);
        if (durable || due)
            && let Err(e) = self.write_pending(&mut st)
        {
            // The entry was not written: take it back so the chain stays what is stored.
            st.pending.pop();
            st.tip = self.previous_tip(&st)?;
            return Err(e);
        }
        if st.pending.is_empty() {
            self.bound(&mut st, max_records, segment);
        }
        // On a shared store the entry may have been chained after other replicas' entries.
        if self.store.shared() && st.pending.is_empty() {
            return Ok(st.tip.map_or(seq, |t| t.seq));
        }
        Ok(seq)
    }

    /// Adds an entry to the pending ones and moves the tip; returns its seq.
    fn push(&self, st: &mut State, mut rec: AuditRecord) -> Result<u64, StoreError> {
        let tip = self.tip(st)?;
        let seq = tip.seq.saturating_add(1);
        rec.seq = seq;
        rec.prev = Some(hex::encode(tip.hash));
        let bytes = to_json(Tree::Audit, &entry_key(seq), &rec)?;
        st.tip = Some(Tip {
            seq,
            hash: hash(&bytes),
            checkpoint: tip.checkpoint,
        });
        if st.pending.is_empty() {
            st.pending_since = Some(Instant::now());
        }
        st.pending.push((seq, bytes));
        Ok(seq)
    }

    /// The tip before the last pending entry (after a failed write took it back).
    fn previous_tip(&self, st: &State) -> Result<Option<Tip>, StoreError> {
        let checkpoint = st.tip.and_then(|t| t.checkpoint);
        if let Some((seq, bytes)) = st.pending.last() {
            return Ok(Some(Tip {
                seq: *seq,
                hash: hash(bytes),
                checkpoint,
            }));
        }
        // Nothing pending: what the store holds is the tip.
        Ok(Some(load_tip(&self.store)?.0))
    }

    /// The tip, read from the store on first use.
    fn tip(&self, st: &mut State) -> Result<Tip, StoreError> {
        if let Some(t) = st.tip {
            return Ok(t);
        }
        let (tip, note) = load_tip(&self.store)?;
        st.tip = Some(tip);
        if let Some(note) = note {
            tracing::warn!("audit log: {}", note.detail);
            self.push(st, note)?;
            self.write_pending(st)?;
        }
        Ok(st.tip.unwrap_or(tip))
    }

    /// Writes the pending entries and the head in one atomic, flushed batch.
    fn write_pending(&self, st: &mut State) -> Result<(), StoreError> {
        if self.store.shared() {
            return self.write_pending_shared(st);
        }
        let Some(tip) = st.tip else {
            return Ok(());
        };
        if st.pending.is_empty() {
            return Ok(());
        }
        let head = to_json(Tree::AuditMeta, HEAD_KEY, &HeadRecord::of(&self.store, &tip))?;
        let keys: Vec<[u8; 8]> = st.pending.iter().map(|(s, _)| entry_key(*s)).collect();
        let mut writes: Vec<(Tree, &[u8], &[u8])> = keys
            .iter()
            .zip(&st.pending)
            .map(|(k, (_, v))| (Tree::Audit, k.as_slice(), v.as_slice()))
            .collect();
        writes.push((Tree::AuditMeta, HEAD_KEY, head.as_slice()));
        self.store.put_many(&writes)?;
        let n = u64::try_from(st.pending.len()).unwrap_or(u64::MAX);
        st.count = st.count.map(|c| c.saturating_add(n));
        st.pending.clear();
        st.pending_since = None;
        Ok(())
    }

    /// [`Chain::write_pending`] on a store other replicas append to as well: a serialised
    /// insert. The pending entries are chained after the head *as stored now* and written
    /// with the new head only if the head is still the one read (compare-and-swap in one
    /// transaction); when another replica appended meanwhile, they are chained again after
    /// its entries. One chain for all replicas, so `llmos audit verify` needs no change.
    fn write_pending_shared(&self, st: &mut State) -> Result<(), StoreError> {
        if st.pending.is_empty() {
            return Ok(());
        }
        let records = st
            .pending
            .iter()
            .map(|(seq, b)| {
                serde_json::from_slice::<AuditRecord>(b)
                    .map_err(|e| decode_err(Tree::Audit, &entry_key(*seq), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for _ in 0..1000 {
            let seen = self.store.get_sealed(Tree::AuditMeta, HEAD_KEY)?;
            let (mut tip, note) = load_tip(&self.store)?;
            let mut entries = Vec::with_capacity(records.len().saturating_add(1));
            for mut rec in note.into_iter().chain(records.iter().cloned()) {
                let seq = tip.seq.saturating_add(1);
                rec.seq = seq;
                rec.prev = Some(hex::encode(tip.hash));
                let bytes = to_json(Tree::Audit, &entry_key(seq), &rec)?;
                tip = Tip {
                    seq,
                    hash: hash(&bytes),
                    checkpoint: tip.checkpoint,
                };
                entries.push((entry_key(seq), bytes));
            }
            let head = to_json(Tree::AuditMeta, HEAD_KEY, &HeadRecord::of(&self.store, &tip))?;
            let mut writes: Vec<(Tree, &[u8], &[u8])> = entries
                .iter()
                .map(|(k, v)| (Tree::Audit, k.as_slice(), v.as_slice()))
                .collect();
            writes.push((Tree::AuditMeta, HEAD_KEY, head.as_slice()));
            if self
                .store
                .put_many_if((Tree::AuditMeta, HEAD_KEY), seen.as_deref(), &writes)?
            {
                st.tip = Some(tip);
                st.count = None;
                st.pending.clear();
                st.pending_since = None;
                return Ok(());
            }
        }
        Err(StoreError::NotFound(
            "audit log: another replica's appends got in the way 1000 times in a row".into(),
        ))
    }

    /// Writes what is buffered, then runs `f` while no append can run; also returns how
    /// many segments this process had removed by then.
    pub(crate) fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<(T, u64), StoreError> {
        let mut st = lock(&self.state);
        self.write_pending(&mut st)?;
        Ok((f(), st.drops))
    }

    /// Segments this process has removed.
    pub(crate) fn drops(&self) -> u64 {
        lock(&self.state).drops
    }

    /// Writes what is buffered (before reads, on shutdown, and now and then).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        self.write_pending(&mut st)
    }

    /// The newest entry's seq (0 for an empty log), after writing what is buffered.
    pub(crate) fn head_seq(&self) -> Result<u64, StoreError> {
        let mut st = lock(&self.state);
        self.write_pending(&mut st)?;
        Ok(self.tip(&mut st)?.seq)
    }

    /// Entries stored (nothing pending): from the first seq and the head's, as seqs are
    /// consecutive; a log that starts with format-v1 records (sparse keys) is counted.
    fn count(&self, st: &mut State) -> Result<u64, StoreError> {
        let tip = self.tip(st)?;
        let page = self.store.page(Tree::Audit, None, 1)?;
        let Some((k, v)) = page.first() else {
            return Ok(0);
        };
        if !is_chained(v) {
            let n = self.store.count(Tree::Audit)?;
            return Ok(u64::try_from(n).unwrap_or(u64::MAX));
        }
        Ok(tip.seq.saturating_sub(seq_of(k)?).saturating_add(1))
    }

    /// Removes the oldest whole segments while the log holds more than `max`, then records
    /// what went. A failure is logged: the entry that triggered it is written either way.
    fn bound(&self, st: &mut State, max: u64, segment: u64) {
        let count = match st.count {
            Some(c) => c,
            None => match self.count(st) {
                Ok(c) => {
                    st.count = Some(c);
                    c
                }
                Err(e) => {
                    tracing::error!("audit log: cannot count entries: {e}");
                    return;
                }
            },
        };
        if count <= max.max(1) {
            return;
        }
        let mut dropped = Vec::new();
        while st.count.unwrap_or(0) > max.max(1) {
            match self.drop_oldest(st, segment, None) {
                Ok(Some(d)) => dropped.push(d),
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("audit log: cannot remove the oldest segment: {e}");
                    break;
                }
            }
        }
        if let (Some(first), Some(last)) = (dropped.first(), dropped.last()) {
            let records: u64 = dropped.iter().map(|d| d.records).fold(0, u64::saturating_add);
            let note = AuditRecord::note(
                "audit-truncated",
                format!(
                    "dropped {records} of the oldest audit records (seq {} to {}): the log keeps at most {max} ([audit] max_records); checkpoint at seq {}",
                    first.first, last.last, last.last
                ),
            );
            tracing::warn!("{}", note.detail);
            if let Err(e) = self
                .push(st, note)
                .and_then(|_| self.write_pending(st))
            {
                tracing::error!("audit log: {e}");
            }
        }
    }

    /// Removes the oldest segment unless it holds the newest entry: writes its checkpoint
    /// (and the head naming it) first, then removes the entries. With `archive`, the entries
    /// are handed to it (canonical bytes) before anything is removed.
    fn drop_oldest(
        &self,
        st: &mut State,
        segment: u64,
        archive: Option<&mut Archive<'_>>,
    ) -> Result<Option<Dropped>, StoreError> {
        let tip = self.tip(st)?;
        let Some(seqs) = self.oldest_segment(segment, tip.seq)? else {
            return Ok(None);
        };
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(None);
        };
        let (last_hash, lines) = self.read_segment(&seqs, archive.is_some())?;
        if let Some(out) = archive {
            let key = entry_key(first);
            out(&lines).map_err(|e| decode_err(Tree::Audit, &key, format!("archive: {e}")))?;
        }
        let records = u64::try_from(seqs.len()).unwrap_or(u64::MAX);
        let cp = Checkpoint::new(&self.store, last, &last_hash, first, records);
        let new_tip = Tip {
            checkpoint: Some(last),
            ..tip
        };
        let ckey = checkpoint_key(last);
        let cbytes = to_json(Tree::AuditMeta, &ckey, &cp)?;
        let head = HeadRecord::of(&self.store, &new_tip);
        let head = to_json(Tree::AuditMeta, HEAD_KEY, &head)?;
        self.store.put_many(&[
            (Tree::AuditMeta, ckey.as_slice(), cbytes.as_slice()),
            (Tree::AuditMeta, HEAD_KEY, head.as_slice()),
        ])?;
        st.tip = Some(new_tip);
        let removed = self.store.remove_first(Tree::Audit, seqs.len())?;
        let removed = u64::try_from(removed).unwrap_or(u64::MAX);
        st.count = st.count.map(|c| c.saturating_sub(removed));
        st.drops = st.drops.saturating_add(1);
        Ok(Some(Dropped {
            first,
            last,
            records,
        }))
    }

    /// The seqs stored in the oldest segment, unless it is the one of `newest`.
    fn oldest_segment(&self, segment: u64, newest: u64) -> Result<Option<Vec<u64>>, StoreError> {
        let segment = segment.max(1);
        let limit = usize::try_from(segment).unwrap_or(usize::MAX);
        let keys = self.store.keys(Tree::Audit, b"", limit)?;
        let Some(first) = keys.first().map(|k| seq_of(k)).transpose()? else {
            return Ok(None);
        };
        let end = segment_end(first, segment);
        if end >= newest {
            return Ok(None);
        }
        let mut seqs = Vec::with_capacity(keys.len());
        for k in &keys {
            let s = seq_of(k)?;
            if s > end {
                break;
            }
            seqs.push(s);
        }
        Ok(Some(seqs))
    }

    /// The hash of the last of `seqs`, and (with `keep`) every entry's bytes.
    fn read_segment(&self, seqs: &[u64], keep: bool) -> Result<(Hash, Vec<Vec<u8>>), StoreError> {
        let mut last_hash = GENESIS;
        let mut lines = Vec::new();
        for (i, s) in seqs.iter().enumerate() {
            let key = entry_key(*s);
            let bytes = self
                .store
                .get(Tree::Audit, &key)?
                .ok_or_else(|| decode_err(Tree::Audit, &key, "removed while being read"))?;
            if i.saturating_add(1) == seqs.len() {
                last_hash = hash(&bytes);
            }
            if keep {
                lines.push(bytes);
            }
        }
        Ok((last_hash, lines))
    }

    /// Exports and removes every whole segment that ends before `before` (never the one
    /// holding the newest entry), each entry handed to `out` first.
    pub(crate) fn archive(
        &self,
        before: u64,
        segment: u64,
        out: &mut Archive<'_>,
    ) -> Result<Vec<Dropped>, StoreError> {
        let mut st = lock(&self.state);
        self.write_pending(&mut st)?;
        let mut dropped = Vec::new();
        while let Some(k) = self.store.keys(Tree::Audit, b"", 1)?.first() {
            let first = seq_of(k)?;
            if segment_end(first, segment) >= before {
                break;
            }
            match self.drop_oldest(&mut st, segment, Some(&mut *out))? {
                Some(d) => dropped.push(d),
                None => break,
            }
        }
        Ok(dropped)
    }
}

/// The tip from the head record; without a valid one, from the newest entry, with a note
/// to append saying so (an upgraded log, or a head removed or forged).
fn load_tip(store: &Store) -> Result<(Tip, Option<AuditRecord>), StoreError> {
    let head = match store.get_json::<HeadRecord>(Tree::AuditMeta, HEAD_KEY) {
        Ok(h) => h,
        Err(StoreError::Seal { .. } | StoreError::Decode { .. }) => None,
        Err(e) => return Err(e),
    };
    let checkpoint = newest_checkpoint(store)?;
    if let Some(tip) = head.as_ref().and_then(|h| h.tip(store)) {
        return Ok((tip, None));
    }
    let keys = store.keys(Tree::Audit, b"", usize::MAX)?;
    let Some(last) = keys.last() else {
        let note = head.is_some().then(|| {
            AuditRecord::note(
                "audit-recovered",
                "the audit head record did not verify and the log holds no entry: the chain starts again here".to_string(),
            )
        });
        let tip = Tip {
            seq: checkpoint.unwrap_or(0),
            hash: GENESIS,
            checkpoint,
        };
        return Ok((tip, note));
    };
    let seq = seq_of(last)?;
    let (hash, chained) = match store.get(Tree::Audit, last) {
        Ok(Some(b)) => (hash(&b), is_chained(&b)),
        _ => (GENESIS, true),
    };
    let note = if head.is_none() && !chained {
        AuditRecord::note(
            "audit-upgraded",
            format!(
                "the hash chain starts here; the {} records before it (format v1) are not chained",
                keys.len()
            ),
        )
    } else {
        AuditRecord::note(
            "audit-recovered",
            format!(
                "the audit head record was missing or did not verify: the chain goes on after entry {seq}, the newest found; entries after it may have been removed"
            ),
        )
    };
    Ok((
        Tip {
            seq,
            hash,
            checkpoint,
        },
        Some(note),
    ))
}

/// Whether an entry is chained (format 2), not a format-v1 record.
fn is_chained(bytes: &[u8]) -> bool {
    serde_json::from_slice::<AuditRecord>(bytes).is_ok_and(|r| r.prev.is_some())
}

/// The seq of the newest checkpoint stored.
fn newest_checkpoint(store: &Store) -> Result<Option<u64>, StoreError> {
    let keys = store.keys(Tree::AuditMeta, CHECKPOINT_PREFIX, usize::MAX)?;
    Ok(keys
        .last()
        .and_then(|k| k.get(CHECKPOINT_PREFIX.len()..))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes))
}
