//! A throwaway PostgreSQL server for the tests that need one: `initdb` in the test run's
//! temporary folder, started once per test process on a free loopback port, gone (server
//! and files) when the test process ends. Nothing of the system's PostgreSQL is used or
//! changed: only its binaries (Debian's `postgresql` package, or `LLMOS_TEST_PG_BIN`).
//! `LLMOS_TEST_PG_URL` points the tests at a server of your own instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How to get PostgreSQL for these tests.
pub const HOW: &str = "these tests need PostgreSQL's server binaries: `apt-get install postgresql` \
     (Debian/Ubuntu; ./scripts/test.sh does it), or set LLMOS_TEST_PG_BIN to a folder holding \
     initdb and postgres, or LLMOS_TEST_PG_URL=postgres://user@host:port/db to use a running \
     server whose user may CREATE DATABASE";

/// The folder holding `initdb` and `postgres`, if any.
fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LLMOS_TEST_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .collect();
    found.sort();
    found.pop()
}

/// The URL of the test server's maintenance database (`…/postgres`), starting it on first
/// use; `None` when PostgreSQL is not installed (then [`HOW`] says what to do). Under
/// `CI=true` a missing PostgreSQL fails the test instead.
pub fn server() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    let url = URL.get_or_init(|| {
        if let Ok(u) = std::env::var("LLMOS_TEST_PG_URL") {
            return Some(u);
        }
        bin_dir().map(|b| start(&b))
    });
    if url.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{HOW}");
        eprintln!("SKIPPED (PostgreSQL missing): {HOW}");
    }
    url.clone()
}

/// A fresh, empty database on the test server; returns its URL.
pub fn database(name: &str) -> Option<String> {
    let admin = server()?;
    let db = format!("{name}_{}", std::process::id());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    Some(format!("{base}/{db}"))
}

/// The uid and gid to run the server as: `postgres` when we are root (it refuses root).
fn run_as() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "running as root: the `postgres` user is needed ({HOW})"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

fn as_owner(c: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        c.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    c
}

/// `initdb` and start a server in the run's temporary folder; it stops and its folder goes
/// when this process ends (a watchdog shell checks for it every 200 ms).
fn start(bin: &Path) -> String {
    let owner = run_as();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // Folders of earlier runs (their watchdog empties them but cannot remove them as root's).
    for e in std::fs::read_dir(&tmp).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("pg-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let dir = tmp.join(format!("pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    let data = dir.join("data");
    let out = as_owner(&mut Command::new(bin.join("initdb")), owner)
        .args([
            "-D",
            &data.display().to_string(),
            "-U",
            "llmos",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "{pg} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c max_connections=200 >{dir}/log 2>&1 & pg=$!; \
         while [ -d /proc/{me} ] && kill -0 $pg 2>/dev/null; do sleep 0.2; done; \
         kill -QUIT $pg 2>/dev/null; wait $pg; rm -rf {dir}",
        pg = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
        me = std::process::id(),
    );
    let watchdog = as_owner(Command::new("sh").args(["-c", &script]), owner)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Reaped when it ends (with this process, or if the server fails to start).
    let mut watchdog = watchdog;
    std::thread::spawn(move || watchdog.wait());
    let url = format!("postgres://llmos@127.0.0.1:{port}/postgres");
    let t = Instant::now();
    loop {
        match postgres::Client::connect(&url, postgres::NoTls) {
            Ok(_) => return url,
            Err(e) if t.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!(
                "the test PostgreSQL did not start: {e}\n{}",
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            ),
        }
    }
}
