//! `llmos audit tail|verify|archive`: the audit log from the command line. `tail` and
//! `verify` ask the running server of this data location over its admin socket
//! (`$LLMOS_HOME/admin.sock`, as `llmos plugin` and `llmos keys` do), else open the store,
//! or ask another server (`--url`, with an admin key); the output is the same either way.
//! `archive` removes entries, so it needs the store to itself: it is never forwarded.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::remote::Server as Socket;
use crate::api::local::socket_path;
use crate::config::{Config, Paths};
use crate::data::Store;
use crate::security::AuditRecord;
use crate::security::audit::{AuditLimits, AuditLog};

/// `llmos audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the newest entries as JSON lines, oldest first.
    Tail {
        /// How many.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        n: usize,
        /// Then keep printing entries as they are written (needs a running server: this data
        /// location's, over its admin socket, or --url).
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Check the hash chain from the newest checkpoint (or the start) to the head; print the
    /// report as JSON and exit non-zero when an entry was edited, removed, reordered or
    /// inserted, or a checkpoint or the head record forged or removed.
    Verify {
        #[command(flatten)]
        remote: Remote,
    },
    /// Export every whole segment that ends before SEQ to FILE (JSON lines), then remove them,
    /// leaving a checkpoint the rest verifies from. The segment of the newest entry stays.
    Archive {
        /// Archive segments that end before this sequence number.
        #[arg(long, value_name = "SEQ")]
        before: u64,
        /// The file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Where to read the log: a running server instead of the store.
#[derive(Debug, Args)]
pub struct Remote {
    /// A running server to ask, e.g. `http://127.0.0.1:8080` (it holds the store).
    #[arg(long, env = "LLMOS_URL")]
    url: Option<String>,
    /// An API key with the `admin` scope, for --url.
    #[arg(long, env = "LLMOS_API_KEY", hide_env_values = true)]
    key: Option<String>,
}

/// Runs an audit command.
pub fn run(cmd: AuditCommand, config: &Config, paths: &Paths) -> Result<()> {
    // This data location's server, when one answers on its admin socket (it holds the store).
    let local = |url: &Option<String>| -> Result<Option<Server>> {
        match url {
            Some(_) => Ok(None),
            None => Ok(Socket::connect(&paths.home)?.map(Server::Socket)),
        }
    };
    match cmd {
        AuditCommand::Tail { n, follow, remote } => {
            if let Some(s) = local(&remote.url)? {
                return tail_remote(s, n, follow);
            }
            match remote.url {
                Some(url) => tail_remote(Server::http(url, remote.key)?, n, follow),
                None if follow => bail!(
                    "--follow needs a running server: none answers on {} (start `llmos serve`, \
                     or pass --url URL and an admin key for another one)",
                    socket_path(&paths.home).display()
                ),
                None => {
                    for r in open(config, paths)?.tail(n)? {
                        print_line(&r)?;
                    }
                    Ok(())
                }
            }
        }
        AuditCommand::Verify { remote } => {
            let report = match (local(&remote.url)?, remote.url) {
                (Some(mut s), _) => s.verify()?,
                (None, Some(url)) => Server::http(url, remote.key)?.verify()?,
                (None, None) => {
                    let r = serde_json::to_value(open(config, paths)?.verify()?)?;
                    println!("{r:#}");
                    r
                }
            };
            if report.get("ok") != Some(&Value::Bool(true)) {
                bail!(
                    "the audit log does not verify: {}",
                    report
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("see the report")
                );
            }
            Ok(())
        }
        AuditCommand::Archive { before, out } => {
            let log = open(config, paths).map_err(|e| {
                if Socket::connect(&paths.home).ok().flatten().is_some() {
                    e.context(
                        "`llmos audit archive` removes entries from the log, so it needs the \
                         store to itself and is not sent to the running server: stop `llmos \
                         serve`, archive, and start it again",
                    )
                } else {
                    e
                }
            })?;
            archive(&log, before, &out)
        }
    }
}

fn open(config: &Config, paths: &Paths) -> Result<AuditLog> {
    config.audit.check().map_err(anyhow::Error::msg)?;
    let store = Store::open_home(&paths.home).context(
        "cannot open the store (if `llmos serve` is running, it holds the store: pass --url URL and an admin key)",
    )?;
    let log = AuditLog::new(store);
    log.set_limits(AuditLimits {
        max_records: config.audit.max_records,
        segment_records: config.audit.segment_records,
        refusal_window: Duration::from_millis(config.audit.refusal_window_ms),
    });
    Ok(log)
}

fn print_line(r: &AuditRecord) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, r)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn archive(log: &AuditLog, before: u64, out: &std::path::Path) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
    let mut written = 0usize;
    let dropped = log.archive(before, &mut |segment: &[Vec<u8>]| {
        for line in segment {
            file.write_all(line)?;
            file.write_all(b"\n")?;
        }
        written = written.saturating_add(segment.len());
        // On disk before the segment is removed.
        file.sync_data()
    });
    let dropped = match dropped {
        Ok(d) => d,
        Err(e) => {
            if written == 0 {
                let _ = std::fs::remove_file(out);
            }
            return Err(e).context("archiving the audit log");
        }
    };
    if dropped.is_empty() {
        let _ = std::fs::remove_file(out);
        let segment = log.limits().segment();
        println!(
            "{:#}",
            json!({"archived": [], "note": format!("no whole segment ({segment} entries, [audit] segment_records) ends before {before}, or it holds the newest entry; nothing was written")})
        );
        return Ok(());
    }
    println!(
        "{:#}",
        json!({"archived": dropped, "entries": written, "out": out.display().to_string()})
    );
    Ok(())
}

