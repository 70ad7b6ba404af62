//! Schemathesis (PyPI, pinned in scripts/test.sh) against `GET /openapi.json` of the real
//! binary: generated requests on every described operation, checking that none gets a 5xx
//! and that every answer (errors included) has a documented status, content type and
//! shape. Bounded (a few examples per operation, deterministic) so the suite stays fast.

use std::process::Command;

use crate::support::{Home, client_python, text};

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let python = client_python();
    let st = python.with_file_name("schemathesis");
    assert!(
        st.exists(),
        "{} is missing: run ./scripts/test.sh (it installs schemathesis into the test venv)",
        st.display()
    );
    let home = Home::new();
    // tiny-llama: the generation routes meet a generation model.
    let s = home.serve(&["--models", "minilm,tiny-llama"]);
    let out = Command::new(&st)
        .args([
            "run",
            &s.at("/openapi.json"),
            "--max-examples",
            "5",
            "--generation-deterministic",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--request-timeout",
            "30",
            "--no-color",
        ])
        .current_dir(home.dir.path())
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "schemathesis found problems:\n{all}");
    assert!(!all.contains("unresolvable reference"), "{all}");
}
