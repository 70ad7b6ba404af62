//! Hardening of the plugin sandbox (issue 10, items 6–9 and 12): outbound HTTP checked on the
//! resolved address, limits raised by a manifest need the operator's approval, revocation
//! racing a first load, bounded wasi resource tables, output and log limits.

use std::sync::atomic::Ordering;

use llmos::plugins::PluginHost;
use llmos::plugins::registry;

use serde_json::{Value, json};

use crate::plugins_common::{host, install, manifest, request, serve, wasm};
use crate::support::{Home, text};

const PROBE: &str = "testing/probe";

fn probe(host: &PluginHost, name: &str, cmds: &[&str]) -> Vec<String> {
    host.preprocess(name, request(cmds)).unwrap()
}

fn audit_details(host: &PluginHost) -> Vec<String> {
    host.audit()
        .records()
        .unwrap()
        .into_iter()
        .map(|r| r.detail)
        .collect()
}

/// item 9: a granted *name* that resolves to loopback is refused, naming the resolved address
/// and the grant that would allow it; the explicit address grant works.
#[test]
fn granted_name_resolving_to_loopback_is_refused() {
    let (_d, host) = host();
    let server = serve();
    let port = server.addr.port();
    let p = install(&host, PROBE, &[&format!("http:localhost:{port}")], &[]);
    let cmd = format!("http http://localhost:{port}/x");
    assert_eq!(
        probe(&host, &p, &[&cmd]),
        ["err:http:ErrorCode::DestinationIpProhibited"]
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    let details = audit_details(&host);
    let refusal = details
        .iter()
        .find(|d| d.contains("resolved to"))
        .unwrap_or_else(|| panic!("no refusal in the audit log: {details:?}"));
    assert!(refusal.contains("127.0.0.1"), "{refusal}");
    assert!(refusal.contains("loopback"), "{refusal}");
    assert!(
        refusal.contains(&format!("llmos plugin grant {p} http:127.0.0.1:{port}")),
        "{refusal}"
    );

    // The explicit address grant reaches the test server (by address, and by the name).
    registry::grant(&host, &p, &[format!("http:127.0.0.1:{port}")]).unwrap();
    let direct = format!("http http://127.0.0.1:{port}/x");
    assert_eq!(probe(&host, &p, &[&direct, &cmd]), ["ok:200", "ok:200"]);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

/// item 9: a wildcard host grant never reaches loopback or the metadata address; a CIDR
/// grant does, on its own port and scheme.
#[test]
fn wildcard_grants_skip_special_addresses_cidr_grants_reach_them() {
    let (_d, host) = host();
    let server = serve();
    let port = server.addr.port();
    let p = install(
        &host,
        PROBE,
        &[&format!("http:*:{port}"), "http:http://*"],
        &[],
    );
    let local = format!("http http://127.0.0.1:{port}/");
    assert_eq!(
        probe(
            &host,
            &p,
            &[&local, "http http://169.254.169.254/latest/meta-data/"]
        ),
        [
            "err:http:ErrorCode::DestinationIpProhibited",
            "err:http:ErrorCode::DestinationIpProhibited"
        ]
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    // A CIDR without a port is https on 443: plain http to the test port is not covered.
    registry::grant(&host, &p, &["http:127.0.0.0/8".to_string()]).unwrap();
    assert_eq!(
        probe(&host, &p, &[&local]),
        ["err:http:ErrorCode::DestinationIpProhibited"]
    );
    registry::grant(&host, &p, &[format!("http:127.0.0.0/8:{port}")]).unwrap();
    assert_eq!(probe(&host, &p, &[&local]), ["ok:200"]);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

/// item 9: a grant without a port or scheme is https on 443 only: plain http on 80 is denied
/// before any lookup or connection.
#[test]
fn portless_grant_does_not_allow_plain_http() {
    let (_d, host) = host();
    let p = install(&host, PROBE, &["http:example.com"], &[]);
    assert_eq!(
        probe(&host, &p, &["http http://example.com/"]),
        ["err:http:ErrorCode::HttpRequestDenied"]
    );
    let details = audit_details(&host);
    assert!(
        details
            .iter()
            .any(|d| d.contains("http:http://example.com:80")),
        "{details:?}"
    );
}

/// item 7: a manifest that raises its limits is refused by the CLI until the operator
/// approves, with each raised limit (asked vs default) and the flag; install and upgrade.
#[test]
fn cli_install_and_upgrade_need_approval_for_raised_limits() {
    let home = Home::new();
    let w = wasm("pii-redact");
    let m = manifest("pii-redact");
    let install = [
        "plugin",
        "install",
        w.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
    ];
    let err = home.fails(&install);
    assert!(err.contains("timeout_ms 200 (default 100)"), "{err}");
    assert!(err.contains("--approve-limits"), "{err}");
    assert!(
        home.fails(&["plugin", "info", "pii-redact"])
            .contains("not installed")
    );

    let mut approved = install.to_vec();
    approved.push("--approve-limits");
    let out = home.cmd(&approved).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("raised limit (approved) timeout_ms 200 (default 100)"),
        "{}",
        text(&out)
    );

    let info = home
        .cmd(&["plugin", "info", "pii-redact"])
        .output()
        .unwrap();
    assert!(
        text(&info).contains("raised     timeout_ms 200 (default 100)"),
        "{}",
        text(&info)
    );

    // An upgrade that raises memory further is refused the same way.
    let raised = home.dir.path().join("pii-redact-big.toml");
    let t = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&raised, t.replace("memory_mib = 32", "memory_mib = 256")).unwrap();
    let upgrade = [
        "plugin",
        "upgrade",
        "pii-redact",
        w.to_str().unwrap(),
        "--manifest",
        raised.to_str().unwrap(),
    ];
    let err = home.fails(&upgrade);
    assert!(err.contains("memory_mib 256 (default 64)"), "{err}");
    let mut approved = upgrade.to_vec();
    approved.push("--approve-limits");
    let out = home.cmd(&approved).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

fn call(s: &crate::support::Server, key: &str, body: Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(s.at("/admin/plugins"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// item 7: the admin API refuses raised limits without `approve_limits: true`.
#[test]
fn admin_install_needs_approval_for_raised_limits() {
    let home = Home::new();
    let key = home.json(&["keys", "create", "--scope", "admin"])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let s = home.serve(&["--models", "minilm"]);
    let body = json!({"path": wasm("pii-redact"), "manifest": manifest("pii-redact")});
    let (code, err) = call(&s, &key, body.clone());
    assert_eq!(code, 400, "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("timeout_ms 200 (default 100)"), "{msg}");
    assert!(msg.contains("approve_limits"), "{msg}");

    let mut body = body;
    body["approve_limits"] = json!(true);
    let (code, made) = call(&s, &key, body);
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["raised_limits"][0]["name"], "timeout_ms");
    assert_eq!(made["raised_limits"][0]["asked"], 200);
    assert_eq!(made["raised_limits"][0]["default"], 100);
}

const HOSTILE: &str = "testing/hostile";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// item 6: a plugin that only *requests* `http:*` (nothing granted) cannot hold host memory
/// through wasi handles: the fields size and the number of handles are capped, the call ends
/// with a limit error naming the limit, and the host's memory stays bounded.
#[test]
fn wasi_resources_are_capped() {
    let (_d, host) = host();
    let p = install(&host, HOSTILE, &[], &[]);
    // 64 KiB in one fields: over the 32 KiB cap (wasmtime's default allowed 128 KiB).
    let out = host.preprocess(&p, request(&["fields-size 1000"])).unwrap();
    assert_eq!(out, ["ok"]);
    let e = host
        .preprocess(&p, request(&["fields-size 65536"]))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("resources limit exceeded")
            && msg.contains("32768 bytes allowed per wasi:http fields"),
        "{msg}"
    );

    let before = rss_kib();
    let e = host
        .preprocess(&p, request(&["clone-loop 20000"]))
        .unwrap_err();
    let grown = rss_kib().saturating_sub(before);
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            llmos::plugins::PluginError::Limit {
                kind: llmos::plugins::LimitKind::Resources,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("512 host resources"), "{msg}");
    // 20,000 copies of an 8 KiB fields would be 160 MiB; the cap keeps it to a few MiB.
    assert!(grown < 64 << 10, "RSS grew by {grown} KiB");
    // The next call starts clean.
    assert_eq!(
        host.preprocess(&p, request(&["fields-size 10"])).unwrap(),
        ["ok"]
    );
}

/// item 12: an error payload counts against the output limit like a result does.
#[test]
fn error_payloads_count_against_the_output_limit() {
    let (_d, host) = host();
    let p = install(&host, HOSTILE, &[], &[]);
    let e = host
        .preprocess(&p, request(&["big-error 4194304"]))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            llmos::plugins::PluginError::Limit {
                kind: llmos::plugins::LimitKind::Output,
                ..
            }
        ),
        "{}",
        &msg[..msg.len().min(300)]
    );
    assert!(msg.contains("1048576 bytes allowed"), "{msg}");
    // A small error is still the plugin's own error.
    let e = host.preprocess(&p, request(&["big-error 10"])).unwrap_err();
    assert!(
        matches!(e, llmos::plugins::PluginError::Guest { .. }),
        "{e}"
    );
}

/// Captures everything logged in this test process (tracing's global subscriber).
fn captured_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    use std::sync::{Mutex, OnceLock};
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || Writer(buf))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    })
}

struct Writer(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// item 12: a plugin's log text cannot forge log lines or carry terminal escapes, and a
/// huge message is cut to one bounded line.
#[test]
fn log_text_is_escaped_and_bounded() {
    let logs = captured_logs();
    let (_d, host) = host();
    let p = install(&host, HOSTILE, &[], &[]);
    host.preprocess(&p, request(&["log-forge", "big-log 100000"]))
        .unwrap();
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("hostile-start"))
        .unwrap_or_else(|| panic!("no plugin log captured: {text}"));
    assert!(
        line.contains("hostile-end"),
        "the message was split: {line}"
    );
    assert!(line.contains("\\n2026-12-01T00:00:00Z ERROR"), "{line}");
    assert!(!text.contains('\u{1b}'), "an ANSI escape reached the log");
    assert!(!text.lines().any(|l| l.starts_with("2026-12-01T00:00:00Z")));
    let big = text
        .lines()
        .find(|l| l.contains("lllll"))
        .expect("the big log line");
    assert!(big.len() < 5000, "{} bytes", big.len());
    assert!(
        big.contains("truncated: 100000 bytes"),
        "{}",
        &big[big.len() - 80..]
    );
}
