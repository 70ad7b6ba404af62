//! Test plugin: returns its inputs unchanged. Used to measure per-call overhead.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

struct P;

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        Ok(request.inputs)
    }
}

export!(P);
