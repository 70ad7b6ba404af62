//! Test plugin: tries to read the host file named by each input and reports what happened.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

struct P;

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        Ok(request
            .inputs
            .iter()
            .map(|path| match std::fs::read_to_string(path) {
                Ok(text) => format!("read:{text}"),
                Err(e) => format!("error:{e}"),
            })
            .collect())
    }
}

export!(P);
