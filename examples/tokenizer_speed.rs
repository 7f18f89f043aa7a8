//! Tokenization speed and load time of the compact Unigram against `tokenizers`' own:
//! `cargo run --release --example tokenizer_speed -- TOKENIZER.json TEXTS.tsv`.
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let texts: Vec<String> = std::fs::read_to_string(&args[2]).unwrap().lines().map(String::from).collect();
    let path = std::path::Path::new(&args[1]);
    let started = Instant::now();
    let reference = tokenizers::Tokenizer::from_file(path).unwrap();
    let reference_load = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let compact = docclass::text::tokenizer::load(path).unwrap();
    let compact_load = started.elapsed().as_secs_f64();
    for round in 0..2 {
        let started = Instant::now();
        let mut tokens = 0;
        for t in &texts {
            tokens += reference.encode_char_offsets(t.as_str(), false).unwrap().len();
        }
        let reference_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        for t in &texts {
            compact.encode_char_offsets(t.as_str(), false).unwrap();
        }
        let compact_s = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {tokens} tokens; tokenizers {:.0} tokens/s, compact {:.0} tokens/s; load {reference_load:.2} s vs {compact_load:.2} s",
            tokens as f64 / reference_s,
            tokens as f64 / compact_s
        );
    }
}
