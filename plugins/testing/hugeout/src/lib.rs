//! Test plugin: returns an output of 4 MiB, more than the default output limit.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

struct P;

impl Guest for P {
    fn preprocess(_request: Request) -> Result<Vec<String>, Error> {
        Ok(vec!["x".repeat(4 << 20)])
    }
}

export!(P);
