//! Test plugin: a slow integration. Every event takes `delay_ms` (a WASI sleep), as a
//! webhook to a slow server would; a burst of events must not grow the host's backlog
//! without bound.
wit_bindgen::generate!({
    world: "integration",
    path: "../../../wit/llmos-plugin@0.1.0",
});

use llmos::plugin::config;

struct P;

impl Guest for P {
    fn on_event(_event: Event) -> Result<(), Error> {
        let ms = config::get("delay_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok(())
    }
}

export!(P);
