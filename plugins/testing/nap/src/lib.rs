//! Test plugin: a slow preprocessor that behaves. For each input `nap:MS` it sleeps MS
//! milliseconds (in the host, a WASI sleep), then returns the inputs unchanged. Tests use it
//! to keep a plugin worker busy, or to outlast a request's deadline.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

struct P;

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        for input in &request.inputs {
            if let Some(ms) = input.strip_prefix("nap:").and_then(|m| m.parse().ok()) {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
        Ok(request.inputs)
    }
}

export!(P);
