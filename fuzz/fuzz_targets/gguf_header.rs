#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmos::fuzzing::gguf_header(data));
