//! Bytes of any kind as a JSONL, CSV or TSV input file (the first byte picks the format)
//! through the document reader: one item per line or row, never a panic.
#![no_main]

use docclass::ingest::{DocumentReader, FieldNames, ReadLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let extension = ["jsonl", "csv", "tsv"][pick as usize % 3];
    let dir = std::env::temp_dir().join(format!("docclass-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("input.{extension}"));
    std::fs::write(&path, bytes).unwrap();
    let limits = ReadLimits { document_bytes: 1 << 20, extract_time: std::time::Duration::from_secs(10) };
    for item in DocumentReader::new(Box::new(std::iter::once(Ok(path))), FieldNames::default(), limits) {
        let _ = item;
    }
});
