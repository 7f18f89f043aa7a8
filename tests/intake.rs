//! Unattended intake end to end, on a tiny fixture model: a run killed with SIGKILL and
//! started again gives the output of an uninterrupted run; a second run on the same
//! output is refused while the first holds the lock; shards merged give the single
//! run's output byte for byte; `--state` skips what is done; JSON logs and the summary.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `count` German-looking documents of 80 words in one JSONL file.
fn corpus(dir: &Path, count: usize) -> PathBuf {
    let words =
        ["Antrag", "Bescheid", "Kläger", "Gericht", "München", "Köln", "Asyl", "Frau", "Müller", "Straße", "Urteil"];
    let mut seed = 7u64;
    let mut lines = Vec::with_capacity(count);
    for i in 0..count {
        let text: Vec<&str> = (0..80)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                words[(seed >> 33) as usize % words.len()]
            })
            .collect();
        lines.push(serde_json::json!({"id": format!("d{i}"), "text": text.join(" ")}).to_string());
    }
    let path = dir.join("intake.jsonl");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn classify_args(input: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let model = fixture("bert-tokcls");
    let mut args = vec![
        "classify",
        "--model",
        path_str(&model),
        path_str(input),
        "--out",
        path_str(out),
        "--threads",
        "1",
        "--chunk-documents",
        "100",
    ];
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

fn run_docclass(args: &[String]) -> std::process::Output {
    docclass(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_output_and_a_second_run_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 6000);
    let reference = dir.path().join("reference.jsonl");
    let run = run_docclass(&classify_args(&input, &reference, &[]));
    assert!(run.status.success(), "{}", stderr(&run));

    let out = dir.path().join("out.jsonl");
    let args = classify_args(&input, &out, &[]);
    let checkpoint = dir.path().join(".out.jsonl.checkpoint");
    let mut kills = 0;
    // Kill twice at different points, each time once the run has checkpointed some work.
    for wanted in [1000u64, 3000] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_docclass"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            let done = fs::read_to_string(&checkpoint)
                .ok()
                .and_then(|c| serde_json::from_str::<Value>(&c).ok())
                .and_then(|c| c["next_index"].as_u64())
                .unwrap_or(0);
            if done >= wanted || started.elapsed() > Duration::from_secs(60) {
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if wanted == 1000 {
            // While the first run holds the lock, a second one is refused (exit 4).
            let second = run_docclass(&args);
            assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));
            assert!(stderr(&second).contains("locked by another docclass run"), "{}", stderr(&second));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        assert!(!out.exists(), "the output appears only when the run is complete");
    }
    assert!(kills >= 1, "the run was killed halfway at least once");
    let resumed = run_docclass(&args);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("resuming an interrupted run"), "{}", stderr(&resumed));
    assert_eq!(fs::read(&out).unwrap(), fs::read(&reference).unwrap(), "identical to the uninterrupted run");
    let leftovers: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.jsonl.") && n != ".out.jsonl.lock")
        .collect();
    assert!(leftovers.is_empty(), "the run's files are gone: {leftovers:?}");

    // Another command does not silently take over an interrupted run's work.
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_docclass")).args(&args).arg("--force").stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while !checkpoint.exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().unwrap();
    if checkpoint.exists() {
        let other = run_docclass(&classify_args(&input, &out, &["--top-k", "1", "--force"]));
        assert!(!other.status.success() && stderr(&other).contains("--restart"), "{}", stderr(&other));
        let restarted = run_docclass(&classify_args(&input, &out, &["--top-k", "1", "--force", "--restart"]));
        assert!(restarted.status.success(), "{}", stderr(&restarted));
    }
}

