//! The shared backend: the trees of [`Backend`] in PostgreSQL, for several llmos replicas
//! (docs/scale-out.md, "Shared state (PostgreSQL)").
//!
//! **Mapping.** Every tree lives in one table `llmos_kv (tree, key bytea, value bytea)` with
//! primary key `(tree, key)`; bytea compares bytewise, so `ORDER BY key` is the order the
//! interface promises. Values arrive sealed by the store: the database sees ciphertext, keyed
//! hashes and the clear keys of the clear-key trees (ids, sequence numbers, plugin names).
//! Scans are pages of [`PAGE`] rows (`key > last ORDER BY key LIMIT n`), fetched lazily, so a
//! long scan holds no connection between pages. [`Backend::generate_id`] is a sequence,
//! [`Backend::batch`] one SQL transaction, [`Backend::transaction`] a `SERIALIZABLE` one whose
//! serialization failures and deadlocks are [`TxError::Conflict`]: the body runs again.
//! [`Backend::flush`] is a no-op: a commit is durable.
//!
//! **Threads.** The interface is synchronous and is called from tokio's worker threads, where
//! the synchronous `postgres` client must not run (it drives its own runtime with `block_on`,
//! which panics inside another runtime). So each connection is owned by a dedicated thread of
//! a small pool; a call checks a connection out, sends it a job over a channel, blocks on the
//! answer (as a sled call blocks on its disk) and returns it. A transaction keeps its
//! connection for its whole body: each [`Tx`] read or write is one job on it. A connection
//! that broke is reopened before the next job.
//!
//! **Migrations** (`host/migrations/postgres/NNNN_*.sql`) are applied at open, in order, each
//! in a transaction that records its version in `llmos_schema`, under an advisory lock so that
//! replicas starting together apply each once.
//!
//! **Changes.** A trigger sends `NOTIFY llmos_changes, '<tree>'` for every committed write
//! (for the collection trees `'<tree> P|D <hex key>'`, migration 2); a listener thread per
//! replica calls what [`Backend::on_change`] (tree names) and [`Backend::on_key_change`]
//! (keys) registered (with `"*"` after it reconnects: anything may have changed meanwhile).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};

use super::backend::{
    Backend, BackendError, ChangeFn, KeyChange, KeyChangeFn, Op, RawEntry, Scan, Tx, TxError,
};

/// Rows per page of a scan.
pub const PAGE: i64 = 512;

/// Connections per replica (each on its own thread).
const CONNECTIONS: usize = 4;

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_kv",
        include_str!("../../migrations/postgres/0001_kv.sql"),
    ),
    (
        2,
        "0002_notify_keys",
        include_str!("../../migrations/postgres/0002_notify_keys.sql"),
    ),
];

/// The channel changes are announced on (the trigger of migration 1).
const CHANNEL: &str = "llmos_changes";

/// Whether a store location names PostgreSQL.
pub fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    match auth.map(|a| a.split_once(':').map_or(a, |(user, _)| user)) {
        Some(user) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://{host}"),
    }
}

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    stmts: Vec<(&'static str, Statement)>,
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some((_, s)) = self.stmts.iter().find(|(q, _)| std::ptr::eq(*q, sql)) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.stmts.push((sql, s.clone()));
        Ok(s)
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// A connection's thread, seen from the pool.
struct Worker {
    jobs: SyncSender<Job>,
}

/// The pool of connection threads.
struct Pool {
    idle: Mutex<Vec<Worker>>,
    freed: Condvar,
}

/// A checked-out connection; goes back to the pool when dropped.
struct Lease<'a> {
    pool: &'a Pool,
    worker: Option<Worker>,
    location: &'a Path,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(w);
            self.pool.freed.notify_one();
        }
    }
}

impl Lease<'_> {
    /// Runs `f` on the connection and waits for its result.
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, PgError> {
        let (tx, rx) = sync_channel(1);
        let job: Job = Box::new(move |c: &mut Conn| {
            let _ = tx.send(f(c).map_err(PgError::from));
        });
        let gone = || PgError::Other("the connection thread stopped".into());
        self.worker
            .as_ref()
            .ok_or_else(gone)?
            .jobs
            .send(job)
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    fn err(&self, e: PgError) -> BackendError {
        BackendError::Io {
            path: self.location.into(),
            message: e.to_string(),
        }
    }
}