/// A running server's `/admin/audit`: this data location's over its admin socket, or
/// another one over HTTP (`--url`).
enum Server {
    Socket(Socket),
    Http(Http),
}

struct Http {
    url: String,
    key: String,
    client: reqwest::blocking::Client,
}

impl Server {
    fn http(url: String, key: Option<String>) -> Result<Self> {
        let Some(key) = key else {
            bail!("--url needs an API key with the admin scope: --key KEY or LLMOS_API_KEY");
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Self::Http(Http {
            url: url.trim_end_matches('/').to_string(),
            key,
            client,
        }))
    }

    fn get(&mut self, path: &str) -> Result<Value> {
        match self {
            Server::Socket(s) => s.get(path),
            Server::Http(h) => h.get(path),
        }
    }

    fn verify(&mut self) -> Result<Value> {
        let v = self.get("/admin/audit/verify")?;
        if !v.get("ok").is_some_and(Value::is_boolean) {
            bail!("the server's answer is not a verification report: {v}");
        }
        println!("{v:#}");
        Ok(v)
    }
}

impl Http {
    fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let r = self
            .client
            .get(&url)
            .bearer_auth(&self.key)
            .send()
            .with_context(|| format!("cannot reach {url}"))?;
        let status = r.status();
        let v: Value = r
            .json()
            .with_context(|| format!("{url} answered {status} without JSON"))?;
        if !status.is_success() {
            bail!(
                "{url} answered {status}: {}",
                v.pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
            );
        }
        Ok(v)
    }
}

fn tail_remote(mut server: Server, n: usize, follow: bool) -> Result<()> {
    if !(1..=1000).contains(&n) {
        let how = match server {
            Server::Socket(_) => "while `llmos serve` runs",
            Server::Http(_) => "with --url",
        };
        bail!("-n is {n}: {how} it must be from 1 to 1000 (the server's page limit)");
    }
    let page = server.get(&format!("/admin/audit?tail={n}"))?;
    let mut next = print_page(&page)?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let q = match next {
            Some(a) => format!("/admin/audit?after={a}&limit=1000"),
            None => "/admin/audit?limit=1000".to_string(),
        };
        let page = server.get(&q)?;
        next = print_page(&page)?.or(next);
    }
}

/// Prints a page's records; returns the seq of the last one.
fn print_page(page: &Value) -> Result<Option<u64>> {
    let records = page.get("records").cloned().unwrap_or(Value::Null);
    let records: Vec<AuditRecord> = serde_json::from_value(records)
        .context("the server's answer is not a page of audit records")?;
    for r in &records {
        print_line(r)?;
    }
    Ok(records.last().map(|r| r.seq))
}
