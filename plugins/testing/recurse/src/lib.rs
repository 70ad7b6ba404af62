//! Test plugin: recursion without end. The host must stop it at its stack limit.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

struct P;

/// Scalars only, so frames live on the wasm stack (not Rust's shadow stack in linear memory)
/// and the host's stack limit is what stops it.
#[inline(never)]
#[allow(unconditional_recursion)]
fn down(n: u64) -> u64 {
    std::hint::black_box(down(std::hint::black_box(n + 1))) ^ n
}

impl Guest for P {
    fn preprocess(_request: Request) -> Result<Vec<String>, Error> {
        Ok(vec![down(0).to_string()])
    }
}

export!(P);
