//! Test plugin (hostile): fills its kv namespace with large values until the host refuses.
//! It returns the first error it gets, so the test sees the host's `limit-exceeded` message.
//! The first input is `write PREFIX COUNT BYTES` or `delete PREFIX COUNT`.
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

use llmos::plugin::kv;

struct P;

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        let first = request.inputs.first().cloned().unwrap_or_default();
        let w: Vec<&str> = first.split_whitespace().collect();
        let num = |i: usize| w.get(i).and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
        let (op, prefix) = (w.first().copied().unwrap_or(""), w.get(1).copied().unwrap_or("k"));
        let value = vec![0x5a_u8; num(3)];
        for i in 0..num(2) {
            let key = format!("{prefix}-{i}");
            match op {
                "write" => kv::set(&key, &value)?,
                "delete" => kv::delete(&key)?,
                _ => return Err(Error::InvalidInput(format!("unknown op {op:?}"))),
            }
        }
        Ok(request.inputs)
    }
}

export!(P);
