//! Test plugin: sleeps for an hour. The sleep blocks in the host (`wasi:io/poll`), where
//! epoch interruption cannot reach; the host's wall-clock deadline must cancel it.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

struct P;

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Ok(request.inputs)
    }
}

export!(P);
