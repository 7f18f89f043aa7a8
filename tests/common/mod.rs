//! Helpers for tests that drive the real `docclass` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/parity").join(name)
}

pub fn docclass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_docclass")).args(args).output().expect("the docclass binary runs")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The real encoder fetched by scripts/setup.sh. Tests that need it or a dataset are
/// `#[ignore]`d, so that a plain `cargo test` says they did not run; the README's test
/// command (`-- --include-ignored`, run by CI after set-up) runs them, and there a
/// missing file fails the test.
pub fn real_model() -> PathBuf {
    let dir = root().join("models/multilingual-e5-small");
    assert!(
        dir.join("model.safetensors").exists(),
        "the real encoder is not fetched ({} is missing): run scripts/setup.sh",
        dir.display()
    );
    dir
}

/// A labelled dataset file: datasets/ (copied by setup) or ../shared/datasets.
pub fn dataset(relative: &str) -> PathBuf {
    let candidates = [root().join("datasets").join(relative), root().join("../shared/datasets").join(relative)];
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("dataset file {relative} not found: run scripts/setup.sh"))
}

/// JSON lines of a file, plain or gzip.
pub fn read_records(path: &Path) -> Vec<serde_json::Value> {
    docclass::fsutil::read_text(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

/// Characters `start..end` of `text`, as Python's `text[start:end]`.
pub fn char_slice(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

/// `docclass classify --model MODEL INPUT --out OUT EXTRA...`
pub fn classify(model: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["classify", "--model", path_str(model), path_str(input), "--out", path_str(out)];
    args.extend_from_slice(extra);
    docclass(&args)
}
pub mod corpus;

/// Checks a record's linear `evidence` against its text: it explains the record's label,
/// the bias, the contributions and the rest add up to the logit (to 1e-4), every listed
/// occurrence slices the original text to one of its term's texts, every window range
/// lies in the text, and at most `top` contributions are listed, strongest first.
pub fn check_linear_evidence(record: &serde_json::Value, text: &str, top: usize) {
    let evidence = &record["evidence"];
    assert_eq!(evidence["kind"], "linear", "{record}");
    assert_eq!(evidence["label"], record["label"]);
    let contributions = evidence["contributions"].as_array().unwrap();
    assert!(contributions.len() <= top && !contributions.is_empty(), "{evidence}");
    let value = |c: &serde_json::Value| c["value"].as_f64().unwrap();
    let total = evidence["bias"].as_f64().unwrap()
        + contributions.iter().map(value).sum::<f64>()
        + evidence["rest"].as_f64().unwrap();
    let logit = evidence["logit"].as_f64().unwrap();
    assert!((total - logit).abs() <= 1e-4, "bias + contributions + rest = {total}, logit {logit}: {evidence}");
    assert!(contributions.windows(2).all(|w| value(&w[0]).abs() >= value(&w[1]).abs()), "{evidence}");
    let chars = text.chars().count();
    for c in contributions {
        match c["source"].as_str().unwrap() {
            "terms" => {
                let texts: Vec<&str> = c["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
                let occurrences = c["occurrences"].as_array().unwrap();
                assert!(!occurrences.is_empty(), "{c}");
                for o in occurrences {
                    let (start, end) = (o["start"].as_u64().unwrap() as usize, o["end"].as_u64().unwrap() as usize);
                    assert!(start < end && end <= chars, "{c}");
                    let slice = char_slice(text, start, end);
                    assert!(texts.contains(&slice.as_str()), "{slice:?} is none of {texts:?}");
                }
            }
            "window" => {
                let (start, end) = (c["start"].as_u64().unwrap() as usize, c["end"].as_u64().unwrap() as usize);
                assert!(start < end && end <= chars, "{c}");
            }
            other => panic!("unknown contribution source {other}"),
        }
    }
}
