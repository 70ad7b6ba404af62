#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| llmos::fuzzing::kserve_json(data));