#[test]
fn shards_merged_equal_a_single_run() {
    let dir = tempfile::tempdir().unwrap();
    // Rows of a JSONL file and files of one document each (which shards skip unopened).
    let input = dir.path().join("inbox");
    fs::create_dir(&input).unwrap();
    fs::rename(corpus(dir.path(), 670), input.join("intake.jsonl")).unwrap();
    for i in 0..30 {
        fs::write(
            input.join(format!("letter-{i:02}.txt")),
            format!("Sehr geehrte Frau Müller, Ihr Antrag Nr. {i} ist eingegangen."),
        )
        .unwrap();
    }
    // One run over everything, and three shards, each written as `*.{extension}`.
    let single_and_shards = |extension: &str| -> (PathBuf, Vec<PathBuf>) {
        let single = dir.path().join(format!("single.{extension}"));
        assert!(run_docclass(&classify_args(&input, &single, &[])).status.success());
        let parts = (0..3)
            .map(|k| {
                let part = dir.path().join(format!("part-{k}.{extension}"));
                let run = run_docclass(&classify_args(&input, &part, &["--shard", &format!("{k}/3")]));
                assert!(run.status.success(), "{}", stderr(&run));
                part
            })
            .collect();
        (single, parts)
    };
    let merge = |out: &Path, parts: &[&PathBuf]| {
        let mut args = vec!["merge", "--out", path_str(out)];
        args.extend(parts.iter().map(|p| path_str(p)));
        docclass(&args)
    };

    let (single, parts) = single_and_shards("jsonl");
    for (k, part) in parts.iter().enumerate() {
        let records = read_records(part);
        assert!((150..320).contains(&records.len()), "shard {k}: {} of 700", records.len());
        assert!(records.iter().any(|r| r["id"].as_str().unwrap().ends_with(".txt")), "shard {k} has letters");
    }
    let merged = dir.path().join("merged.jsonl");
    let run = merge(&merged, &parts.iter().rev().collect::<Vec<_>>());
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(fs::read(&merged).unwrap(), fs::read(&single).unwrap(), "byte for byte");

    let twice = merge(&dir.path().join("bad.jsonl"), &[&parts[0], &parts[0]]);
    assert!(!twice.status.success() && stderr(&twice).contains("the same shard given twice"), "{}", stderr(&twice));
    let bad_shard = run_docclass(&classify_args(&input, &dir.path().join("x.jsonl"), &["--shard", "3/3"]));
    assert_eq!(bad_shard.status.code(), Some(2), "{}", stderr(&bad_shard));

    // CSV outputs merge the same way (entities and scores are JSON in quoted cells).
    let (single_csv, csv_parts) = single_and_shards("csv");
    let merged_csv = dir.path().join("merged.csv");
    let run = merge(&merged_csv, &csv_parts.iter().collect::<Vec<_>>());
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(fs::read(&merged_csv).unwrap(), fs::read(&single_csv).unwrap(), "byte for byte");
    let mixed = merge(&dir.path().join("mixed"), &[&parts[0], &csv_parts[1]]);
    assert!(
        !mixed.status.success() && stderr(&mixed).contains("merge joins parts of one format"),
        "{}",
        stderr(&mixed)
    );
}

#[test]
fn state_skips_unchanged_documents_and_logs_can_be_json() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    fs::create_dir(&inbox).unwrap();
    for i in 0..5 {
        fs::write(
            inbox.join(format!("brief-{i}.txt")),
            format!("Sehr geehrte Frau Müller, Ihr Antrag Nr. {i} aus Köln."),
        )
        .unwrap();
    }
    let state = dir.path().join("state.jsonl");
    let night = |n: usize| -> (std::process::Output, Vec<Value>) {
        let out = dir.path().join(format!("night-{n}.jsonl"));
        let run = run_docclass(&classify_args(&inbox, &out, &["--state", path_str(&state), "--log-format", "json"]));
        assert!(run.status.success(), "{}", stderr(&run));
        (run, read_records(&out))
    };
    let summary = |run: &std::process::Output| -> Value {
        let lines: Vec<Value> =
            stderr(run).lines().map(|l| serde_json::from_str(l).expect("every log line is JSON")).collect();
        lines.into_iter().find(|l| l["event"] == "summary").expect("a summary event")
    };
    let (first, records) = night(1);
    assert_eq!(records.len(), 5);
    assert_eq!(summary(&first)["classified"], 5);
    assert_eq!(fs::read_to_string(&state).unwrap().lines().count(), 5);

    let (second, records) = night(2);
    assert!(records.is_empty());
    let s = summary(&second);
    assert_eq!((s["classified"].as_u64(), s["skipped_unchanged"].as_u64()), (Some(0), Some(5)), "{s}");

    fs::write(inbox.join("brief-2.txt"), "Geänderter Antrag aus München.").unwrap();
    fs::write(inbox.join("brief-9.txt"), "Neuer Antrag aus Berlin.").unwrap();
    let (third, records) = night(3);
    let ids: Vec<String> =
        records.iter().map(|r| r["id"].as_str().unwrap().rsplit('/').next().unwrap().to_string()).collect();
    assert_eq!(ids, vec!["brief-2.txt", "brief-9.txt"]);
    assert_eq!(summary(&third)["skipped_unchanged"], 4);
    assert_eq!(fs::read_to_string(&state).unwrap().lines().count(), 6);
}
