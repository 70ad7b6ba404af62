//! Test plugin: tries to connect to the address in each input and reports what happened.
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
            .map(|addr| match std::net::TcpStream::connect(addr.as_str()) {
                Ok(_) => "connected".to_string(),
                Err(e) => format!("error:{e}"),
            })
            .collect())
    }
}

export!(P);
