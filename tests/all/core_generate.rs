//! `llmos generate` and `llmos chat` on the tiny random llama fixture: the CLI streams the
//! same greedy text as the HTTP API, chat keeps its history and `/reset` forgets it.

use std::io::Write;
use std::process::Stdio;

use serde_json::json;

use crate::support::{Home, call, text};

#[test]
fn generate_prints_the_same_greedy_text_as_the_api() {
    let home = Home::new();
    let out = home
        .cmd(&[
            "generate",
            "--model",
            "tiny-llama",
            "--temperature",
            "0",
            "--max-tokens",
            "25",
            "once upon a time",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("finish_reason"), "{stderr}");
    let s = home.serve(&["--models", "tiny-llama"]);
    let (code, v) = call(
        &s,
        "POST",
        "/v1/completions",
        None,
        Some(
            json!({"model": "tiny-llama", "prompt": "once upon a time", "max_tokens": 25, "temperature": 0}),
        ),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        printed,
        format!("{}\n", v["choices"][0]["text"].as_str().unwrap())
    );
}

fn chat(home: &Home, input: &str) -> String {
    let mut child = home
        .cmd(&[
            "chat",
            "--model",
            "tiny-llama",
            "--temperature",
            "0",
            "--max-tokens",
            "12",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The assistant's greedy answer to `messages`, from the HTTP API.
fn answer(s: &crate::support::Server, messages: serde_json::Value) -> String {
    let body =
        json!({"model": "tiny-llama", "messages": messages, "max_tokens": 12, "temperature": 0});
    let (code, v) = call(s, "POST", "/v1/chat/completions", None, Some(body));
    assert_eq!(code, 200, "{v}");
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn chat_keeps_history_and_reset_forgets_it() {
    let home = Home::new();
    let s = home.serve(&["--models", "tiny-llama"]);
    let q = "hello there";
    let first = answer(&s, json!([{"role": "user", "content": q}]));
    let second = answer(
        &s,
        json!([{"role": "user", "content": q}, {"role": "assistant", "content": first}, {"role": "user", "content": q}]),
    );
    assert_eq!(
        chat(&home, &format!("{q}\n{q}\n")),
        format!("{first}\n{second}\n")
    );
    assert_eq!(
        chat(&home, &format!("{q}\n/reset\n{q}\n/exit\nignored\n")),
        format!("{first}\n{first}\n")
    );
}

#[test]
fn overflowing_the_context_is_refused_with_the_numbers() {
    let home = Home::new();
    let msg = home.fails(&[
        "generate",
        "--model",
        "tiny-llama",
        "--max-tokens",
        "5000",
        "hi",
    ]);
    assert!(
        msg.contains("max_tokens is 5000") && msg.contains("context length is 4096"),
        "{msg}"
    );
}
