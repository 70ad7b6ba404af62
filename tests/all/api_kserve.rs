//! KServe v2 / Open Inference Protocol routes, driven over real HTTP against the real
//! binary: metadata, health, JSON and binary (Triton's extension) inference for every
//! datatype, text models, error paths, and Triton's own Python client.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::support::{Home, client_python, floats, repo};

/// A running `llmos serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    home: Home,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start() -> Self {
        let home = Home::new();
        let log = std::fs::File::create(home.dir.path().join("server.log")).unwrap();
        let mut child = home
            .cmd(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--models",
                "add,dtypes,minilm,tiny-classifier",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix("llmos listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(home.dir.path().join("server.log")).unwrap();
            panic!("llmos serve did not start: stdout {line:?}\nstderr:\n{log}");
        };
        Self {
            base: addr.to_string(),
            child,
            home,
            _stdout: stdout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> Response {
        Client::new().get(self.url(path)).send().unwrap()
    }

    fn post(&self, path: &str, body: &Value) -> Response {
        Client::new()
            .post(self.url(path))
            .json(body)
            .send()
            .unwrap()
    }

    /// POSTs and expects 200 with a JSON body.
    fn infer(&self, model: &str, body: &Value) -> Value {
        let r = self.post(&format!("/v2/models/{model}/infer"), body);
        ok_json(r)
    }

    /// POSTs and expects `status` with a KServe error body; returns its message.
    fn fails(&self, model: &str, body: &Value, status: u16) -> String {
        let r = self.post(&format!("/v2/models/{model}/infer"), body);
        error(r, status)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.home.dir.path().join("server.log");
            eprintln!(
                "server log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

fn ok_json(r: Response) -> Value {
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Expects `status` and `{"error": "..."}`; returns the message.
fn error(r: Response, status: u16) -> String {
    let got = r.status();
    let text = r.text().unwrap();
    assert_eq!(got, status, "body: {text}");
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("error is not JSON ({e}): {text}"));
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 1, "KServe errors are {{\"error\": ...}}: {text}");
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("\"error\" is not a string: {text}"))
        .to_string()
}

fn output<'a>(resp: &'a Value, name: &str) -> &'a Value {
    resp["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {resp}"))
}

