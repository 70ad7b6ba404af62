//! Test plugin: one host call per input, reported as `ok:…` or `err:<variant>:<detail>`.
//! The grant-matrix tests drive it to check each capability.

wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

use llmos::plugin::{config, inference, kv, secrets};

struct P;

fn err(e: Error) -> String {
    match e {
        Error::Denied(s) => format!("err:denied:{s}"),
        Error::NotFound(s) => format!("err:not-found:{s}"),
        Error::InvalidInput(s) => format!("err:invalid-input:{s}"),
        Error::LimitExceeded(s) => format!("err:limit-exceeded:{s}"),
        Error::Unavailable(s) => format!("err:unavailable:{s}"),
    }
}

fn report<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Ok(v) => format!("ok:{v:?}"),
        Err(e) => err(e),
    }
}

fn http_get(url: &str) -> String {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", r)) => (Scheme::Http, r),
        Some(("https", r)) => (Scheme::Https, r),
        _ => return "err:bad-url".into(),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_scheme(Some(&scheme));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(&format!("/{path}")));
    let body = req.body().expect("body");
    let fut = match outgoing_handler::handle(req, None) {
        Ok(f) => f,
        Err(e) => return format!("err:http:{e:?}"),
    };
    let _ = OutgoingBody::finish(body, None);
    let resp = loop {
        match fut.get() {
            Some(r) => break r,
            None => fut.subscribe().block(),
        }
    };
    match resp {
        Ok(Ok(r)) => format!("ok:{}", r.status()),
        Ok(Err(e)) => format!("err:http:{e:?}"),
        Err(()) => "err:http:consumed".into(),
    }
}

fn run(cmd: &str) -> String {
    let mut parts = cmd.splitn(3, ' ');
    let op = parts.next().unwrap_or("");
    let a = parts.next().unwrap_or("");
    let b = parts.next().unwrap_or("");
    match op {
        "kv.set" => report(kv::set(a, b.as_bytes())),
        "kv.get" => report(kv::get(a).map(|v| v.map(|v| String::from_utf8_lossy(&v).into_owned()))),
        "kv.delete" => report(kv::delete(a)),
        "kv.list" => report(kv::list_keys(a)),
        "embed" => report(inference::embed(a, &[b.to_string()]).map(|v| v[0].len())),
        "classify" => {
            report(inference::classify(a, &[b.to_string()]).map(|v| v[0][0].label.clone()))
        }
        "entities" => report(
            inference::entities(a, b).map(|v| v.into_iter().map(|e| e.label).collect::<Vec<_>>()),
        ),
        "generate" => report(inference::generate(a, b, 8)),
        // `generate-max M N PROMPT`: up to N tokens.
        "generate-max" => {
            let (n, prompt) = b.split_once(' ').unwrap_or((b, ""));
            report(inference::generate(a, prompt, n.parse().unwrap_or(0)))
        }
        "secret" => report(secrets::get(a)),
        "config" => format!("ok:{:?}", config::get(a)),
        "http" => http_get(a),
        // Module-level state: with a fresh instance per call it is 1 on every call.
        "counter" => {
            static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            format!(
                "ok:{}",
                COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
            )
        }
        _ => format!("err:unknown-command:{cmd}"),
    }
}

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        Ok(request.inputs.iter().map(|c| run(c)).collect())
    }
}

export!(P);
