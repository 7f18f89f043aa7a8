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

/// `docclass train DATA` of a classifier on the tiny encoder, its features cached in
/// `dir/cache`.
pub fn train_classifier(dir: &Path, data: &Path, head: &Path, extra: &[&str]) -> Output {
    let (encoder, cache) = (fixture("bert-base"), dir.join("cache"));
    let mut args = vec!["train", path_str(data), "--encoder", path_str(&encoder), "--out", path_str(head)];
    args.extend(["--cache", path_str(&cache), "--lexical-buckets", "4096"]);
    args.extend_from_slice(extra);
    docclass(&args)
}

/// `docclass classify --model MODEL INPUT --out OUT EXTRA...`
pub fn classify(model: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["classify", "--model", path_str(model), path_str(input), "--out", path_str(out)];
    args.extend_from_slice(extra);
    docclass(&args)
}
pub mod corpus;

/// Filler words of the synthetic letters.
pub const FILLER: [&str; 6] = ["hat", "die", "Klage", "nach", "heute", "abgewiesen"];

/// Letter `i` of a synthetic inbox, labelled `steuer` (even `i`) or `arbeit` by its
/// vocabulary, with shared filler: a working classifier must learn the words.
pub fn synthetic_letter(i: usize) -> (&'static str, String) {
    const TAX: [&str; 4] = ["Finanzamt", "Einkommensteuer", "Steuerbescheid", "Umsatzsteuer"];
    const LABOUR: [&str; 4] = ["Arbeitgeber", "Kündigung", "Arbeitnehmer", "Lohn"];
    let (label, words) = if i.is_multiple_of(2) { ("steuer", TAX) } else { ("arbeit", LABOUR) };
    let text = format!(
        "Die {} {} und der {} {} wurde {}",
        FILLER[i % 6],
        words[i % 4],
        words[(i + 1) % 4],
        FILLER[(i + 2) % 6],
        FILLER[(i + 3) % 6]
    );
    (label, text)
}

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
    let number = |v: &serde_json::Value| v.as_f64().unwrap();
    let value = |c: &serde_json::Value| number(&c["value"]);
    let total = number(&evidence["bias"]) + contributions.iter().map(value).sum::<f64>() + number(&evidence["rest"]);
    let logit = number(&evidence["logit"]);
    assert!((total - logit).abs() <= 1e-4, "bias + contributions + rest = {total}, logit {logit}: {evidence}");
    let explained = number(&evidence["explained"]);
    assert!((0.0..=1.0).contains(&explained), "{evidence}");
    // Against the runner-up, the same parts add up to the difference of the logits, and
    // the contributions are ranked by it.
    let strength = |c: &serde_json::Value| c["versus"].as_f64().unwrap_or_else(|| value(c)).abs();
    if let Some(runner_up) = evidence.get("runner_up") {
        assert_ne!(runner_up["label"], evidence["label"]);
        let versus = number(&runner_up["bias_versus"])
            + contributions.iter().map(|c| number(&c["versus"])).sum::<f64>()
            + number(&evidence["rest_versus"]);
        let difference = logit - number(&runner_up["logit"]);
        assert!((versus - difference).abs() <= 1e-4, "versus {versus}, logit difference {difference}: {evidence}");
        assert!(difference >= -1e-6, "the label has the highest logit: {evidence}");
    }
    assert!(contributions.windows(2).all(|w| strength(&w[0]) >= strength(&w[1])), "{evidence}");
    let chars = text.chars().count();
    let mut seen = std::collections::HashSet::new();
    for c in contributions {
        match c["source"].as_str().unwrap() {
            "word" => {
                let word = c["text"].as_str().unwrap();
                assert!(word.chars().any(char::is_alphanumeric), "punctuation is never listed: {c}");
                assert!(seen.insert(word.to_lowercase()), "a word form is listed once: {evidence}");
                let occurrences = c["occurrences"].as_array().unwrap();
                assert!(!occurrences.is_empty(), "{c}");
                let mut spans = std::collections::HashSet::new();
                for o in occurrences {
                    let (start, end) = (o["start"].as_u64().unwrap() as usize, o["end"].as_u64().unwrap() as usize);
                    assert!(start < end && end <= chars, "{c}");
                    assert!(spans.insert((start, end)), "an occurrence is listed once: {c}");
                    let slice = char_slice(text, start, end);
                    assert_eq!(slice.to_lowercase(), word.to_lowercase(), "{c}");
                    // A whole word: no letter or digit on either side.
                    let before = start.checked_sub(1).map(|i| char_slice(text, i, start));
                    let after = (end < chars).then(|| char_slice(text, end, end + 1));
                    for side in [before, after].into_iter().flatten() {
                        assert!(!side.chars().any(char::is_alphanumeric), "{slice:?} is a fragment: {c}");
                    }
                }
            }
            "window" => {
                let (start, end) = (c["start"].as_u64().unwrap() as usize, c["end"].as_u64().unwrap() as usize);
                assert!(start < end && end <= chars, "{c}");
                let shown = c["text"].as_str().unwrap().trim_end_matches('…');
                let window = char_slice(text, start, end).split_whitespace().collect::<Vec<_>>().join(" ");
                assert!(window.starts_with(shown), "{shown:?} opens the window: {c}");
            }
            other => panic!("unknown contribution source {other}"),
        }
    }
}

/// The events of a run with `--log-format json`: one object per stderr line (lines that
/// are not JSON, such as a panic, are left out).
pub fn events(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stderr).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The first event named `name` of a run with `--log-format json`.
pub fn event(output: &Output, name: &str) -> Option<serde_json::Value> {
    events(output).into_iter().find(|e| e["event"] == name)
}