#[test]
fn server_metadata_health_and_model_metadata() {
    let s = Server::start();
    let v = ok_json(s.get("/v2"));
    assert_eq!(v["name"], "llmos");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        v["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data")),
        "{v}"
    );
    assert_eq!(s.get("/v2/health/live").status(), 200);
    assert_eq!(s.get("/v2/health/ready").status(), 200);
    assert_eq!(s.get("/v2/models/add/ready").status(), 200);
    assert_eq!(s.get("/v2/models/add/versions/1/ready").status(), 200);
    let e = error(s.get("/v2/models/nope/ready"), 404);
    assert!(e.contains("nope"), "{e}");
    let e = error(s.get("/v2/models/add/versions/7"), 404);
    assert!(e.contains("\"7\""), "{e}");

    let add = ok_json(s.get("/v2/models/add"));
    assert_eq!(add["name"], "add");
    assert_eq!(add["versions"], json!(["1"]));
    assert_eq!(add["platform"], "onnxruntime_onnx");
    assert_eq!(
        add["inputs"],
        json!([
            {"name": "a", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "b", "datatype": "FP32", "shape": [-1, 3]},
        ])
    );
    assert_eq!(
        add["outputs"],
        json!([{"name": "sum", "datatype": "FP32", "shape": [-1, 3]}])
    );
    assert_eq!(ok_json(s.get("/v2/models/add/versions/1")), add);

    let dtypes = ok_json(s.get("/v2/models/dtypes"));
    let types: Vec<(&str, &str)> = dtypes["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["datatype"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            ("x_f16", "FP16"),
            ("x_i64", "INT64"),
            ("x_i32", "INT32"),
            ("x_bool", "BOOL")
        ]
    );
    assert_eq!(dtypes["inputs"][2]["shape"], json!([2, 2]));

    let minilm = ok_json(s.get("/v2/models/minilm"));
    assert_eq!(
        minilm["inputs"],
        json!([{"name": "text", "datatype": "BYTES", "shape": [-1]}])
    );
    assert_eq!(
        minilm["outputs"],
        json!([{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}])
    );
    let cls = ok_json(s.get("/v2/models/tiny-classifier"));
    assert_eq!(
        cls["outputs"],
        json!([
            {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ])
    );
    let e = error(s.get("/v2/models/nope"), 404);
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn json_infer_echoes_id_and_selects_outputs() {
    let s = Server::start();
    let body = json!({
        "id": "req-42",
        "inputs": [
            {"name": "a", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]},
            {"name": "b", "shape": [2, 3], "datatype": "FP32", "data": [0.5, 0.5, 0.5, 1, 1, 1]},
        ],
    });
    let v = s.infer("add", &body);
    assert_eq!(v["model_name"], "add");
    assert_eq!(v["model_version"], "1");
    assert_eq!(v["id"], "req-42");
    let sum = output(&v, "sum");
    assert_eq!(sum["datatype"], "FP32");
    assert_eq!(sum["shape"], json!([2, 3]));
    assert_eq!(floats(&sum["data"]), [1.5, 2.5, 3.5, 5.0, 6.0, 7.0]);

    // Versioned route, explicit output selection, no id.
    let mut body2 = body.clone();
    body2.as_object_mut().unwrap().remove("id");
    body2["outputs"] = json!([{"name": "sum"}]);
    let v = ok_json(s.post("/v2/models/add/versions/1/infer", &body2));
    assert!(v.get("id").is_none(), "{v}");
    assert_eq!(v["outputs"].as_array().unwrap().len(), 1);

    // Only the requested outputs of a model with several.
    let v = s.infer(
        "dtypes",
        &json!({
            "inputs": dtypes_inputs(),
            "outputs": [{"name": "y_i32"}],
        }),
    );
    let outs = v["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 1, "{v}");
    assert_eq!(outs[0]["name"], "y_i32");

    body2["outputs"] = json!([{"name": "total"}]);
    let e = s.fails("add", &body2, 400);
    assert!(e.contains("\"total\"") && e.contains("sum"), "{e}");
}

fn dtypes_inputs() -> Value {
    json!([
        {"name": "x_f16", "shape": [3], "datatype": "FP16", "data": [0.5, -1.25, 3]},
        {"name": "x_i64", "shape": [2], "datatype": "INT64", "data": [41, -9000000000i64]},
        {"name": "x_i32", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [-3, 4]]},
        {"name": "x_bool", "shape": [3], "datatype": "BOOL", "data": [true, false, true]},
    ])
}

#[test]
fn json_infer_every_datatype() {
    let s = Server::start();
    let v = s.infer("dtypes", &json!({"inputs": dtypes_inputs()}));
    let y = output(&v, "y_f16");
    assert_eq!(y["datatype"], "FP16");
    assert_eq!(y["shape"], json!([3]));
    assert_eq!(floats(&y["data"]), [1.0, -2.5, 6.0]);
    let y = output(&v, "y_i64");
    assert_eq!(y["datatype"], "INT64");
    assert_eq!(y["data"], json!([42, -8999999999i64]));
    let y = output(&v, "y_i32");
    assert_eq!(y["datatype"], "INT32");
    assert_eq!(y["shape"], json!([2, 2]));
    assert_eq!(y["data"], json!([3, 6, -9, 12]));
    let y = output(&v, "y_bool");
    assert_eq!(y["datatype"], "BOOL");
    assert_eq!(y["data"], json!([false, true, false]));
}

