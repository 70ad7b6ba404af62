//! Test plugin: calls the host in a loop. The host must stop it with its host-call limit.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

struct P;

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        let mut seen = 0usize;
        loop {
            if llmos::plugin::config::get("anything").is_some() {
                seen += 1;
            }
            if seen == usize::MAX {
                return Ok(request.inputs);
            }
        }
    }
}

export!(P);
