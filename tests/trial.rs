//! Regression tests for what a user trial found: each test is one defect, on the tiny
//! encoder with a head trained on synthetic letters whose label follows from their words.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{docclass, fixture, path_str, read_records, synthetic_letter as letter};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `docclass ARGS` run from `cwd`.
fn docclass_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_docclass")).current_dir(cwd).args(args).output().expect("docclass runs")
}

/// A trained head, a folder of letters it classified (`inbox/letters.tsv`, rows with
/// ids), and their results in another folder (`out/results.jsonl`) with evidence.
struct Trial {
    dir: tempfile::TempDir,
    train: PathBuf,
    head: PathBuf,
    inbox: PathBuf,
    results: PathBuf,
}

fn trial(extra_classify: &[&str]) -> Trial {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.tsv");
    let mut rows = String::from("label\ttext\n");
    for i in 0..40 {
        let (label, text) = letter(i);
        rows += &format!("{label}\t{text}\n");
    }
    fs::write(&train, rows).unwrap();
    let head = dir.path().join("head");
    let run = common::train_classifier(dir.path(), &train, &head, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let inbox = dir.path().join("inbox/letters.tsv");
    let mut rows = String::from("id\ttext\n");
    for i in 100..112 {
        rows += &format!("doc{i}\t{}\n", letter(i).1);
    }
    fs::write(&inbox, rows).unwrap();
    let results = dir.path().join("out/results.jsonl");
    let mut args = vec!["classify", "--model", path_str(&head), path_str(&inbox), "--out", path_str(&results)];
    args.extend(["--quiet", "--explain", "5"]);
    args.extend_from_slice(extra_classify);
    let run = docclass(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    Trial { dir, train, head, inbox, results }
}

impl Trial {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A review queue of every document, read back as (header, rows).
    fn queue(&self, queue: &Path) -> (Vec<String>, Vec<Vec<String>>) {
        let run = docclass(&["review", path_str(&self.results), "--out", path_str(queue), "--budget", "12"]);
        assert!(run.status.success(), "{}", stderr(&run));
        read_csv(queue)
    }

    /// `train --review QUEUE` into `out`, run from `cwd`.
    fn retrain(&self, cwd: &Path, queue: &Path, out: &Path, extra: &[&str]) -> Output {
        let encoder = fixture("bert-base");
        let mut args = vec!["train", path_str(&self.train), "--encoder", path_str(&encoder), "--out", path_str(out)];
        args.extend(["--review", path_str(queue), "--lexical-buckets", "4096"]);
        let cache = self.path("cache");
        args.extend(["--cache", path_str(&cache)]);
        args.extend_from_slice(extra);
        docclass_in(cwd, &args)
    }
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = fs::read_to_string(path).unwrap();
    let mut reader = ::csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    (header, rows)
}

/// Writes `rows` under `header` with `gold(i)` in the gold column (UTF-8 with a BOM).
fn write_queue(path: &Path, header: &[String], rows: &[Vec<String>], gold: impl Fn(usize) -> String) {
    let mut out = Vec::from("\u{feff}".as_bytes());
    {
        let mut writer = ::csv::Writer::from_writer(&mut out);
        writer.write_record(header).unwrap();
        let column = header.iter().position(|h| h == "gold").unwrap();
        for (i, row) in rows.iter().enumerate() {
            let mut row = row.clone();
            row[column] = gold(i);
            writer.write_record(&row).unwrap();
        }
    }
    fs::write(path, out).unwrap();
}

fn head_labels(head: &Path) -> Vec<String> {
    let spec: serde_json::Value = serde_json::from_str(&fs::read_to_string(head.join("head.json")).unwrap()).unwrap();
    spec["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
}

#[test]
fn a_reviewers_typo_is_an_error_naming_the_queue_row_not_a_new_class() {
    let t = trial(&[]);
    let queue = t.path("queue.csv");
    let (header, rows) = t.queue(&queue);
    // Two rows say `Patentrecht`, a label the training data does not have.
    write_queue(&queue, &header, &rows, |i| if i < 2 { "Patentrecht".into() } else { String::new() });
    let out = t.path("second");
    let run = t.retrain(t.dir.path(), &queue, &out, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let message = stderr(&run);
    assert!(message.contains(&format!("{}:2: gold label \"Patentrecht\"", queue.display())), "{message}");
    assert!(message.contains("arbeit, steuer") && message.contains("--allow-new-labels"), "{message}");
    assert!(!out.exists(), "no head is written");

    // Asked for, a new class is trained.
    let run = t.retrain(t.dir.path(), &queue, &out, &["--allow-new-labels"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(head_labels(&out), ["Patentrecht", "arbeit", "steuer"]);

    // Case, spaces and display names match the training labels.
    let names = t.path("names.tsv");
    fs::write(&names, "label\tname\nsteuer\tSteuerrecht\narbeit\tArbeitsrecht\n").unwrap();
    let typed = ["STEUER", " arbeit ", "steuerrecht", "Arbeitsrecht"];
    write_queue(&queue, &header, &rows, |i| typed.get(i).map_or(String::new(), |g| g.to_string()));
    let third = t.path("third");
    let run = t.retrain(t.dir.path(), &queue, &third, &["--label-names", path_str(&names)]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(head_labels(&third), ["arbeit", "steuer"]);
    assert!(third.join("label-names.tsv").exists(), "the head keeps the names for the pages");
}

#[test]
fn a_queue_saved_by_excel_in_windows_1252_is_read() {
    let t = trial(&[]);
    let queue = t.path("queue.csv");
    let (header, rows) = t.queue(&queue);
    // German Excel: `;`-separated, Windows-1252, the gold label with an umlaut-free
    // name but an excerpt full of them.
    let mut bytes = Vec::new();
    let line = |cells: &[String]| {
        // Excel writes `?` for what Windows-1252 cannot hold, such as the marks ⟦ ⟧.
        let cells: Vec<String> = cells.iter().map(|c| c.replace(';', ",").replace(['⟦', '⟧'], "?")).collect();
        let text = cells.join(";") + "\r\n";
        let (encoded, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&text);
        assert!(!unmappable);
        encoded.into_owned()
    };
    bytes.extend_from_slice(&line(&header));
    let gold = header.iter().position(|h| h == "gold").unwrap();
    for (i, row) in rows.iter().enumerate() {
        let mut row = row.clone();
        row[gold] = if i == 0 { "steuer".into() } else { String::new() };
        bytes.extend_from_slice(&line(&row));
    }
    assert!(std::str::from_utf8(&bytes).is_err(), "the queue is not UTF-8");
    fs::write(&queue, bytes).unwrap();
    let run = t.retrain(t.dir.path(), &queue, &t.path("second"), &["--log-format", "json"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(common::event(&run, "review").unwrap()["labelled"], 1, "{}", stderr(&run));
}

#[test]
fn sources_are_found_from_any_working_directory() {
    let t = trial(&[]);
    let record = &read_records(&t.results)[0];
    assert_eq!(record["source"]["path"], "../inbox/letters.tsv", "relative to the results file");

    let elsewhere = tempfile::tempdir().unwrap();
    let overview = t.path("overview.html");
    let report = ["report", path_str(&t.results), "--out", path_str(&overview), "--log-format", "json"];
    let run = docclass_in(elsewhere.path(), &report);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(common::event(&run, "sources_unreadable").is_none(), "{}", stderr(&run));
    let html = fs::read_to_string(&overview).unwrap();
    assert!(!html.contains("can no longer be read") && html.contains("Finanzamt"), "the texts are found");

    // The queue names its sources from its own folder; training reads them from anywhere.
    let queue = t.path("review/queue.csv");
    fs::create_dir_all(queue.parent().unwrap()).unwrap();
    let run = docclass_in(elsewhere.path(), &["review", path_str(&t.results), "--out", path_str(&queue)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let (header, rows) = read_csv(&queue);
    assert!(rows.iter().all(|r| r[1].starts_with("../inbox/letters.tsv:")), "{rows:?}");
    write_queue(&queue, &header, &rows, |i| if i == 0 { "arbeit".into() } else { String::new() });
    let run = t.retrain(elsewhere.path(), &queue, &t.path("second"), &[]);
    assert!(run.status.success(), "{}", stderr(&run));

    // Sources that are gone are counted in a warning, not passed over in silence.
    fs::remove_file(&t.inbox).unwrap();
    let run =
        docclass(&["report", path_str(&t.results), "--out", path_str(&overview), "--force", "--log-format", "json"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let warned = common::event(&run, "sources_unreadable").expect("a warning");
    assert_eq!((warned["level"].as_str(), warned["unreadable"].as_u64()), (Some("warning"), Some(12)));
}

#[test]
fn merged_shards_from_other_folders_still_name_their_sources() {
    let t = trial(&[]);
    let mut parts = Vec::new();
    for k in 0..2 {
        let part = t.path(&format!("shard{k}/part.jsonl"));
        let shard = format!("{k}/2");
        let run = common::classify(&t.head, &t.inbox, &part, &["--shard", &shard, "--quiet"]);
        assert!(run.status.success(), "{}", stderr(&run));
        parts.push(part);
    }
    let merged = t.path("merged/all.jsonl");
    fs::create_dir_all(merged.parent().unwrap()).unwrap();
    let run = docclass(&["merge", path_str(&parts[0]), path_str(&parts[1]), "--out", path_str(&merged)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let records = read_records(&merged);
    assert_eq!(records.len(), 12);
    assert!(records.iter().all(|r| r["source"]["path"] == "../inbox/letters.tsv"), "{records:?}");
}

#[test]
fn evidence_lists_each_place_once_and_whole_words() {
    let t = trial(&[]);
    let texts: Vec<String> = (100..112).map(|i| letter(i).1).collect();
    for (record, text) in read_records(&t.results).iter().zip(&texts) {
        common::check_linear_evidence(record, text, 5);
        assert!(record["evidence"]["runner_up"]["label"].is_string(), "{record}");
    }
}

#[test]
fn explain_with_csv_output_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.txt");
    fs::write(&input, "Der Steuerbescheid des Finanzamts.").unwrap();
    let out = dir.path().join("out.csv");
    let run = docclass(&["classify", path_str(&input), "--out", path_str(&out), "--explain", "3"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("--explain writes `evidence` into JSONL records"), "{}", stderr(&run));
    assert!(!out.exists());
}

#[test]
fn a_disagreement_queue_names_both_results() {
    let t = trial(&[]);
    // A second results file that calls every letter the other way round.
    let flipped = t.path("out/flipped.jsonl");
    let lines: Vec<String> = read_records(&t.results)
        .into_iter()
        .map(|mut r| {
            let other = if r["label"] == "steuer" { "arbeit" } else { "steuer" };
            r["label"] = other.into();
            r.to_string()
        })
        .collect();
    fs::write(&flipped, lines.join("\n") + "\n").unwrap();
    let queue = t.path("disagreement.csv");
    let run = docclass(&[
        "review",
        path_str(&t.results),
        path_str(&flipped),
        "--strategy",
        "disagreement",
        "--out",
        path_str(&queue),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let (header, rows) = read_csv(&queue);
    assert_eq!(header, ["id", "source", "label_a", "score_a", "label_b", "score_b", "excerpt", "gold"]);
    assert!(rows.iter().all(|r| r[2] != r[4]), "{rows:?}");
}

#[test]
fn review_queues_go_most_uncertain_first_and_list_the_allowed_labels() {
    let t = trial(&[]);
    let queue = t.path("queue.csv");
    let (_, rows) = t.queue(&queue);
    let margins: Vec<f64> =
        rows.iter().map(|r| r[3].parse::<f64>().unwrap() - r[5].parse::<f64>().unwrap_or(0.0)).collect();
    assert!(margins.windows(2).all(|w| w[0] <= w[1] + 1e-4), "{margins:?}");
    let (header, labels) = read_csv(&t.path("queue.labels.csv"));
    assert_eq!(header, ["label"]);
    assert_eq!(labels, [["arbeit"], ["steuer"]]);
}

#[test]
fn ranking_by_entropy_or_margin_refuses_results_without_the_scores_it_needs() {
    let t = trial(&["--top-k", "1"]);
    for strategy in ["entropy", "margin"] {
        let run = docclass(&[
            "review",
            path_str(&t.results),
            "--strategy",
            strategy,
            "--out",
            path_str(&t.path(&format!("{strategy}.csv"))),
        ]);
        assert_eq!(run.status.code(), Some(1), "{strategy}");
        assert!(stderr(&run).contains(&format!("--strategy {strategy} needs")), "{}", stderr(&run));
    }
}

#[test]
fn lock_files_do_not_stay_behind() {
    let t = trial(&[]);
    let out_dir = t.results.parent().unwrap();
    let names = || -> Vec<String> {
        fs::read_dir(out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };
    assert_eq!(names(), ["results.jsonl"], "a finished run leaves only its output");
    let missing = t.path("no-such-folder");
    let failed = t.results.with_file_name("2026-12-06.jsonl");
    let run = docclass(&["classify", "--model", path_str(&t.head), path_str(&missing), "--out", path_str(&failed)]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert_eq!(names(), ["results.jsonl"], "a failed run leaves nothing either");
}

#[test]
fn summaries_say_only_what_the_run_did() {
    let t = trial(&[]);
    let single = t.path("one.txt");
    fs::write(&single, "Der Steuerbescheid des Finanzamts.").unwrap();
    let run = docclass(&[
        "classify",
        "--model",
        path_str(&t.head),
        path_str(&single),
        "--out",
        path_str(&t.path("one.jsonl")),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let message = stderr(&run);
    assert!(message.contains("1 document read: 1 classified, 0 failed;"), "{message}");
    assert!(!message.contains("state") && !message.contains("shards"), "{message}");
}

#[test]
fn help_and_flags_say_what_the_commands_do() {
    // Wrapped to the terminal's width: compared with single spaces.
    let help = |args: &[&str]| {
        String::from_utf8_lossy(&docclass(args).stdout).split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert!(help(&["--help"]).contains("4 another run holds the lock"));
    for command in ["eval", "bench"] {
        assert!(!help(&[command, "--help"]).contains("--zero-shot"), "{command} has no --zero-shot");
    }
    for command in ["report", "review"] {
        let text = help(&[command, "--help"]);
        let at = text.find("--log-format").unwrap();
        assert!(text[at..].contains("log collectors"), "{command}: {text}");
    }
    // train reads a JSONL text field by the name classify uses for it.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.jsonl");
    let lines: Vec<String> = (0..20)
        .map(|i| {
            let (label, text) = letter(i);
            serde_json::json!({"body": text, "label": label}).to_string()
        })
        .collect();
    fs::write(&data, lines.join("\n") + "\n").unwrap();
    let run = docclass(&[
        "train",
        path_str(&data),
        "--text-field",
        "body",
        "--encoder",
        path_str(&fixture("bert-base")),
        "--out",
        path_str(&dir.path().join("head")),
        "--lexical-buckets",
        "4096",
        "--cache",
        path_str(&dir.path().join("cache")),
        "--cross-validate",
        "2",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
}

#[test]
fn report_and_review_read_the_csv_that_classify_writes() {
    let t = trial(&[]);
    let csv_results = t.path("out/results.csv");
    let run = common::classify(&t.head, &t.inbox, &csv_results, &["--quiet"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let overview = t.path("overview-csv.html");
    let run = docclass(&["report", path_str(&csv_results), "--out", path_str(&overview)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let html = fs::read_to_string(&overview).unwrap();
    assert!(html.contains("<h1>Overview of 12 documents</h1>") && html.contains("Finanzamt"), "{html}");
    let queue = t.path("queue-csv.csv");
    let run = docclass(&["review", path_str(&csv_results), "--out", path_str(&queue), "--budget", "4"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(read_csv(&queue).1.len(), 4);
    // Anything else is refused with what results are read as.
    let other = t.path("other.txt");
    fs::write(&other, "label,text\nsteuer,Finanzamt\n").unwrap();
    let run = docclass(&["report", path_str(&other), "--out", path_str(&t.path("x.html"))]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("or as the CSV classify writes"), "{}", stderr(&run));
}

#[test]
fn nightly_runs_filter_folders_pass_over_missing_inputs_and_remember_failures() {
    let t = trial(&[]);
    let inbox = t.path("nightly");
    fs::create_dir_all(inbox.join("scans")).unwrap();
    fs::write(inbox.join("a.txt"), letter(1).1).unwrap();
    fs::write(inbox.join("scans/b.txt"), letter(2).1).unwrap();
    fs::write(inbox.join("broken.pdf"), "not a PDF").unwrap();
    fs::write(inbox.join("draft.tmp"), letter(3).1).unwrap();
    let state = t.path("state.jsonl");
    let run_night = |night: &str| {
        let out = t.path(&format!("results/{night}.jsonl"));
        let missing = t.path("scanner-2");
        docclass(&[
            "classify",
            "--model",
            path_str(&t.head),
            path_str(&inbox),
            path_str(&missing),
            "--allow-missing-inputs",
            "--include",
            "*.txt",
            "--include",
            "*.pdf",
            "--exclude",
            "scans/**",
            "--state",
            path_str(&state),
            "--out",
            path_str(&out),
            "--log-format",
            "json",
        ])
    };
    let first = run_night("2026-12-05");
    assert_eq!(first.status.code(), Some(3), "the broken PDF fails: {}", stderr(&first));
    assert!(common::event(&first, "input_missing").is_some(), "{}", stderr(&first));
    let records = read_records(&t.path("results/2026-12-05.jsonl"));
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "a.txt and broken.pdf only: {ids:?}");
    assert!(ids[0].ends_with("a.txt") && ids[1].ends_with("broken.pdf"), "{ids:?}");

    let second = run_night("2026-12-06");
    assert_eq!(second.status.code(), Some(0), "nothing new failed: {}", stderr(&second));
    let summary = common::event(&second, "summary").unwrap();
    assert_eq!((summary["skipped_failed_before"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(0)));
    assert!(read_records(&t.path("results/2026-12-06.jsonl")).is_empty());

    // A replaced file is tried again.
    fs::write(inbox.join("broken.pdf"), "still not a PDF, but another file").unwrap();
    let third = run_night("2026-12-07");
    assert_eq!(third.status.code(), Some(3), "{}", stderr(&third));
}
