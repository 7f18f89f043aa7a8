//! `docclass eval` on predictions files: the reference numbers of scikit-learn and
//! seqeval (eval/reference/expected.json, written by scripts/reference_check.sh), errors
//! for predictions that do not line up with the gold data, `--compare`, and the reports.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn write_lines(path: &Path, lines: &[Value]) {
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    fs::write(path, text.join("\n") + "\n").unwrap();
}

/// `docclass eval --predictions P --gold G --report R EXTRA...`
fn score(predictions: &Path, gold: &Path, report: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "eval",
        "--predictions",
        path_str(predictions),
        "--gold",
        path_str(gold),
        "--report",
        path_str(report),
        "--force",
    ];
    args.extend_from_slice(extra);
    docclass(&args)
}

/// The reference cases of eval/reference/expected.json whose gold file is (or is not)
/// committed under tests/, scored by docclass and compared with scikit-learn/seqeval.
fn check_reference_cases(committed_gold: bool) {
    let expected = json_file(&root().join("eval/reference/expected.json"));
    let tolerance = expected["tolerance"].as_f64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (n, case) in expected["cases"].as_array().unwrap().iter().enumerate() {
        let name = case["case"].as_str().unwrap();
        let gold_name = case["gold"].as_str().unwrap();
        if gold_name.starts_with("tests/") != committed_gold {
            continue;
        }
        let gold = root().join(gold_name);
        assert!(gold.exists(), "{name}: {} is missing; run scripts/setup.sh", gold.display());
        let report = dir.path().join(format!("case-{n}"));
        let extra: Vec<&str> = case["eval_args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let run = score(&root().join(case["predictions"].as_str().unwrap()), &gold, &report, &extra);
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        let metrics = json_file(&report.join("metrics.json"));
        for (pointer, reference) in case["values"].as_object().unwrap() {
            let ours = metrics.pointer(pointer).and_then(Value::as_f64);
            let reference = reference.as_f64().unwrap();
            assert!(
                ours.is_some_and(|v| (v - reference).abs() <= tolerance),
                "{name}: {pointer}: docclass {ours:?}, reference {reference}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no reference case checked");
}

#[test]
fn numbers_agree_with_scikit_learn_and_seqeval_on_committed_fixtures() {
    check_reference_cases(true);
}

#[test]
#[ignore = "needs the datasets: run scripts/setup.sh"]
fn numbers_agree_with_scikit_learn_and_seqeval_on_the_datasets() {
    check_reference_cases(false);
}

/// A small single-label gold file and predictions that get `wrong` of its documents wrong.
fn classification_case(dir: &Path, name: &str, wrong: &[usize]) -> (PathBuf, PathBuf) {
    let labels = ["asyl", "arbeit", "familie"];
    let gold = dir.join("gold.jsonl");
    let rows: Vec<Value> = (0..60)
        .map(|i| json!({"id": format!("d{i}"), "text": format!("Dokument {i}"), "label": labels[i % 3]}))
        .collect();
    write_lines(&gold, &rows);
    let predictions = dir.join(format!("{name}.jsonl"));
    let records: Vec<Value> = (0..60)
        .map(|i| {
            let label = if wrong.contains(&i) { labels[(i + 1) % 3] } else { labels[i % 3] };
            let others: Vec<Value> =
                labels.iter().filter(|l| **l != label).map(|l| json!({"label": l, "score": 0.1})).collect();
            let mut scores = vec![json!({"label": label, "score": 0.8})];
            scores.extend(others);
            json!({"id": format!("d{i}"), "label": label, "score": 0.8, "scores": scores, "model": name})
        })
        .collect();
    write_lines(&predictions, &records);
    (gold, predictions)
}

#[test]
fn predictions_that_do_not_line_up_are_refused_or_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (gold, predictions) = classification_case(dir.path(), "p", &[1, 2]);
    let lines: Vec<String> = fs::read_to_string(&predictions).unwrap().lines().map(String::from).collect();
    let report = dir.path().join("report");
    let variant = |name: &str, lines: &[String]| -> PathBuf {
        let path = dir.path().join(name);
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };

    let missing = variant("missing.jsonl", &lines[1..]);
    let run = score(&missing, &gold, &report, &[]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("1 of 60 gold documents have no prediction") && stderr(&run).contains("\"d0\""),
        "{}",
        stderr(&run)
    );

    let mut duplicated = lines.clone();
    duplicated.push(lines[5].clone());
    let run = score(&variant("duplicated.jsonl", &duplicated), &gold, &report, &[]);
    assert!(
        stderr(&run).contains("duplicated.jsonl:61: id \"d5\" appears a second time (first at line 6)"),
        "{}",
        stderr(&run)
    );

    let mut malformed = lines.clone();
    malformed[3] = "{\"id\": \"d3\", \"label\": ".into();
    let run = score(&variant("malformed.jsonl", &malformed), &gold, &report, &[]);
    assert!(stderr(&run).contains("malformed.jsonl:4: malformed JSON"), "{}", stderr(&run));

    let mut failed = lines.clone();
    failed[7] = json!({"id": "d7", "error": "not UTF-8 and no known encoding"}).to_string();
    let run = score(&variant("failed.jsonl", &failed), &gold, &report, &[]);
    assert!(
        stderr(&run).contains("1 gold documents failed in the predictions") && stderr(&run).contains("d7"),
        "{}",
        stderr(&run)
    );

    // Extra predictions and labels the gold data never has are counted, not hidden.
    let mut extra = lines.clone();
    extra.push(json!({"id": "elsewhere", "label": "asyl"}).to_string());
    extra[9] = json!({"id": "d9", "label": "steuer"}).to_string();
    let run = score(&variant("extra.jsonl", &extra), &gold, &report, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    let metrics = json_file(&report.join("metrics.json"));
    let warnings = metrics["warnings"].to_string();
    assert!(warnings.contains("1 predictions are for documents the gold data does not have"), "{warnings}");
    assert!(warnings.contains("\\\"steuer\\\": 1"), "{warnings}");
    assert!(stderr(&run).contains("warning"), "{}", stderr(&run));
    // d9 was wrong and has no scores: log loss and calibration need them all, so they are left out.
    let c = &metrics["classification"];
    assert!((c["accuracy"].as_f64().unwrap() - 57.0 / 60.0).abs() < 1e-12);
    assert!(c["log_loss"].is_null() && c["calibration"].is_null() && c["coverage"].is_null(), "{c}");
    assert!(warnings.contains("1 predictions lack a"), "{warnings}");
    assert!(fs::read_to_string(report.join("report.md")).unwrap().contains("**warning**"));

    // Tagging: the word counts must agree.
    let conll = dir.path().join("gold.conll");
    fs::write(&conll, "Herr B-PER\nMüller I-PER\nklagt O\n\nIn O\nKöln B-LOC\n").unwrap();
    let tags = dir.path().join("tags.jsonl");
    let id = |line: usize| format!("{}:{line}", conll.display());
    write_lines(
        &tags,
        &[json!({"id": id(1), "tags": ["B-PER", "I-PER"]}), json!({"id": id(5), "tags": ["O", "B-LOC"]})],
    );
    let run = score(&tags, &conll, &report, &[]);
    assert!(stderr(&run).contains("2 predicted tags for 3 gold words"), "{}", stderr(&run));
    write_lines(
        &tags,
        &[json!({"id": id(1), "tags": ["B-PER", "X-PER", "O"]}), json!({"id": id(5), "tags": ["O", "B-LOC"]})],
    );
    let run = score(&tags, &conll, &report, &[]);
    assert!(stderr(&run).contains("tag \"X-PER\" is not IOB2"), "{}", stderr(&run));
}

#[test]
fn entities_scored_from_character_offsets_equal_tags() {
    let dir = tempfile::tempdir().unwrap();
    let conll = dir.path().join("gold.conll");
    fs::write(&conll, "Herr B-PER\nMüller I-PER\nklagt O\nin O\nKöln B-LOC\n\n§ B-NRM\n3 I-NRM\nAsylG I-NRM\ngilt O\n")
        .unwrap();
    let id = |line: usize| format!("{}:{line}", conll.display());
    // "Herr Müller klagt in Köln": Müller is 5..11, Köln 21..25; "§ 3 AsylG gilt": 0..9.
    let by_offsets = dir.path().join("offsets.jsonl");
    write_lines(
        &by_offsets,
        &[
            json!({"id": id(1), "entities": [{"label": "PER", "start": 5, "end": 11}, {"label": "LOC", "start": 21, "end": 25}]}),
            json!({"id": id(7), "entities": [{"label": "NRM", "start": 0, "end": 9}]}),
        ],
    );
    let by_tags = dir.path().join("tags.jsonl");
    write_lines(
        &by_tags,
        &[
            json!({"id": id(1), "tags": ["O", "B-PER", "O", "O", "B-LOC"]}),
            json!({"id": id(7), "tags": ["B-NRM", "I-NRM", "I-NRM", "O"]}),
        ],
    );
    let mut results = Vec::new();
    for (name, predictions) in [("offsets", &by_offsets), ("tags", &by_tags)] {
        let report = dir.path().join(name);
        let run = score(predictions, &conll, &report, &[]);
        assert!(run.status.success(), "{}", stderr(&run));
        results.push(json_file(&report.join("metrics.json"))["entities"].clone());
    }
    assert_eq!(results[0], results[1]);
    let e = &results[0];
    // NRM and LOC exact; PER predicted as "Müller" only: a partial match.
    assert_eq!(e["strict_iob2"]["f1"].as_f64().unwrap(), 2.0 / 3.0);
    assert_eq!(e["error_counts"], json!({"exact": 2, "partial": 1, "wrong_type": 0, "missed": 0, "spurious": 0}));
    assert_eq!(e["errors"][0]["context"], "Herr Müller klagt in Köln".replace("Herr Müller", "⟦Herr Müller⟧"));

    // Compared with perfect tags: each entity type's strict F1, as each report gives it.
    let perfect = dir.path().join("perfect.jsonl");
    write_lines(
        &perfect,
        &[
            json!({"id": id(1), "tags": ["B-PER", "I-PER", "O", "O", "B-LOC"]}),
            json!({"id": id(7), "tags": ["B-NRM", "I-NRM", "I-NRM", "O"]}),
        ],
    );
    assert!(score(&perfect, &conll, &dir.path().join("perfect"), &[]).status.success());
    let per_type = compare_reports(dir.path(), "offsets", "perfect")["per_class_bootstrap"].clone();
    let summary: Vec<(String, f64, f64)> = per_type
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["metric"].as_str().unwrap().to_string(), t["a"].as_f64().unwrap(), t["b"].as_f64().unwrap()))
        .collect();
    let expected = [("LOC", 1.0, 1.0), ("NRM", 1.0, 1.0), ("PER", 0.0, 1.0)];
    assert_eq!(summary, expected.map(|(t, a, b)| (t.to_string(), a, b)));
    assert_eq!(e["strict_iob2"]["per_type"]["PER"]["f1"], 0.0);
}

/// `eval --compare` of the reports `dir/a` and `dir/b` into `dir/a-vs-b`; its comparison.json.
fn compare_reports(dir: &Path, a: &str, b: &str) -> Value {
    let out = dir.join(format!("{a}-vs-{b}"));
    let run =
        docclass(&["eval", "--compare", path_str(&dir.join(a)), path_str(&dir.join(b)), "--report", path_str(&out)]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(out.join("report.html").exists() && out.join("report.md").exists());
    json_file(&out.join("comparison.json"))
}

#[test]
fn compare_tells_a_real_difference_from_noise() {
    let dir = tempfile::tempdir().unwrap();
    let (gold, good) = classification_case(dir.path(), "good", &[3]);
    let (_, bad) = classification_case(dir.path(), "bad", &(0..30).step_by(2).collect::<Vec<_>>());
    let (_, close) = classification_case(dir.path(), "close", &[3, 40]);
    for (name, predictions) in [("good", &good), ("bad", &bad), ("close", &close)] {
        // An outside system's results name it with --system.
        let run = score(predictions, &gold, &dir.path().join(name), &["--system", name]);
        assert!(run.status.success(), "{}", stderr(&run));
    }
    let compare = |a: &str, b: &str| compare_reports(dir.path(), a, b);
    let real = compare("bad", "good");
    assert_eq!((&real["a"]["model"]["name"], &real["b"]["model"]["name"]), (&Value::from("bad"), &Value::from("good")));
    // bad gets the 15 even documents below 30 wrong, good only document 3.
    assert_eq!(real["mcnemar"]["only_a_right"], 1);
    assert_eq!(real["mcnemar"]["only_b_right"], 15);
    assert!(real["mcnemar"]["p_value"].as_f64().unwrap() < 0.001);
    let accuracy = &real["bootstrap"][0];
    assert_eq!(accuracy["metric"], "accuracy");
    assert!((accuracy["delta"].as_f64().unwrap() - 14.0 / 60.0).abs() < 1e-12);
    assert_eq!(accuracy["significant"], true);
    assert!(accuracy["low"].as_f64().unwrap() > 0.0);
    // Each label's F1 on all documents is the one each report gives for it.
    let per_class = real["per_class_bootstrap"].as_array().unwrap();
    for (side, report) in [("a", "bad"), ("b", "good")] {
        let classes = json_file(&dir.path().join(report).join("metrics.json"))["classification"]["per_class"].clone();
        assert_eq!(per_class.len(), classes.as_array().unwrap().len());
        for (interval, class) in per_class.iter().zip(classes.as_array().unwrap()) {
            assert_eq!(interval["metric"], class["label"]);
            assert!(
                (interval[side].as_f64().unwrap() - class["f1"].as_f64().unwrap()).abs() < 1e-12,
                "{interval} {class}"
            );
        }
    }
    let markdown = fs::read_to_string(dir.path().join("bad-vs-good").join("report.md")).unwrap();
    assert!(markdown.contains("## Per class"), "{markdown}");

    let noise = compare("good", "close");
    assert!(noise["mcnemar"]["p_value"].as_f64().unwrap() >= 0.99);
    assert_eq!(noise["bootstrap"][0]["significant"], false);
    let itself = compare("good", "good");
    assert_eq!(itself["mcnemar"]["p_value"], 1.0);
    assert!(itself["metrics"].as_array().unwrap().iter().all(|m| m["delta"].as_f64().is_none_or(|d| d == 0.0)));

    // Reports of different gold data are refused.
    let other_dir = tempfile::tempdir().unwrap();
    let (other_gold, other) = classification_case(other_dir.path(), "other", &[]);
    let mut rows = fs::read_to_string(&other_gold).unwrap();
    rows = rows.replacen("\"label\":\"asyl\"", "\"label\":\"arbeit\"", 1);
    fs::write(&other_gold, rows).unwrap();
    assert!(score(&other, &other_gold, &dir.path().join("other"), &[]).status.success());
    let run = docclass(&[
        "eval",
        "--compare",
        path_str(&dir.path().join("good")),
        path_str(&dir.path().join("other")),
        "--report",
        path_str(&dir.path().join("refused")),
    ]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("different gold labels"), "{}", stderr(&run));
}

#[test]
fn the_html_report_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let (gold, predictions) = classification_case(dir.path(), "p", &[1, 2, 30]);
    let report = dir.path().join("report");
    assert!(score(&predictions, &gold, &report, &[]).status.success());
    let html = fs::read_to_string(report.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "F1, confusion matrix, reliability, coverage");
    assert!(html.contains("data-report-ready"));
    let outside: Vec<&str> = html.match_indices("http").map(|(i, _)| &html[i..(i + 40).min(html.len())]).collect();
    assert!(
        outside.iter().all(|s| s.starts_with("http://www.w3.org/2000/svg")),
        "nothing from the network: {outside:?}"
    );
    let metrics = json_file(&report.join("metrics.json"));
    for field in
        ["/model/name", "/data/sha256", "/predictions/sha256", "/docclass_version", "/machine/cores", "/seconds"]
    {
        assert!(metrics.pointer(field).is_some_and(|v| !v.is_null()), "{field} in {metrics}");
    }
    assert_eq!(docclass::fsutil::read_text(&report.join("documents.jsonl.gz")).unwrap().lines().count(), 60);
}

/// Every committed metrics.json and comparison.json reads back into docclass's types
/// and writes out byte for byte, and each report folder's report.md and report.html are
/// what the renderer makes of its metrics.json: nothing is lost or renamed on the way.
#[test]
fn committed_reports_read_back_and_render_byte_for_byte() {
    use docclass::eval::metrics::{Comparison, MetricsFile, COMPARISON_SCHEMA, METRICS_SCHEMA};
    let mut files = Vec::new();
    let mut pending = vec![root().join("eval")];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == "metrics.json" || n == "comparison.json") {
                files.push(path);
            }
        }
    }
    let (mut metrics_files, mut comparisons) = (0, 0);
    for path in &files {
        let text = fs::read_to_string(path).unwrap();
        let schema = serde_json::from_str::<Value>(&text).unwrap()["schema"].as_str().map(String::from);
        let written = match schema.as_deref() {
            Some(METRICS_SCHEMA) => {
                let metrics: MetricsFile =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let dir = path.parent().unwrap();
                for (name, rendered) in [
                    ("report.md", docclass::eval::render::markdown(&metrics)),
                    ("report.html", docclass::eval::render::html(&metrics)),
                ] {
                    // After a deliberate change to the pages, this rewrites them.
                    if std::env::var_os("DOCCLASS_BLESS_REPORTS").is_some() {
                        fs::write(dir.join(name), &rendered).unwrap();
                    }
                    assert!(
                        fs::read_to_string(dir.join(name)).unwrap() == rendered,
                        "{}: {name} differs (if the page changed on purpose, DOCCLASS_BLESS_REPORTS=1 rewrites it)",
                        dir.display()
                    );
                }
                metrics_files += 1;
                serde_json::to_string_pretty(&metrics).unwrap()
            }
            Some(COMPARISON_SCHEMA) => {
                let comparison: Comparison =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                comparisons += 1;
                serde_json::to_string_pretty(&comparison).unwrap()
            }
            _ => continue,
        };
        let written = written + "\n";
        if let Some((ours, theirs)) = written.lines().zip(text.lines()).find(|(a, b)| a != b) {
            panic!("{}: not written back byte for byte: {ours:?} instead of {theirs:?}", path.display());
        }
        assert_eq!(written.len(), text.len(), "{}: not written back byte for byte", path.display());
    }
    assert!(metrics_files >= 5 && comparisons >= 5, "{metrics_files} metrics files, {comparisons} comparisons");
}

/// `--compare` of committed reports renders the committed comparison again (its
/// command line aside).
#[test]
fn committed_comparisons_are_reproduced() {
    let dir = tempfile::tempdir().unwrap();
    let baselines = root().join("eval/area-of-law/baselines");
    for system in ["char-wb-2-5-grams-linearsvc-c-1", "word-1-2-grams-lr-c-30", "word-1-2-char-wb-2-5-grams-lr-c-30"] {
        let committed = baselines.join(format!("head-vs-{system}"));
        let out = dir.path().join(system);
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_docclass"))
            .current_dir(root())
            .args(["eval", "--compare", "eval/area-of-law/ler_court_cls-test"])
            .arg(format!("eval/area-of-law/baselines/{system}-test"))
            .arg("--report")
            .arg(&out)
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", stderr(&run));
        let without_command = |text: String| -> Vec<String> {
            text.lines().filter(|l| !l.contains("command")).map(String::from).collect()
        };
        for name in ["comparison.json", "report.md"] {
            assert_eq!(
                without_command(fs::read_to_string(out.join(name)).unwrap()),
                without_command(fs::read_to_string(committed.join(name)).unwrap()),
                "{system}: {name}"
            );
        }
    }
}
