#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmos::fuzzing::openai_request(data));
