//! KServe v2 gRPC (`llmos serve --grpc-listen`), driven by Triton's own `tritonclient.grpc`
//! against the real binary: health, metadata, raw and typed contents, answers equal to the
//! HTTP `/v2` answers, bad input, keys and scopes, the body limit; then the metrics and the
//! audit log of those calls over HTTP. One server for every check.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::{Home, Server, call, client_python, repo};

fn create_key(home: &Home, scopes: &[&str]) -> String {
    let mut args = vec!["keys", "create"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    let v = home.json(&args);
    v["secret"].as_str().unwrap().to_string()
}

#[test]
fn tritonclient_grpc_works_unchanged() {
    let py = client_python();
    let home = Home::new();
    let key = create_key(&home, &["models:*", "admin"]);
    let limited = create_key(&home, &["models:minilm"]);
    let mut child = home
        .cmd(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--models",
            "add,dtypes,minilm",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut http, mut grpc) = (String::new(), String::new());
    out.read_line(&mut http).unwrap();
    out.read_line(&mut grpc).unwrap();
    let url = http
        .trim()
        .strip_prefix("llmos listening on ")
        .map(str::to_string);
    let Some(url) = url else {
        let _ = child.kill();
        panic!("llmos serve did not start: first line {http:?}");
    };
    let pid = child.id();
    let s = Server::from_child(child, url.clone());
    let grpc_addr = grpc
        .trim()
        .strip_prefix("llmos gRPC listening on ")
        .unwrap_or_else(|| panic!("no gRPC line after the HTTP one: {grpc:?}"))
        .to_string();
    let script = repo().join("tests/clients/kserve_grpc_client.py");
    let run = Command::new(&py)
        .arg(&script)
        .args([
            grpc_addr.as_str(),
            url.strip_prefix("http://").unwrap(),
            &key,
            &limited,
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run ./scripts/test.sh to set up the client libraries",
                py.display()
            )
        });
    assert!(
        run.status.success(),
        "{} {} failed:\nstdout:\n{}\nstderr:\n{}",
        py.display(),
        script.display(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    // The same metrics as HTTP, labelled with the gRPC method.
    let text = reqwest::blocking::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .text()
        .unwrap();
    for want in [
        "route=\"/inference.GRPCInferenceService/ModelInfer\",model=\"add\",status=\"200\"",
        "route=\"/inference.GRPCInferenceService/ModelInfer\",model=\"minilm\",status=\"200\"",
        "route=\"/inference.GRPCInferenceService/ModelInfer\",model=\"\",status=\"400\"",
        "route=\"/inference.GRPCInferenceService/ModelInfer\",model=\"\",status=\"401\"",
        "route=\"/inference.GRPCInferenceService/ModelInfer\",model=\"\",status=\"403\"",
        "route=\"/inference.GRPCInferenceService/ModelMetadata\",model=\"\",status=\"404\"",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("llmos_http_requests_total{") && l.contains(want)),
            "no metric with {want}:\n{text}"
        );
    }

    // The same audit: the limited key's refusal is recorded with the model it lacked.
    let (code, audit) = call(&s, "GET", "/admin/audit", Some(&key), None);
    assert_eq!(code, 200, "{audit}");
    let records = audit["records"].as_array().unwrap();
    assert!(
        records.iter().any(|r| r["what"] == "auth-denied"
            && r["detail"].as_str().is_some_and(|d| d
                .contains("/inference.GRPCInferenceService/ModelInfer: no scope for model add"))),
        "{audit}"
    );

    // Graceful shutdown covers the gRPC listener: SIGTERM ends the process promptly.
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exited = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Exited: reaped, or a zombie until `s` is dropped.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
            st.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
    assert!(
        exited,
        "llmos serve --grpc-listen still runs 10 s after SIGTERM"
    );
    assert!(
        std::net::TcpStream::connect(&grpc_addr).is_err(),
        "the gRPC port still accepts after shutdown"
    );
    drop(s);
}
