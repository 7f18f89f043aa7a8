//! Bytes of any kind through each document extractor (the first byte picks it): an
//! error message or text, never a panic, a hang or unbounded memory.
#![no_main]

use docclass::ingest::extract::{email, extract, Kind};
use libfuzzer_sys::fuzz_target;

const KINDS: [Kind; 7] = [Kind::Text, Kind::Html, Kind::Pdf, Kind::Docx, Kind::Odt, Kind::Rtf, Kind::Eml];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let kind = KINDS[pick as usize % KINDS.len()];
    let _ = extract(kind, bytes, 1 << 20);
    if kind == Kind::Eml {
        let _ = email(bytes);
    }
});
