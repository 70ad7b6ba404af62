//! Test plugin (hostile): turns one request into as much model time as the host allows, by
//! calling `embed` over and over with many long texts. The host must stop it at its time
//! limit and its inference quotas; it returns the first error it gets, so the test sees the
//! host's `limit-exceeded` message. The first input says how hard to push:
//! `CALLS TEXTS BYTES` (default `1000 256 2048`).
wit_bindgen::generate!({
    world: "preprocessor",
    path: "../../../wit/llmos-plugin@0.1.0",
});

use llmos::plugin::{config, inference};

struct P;

impl Guest for P {
    fn preprocess(request: Request) -> Result<Vec<String>, Error> {
        let model = config::get("model").unwrap_or_else(|| "minilm".into());
        let n: Vec<usize> = request
            .inputs
            .first()
            .map(|s| s.split_whitespace().filter_map(|w| w.parse().ok()).collect())
            .unwrap_or_default();
        let (calls, texts, bytes) = match n[..] {
            [c, t, b] => (c, t, b),
            _ => (1000, 256, 2048),
        };
        let words = "the quick brown fox jumps over a lazy dog while seven wizards quietly \
                     judge boxing matches in distant villages ";
        let text: String = words.chars().cycle().take(bytes).collect();
        for i in 0..calls {
            // Each call's texts differ a little, so nothing could be cached.
            let batch: Vec<String> = (0..texts).map(|t| format!("{i} {t} {text}")).collect();
            inference::embed(&model, &batch)?;
        }
        Ok(request.inputs)
    }
}

export!(P);