#[test]
fn text_models_take_bytes() {
    let s = Server::start();
    let v = s.infer(
        "minilm",
        &json!({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
            "data": ["The cat sits on the mat.", "A cat is sitting on a mat."]}]}),
    );
    let e = output(&v, "embedding");
    assert_eq!(e["datatype"], "FP32");
    assert_eq!(e["shape"], json!([2, 384]));
    let data = floats(&e["data"]);
    assert_eq!(data.len(), 768);
    let (a, b) = data.split_at(384);
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    assert!(crate::support::cosine(a, b) > 0.8);

    let v = s.infer(
        "tiny-classifier",
        &json!({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
            "data": ["good movie", "bad movie"]}]}),
    );
    let scores = output(&v, "scores");
    assert_eq!(scores["shape"], json!([2, 3]));
    let sc = floats(&scores["data"]);
    for row in sc.chunks(3) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{row:?}");
    }
    let label = output(&v, "label");
    assert_eq!(label["datatype"], "BYTES");
    assert_eq!(label["shape"], json!([2]));
    let labels = ["negative", "neutral", "positive"];
    for (i, l) in label["data"].as_array().unwrap().iter().enumerate() {
        let row = &sc[i * 3..i * 3 + 3];
        let best = (0..3).max_by(|&x, &y| row[x].total_cmp(&row[y])).unwrap();
        assert_eq!(l.as_str().unwrap(), labels[best], "{v}");
    }

    // Token classification (loaded on first use): one JSON list per text.
    let v = s.infer(
        "tiny-ner",
        &json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
            "data": ["john smith lives in paris"]}]}),
    );
    let ents = output(&v, "entities");
    assert_eq!(ents["datatype"], "BYTES");
    assert_eq!(ents["shape"], json!([1]));
    let list: Value = serde_json::from_str(ents["data"][0].as_str().unwrap()).unwrap();
    assert!(list.is_array(), "{list}");

    let e = s.fails(
        "minilm",
        &json!({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1]}]}),
        400,
    );
    assert!(e.contains("FP32") && e.contains("BYTES"), "{e}");
    let e = s.fails(
        "minilm",
        &json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [""]}]}),
        400,
    );
    assert!(e.contains("empty"), "{e}");
}

/// A binary request: the JSON header, then each binary input's bytes.
fn binary_request(head: &Value, parts: &[&[u8]]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(head).unwrap();
    let n = body.len();
    for p in parts {
        body.extend_from_slice(p);
    }
    (body, n)
}

fn post_binary(s: &Server, model: &str, body: Vec<u8>, header_len: &str) -> Response {
    Client::new()
        .post(s.url(&format!("/v2/models/{model}/infer")))
        .header("Inference-Header-Content-Length", header_len)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .unwrap()
}

/// Splits a binary response into its JSON header and each binary output's bytes.
fn binary_response(r: Response) -> (Value, Vec<(String, Vec<u8>)>) {
    let status = r.status();
    let len: Option<usize> = r
        .headers()
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.bytes().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let len = len.expect("Inference-Header-Content-Length in a binary response");
    assert_eq!(ctype.as_deref(), Some("application/octet-stream"));
    let head: Value = serde_json::from_slice(&body[..len]).unwrap();
    let mut at = len;
    let mut parts = Vec::new();
    for o in head["outputs"].as_array().unwrap() {
        if let Some(size) = o["parameters"]["binary_data_size"].as_u64() {
            assert!(o.get("data").is_none(), "{o}");
            let size = size as usize;
            parts.push((
                o["name"].as_str().unwrap().to_string(),
                body[at..at + size].to_vec(),
            ));
            at += size;
        }
    }
    assert_eq!(at, body.len(), "binary sizes must add up to the body");
    (head, parts)
}