/// A failure of one statement.
#[derive(Debug)]
enum PgError {
    /// A serialization failure or deadlock: retry.
    Conflict(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Conflict(m) | PgError::Other(m) => write!(f, "PostgreSQL: {m}"),
        }
    }
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        let msg = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| format!("{} ({})", d.message(), d.code().code()));
        match e.code() {
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
                PgError::Conflict(msg)
            }
            _ => PgError::Other(msg),
        }
    }
}

/// Opens a connection, retrying briefly (a server that is starting).
fn connect(url: &str) -> Result<Client, postgres::Error> {
    let mut tries = 0u32;
    loop {
        match Client::connect(url, NoTls) {
            Ok(c) => return Ok(c),
            Err(e) if tries < 20 && e.as_db_error().is_none() => {
                tries = tries.saturating_add(1);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Backend process ids of this replica's connections: their own notifications are skipped
/// (this process's caches already saw those writes).
type Own = Arc<Mutex<Vec<i32>>>;

fn remember_pid(own: &Own, client: &mut Client) {
    if let Ok(pid) = client
        .query_one("SELECT pg_backend_pid()", &[])
        .and_then(|r| r.try_get::<_, i32>(0))
    {
        own.lock().unwrap_or_else(PoisonError::into_inner).push(pid);
    }
}

/// A connection's thread: runs jobs, reopening the connection when it broke.
fn serve_jobs(url: String, first: Client, jobs: Receiver<Job>, own: Own) {
    let mut conn = Some(Conn {
        client: first,
        stmts: Vec::new(),
    });
    for job in jobs {
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = connect(&url).ok().map(|mut client| {
                remember_pid(&own, &mut client);
                Conn {
                    client,
                    stmts: Vec::new(),
                }
            });
        }
        match conn.as_mut() {
            Some(c) => job(c),
            // The job's sender is dropped: its caller sees the thread as failed and gets an
            // error; the next job tries to connect again.
            None => drop(job),
        }
    }
}

/// Callbacks registered with [`Backend::on_change`] and [`Backend::on_key_change`].
#[derive(Default)]
struct Callbacks {
    trees: Vec<ChangeFn>,
    keys: Vec<KeyChangeFn>,
}

type Listeners = Arc<Mutex<Callbacks>>;

/// The PostgreSQL backend (see the module documentation).
pub struct PgBackend {
    pool: Pool,
    location: PathBuf,
    url: String,
    listeners: Listeners,
    listening: Mutex<bool>,
    own: Own,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("location", &self.location)
            .finish()
    }
}

const GET: &str = "SELECT value FROM llmos_kv WHERE tree = $1 AND key = $2";
const UPSERT: &str = "INSERT INTO llmos_kv (tree, key, value) VALUES ($1, $2, $3) \
     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
const UPSERT_OLD: &str = "WITH old AS (SELECT value FROM llmos_kv WHERE tree = $1 AND key = $2), \
     ins AS (INSERT INTO llmos_kv (tree, key, value) VALUES ($1, $2, $3) \
     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value RETURNING 1) \
     SELECT (SELECT value FROM old), (SELECT count(*) FROM ins)";
const DELETE: &str = "DELETE FROM llmos_kv WHERE tree = $1 AND key = $2 RETURNING value";
const PAGE_FROM: &str = "SELECT key, value FROM llmos_kv WHERE tree = $1 AND key >= $2 \
     AND ($3::bytea IS NULL OR key < $3) ORDER BY key LIMIT $4";
const PAGE_AFTER: &str = "SELECT key, value FROM llmos_kv WHERE tree = $1 AND key > $2 \
     AND ($3::bytea IS NULL OR key < $3) ORDER BY key LIMIT $4";
const GET_MANY: &str = "SELECT key, value FROM llmos_kv WHERE tree = $1 AND key = ANY($2)";
const NEXT_ID: &str = "SELECT nextval('llmos_ids')";
const COUNT: &str = "SELECT count(*) FROM llmos_kv WHERE tree = $1";
const POP_MIN: &str = "DELETE FROM llmos_kv WHERE tree = $1 AND key = \
     (SELECT key FROM llmos_kv WHERE tree = $1 ORDER BY key LIMIT 1 FOR UPDATE SKIP LOCKED) \
     RETURNING key, value";

const UPSERT_MANY: &str = "INSERT INTO llmos_kv (tree, key, value) \
     SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bytea[]) \
     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE_MANY: &str = "DELETE FROM llmos_kv WHERE (tree, key) IN \
     (SELECT * FROM UNNEST($1::text[], $2::bytea[]))";

/// Rows per multi-row statement of a batch (a statement's parameters are three arrays; this
/// bounds one message to a few MB of sealed chunks).
const BATCH_ROWS: usize = 1000;

/// A batch as column arrays: its puts and its deletes, the last op on a key winning (as in
/// the embedded store), so that no key appears twice in a statement (which `ON CONFLICT DO
/// UPDATE` refuses) and the order between a put and a delete of one key does not matter.
#[derive(Debug, Default)]
struct BatchRows {
    put_trees: Vec<String>,
    put_keys: Vec<Vec<u8>>,
    put_values: Vec<Vec<u8>>,
    del_trees: Vec<String>,
    del_keys: Vec<Vec<u8>>,
}

impl BatchRows {
    fn of(ops: &[Op]) -> Self {
        let mut last: std::collections::HashMap<(&str, &[u8]), usize> =
            std::collections::HashMap::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            last.insert((op.tree, op.key.as_slice()), i);
        }
        let mut rows = Self::default();
        for (i, op) in ops.iter().enumerate() {
            if last.get(&(op.tree, op.key.as_slice())) != Some(&i) {
                continue;
            }
            match &op.value {
                Some(v) => {
                    rows.put_trees.push(op.tree.to_string());
                    rows.put_keys.push(op.key.clone());
                    rows.put_values.push(v.clone());
                }
                None => {
                    rows.del_trees.push(op.tree.to_string());
                    rows.del_keys.push(op.key.clone());
                }
            }
        }
        rows
    }

    /// Sends the deletes and the puts as a few multi-row statements (one per
    /// [`BATCH_ROWS`]), inside the caller's transaction.
    fn apply(&self, c: &mut Conn) -> Result<(), postgres::Error> {
        if !self.del_keys.is_empty() {
            let del = c.statement(DELETE_MANY)?;
            for (t, k) in self
                .del_trees
                .chunks(BATCH_ROWS)
                .zip(self.del_keys.chunks(BATCH_ROWS))
            {
                c.client.execute(&del, &[&t, &k])?;
            }
        }
        if !self.put_keys.is_empty() {
            let up = c.statement(UPSERT_MANY)?;
            for ((t, k), v) in self
                .put_trees
                .chunks(BATCH_ROWS)
                .zip(self.put_keys.chunks(BATCH_ROWS))
                .zip(self.put_values.chunks(BATCH_ROWS))
            {
                c.client.execute(&up, &[&t, &k, &v])?;
            }
        }
        Ok(())
    }
}

/// The smallest key above every key that starts with `prefix` (`None`: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last.saturating_add(1));
            return Some(end);
        }
    }
    None
}

