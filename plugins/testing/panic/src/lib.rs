//! Test plugin: panics on every call.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

struct P;

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        panic!(
            "test-panic was asked to process {} inputs",
            request.inputs.len()
        );
    }
}

export!(P);