fn le_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn binary_tensor_data_round_trip() {
    let s = Server::start();
    // `a` binary, `b` JSON; `sum` asked for as binary.
    let a: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let head = json!({
        "id": "bin",
        "inputs": [
            {"name": "a", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": a.len()}},
            {"name": "b", "shape": [2, 3], "datatype": "FP32", "data": [10, 20, 30, 40, 50, 60]},
        ],
        "outputs": [{"name": "sum", "parameters": {"binary_data": true}}],
    });
    let (body, n) = binary_request(&head, &[&a]);
    let (h, parts) = binary_response(post_binary(&s, "add", body, &n.to_string()));
    assert_eq!(h["id"], "bin");
    assert_eq!(output(&h, "sum")["shape"], json!([2, 3]));
    assert_eq!(parts[0].0, "sum");
    assert_eq!(le_f32(&parts[0].1), [11.0, 22.0, 33.0, 44.0, 55.0, 66.0]);

    // Every datatype in binary, all outputs binary by the request-level parameter.
    let f16s: Vec<u8> = [0.5f32, -1.25, 3.0]
        .iter()
        .flat_map(|&x| half_bits(x).to_le_bytes())
        .collect();
    let i64s: Vec<u8> = [41i64, -9_000_000_000]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let i32s: Vec<u8> = [1i32, 2, -3, 4]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let bools = [1u8, 0, 1];
    let head = json!({
        "inputs": [
            {"name": "x_f16", "shape": [3], "datatype": "FP16", "parameters": {"binary_data_size": f16s.len()}},
            {"name": "x_i64", "shape": [2], "datatype": "INT64", "parameters": {"binary_data_size": i64s.len()}},
            {"name": "x_i32", "shape": [2, 2], "datatype": "INT32", "parameters": {"binary_data_size": i32s.len()}},
            {"name": "x_bool", "shape": [3], "datatype": "BOOL", "parameters": {"binary_data_size": 3}},
        ],
        "parameters": {"binary_data_output": true},
    });
    let (body, n) = binary_request(&head, &[&f16s, &i64s, &i32s, &bools]);
    let (h, parts) = binary_response(post_binary(&s, "dtypes", body, &n.to_string()));
    let part = |name: &str| parts.iter().find(|p| p.0 == name).unwrap().1.clone();
    let y: Vec<u16> = part("y_f16")
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(y, [half_bits(1.0), half_bits(-2.5), half_bits(6.0)]);
    let y: Vec<i64> = part("y_i64")
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(y, [42, -8_999_999_999]);
    let y: Vec<i32> = part("y_i32")
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(y, [3, 6, -9, 12]);
    assert_eq!(part("y_bool"), [0, 1, 0]);
    assert_eq!(output(&h, "y_bool")["datatype"], "BOOL");

    // BYTES in binary (4-byte little-endian length + bytes), to a text model.
    let mut texts = Vec::new();
    for t in ["good movie", "bad movie"] {
        texts.extend_from_slice(&(t.len() as u32).to_le_bytes());
        texts.extend_from_slice(t.as_bytes());
    }
    let head = json!({
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
            "parameters": {"binary_data_size": texts.len()}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}, {"name": "scores"}],
    });
    let (body, n) = binary_request(&head, &[&texts]);
    let (h, parts) = binary_response(post_binary(&s, "tiny-classifier", body, &n.to_string()));
    assert_eq!(output(&h, "scores")["shape"], json!([2, 3]));
    assert!(output(&h, "scores")["data"].is_array());
    let raw = &parts[0].1;
    let first = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
    let label = std::str::from_utf8(&raw[4..4 + first]).unwrap();
    assert!(
        ["negative", "neutral", "positive"].contains(&label),
        "{label}"
    );
}

/// IEEE half-precision bits of small exact values.
fn half_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = ((bits >> 13) & 0x3ff) as u16;
    sign | ((exp as u16) << 10) | mant
}