impl PgBackend {
    /// Connects to `url` (`postgres://user:pass@host:port/db`), applies the migrations this
    /// llmos knows and opens the pool.
    pub fn open(url: &str) -> Result<Self, BackendError> {
        let location = PathBuf::from(redact(url));
        let io = |e: PgError| BackendError::Io {
            path: location.clone(),
            message: e.to_string(),
        };
        if !is_url(url) {
            return Err(io(PgError::Other(
                "not a PostgreSQL URL: expected postgres://user:password@host:port/database \
                 ([store] url, LLMOS_STORE_URL; unset for the embedded store in <home>/store)"
                    .into(),
            )));
        }
        let mut first = connect(url).map_err(|e| io(e.into()))?;
        migrate(&mut first).map_err(io)?;
        let mut idle = Vec::with_capacity(CONNECTIONS);
        let mut next = Some(first);
        let own = Own::default();
        for i in 0..CONNECTIONS {
            let mut client = match next.take() {
                Some(c) => c,
                None => connect(url).map_err(|e| io(e.into()))?,
            };
            remember_pid(&own, &mut client);
            let own = own.clone();
            let (jobs, rx) = sync_channel::<Job>(1);
            let u = url.to_string();
            std::thread::Builder::new()
                .name(format!("llmos-pg-{i}"))
                .spawn(move || serve_jobs(u, client, rx, own))
                .map_err(|e| io(PgError::Other(e.to_string())))?;
            idle.push(Worker { jobs });
        }
        Ok(Self {
            pool: Pool {
                idle: Mutex::new(idle),
                freed: Condvar::new(),
            },
            location,
            url: url.to_string(),
            listeners: Arc::default(),
            listening: Mutex::new(false),
            own,
        })
    }

