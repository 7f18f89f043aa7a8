//! Bytes of any kind through the text decoder: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = docclass::ingest::decode_text(data);
});
