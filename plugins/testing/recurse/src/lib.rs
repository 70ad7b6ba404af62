//! Test plugin: recursion without end. The host must stop it at its stack limit.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});


struct P;

#[inline(never)]
#[allow(unconditional_recursion)]
fn down(n: u64, buf: [u64; 16]) -> u64 {
    let b = std::hint::black_box(buf);
    down(n + 1, b).wrapping_add(b[(n % 16) as usize])
}

impl Guest for P {
    fn preprocess(_request: Request) -> Result<Vec<String>, Error> {
        Ok(vec![down(0, [1; 16]).to_string()])
    }
}

export!(P);
