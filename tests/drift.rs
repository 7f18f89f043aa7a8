//! `docclass drift` on the tiny encoder: a head trained on synthetic letters keeps its
//! training profile; an intake like the training data raises no alert, a shifted one
//! does, and the nightly script turns that into exit status 5.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{docclass, path_str, read_records, synthetic_letter as letter};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A head trained on 60 letters, half of each label.
fn trained_head(dir: &Path) -> PathBuf {
    let train = dir.join("train.tsv");
    let mut rows = String::from("label\ttext\n");
    for i in 0..60 {
        let (label, text) = letter(i);
        rows += &format!("{label}\t{text}\n");
    }
    fs::write(&train, rows).unwrap();
    let head = dir.join("head");
    let run = common::train_classifier(dir, &train, &head, &["--cross-validate", "3"]);
    assert!(run.status.success(), "{}", stderr(&run));
    head
}

/// An intake of JSON lines with a `received` date: `letters` gives each letter's number.
fn intake(path: &Path, letters: impl Iterator<Item = usize>, date: impl Fn(usize) -> String) {
    let mut lines = String::new();
    for (n, i) in letters.enumerate() {
        let line = serde_json::json!({"id": format!("d{n}"), "text": letter(i).1, "received": date(n)});
        lines += &format!("{line}\n");
    }
    fs::write(path, lines).unwrap();
}

fn classify(head: &Path, input: &Path, out: &Path) {
    let run = common::classify(head, input, out, &["--quiet", "--date-field", "received"]);
    assert!(run.status.success(), "{}", stderr(&run));
}

fn drift(head: &Path, results: &Path, out: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let mut args = vec!["drift", path_str(results), "--model", path_str(head), "--out", path_str(out), "--force"];
    args.extend(["--date-field", "received"]);
    args.extend_from_slice(extra);
    let run = docclass(&args);
    let report = fs::read_to_string(out.join("drift.json")).map(|s| serde_json::from_str(&s).unwrap());
    (run, report.unwrap_or(serde_json::Value::Null))
}

