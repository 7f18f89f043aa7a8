//! Bytes of any kind as a predictions file for `eval --predictions`: refused with a
//! message or read, never a panic.
#![no_main]

use docclass::eval::alignment::parse_predictions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_predictions(std::path::Path::new("fuzz.jsonl"), text);
    }
});