#[test]
fn errors_name_the_problem() {
    let s = Server::start();
    let a = |shape: Value, datatype: &str, data: Value| json!({"name": "a", "shape": shape, "datatype": datatype, "data": data});
    let b = a(json!([1, 3]), "FP32", json!([1, 2, 3]));
    let b = {
        let mut b = b;
        b["name"] = json!("b");
        b
    };

    // Wrong shape: names the input, the expected and the received shape.
    let e = s.fails(
        "add",
        &json!({"inputs": [a(json!([1, 4]), "FP32", json!([1, 2, 3, 4])), b]}),
        400,
    );
    assert!(
        e.contains("\"a\"") && e.contains("[1, 4]") && e.contains("[-1, 3]"),
        "{e}"
    );
    // Wrong datatype.
    let e = s.fails(
        "add",
        &json!({"inputs": [a(json!([1, 3]), "INT64", json!([1, 2, 3])), b]}),
        400,
    );
    assert!(
        e.contains("\"a\"") && e.contains("INT64") && e.contains("FP32"),
        "{e}"
    );
    // Data that does not fit the datatype, and the wrong element count.
    let e = s.fails(
        "add",
        &json!({"inputs": [a(json!([1, 3]), "FP32", json!([1, "x", 3])), b]}),
        400,
    );
    assert!(e.contains("data[1]") && e.contains("\"x\""), "{e}");
    let e = s.fails(
        "add",
        &json!({"inputs": [a(json!([2, 3]), "FP32", json!([1, 2, 3])), b]}),
        400,
    );
    assert!(e.contains("3 elements") && e.contains("needs 6"), "{e}");
    // Absurd shapes are refused, not allocated.
    let e = s.fails(
        "add",
        &json!({"inputs": [a(json!([1u64 << 40, 1u64 << 40, 3]), "FP32", json!([1, 2, 3])), b]}),
        400,
    );
    assert!(e.contains("more elements"), "{e}");
    let e = s.fails(
        "add",
        &json!({"inputs": [a(json!([1u64 << 40, 3]), "FP32", json!([1, 2, 3])), b]}),
        400,
    );
    assert!(e.contains("3 elements"), "{e}");
    // Unsupported datatype.
    let e = s.fails(
        "add",
        &json!({"inputs": [a(json!([1, 3]), "FP64", json!([1, 2, 3])), b]}),
        400,
    );
    assert!(e.contains("FP64") && e.contains("accepted"), "{e}");
    // Unknown and missing inputs.
    let mut c = b.clone();
    c["name"] = json!("c");
    let e = s.fails(
        "add",
        &json!({"inputs": [a(json!([1, 3]), "FP32", json!([1, 2, 3])), c]}),
        400,
    );
    assert!(e.contains("\"c\"") && e.contains("a, b"), "{e}");
    let e = s.fails("add", &json!({"inputs": [b]}), 400);
    assert!(e.contains("missing input \"a\""), "{e}");
    let e = s.fails("add", &json!({"inputs": [b, b]}), 400);
    assert!(e.contains("\"b\" is given twice"), "{e}");
    // Unknown model.
    let e = s.fails("nope", &json!({"inputs": [b]}), 404);
    assert!(e.contains("nope"), "{e}");
    // Malformed JSON, not an object, no inputs.
    let r = Client::new()
        .post(s.url("/v2/models/add/infer"))
        .header("Content-Type", "application/json")
        .body("{\"inputs\": [")
        .send()
        .unwrap();
    let e = error(r, 400);
    assert!(e.contains("not valid JSON"), "{e}");
    let e = s.fails("add", &json!([1, 2]), 400);
    assert!(e.contains("JSON object"), "{e}");
    let e = s.fails("add", &json!({"id": "x"}), 400);
    assert!(e.contains("\"inputs\""), "{e}");

    // Bad binary framing.
    let head = json!({"inputs": [
        {"name": "a", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
        b,
    ]});
    let (body, n) = binary_request(&head, &[&[0u8; 12]]);
    let e = error(post_binary(&s, "add", body.clone(), "999999"), 400);
    assert!(
        e.contains("Inference-Header-Content-Length is 999999") && e.contains("only"),
        "{e}"
    );
    let e = error(post_binary(&s, "add", body.clone(), "abc"), 400);
    assert!(
        e.contains("Inference-Header-Content-Length is \"abc\""),
        "{e}"
    );
    let mut longer = body.clone();
    longer.extend_from_slice(&[0; 4]);
    let e = error(post_binary(&s, "add", longer, &n.to_string()), 400);
    assert!(e.contains("16 bytes") && e.contains("add up to 12"), "{e}");
    let e = error(
        post_binary(&s, "add", body.clone(), &(n - 1).to_string()),
        400,
    );
    assert!(e.contains("not valid JSON"), "{e}");
    let head_bad = json!({"inputs": [
        {"name": "a", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
        b,
    ]});
    let (body, n) = binary_request(&head_bad, &[&[0u8; 8]]);
    let e = error(post_binary(&s, "add", body, &n.to_string()), 400);
    assert!(
        e.contains("binary_data_size 8") && e.contains("12 bytes"),
        "{e}"
    );
    // binary_data_size without the header.
    let e = s.fails("add", &head, 400);
    assert!(e.contains("no Inference-Header-Content-Length"), "{e}");

    // Oversized body: 413 in KServe's shape.
    let big = "1,".repeat(1_100_000);
    let r = Client::new()
        .post(s.url("/v2/models/add/infer"))
        .header("Content-Type", "application/json")
        .body(format!("{{\"inputs\":[{{\"data\":[{big}0]}}]}}"))
        .send()
        .unwrap();
    let e = error(r, 413);
    assert!(e.contains("limit"), "{e}");
}

#[test]
fn triton_python_client_works_unchanged() {
    let py = client_python();
    let s = Server::start();
    let script = repo().join("tests/clients/kserve_client.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(s.base.strip_prefix("http://").unwrap())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run ./scripts/test.sh to set up the client libraries",
                py.display()
            )
        });
    assert!(
        out.status.success(),
        "{} {} failed:\nstdout:\n{}\nstderr:\n{}",
        py.display(),
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