#[test]
fn training_keeps_a_profile_and_records_keep_their_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let head = trained_head(dir.path());
    let spec: serde_json::Value = serde_json::from_str(&fs::read_to_string(head.join("head.json")).unwrap()).unwrap();
    let profile = &spec["profile"];
    assert_eq!(profile["examples"], 60);
    assert_eq!(profile["labels"], serde_json::json!({"arbeit": 30, "steuer": 30}));
    let oof = &profile["out_of_fold"];
    assert_eq!(oof["folds"], 3);
    let documents: u64 = oof["documents"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(documents, 60);
    assert!(oof["accuracy"].as_f64().unwrap() > 0.9, "{oof}");
    let tokens: u64 = profile["tokens"]["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(tokens, 60);
    assert_eq!(profile["unknown_token_share"], 0.0);

    let input = dir.path().join("intake.jsonl");
    intake(&input, 100..104, |n| format!("2026-11-0{}", n + 1));
    let results = dir.path().join("results.jsonl");
    classify(&head, &input, &results);
    let records = read_records(&results);
    assert_eq!(records[0]["fields"], serde_json::json!({"received": "2026-11-01"}));
    assert!(records[0]["tokens"].as_u64().unwrap() > 5, "{}", records[0]);
    assert_eq!(records[0]["unknown_tokens"], 0);

    // The overview counts months by the kept date too.
    let overview = dir.path().join("overview.html");
    let run = docclass(&["report", path_str(&results), "--out", path_str(&overview), "--date-field", "received"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let html = fs::read_to_string(&overview).unwrap();
    assert!(html.contains("month (field received)") && html.contains("2026-11 to 2026-11"), "{html}");
}

#[test]
fn an_intake_like_the_training_data_passes_and_a_shifted_one_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let head = trained_head(dir.path());
    let november = |n: usize| format!("2026-11-{:02}", n % 28 + 1);

    // The same mix as in training: no alert, and the estimate agrees with the truth.
    let (input, results, out) =
        (dir.path().join("same.jsonl"), dir.path().join("same-results.jsonl"), dir.path().join("same-drift"));
    intake(&input, 200..320, november);
    classify(&head, &input, &results);
    let (run, report) = drift(&head, &results, &out, &["--fail-on-drift"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(report["drifted"], serde_json::json!([]), "{report:#}");
    let periods = report["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 1);
    assert_eq!(periods[0]["period"], "2026-11");
    assert_eq!(periods[0]["documents"], 120);
    let right = read_records(&results).iter().enumerate().filter(|(n, r)| r["label"] == letter(200 + n).0).count();
    let estimate = &periods[0]["estimate"];
    let accuracy = right as f64 / 120.0;
    assert!((estimate["accuracy"].as_f64().unwrap() - accuracy).abs() < 0.05, "{estimate} vs {accuracy}");
    assert!(report["reference"]["description"].as_str().unwrap().contains("training profile"));
    let html = fs::read_to_string(out.join("drift.html")).unwrap();
    assert!(html.contains("No period crossed a threshold") && html.contains("<svg"), "{html}");

    // Tax letters only, by day: the label shares moved; exit 5 with --fail-on-drift.
    let (input, results, out) =
        (dir.path().join("tax.jsonl"), dir.path().join("tax-results.jsonl"), dir.path().join("tax-drift"));
    intake(&input, (0..120).map(|i| 2 * i), |n| if n < 60 { "2026-12-01".into() } else { "02.12.2026".into() });
    classify(&head, &input, &results);
    let (run, report) = drift(&head, &results, &out, &["--fail-on-drift", "--period", "day"]);
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));
    assert_eq!(report["drifted"], serde_json::json!(["2026-12-01", "2026-12-02"]), "{report:#}");
    let alert = &report["periods"][0]["alerts"][0];
    assert_eq!(alert["check"], "label_share");
    assert!(stderr(&run).contains("label shares moved"), "{}", stderr(&run));
    // Without --fail-on-drift the report is the same and the run succeeds.
    let (run, _) = drift(&head, &results, &out, &["--period", "day"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    // Periods below min_documents raise nothing.
    let (run, report) = drift(&head, &results, &out, &["--fail-on-drift", "--threshold", "min_documents=61"]);
    assert_eq!(run.status.code(), Some(5), "one month of 120 documents: {}", stderr(&run));
    assert_eq!(report["drifted"], serde_json::json!(["2026-12"]));
    let (run, _) =
        drift(&head, &results, &out, &["--fail-on-drift", "--period", "day", "--threshold", "min_documents=61"]);
    assert_eq!(run.status.code(), Some(0), "two days of 60 documents: {}", stderr(&run));

    // The tax letters against the November intake as the reference: drift again.
    let (run, report) = drift(
        &head,
        &results,
        &out,
        &["--fail-on-drift", "--reference", path_str(&dir.path().join("same-results.jsonl"))],
    );
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));
    assert!(report["reference"]["description"].as_str().unwrap().contains("same-results.jsonl"), "{report:#}");
}

#[test]
fn broken_text_raises_the_unknown_token_alert() {
    let dir = tempfile::tempdir().unwrap();
    let head = trained_head(dir.path());
    let input = dir.path().join("scans.jsonl");
    let mut lines = String::new();
    for i in 0..60 {
        // Characters the vocabulary lacks, as a broken scanner or encoding gives them.
        let text = format!("{} \u{e000}\u{e001} \u{2603}\u{2604} \u{e002}", letter(i).1);
        lines += &format!("{}\n", serde_json::json!({"text": text, "received": "2026-12-03"}));
    }
    fs::write(&input, lines).unwrap();
    let results = dir.path().join("scans-results.jsonl");
    classify(&head, &input, &results);
    let (run, report) = drift(&head, &results, &dir.path().join("drift"), &["--fail-on-drift"]);
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));
    let checks: Vec<&str> =
        report["periods"][0]["alerts"].as_array().unwrap().iter().map(|a| a["check"].as_str().unwrap()).collect();
    assert!(checks.contains(&"unknown_share"), "{report:#}");
}

#[test]
fn heads_without_a_profile_and_bad_thresholds_are_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let head = trained_head(dir.path());
    let input = dir.path().join("intake.jsonl");
    intake(&input, 0..60, |_| "2026-12-04".into());
    let results = dir.path().join("results.jsonl");
    classify(&head, &input, &results);

    let run = docclass(&[
        "drift",
        path_str(&results),
        "--model",
        path_str(&head),
        "--out",
        path_str(&dir.path().join("x")),
        "--threshold",
        "labels=3",
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("no threshold \"labels\"") && stderr(&run).contains("label_share"),
        "{}",
        stderr(&run)
    );

    // A head written before profiles were kept: drift runs and says what it lacks.
    let spec_path = head.join("head.json");
    let mut spec: serde_json::Value = serde_json::from_str(&fs::read_to_string(&spec_path).unwrap()).unwrap();
    spec.as_object_mut().unwrap().remove("profile");
    fs::write(&spec_path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    let (run, report) = drift(&head, &results, &dir.path().join("old"), &["--fail-on-drift"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(stderr(&run).contains("trained before heads kept a training profile"), "{}", stderr(&run));
    assert!(report["estimate_method"].as_str().unwrap().contains("taken as calibrated"), "{report:#}");
    assert!(report["periods"][0]["estimate"]["accuracy"].as_f64().is_some());
}

/// The nightly script a scheduler runs: exit 0 on a normal day, 5 with a marker file on
/// a day whose intake drifted.
#[test]
fn the_nightly_script_exits_5_on_drift() {
    let dir = tempfile::tempdir().unwrap();
    let head = trained_head(dir.path());
    let night = |name: &str, letters: Vec<usize>| -> (Option<i32>, PathBuf, String) {
        let inbox = dir.path().join(format!("inbox-{name}"));
        fs::create_dir_all(&inbox).unwrap();
        intake(&inbox.join("intake.jsonl"), letters.into_iter(), |_| "2026-12-05".into());
        let out = dir.path().join(format!("night-{name}"));
        let run = Command::new("bash")
            .arg(common::root().join("scripts/nightly_drift.sh"))
            .args([&inbox, &out])
            .env("DOCCLASS", env!("CARGO_BIN_EXE_docclass"))
            .env("DOCCLASS_MODEL", &head)
            .env("DATE_FIELD", "received")
            .output()
            .unwrap();
        (run.status.code(), out, stderr(&run) + &String::from_utf8_lossy(&run.stdout))
    };
    let (code, out, log) = night("calm", (300..400).collect());
    assert_eq!(code, Some(0), "{log}");
    assert!(!out.join("DRIFT").exists() && out.join("drift/drift.html").exists());
    let (code, out, log) = night("shifted", (0..100).map(|i| 2 * i + 1).collect());
    assert_eq!(code, Some(5), "{log}");
    assert!(log.contains("nightly: DRIFT") && out.join("DRIFT").exists(), "{log}");
}

/// Every threshold is named in `--help`, where a scheduler's owner looks first.
#[test]
fn the_help_names_every_threshold() {
    let help = String::from_utf8(docclass(&["drift", "--help"]).stdout).unwrap();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for (name, _, _) in docclass::drift::THRESHOLDS {
        assert!(help.contains(name), "{name} is not in the help: {help}");
    }
}
