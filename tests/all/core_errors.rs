//! Every error of the foundation: missing runtime, wrong sha256, unknown model, bad
//! manifest key, wrong input shape/dtype, empty input, strict providers.

use crate::support::{Home, text};

#[test]
fn missing_runtime_says_where_it_looked_and_how_to_install() {
    let home = Home::new();
    let empty_cache = tempfile::tempdir().unwrap();
    let out = home
        .cmd(&["embed", "hello"])
        .env("LLMOS_CACHE", empty_cache.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ONNX Runtime 1.31.1 was not found"), "{err}");
    assert!(err.contains("next to the llmos binary"), "{err}");
    assert!(
        err.contains(&empty_cache.path().display().to_string()),
        "{err}"
    );
    assert!(err.contains("llmos runtime install"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_explicit_runtime_path_is_an_error_not_a_panic() {
    let home = Home::new();
    let out = home
        .cmd(&["embed", "hello"])
        .env("LLMOS_ORT_DYLIB", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
    assert!(
        err.contains("LLMOS_ORT_DYLIB") && !err.contains("panicked"),
        "{err}"
    );

    // A file that is not a shared library.
    let not_a_lib = home.dir.path().join("libonnxruntime.so");
    std::fs::write(&not_a_lib, b"not an ELF file").unwrap();
    let out = home
        .cmd(&["embed", "hello"])
        .env("ORT_DYLIB_PATH", &not_a_lib)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot load ONNX Runtime from"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn corrupt_cached_runtime_is_refused() {
    let home = Home::new();
    let cache = tempfile::tempdir().unwrap();
    let lib = cache
        .path()
        .join("runtime/onnxruntime-1.31.1/libonnxruntime.so.1.31.1");
    std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
    std::fs::write(&lib, b"truncated").unwrap();
    let out = home
        .cmd(&["embed", "hello"])
        .env("LLMOS_CACHE", cache.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("corrupt or not the expected"),
        "{err}"
    );
    assert!(err.contains("llmos runtime install --force"), "{err}");
}

#[test]
fn wrong_sha256_is_refused_and_nothing_is_written() {
    let home = Home::isolated();
    let fixture = crate::support::repo().join("tests/fixtures/add.onnx");
    std::fs::write(
        home.manifests().join("wrong.toml"),
        format!(
            "name = \"wrong\"\ntask = \"infer\"\nlicense = \"MIT\"\n[[files]]\nname = \"model.onnx\"\nrole = \"model\"\n\
             sha256 = \"{}\"\nsource = {{ kind = \"local\", path = {:?} }}\n",
            "ab".repeat(32),
            fixture.display().to_string()
        ),
    )
    .unwrap();
    let err = home.fails(&["models", "pull", "wrong"]);
    assert!(
        err.contains("sha256") && err.contains(&"ab".repeat(32)),
        "{err}"
    );
    let dir = home.models.join("wrong");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "files left behind after a refused pull: {left:?}"
    );
}

#[test]
fn truncated_model_file_is_detected_and_never_loaded() {
    let home = Home::isolated();
    let first = home.cmd(&["models", "pull", "add"]).output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    let again = home.cmd(&["models", "pull", "add"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("up to date"),
        "{}",
        text(&again)
    );

    let file = home.models.join("add/model.onnx");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let req = r#"{"inputs":[{"name":"a","shape":[1,3],"dtype":"f32","data":[1,2,3]},{"name":"b","shape":[1,3],"dtype":"f32","data":[1,2,3]}]}"#;
    let err = home.fails(&["infer", "-m", "add", req]);
    assert!(
        err.contains("corrupt or truncated") && err.contains("llmos models pull add --force"),
        "{err}"
    );
    let err = home.fails(&["models", "verify", "add"]);
    assert!(err.contains("missing or corrupt"), "{err}");

    // Pulling again repairs it.
    let fixed = home.cmd(&["models", "pull", "add"]).output().unwrap();
    assert!(fixed.status.success(), "{}", text(&fixed));
    home.json(&["models", "verify", "add"]);
    let rm = home.cmd(&["models", "rm", "add"]).output().unwrap();
    assert!(rm.status.success(), "{}", text(&rm));
    assert!(!home.models.join("add").exists());
}

#[test]
fn unknown_model_lists_the_known_ones() {
    let home = Home::new();
    let err = home.fails(&["embed", "-m", "nope", "hello"]);
    assert!(
        err.contains("unknown model \"nope\"") && err.contains("minilm") && err.contains("pii-ner"),
        "{err}"
    );
    let err = home.fails(&["models", "info", "nope"]);
    assert!(err.contains("known models are"), "{err}");
}

#[test]
fn bad_manifest_key_is_named() {
    let home = Home::new();
    std::fs::write(
        home.manifests().join("typo.toml"),
        "name = \"typo\"\ntask = \"infer\"\nlicense = \"MIT\"\nprovider = [\"cpu\"]\nfiles = []\n",
    )
    .unwrap();
    let err = home.fails(&["models", "list"]);
    assert!(
        err.contains("typo.toml") && err.contains("provider"),
        "{err}"
    );
    assert!(
        err.contains("providers"),
        "the error should list accepted keys: {err}"
    );
}

#[test]
fn bad_config_key_is_named() {
    let home = Home::new();
    let cfg = home.dir.path().join("llmos.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[server]\nlisten_addr = \"127.0.0.1:1\"\n");
    std::fs::write(&cfg, text).unwrap();
    let err = home.fails(&["models", "list"]);
    assert!(
        err.contains("listen_addr") && err.contains("listen"),
        "{err}"
    );
}

const ADD_OK: &str = r#"{"inputs":[{"name":"a","shape":[2,3],"dtype":"f32","data":[[1,2,3],[4,5,6]]},{"name":"b","shape":[2,3],"dtype":"f32","data":[1,1,1,1,1,1]}]}"#;

#[test]
fn raw_inference_validates_names_shapes_and_dtypes() {
    let home = Home::new();
    let out = home.json(&["infer", "-m", "add", ADD_OK]);
    assert_eq!(out["outputs"][0]["name"], "sum");
    assert_eq!(out["outputs"][0]["shape"], serde_json::json!([2, 3]));
    assert_eq!(
        out["outputs"][0]["data"],
        serde_json::json!([2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    );

    let cases = [
        (ADD_OK.replace("\"shape\":[2,3],\"dtype\":\"f32\",\"data\":[[1,2,3],[4,5,6]]", "\"shape\":[2,4],\"dtype\":\"f32\",\"data\":[[1,2,3,9],[4,5,6,9]]"), "input \"a\" has shape [2, 4], but the model expects [batch, 3]"),
        (ADD_OK.replacen("\"f32\"", "\"i64\"", 1), "input \"a\" has dtype i64, but the model expects f32"),
        (ADD_OK.replacen("\"f32\"", "\"f64\"", 1), "is not accepted: use one of f32, f16, i64, i32, bool"),
        (ADD_OK.replace(",{\"name\":\"b\",\"shape\":[2,3],\"dtype\":\"f32\",\"data\":[1,1,1,1,1,1]}", ""), "missing input \"b\""),
        (ADD_OK.replace("\"name\":\"b\"", "\"name\":\"c\""), "unknown input \"c\": the model's inputs are a, b"),
        (ADD_OK.replace("[1,1,1,1,1,1]", "[1,1,1]"), "has 3 elements, but its shape [2, 3] needs 6"),
        (ADD_OK.replace("[1,1,1,1,1,1]", "[1,1,1,1,1,\"x\"]"), "element 5 (\"x\") is not a number"),
        (ADD_OK.replace("}]}", "}],\"outputs\":[\"total\"]}"), "unknown output \"total\": the model's outputs are sum"),
        ("{\"inputs\":[{\"name\":\"a\",\"shape\":[0,3],\"dtype\":\"f32\",\"data\":[]},{\"name\":\"b\",\"shape\":[0,3],\"dtype\":\"f32\",\"data\":[]}]}".to_string(), "is empty"),
        ("not json".to_string(), "not valid JSON"),
    ];
    for (req, needle) in cases {
        let err = home.fails(&["infer", "-m", "add", &req]);
        assert!(
            err.contains(needle),
            "request {req}\nexpected {needle:?} in:\n{err}"
        );
    }
}

#[test]
fn raw_inference_covers_every_dtype() {
    let home = Home::new();
    let req = r#"{"inputs":[
        {"name":"x_f16","shape":[2],"dtype":"f16","data":[1.5,-2]},
        {"name":"x_i64","shape":[3],"dtype":"i64","data":[1,2,9007199254740993]},
        {"name":"x_i32","shape":[2,2],"dtype":"i32","data":[[1,2],[3,-4]]},
        {"name":"x_bool","shape":[2],"dtype":"bool","data":[true,false]}]}"#;
    let out = home.json(&["infer", "-m", "dtypes", req]);
    let by = |n: &str| {
        out["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by("y_f16")["data"], serde_json::json!([3.0, -4.0]));
    assert_eq!(by("y_f16")["dtype"], "f16");
    assert_eq!(
        by("y_i64")["data"],
        serde_json::json!([2, 3, 9007199254740994i64])
    );
    assert_eq!(by("y_i32")["data"], serde_json::json!([3, 6, 9, -12]));
    assert_eq!(by("y_i32")["shape"], serde_json::json!([2, 2]));
    assert_eq!(by("y_bool")["data"], serde_json::json!([false, true]));
    // i32 overflow is refused, not wrapped.
    let err = home.fails(&[
        "infer",
        "-m",
        "dtypes",
        &req.replace("[3,-4]", "[3,4294967296]"),
    ]);
    assert!(err.contains("not a 32-bit integer"), "{err}");
}

#[test]
fn a_file_that_is_not_onnx_fails_to_load_cleanly() {
    let home = Home::new();
    let err = home.fails(&["infer", "-m", "bad", r#"{"inputs":[]}"#]);
    assert!(err.contains("ONNX Runtime cannot load model.onnx"), "{err}");
}

#[test]
fn empty_text_input_is_refused() {
    let home = Home::new();
    let err = home.fails(&["classify", "-m", "tiny-classifier", ""]);
    assert!(err.contains("input[0] is an empty string"), "{err}");
    let out = home
        .cmd(&["classify", "-m", "tiny-classifier"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("input is empty"),
        "{err}"
    );
}

#[test]
fn too_long_text_is_refused_or_truncated_by_policy() {
    let home = Home::new();
    let long = "good ".repeat(40);
    let err = home.fails(&["classify", "-m", "tiny-classifier", &long]);
    assert!(
        err.contains("input[0] has 42 tokens, more than the model's maximum of 16"),
        "{err}"
    );
    let out = home.json(&["classify", "-m", "tiny-classifier", "--truncate", &long]);
    assert_eq!(out["results"][0]["label"], "positive");
    assert_eq!(out["tokens"], 16);
}

#[test]
fn wrong_task_is_named() {
    let home = Home::new();
    let err = home.fails(&["embed", "-m", "tiny-classifier", "hello"]);
    assert!(
        err.contains("model tiny-classifier does classify, not embed"),
        "{err}"
    );
}

#[test]
fn providers_fall_back_with_reasons_and_strict_refuses() {
    let home = Home::new();
    let info = home.json(&["--providers", "tensorrt,cuda,cpu", "models", "info", "add"]);
    let p = &info["loaded"]["provider"];
    assert_eq!(p["serving"], "cpu", "{info}");
    assert_eq!(
        p["preference"],
        serde_json::json!(["tensorrt", "cuda", "cpu"])
    );
    let skipped = p["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{p}");
    assert_eq!(skipped[0]["provider"], "tensorrt");
    assert!(
        skipped[1]["reason"]
            .as_str()
            .unwrap()
            .contains("CUDAExecutionProvider"),
        "{p}"
    );

    let err = home.fails(&[
        "--providers",
        "cuda,cpu",
        "--strict",
        "infer",
        "-m",
        "add",
        ADD_OK,
    ]);
    assert!(
        err.contains("execution provider cuda is required (strict mode) but unavailable"),
        "{err}"
    );
    assert!(err.contains("onnxruntime-gpu==1.31.1"), "{err}");
    // The same preference without strict serves on the CPU.
    home.json(&["--providers", "cuda,cpu", "infer", "-m", "add", ADD_OK]);
    let err = home.fails(&["--providers", "rocm", "models", "list"]);
    assert!(err.contains("unknown execution provider \"rocm\""), "{err}");
    let rt = home.json(&["runtime", "info"]);
    assert_eq!(rt["providers"][2]["provider"], "cpu");
    assert_eq!(rt["providers"][1]["in_library"], false);
}
