//! HTTP robustness, against the real binary: request-supplied numbers that would overflow,
//! graph inputs llmos cannot pass, slow-header clients, the connection cap, and the audit
//! log under a burst of unauthenticated requests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Home, Server};

/// `{"error": "..."}` with `status`; returns the message.
fn kserve_error(r: reqwest::blocking::Response, status: u16) -> String {
    let got = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(got, status, "body: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not a KServe error: {text}"))
        .to_string()
}

fn post_binary(
    s: &Server,
    model: &str,
    head: &Value,
    binary: &[u8],
) -> reqwest::blocking::Response {
    let mut body = serde_json::to_vec(head).unwrap();
    let n = body.len();
    body.extend_from_slice(binary);
    Client::new()
        .post(s.at(&format!("/v2/models/{model}/infer")))
        .header("Inference-Header-Content-Length", n.to_string())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .expect("the server must answer, not drop the connection")
}

#[test]
fn binary_data_sizes_whose_sum_wraps_are_refused() {
    let home = Home::new();
    let s = home.serve(&["--models", "add"]);
    // 8 + (2^64 - 4) wraps to 4 in u64/usize arithmetic: exactly the 4 bytes sent. Unchecked,
    // the sum passes the length check (release) or panics (debug); the slice then panics.
    let head = json!({"inputs": [
        {"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        {"name": "b", "shape": [1, 3], "datatype": "FP32",
         "parameters": {"binary_data_size": u64::MAX - 3}},
    ]});
    let e = kserve_error(post_binary(&s, "add", &head, &[0u8; 4]), 400);
    assert!(
        e.contains("binary_data_size") && e.contains("more than llmos can address"),
        "{e}"
    );
    // A size past the data, alone: named, not a panic.
    let head = json!({"inputs": [
        {"name": "a", "shape": [1, 3], "datatype": "FP32",
         "parameters": {"binary_data_size": u64::MAX}},
    ]});
    let e = kserve_error(post_binary(&s, "add", &head, &[0u8; 12]), 400);
    assert!(e.contains("binary_data_size"), "{e}");
    // A BYTES length prefix past the data.
    let mut raw = u32::MAX.to_le_bytes().to_vec();
    raw.extend_from_slice(b"abc");
    let head = json!({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES",
        "parameters": {"binary_data_size": raw.len()}}]});
    let e = kserve_error(post_binary(&s, "add", &head, &raw), 400);
    assert!(e.contains("says 4294967295 bytes"), "{e}");
    // The server is still up and counted no panic.
    let m = Client::new()
        .get(s.at("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(m.contains("\nllmos_panics_total 0\n"), "{m}");
}

// ---------------------------------------------------------------------------------------
// A graph with a string input, written as ONNX protobuf by hand (no Python needed).

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// ValueInfoProto: a tensor `name` of ONNX element type `elem` and one symbolic dimension.
fn value_info(name: &str, elem: u64) -> Vec<u8> {
    let mut dim = Vec::new();
    field_bytes(&mut dim, 2, b"n"); // dim_param
    let mut shape = Vec::new();
    field_bytes(&mut shape, 1, &dim);
    let mut tensor = Vec::new();
    field_varint(&mut tensor, 1, elem);
    field_bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    field_bytes(&mut ty, 1, &tensor);
    let mut vi = Vec::new();
    field_bytes(&mut vi, 1, name.as_bytes());
    field_bytes(&mut vi, 2, &ty);
    vi
}

/// `len = Shape(s)`: input `s` STRING `[n]`, output `len` INT64 `[n]` (opset 17).
fn string_graph() -> Vec<u8> {
    let mut node = Vec::new();
    field_bytes(&mut node, 1, b"s");
    field_bytes(&mut node, 2, b"len");
    field_bytes(&mut node, 4, b"Shape");
    let mut graph = Vec::new();
    field_bytes(&mut graph, 1, &node);
    field_bytes(&mut graph, 2, b"strings");
    field_bytes(&mut graph, 11, &value_info("s", 8)); // STRING
    field_bytes(&mut graph, 12, &value_info("len", 7)); // INT64
    let mut opset = Vec::new();
    field_varint(&mut opset, 2, 17);
    let mut model = Vec::new();
    field_varint(&mut model, 1, 8); // ir_version
    field_bytes(&mut model, 7, &graph);
    field_bytes(&mut model, 8, &opset);
    model
}

#[test]
fn a_string_graph_input_sent_as_bytes_is_a_400_not_a_panic() {
    let home = Home::isolated();
    let onnx = string_graph();
    let file = home.dir.path().join("strings.onnx");
    std::fs::write(&file, &onnx).unwrap();
    std::fs::write(
        home.manifests().join("strings.toml"),
        format!(
            "name = \"strings\"\ntask = \"infer\"\nlicense = \"Apache-2.0\"\n\n[[files]]\n\
             name = \"model.onnx\"\nrole = \"model\"\nsha256 = \"{}\"\n\
             source = {{ kind = \"local\", path = {:?} }}\n",
            hex::encode(Sha256::digest(&onnx)),
            file.display().to_string()
        ),
    )
    .unwrap();
    let pulled = home.cmd(&["models", "pull", "strings"]).output().unwrap();
    assert!(pulled.status.success(), "{}", crate::support::text(&pulled));
    let s = home.serve(&["--models", "strings"]);
    let meta: Value = Client::new()
        .get(s.at("/v2/models/strings"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta["inputs"][0]["datatype"], "BYTES", "{meta}");
    let r = Client::new()
        .post(s.at("/v2/models/strings/infer"))
        .json(&json!({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}))
        .send()
        .expect("the server must answer, not drop the connection");
    let e = kserve_error(r, 400);
    assert!(
        e.contains("\"s\"") && e.contains("string tensor") && e.contains("FP32"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// Connections: slow headers, idle keep-alive, the connection cap.

/// A home whose `[server]` section is `server`.
fn home_with_server(server: &str) -> Home {
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[server]\n");
    text.push_str(server);
    std::fs::write(cfg, text).unwrap();
    home
}

fn connect(s: &Server) -> TcpStream {
    let addr = s.url.strip_prefix("http://").unwrap();
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    c
}

/// Whether the server has closed `c` (EOF or reset), reading and discarding what it sent.
fn closed(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Waits up to `limit` for the server to close `c`; returns how long it took.
fn closes_within(c: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if closed(c) {
            return Some(start.elapsed());
        }
    }
    None
}

#[test]
fn a_slow_header_client_is_disconnected_after_the_header_timeout() {
    let home = home_with_server("header_read_timeout_ms = 500\nidle_timeout_ms = 30000\n");
    let s = home.serve(&["--models", "add"]);
    let start = Instant::now();
    let mut c = connect(&s);
    c.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    // One header byte every 100 ms: never a whole head.
    let mut cut = None;
    for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        .iter()
        .cycle()
        .take(40)
    {
        if c.write_all(&[*b]).is_err() || closed(&mut c) {
            cut = Some(start.elapsed());
            break;
        }
    }
    let cut = cut.expect("a client trickling its header for 4 s must be disconnected");
    assert!(
        cut >= Duration::from_millis(400) && cut < Duration::from_millis(2000),
        "disconnected after {cut:?}, configured 500 ms"
    );
    // Others are served meanwhile and afterwards.
    let r = Client::new().get(s.at("/health")).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let home = home_with_server("header_read_timeout_ms = 20000\nidle_timeout_ms = 300\n");
    let s = home.serve(&["--models", "add"]);
    let mut c = connect(&s);
    c.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while !String::from_utf8_lossy(&got).contains("\"status\"") {
        assert!(start.elapsed() < Duration::from_secs(5), "no answer");
        if let Ok(n) = c.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    let took = closes_within(&mut c, Duration::from_secs(4))
        .expect("an idle kept-alive connection must be closed after idle_timeout_ms");
    assert!(took < Duration::from_millis(1500), "closed after {took:?}");
}

#[test]
fn connections_past_the_cap_get_503_and_a_freed_slot_serves_again() {
    let home = home_with_server(
        "header_read_timeout_ms = 20000\nidle_timeout_ms = 20000\nmax_connections = 2\n",
    );
    let s = home.serve(&["--models", "add"]);
    let held: Vec<TcpStream> = (0..2).map(|_| connect(&s)).collect();
    std::thread::sleep(Duration::from_millis(200)); // both accepted
    let mut third = connect(&s);
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let start = Instant::now();
    loop {
        match third.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "connection 3 of a 2-connection server was neither refused nor closed"
                );
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("max_connections"), "{text}");
    // One slot freed: a normal request is served again.
    drop(held);
    let start = Instant::now();
    let m = loop {
        match Client::new().get(s.at("/metrics")).send() {
            Ok(r) if r.status() == 200 => break r.text().unwrap(),
            _ => {
                assert!(start.elapsed() < Duration::from_secs(3), "no slot freed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(m.contains("llmos_http_connections_refused_total 1"), "{m}");
}

// ---------------------------------------------------------------------------------------
// The audit log under a flood of unauthenticated requests, and its pages.

fn audit_page(s: &Server, admin: &str, query: &str) -> Value {
    let r = Client::new()
        .get(s.at(&format!("/admin/audit{query}")))
        .bearer_auth(admin)
        .send()
        .unwrap();
    let status = r.status();
    let v: Value = r.json().unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn a_burst_of_unauthenticated_requests_writes_a_handful_of_audit_records() {
    let home = Home::new();
    let made = home.json(&["keys", "create", "--scope", "admin"]);
    let admin = made["secret"].as_str().unwrap().to_string();
    let s = home.serve(&["--models", "add"]);
    let client = Client::new();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..1000 {
        let t = Instant::now();
        let mut r = client.get(s.at("/v2/models/add"));
        if i % 2 == 1 {
            r = r.bearer_auth("llmos_nope_notakey");
        }
        let r = r.send().unwrap();
        assert_eq!(r.status(), 401);
        slowest = slowest.max(t.elapsed());
    }
    let took = start.elapsed();
    eprintln!("1000 refused requests in {took:?}, slowest {slowest:?}");
    // Every record, through the pages.
    let mut all = Vec::new();
    let mut query = "?limit=2".to_string();
    loop {
        let page = audit_page(&s, &admin, &query);
        let recs = page["records"].as_array().unwrap();
        assert!(recs.len() <= 2, "{page}");
        all.extend(recs.iter().cloned());
        match page["next"].as_u64() {
            Some(n) => query = format!("?limit=2&after={n}"),
            None => break,
        }
    }
    let refusals: Vec<&Value> = all
        .iter()
        .filter(|r| r["what"].as_str().unwrap().starts_with("auth-denied"))
        .collect();
    assert!(
        refusals.len() <= 4,
        "1000 refusals from one source wrote {} records",
        refusals.len()
    );
    let summary = refusals
        .iter()
        .find(|r| r["what"] == "auth-denied-summary")
        .expect("a summary of the refusals not written one by one");
    assert!(
        summary["detail"]
            .as_str()
            .unwrap()
            .starts_with("999 more refusals from 127.0.0.1"),
        "{summary}"
    );
    // Sequence numbers: consecutive, each record once, every one chained.
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");
    assert!(all.iter().all(|r| r["v"] == 2 && r["prev"].is_string()));
    // Filters, and a bad parameter named.
    let only = audit_page(&s, &admin, "?kind=auth-denied-summary");
    assert_eq!(only["records"].as_array().unwrap().len(), 1, "{only}");
    let r = client
        .get(s.at("/admin/audit?limit=0"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 to 1000"),
        "{v}"
    );
}
