//! Test plugin: allocates 8 MiB blocks forever. The host must stop it with its memory limit.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

struct P;

impl Guest for P {
    fn preprocess(_request: Request) -> Result<Vec<String>, Error> {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut b = Vec::with_capacity(8 << 20);
            b.push(blocks.len() as u8);
            blocks.push(std::hint::black_box(b));
        }
    }
}

export!(P);
