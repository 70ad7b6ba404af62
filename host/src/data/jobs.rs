//! Background jobs (large ingests): a record per job in the `Jobs` tree (random id → status
//! and progress), written as the job advances. A job that was running when the server
//! stopped is reported as interrupted: what it acknowledged is stored, and sending the same
//! upload again skips that.

use std::collections::HashSet;
use std::sync::Mutex;

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::{Store, StoreError, Tree};
use crate::security::audit::now_ms;

/// Jobs one process runs at once (each on its own thread); more are refused (busy).
pub const MAX_RUNNING: usize = 4;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, not started.
    Queued,
    /// Running.
    Running,
    /// Finished; `result` says what it did.
    Succeeded,
    /// Stopped by an error; `error` says which.
    Failed,
    /// The server stopped while it ran.
    Interrupted,
}

/// A job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Record version.
    pub v: u32,
    /// Id (random, 16 hex digits).
    pub id: String,
    /// What it does (`ingest`).
    pub kind: String,
    /// The collection it works on.
    pub collection: String,
    /// Where it is.
    pub state: JobState,
    /// How far it is (kind-specific).
    pub progress: Value,
    /// What it did, when finished.
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last written, ms since the Unix epoch.
    pub updated_ms: u64,
}

/// The jobs of one store, and which of them this process runs.
#[derive(Debug)]
pub struct Jobs {
    store: Store,
    mine: Mutex<HashSet<String>>,
}

impl Jobs {
    /// Jobs kept in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            mine: Mutex::default(),
        }
    }

    /// Records a new queued job run by this process; `None` when [`MAX_RUNNING`] jobs of
    /// this process are queued or running already.
    pub fn create(&self, kind: &str, collection: &str) -> Result<Option<JobRecord>, StoreError> {
        let mut b = [0u8; 8];
        OsRng.fill_bytes(&mut b);
        let now = now_ms();
        let rec = JobRecord {
            v: 1,
            id: hex::encode(b),
            kind: kind.into(),
            collection: collection.into(),
            state: JobState::Queued,
            progress: Value::Null,
            result: None,
            error: None,
            created_ms: now,
            updated_ms: now,
        };
        {
            let mut mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
            if mine.len() >= MAX_RUNNING {
                return Ok(None);
            }
            mine.insert(rec.id.clone());
        }
        if let Err(e) = self.store.put_json(Tree::Jobs, rec.id.as_bytes(), &rec) {
            self.mine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&rec.id);
            return Err(e);
        }
        Ok(Some(rec))
    }

    /// Writes a job's new state; a finished job is no longer this process's to run.
    pub fn update(&self, rec: &mut JobRecord) -> Result<(), StoreError> {
        rec.updated_ms = now_ms();
        if !matches!(rec.state, JobState::Queued | JobState::Running) {
            self.mine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&rec.id);
        }
        self.store.put_json(Tree::Jobs, rec.id.as_bytes(), rec)
    }

    /// A job (one left queued or running by an earlier process is reported interrupted).
    pub fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let Some(mut rec) = self.store.get_json::<JobRecord>(Tree::Jobs, id.as_bytes())? else {
            return Ok(None);
        };
        let mine = self
            .mine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id);
        if matches!(rec.state, JobState::Queued | JobState::Running) && !mine {
            rec.state = JobState::Interrupted;
            rec.error = Some(
                "the server stopped while this job ran: what it acknowledged is stored; \
                 send the upload again to store the rest (stored documents are skipped)"
                    .into(),
            );
        }
        Ok(Some(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::seal::Sealer;

    #[test]
    fn jobs_advance_and_a_restart_interrupts_running_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db"), Sealer::from_key([1; 32])).unwrap();
        let jobs = Jobs::new(s.clone());
        let mut j = jobs.create("ingest", "c").unwrap().unwrap();
        j.state = JobState::Running;
        jobs.update(&mut j).unwrap();
        assert_eq!(jobs.get(&j.id).unwrap().unwrap().state, JobState::Running);
        // Another process (a restart) sees it interrupted.
        let later = Jobs::new(s);
        assert_eq!(later.get(&j.id).unwrap().unwrap().state, JobState::Interrupted);
        j.state = JobState::Succeeded;
        jobs.update(&mut j).unwrap();
        assert_eq!(later.get(&j.id).unwrap().unwrap().state, JobState::Succeeded);
        assert!(jobs.get("nope").unwrap().is_none());
        // At most MAX_RUNNING at once; a finished one makes room.
        let mut more: Vec<_> = (1..MAX_RUNNING).map(|_| jobs.create("ingest", "c").unwrap().unwrap()).collect();
        let _last = jobs.create("ingest", "c").unwrap().unwrap();
        assert!(jobs.create("ingest", "c").unwrap().is_none());
        more[0].state = JobState::Failed;
        jobs.update(&mut more[0]).unwrap();
        assert!(jobs.create("ingest", "c").unwrap().is_some());
    }
}