    fn lease(&self) -> Lease<'_> {
        let mut idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(w) = idle.pop() {
                return Lease {
                    pool: &self.pool,
                    worker: Some(w),
                    location: &self.location,
                };
            }
            idle = self
                .pool
                .freed
                .wait(idle)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Runs `f` on a connection of the pool.
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, BackendError> {
        let lease = self.lease();
        lease.run(f).map_err(|e| lease.err(e))
    }

    /// Runs `f` in a transaction at `isolation`, again while it conflicts (at most 100
    /// times).
    fn in_tx(
        &self,
        isolation: &'static str,
        f: &dyn Fn(&Lease<'_>) -> Result<(), TxError>,
    ) -> Result<bool, BackendError> {
        let lease = self.lease();
        let mut tries = 0u32;
        loop {
            lease
                .run(move |c| c.client.batch_execute(isolation))
                .map_err(|e| lease.err(e))?;
            let outcome = match f(&lease) {
                Ok(()) => match lease.run(|c| c.client.batch_execute("COMMIT")) {
                    Ok(()) => return Ok(true),
                    Err(PgError::Conflict(m)) => Err(TxError::Conflict).map_err(|e| (e, m)),
                    Err(e) => return Err(lease.err(e)),
                },
                Err(e) => Err((e, String::new())),
            };
            // The transaction failed or was aborted: roll it back (a failed COMMIT already
            // ended it; ROLLBACK outside a transaction is only a warning).
            let _ = lease.run(|c| c.client.batch_execute("ROLLBACK"));
            match outcome {
                Ok(()) => return Ok(true),
                Err((TxError::Abort, _)) => return Ok(false),
                Err((TxError::Backend(e), _)) => return Err(e),
                Err((TxError::Conflict, m)) => {
                    tries = tries.saturating_add(1);
                    if tries >= 100 {
                        return Err(lease.err(PgError::Conflict(format!(
                            "a transaction conflicted 100 times in a row; last: {m}"
                        ))));
                    }
                    std::thread::sleep(Duration::from_millis(u64::from(tries.min(20))));
                }
            }
        }
    }

    /// One page of a scan: entries of `tree` from `start` (inclusive or not) below `end`.
    fn page(
        &self,
        tree: &str,
        start: Vec<u8>,
        inclusive: bool,
        end: Option<Vec<u8>>,
    ) -> Result<Vec<RawEntry>, BackendError> {
        let tree = tree.to_string();
        self.run(move |c| {
            let s = c.statement(if inclusive { PAGE_FROM } else { PAGE_AFTER })?;
            let rows = c.client.query(&s, &[&tree, &start, &end, &PAGE])?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    /// An ordered scan from `start` below `end`, a page at a time.
    fn scan(&self, tree: &str, start: Vec<u8>, inclusive: bool, end: Option<Vec<u8>>) -> Scan<'_> {
        let tree = tree.to_string();
        let mut buf: std::vec::IntoIter<RawEntry> = Vec::new().into_iter();
        let mut cursor = Some((start, inclusive));
        Box::new(std::iter::from_fn(move || {
            loop {
                if let Some(e) = buf.next() {
                    return Some(Ok(e));
                }
                let (from, incl) = cursor.take()?;
                match self.page(&tree, from, incl, end.clone()) {
                    Err(e) => return Some(Err(e)),
                    Ok(rows) => {
                        let full = i64::try_from(rows.len()).is_ok_and(|n| n >= PAGE);
                        if full && let Some((last, _)) = rows.last() {
                            cursor = Some((last.clone(), false));
                        }
                        buf = rows.into_iter();
                    }
                }
            }
        }))
    }

    fn start_listener(&self) {
        let mut started = self.listening.lock().unwrap_or_else(PoisonError::into_inner);
        if *started {
            return;
        }
        *started = true;
        let (url, listeners, own) = (self.url.clone(), self.listeners.clone(), self.own.clone());
        let _ = std::thread::Builder::new()
            .name("llmos-pg-listen".into())
            .spawn(move || listen(&url, &listeners, &own));
    }
}

/// Calls the callbacks for one notification's payload: a tree's name, or (migration 2) for
/// the collection trees `<tree> P|D <hex key>`.
fn notify_all(listeners: &Listeners, payload: &str) {
    let mut parts = payload.splitn(3, ' ');
    let tree = parts.next().unwrap_or(payload);
    let l = listeners.lock().unwrap_or_else(PoisonError::into_inner);
    for f in &l.trees {
        f(tree);
    }
    let (Some(op), Some(hex)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(key) = hex::decode(hex) else {
        tracing::warn!("store change listener: a notification with a malformed key: {payload:?}");
        return;
    };
    let change = KeyChange {
        tree,
        key: &key,
        removed: op == "D",
    };
    for f in &l.keys {
        f(&change);
    }
}

/// The listener thread: `LISTEN`s and calls the callbacks, reconnecting when the connection
/// breaks (and then announcing `"*"`).
fn listen(url: &str, listeners: &Listeners, own: &Own) {
    use postgres::fallible_iterator::FallibleIterator;
    let mut first = true;
    loop {
        let mut client = match connect(url) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("store change listener: {e}; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            tracing::warn!("store change listener: {e}; retrying");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        if !first {
            notify_all(listeners, "*");
        }
        first = false;
        loop {
            let next = {
                let mut n = client.notifications();
                let mut it = n.timeout_iter(Duration::from_millis(500));
                it.next().map(|o| o.map(|note| (note.process_id(), note.payload().to_string())))
            };
            match next {
                Ok(Some((pid, tree))) => {
                    let mine = own
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains(&pid);
                    if !mine {
                        notify_all(listeners, &tree);
                    }
                }
                Ok(None) => {
                    if client.is_closed() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("store change listener: {e}; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Applies the migrations `client`'s database lacks.
fn migrate(client: &mut Client) -> Result<(), PgError> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS llmos_schema (version integer PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .or_else(|e| {
        // Two replicas creating it at once: one loses the race on the catalog.
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    for (version, name, sql) in MIGRATIONS {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(7461)", &[])?;
        let done = tx
            .query_opt("SELECT 1 FROM llmos_schema WHERE version = $1", &[version])?
            .is_some();
        if !done {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO llmos_schema (version, name) VALUES ($1, $2)",
                &[version, name],
            )?;
        }
        tx.commit()?;
    }
    let newest = client
        .query_one("SELECT coalesce(max(version), 0) FROM llmos_schema", &[])?
        .try_get::<_, i32>(0)?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if newest > known {
        return Err(PgError::Other(format!(
            "the database has schema version {newest}; this llmos knows versions up to {known} \
             (upgrade llmos)"
        )));
    }
    Ok(())
}

/// A transaction's view: each call is one statement on the leased connection.
struct PgTx<'a, 'b> {
    lease: &'a Lease<'b>,
    trees: &'a [&'a str],
}

impl PgTx<'_, '_> {
    fn check(&self, tree: &str) -> Result<String, TxError> {
        if self.trees.contains(&tree) {
            Ok(tree.to_string())
        } else {
            Err(TxError::Backend(BackendError::Io {
                path: self.lease.location.into(),
                message: format!("tree {tree} is not part of this transaction"),
            }))
        }
    }

    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, TxError> {
        self.lease.run(f).map_err(|e| match e {
            PgError::Conflict(_) => TxError::Conflict,
            other => TxError::Backend(self.lease.err(other)),
        })
    }
}

impl Tx for PgTx<'_, '_> {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let (tree, key) = (self.check(tree)?, key.to_vec());
        self.run(move |c| {
            let s = c.statement(GET)?;
            c.client.query_opt(&s, &[&tree, &key])?.map(|r| r.try_get(0)).transpose()
        })
    }

    fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        let (tree, key, value) = (self.check(tree)?, key.to_vec(), value.to_vec());
        self.run(move |c| {
            let s = c.statement(UPSERT)?;
            c.client.execute(&s, &[&tree, &key, &value]).map(|_| ())
        })
    }

    fn remove(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        let (tree, key) = (self.check(tree)?, key.to_vec());
        self.run(move |c| {
            let s = c.statement(DELETE)?;
            c.client.query_opt(&s, &[&tree, &key])?.map(|r| r.try_get(0)).transpose()
        })
    }
}

impl Backend for PgBackend {
    fn location(&self) -> &Path {
        &self.location
    }

    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let (tree, key) = (tree.to_string(), key.to_vec());
        self.run(move |c| {
            let s = c.statement(GET)?;
            c.client.query_opt(&s, &[&tree, &key])?.map(|r| r.try_get(0)).transpose()
        })
    }

    fn insert(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let (tree, key, value) = (tree.to_string(), key.to_vec(), value.to_vec());
        self.run(move |c| {
            let s = c.statement(UPSERT_OLD)?;
            let row = c.client.query_one(&s, &[&tree, &key, &value])?;
            row.try_get(0)
        })
    }

    fn remove(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let (tree, key) = (tree.to_string(), key.to_vec());
        self.run(move |c| {
            let s = c.statement(DELETE)?;
            c.client.query_opt(&s, &[&tree, &key])?.map(|r| r.try_get(0)).transpose()
        })
    }

    fn scan_prefix<'a>(&'a self, tree: &str, prefix: &[u8]) -> Result<Scan<'a>, BackendError> {
        Ok(self.scan(tree, prefix.to_vec(), true, prefix_end(prefix)))
    }

    fn range<'a>(&'a self, tree: &str, after: Option<&[u8]>) -> Result<Scan<'a>, BackendError> {
        Ok(match after {
            Some(a) => self.scan(tree, a.to_vec(), false, None),
            None => self.scan(tree, Vec::new(), true, None),
        })
    }

    fn batch(&self, ops: &[Op]) -> Result<(), BackendError> {
        let rows = Arc::new(BatchRows::of(ops));
        self.in_tx("BEGIN", &|lease| {
            let rows = rows.clone();
            lease
                .run(move |c| rows.apply(c))
                .map_err(|e| match e {
                    PgError::Conflict(_) => TxError::Conflict,
                    other => TxError::Backend(lease.err(other)),
                })
        })
        .map(|_| ())
    }

    fn transaction(
        &self,
        trees: &[&str],
        body: &dyn Fn(&dyn Tx) -> Result<(), TxError>,
    ) -> Result<bool, BackendError> {
        self.in_tx("BEGIN ISOLATION LEVEL SERIALIZABLE", &|lease| {
            body(&PgTx { lease, trees })
        })
    }

    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn generate_id(&self) -> Result<u64, BackendError> {
        let id = self.run(|c| {
            let s = c.statement(NEXT_ID)?;
            c.client.query_one(&s, &[])?.try_get::<_, i64>(0)
        })?;
        u64::try_from(id).map_err(|_| BackendError::Io {
            path: self.location.clone(),
            message: format!("sequence llmos_ids returned {id}"),
        })
    }

    fn len(&self, tree: &str) -> Result<usize, BackendError> {
        let tree = tree.to_string();
        let n = self.run(move |c| {
            let s = c.statement(COUNT)?;
            c.client.query_one(&s, &[&tree])?.try_get::<_, i64>(0)
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn pop_min(&self, tree: &str) -> Result<Option<RawEntry>, BackendError> {
        let tree = tree.to_string();
        self.run(move |c| {
            let s = c.statement(POP_MIN)?;
            c.client
                .query_opt(&s, &[&tree])?
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .transpose()
        })
    }

    fn on_change(&self, f: ChangeFn) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .trees
            .push(f);
        self.start_listener();
    }

    fn on_key_change(&self, f: KeyChangeFn) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .push(f);
        self.start_listener();
    }

    fn get_many(&self, tree: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let (tree, wanted) = (tree.to_string(), keys.to_vec());
        let mut found: std::collections::HashMap<Vec<u8>, Vec<u8>> = self.run(move |c| {
            let s = c.statement(GET_MANY)?;
            c.client
                .query(&s, &[&tree, &wanted])?
                .into_iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })?;
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    fn shared(&self) -> bool {
        true
    }
}
