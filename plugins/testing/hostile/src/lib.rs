//! Test plugin: hostile uses of host resources that no memory limiter sees, of `log`, and of
//! error payloads. One command per input:
//! - `fields-size N`: appends one header of N bytes to a new `wasi:http` fields; `ok`/`err`.
//! - `clone-loop N`: a fields with an 8 KiB header, cloned N times (each clone gets one more
//!   header, so the host copies it), every handle kept: `ok:N` unless the host stops it.
//! - `log-forge`: logs a message with a newline, a forged log line and ANSI escapes.
//! - `big-log N`: logs N bytes.
//! - `big-error N`: fails with an `invalid-input` error of N bytes.

wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

use llmos::plugin::log;
use wasip2::http::types::Fields;

struct P;

fn n(arg: &str) -> usize {
    arg.parse().unwrap_or(0)
}

fn run(cmd: &str) -> Result<String, Error> {
    let (op, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
    Ok(match op {
        "fields-size" => {
            let f = Fields::new();
            match f.append("x-big", &vec![b'a'; n(arg)]) {
                Ok(()) => "ok".into(),
                Err(e) => format!("err:{e:?}"),
            }
        }
        "clone-loop" => {
            let f = Fields::new();
            let _ = f.append("x-base", &vec![b'a'; 8 << 10]);
            let mut kept = Vec::new();
            for i in 0..n(arg) {
                let c = f.clone();
                let _ = c.append("x-n", i.to_string().as_bytes());
                kept.push(c);
            }
            format!("ok:{}", kept.len())
        }
        "log-forge" => {
            log::log(
                log::Level::Warn,
                "hostile-start\n2026-12-01T00:00:00Z ERROR llmos: forged line\r\x1b[31mred\x1b[0m hostile-end",
            );
            "ok".into()
        }
        "big-log" => {
            log::log(log::Level::Warn, &"l".repeat(n(arg)));
            "ok".into()
        }
        "big-error" => return Err(Error::InvalidInput("e".repeat(n(arg)))),
        _ => format!("err:unknown-command:{cmd}"),
    })
}

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        request.inputs.iter().map(|c| run(c)).collect()
    }
}

export!(P);
