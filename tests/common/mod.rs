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
