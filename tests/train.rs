//! `docclass train` and `docclass eval` end to end: on a tiny random encoder with
//! synthetic data whose labels follow from the words (so a working head must learn them),
//! and the shipped default pipeline on real documents.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{char_slice, dataset, docclass, fixture, path_str, read_records, real_model, train_classifier, FILLER};
use serde_json::Value;

const COURTS: [&str; 3] = ["Landgericht", "Bundesgericht", "Amtsgericht"];
const CITIES: [&str; 4] = ["Berlin", "Köln", "München", "Kassel"];
const LAWS: [&str; 3] = ["BGB", "StGB", "SGB"];

/// Sentences such as `Das Landgericht in Köln hat nach § 12 BGB heute abgewiesen .`
/// with ORG, LOC and NRM (three words) tags.
fn synthetic_conll(sentences: usize, offset: usize) -> String {
    let mut out = String::new();
    for i in offset..offset + sentences {
        let mut words: Vec<(String, &str)> = vec![("Das".into(), "O")];
        words.push((COURTS[i % 3].into(), "B-ORG"));
        words.push(("in".into(), "O"));
        words.push((CITIES[(i / 3) % 4].into(), "B-LOC"));
        for f in 0..(i % 4) {
            words.push((FILLER[(i + f) % 6].into(), "O"));
        }
        words.push(("§".into(), "B-NRM"));
        words.push((format!("{}", 1 + i % 40), "I-NRM"));
        words.push((LAWS[i % 3].into(), "I-NRM"));
        words.push((".".into(), "O"));
        for (w, t) in words {
            out.push_str(&format!("{w} {t}\r\n"));
        }
        out.push_str("\r\n");
    }
    out
}

/// Documents labelled `steuer` or `arbeit` by their vocabulary, with shared filler.
fn synthetic_documents(n: usize, offset: usize) -> String {
    let mut out = String::from("label\ttext\n");
    for (label, text) in (offset..offset + n).map(common::synthetic_letter) {
        out.push_str(&format!("{label}\t{text}\n"));
    }
    out
}

fn train(args: &[&str]) -> std::process::Output {
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    docclass(&all)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

struct Tagged {
    _dir: tempfile::TempDir,
    train: PathBuf,
    dev: PathBuf,
    cache: PathBuf,
    head: PathBuf,
}

fn trained_tagger(seed: &str) -> Tagged {
    trained_tagger_with(seed, &[])
}

fn trained_tagger_with(seed: &str, extra: &[&str]) -> Tagged {
    let dir = tempfile::tempdir().unwrap();
    let (train_path, dev) = (dir.path().join("train.conll"), dir.path().join("dev.conll"));
    fs::write(&train_path, synthetic_conll(120, 0)).unwrap();
    fs::write(&dev, synthetic_conll(30, 500)).unwrap();
    let cache = dir.path().join("cache");
    let head = dir.path().join("tagger");
    let encoder = fixture("xlm-roberta-base");
    let run = train(
        &[
            path_str(&train_path),
            "--dev",
            path_str(&dev),
            "--encoder",
            path_str(&encoder),
            "--out",
            path_str(&head),
            "--cache",
            path_str(&cache),
            "--lexical-buckets",
            "4096",
            "--epochs",
            "6",
            "--seed",
            seed,
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    Tagged { _dir: dir, train: train_path, dev, cache, head }
}

#[test]
fn a_tagger_learns_synthetic_entities_and_classify_and_eval_use_it() {
    tagger_learns_and_is_used(trained_tagger("7"));
}

#[test]
fn a_tagger_with_a_context_layer_learns_and_scores_in_eval_what_training_selected_on() {
    tagger_learns_and_is_used(trained_tagger_with("7", &["--tagger-context", "bilstm"]));
}

#[test]
fn a_tagger_refitted_with_its_development_data_replays_the_selected_epochs_on_both() {
    let plain = trained_tagger("7");
    let refitted = trained_tagger_with("7", &["--refit-with-dev"]);
    let spec = json(&refitted.head.join("head.json"));
    let record = &spec["training"];
    assert_eq!(record["dev_score"], json(&plain.head.join("head.json"))["training"]["dev_score"], "the same selection");
    let refit = &record["refit_with_dev"];
    assert_eq!(refit["sentences"], 150, "{record}");
    let improved = record["best_epoch"].as_u64().unwrap();
    assert!(refit["epochs"].as_u64().unwrap() >= 1 && refit["epochs"].as_u64().unwrap() <= improved, "{record}");
    let log = fs::read_to_string(refitted.head.join("train-log.jsonl")).unwrap();
    let replayed = log.lines().filter(|l| l.contains("\"replay\"") && l.contains("\"epoch\"")).count();
    assert_eq!(replayed as u64, refit["epochs"].as_u64().unwrap(), "{log}");
    assert_ne!(
        fs::read(plain.head.join("head.safetensors")).unwrap(),
        fs::read(refitted.head.join("head.safetensors")).unwrap(),
        "the head written is the second fit"
    );
    // It still tags what it learned.
    let report = refitted.head.parent().unwrap().join("report");
    let run = docclass(&[
        "eval",
        "--model",
        path_str(&refitted.head),
        path_str(&refitted.dev),
        "--report",
        path_str(&report),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(json(&report.join("metrics.json"))["entities"]["strict_iob2"]["f1"].as_f64().unwrap() > 0.9);
}

#[test]
fn a_tagger_trained_with_lexical_dropout_records_it_learns_and_refuses_a_rate_of_one() {
    let plain = trained_tagger_with("7", &["--lexical-dropout", "0"]);
    let dropped = trained_tagger("7");
    let spec = json(&dropped.head.join("head.json"));
    assert_eq!(spec["training"]["lexical_dropout"], 0.4, "the default: {spec}");
    assert_eq!(json(&plain.head.join("head.json"))["training"]["lexical_dropout"], 0.0);
    assert!(spec["training"]["dev_score"]["value"].as_f64().unwrap() > 0.9, "{spec}");
    assert_ne!(
        fs::read(plain.head.join("head.safetensors")).unwrap(),
        fs::read(dropped.head.join("head.safetensors")).unwrap(),
        "dropping features changes the fit"
    );
    let out = plain.head.parent().unwrap().join("refused");
    let refused = train(&[
        path_str(&plain.train),
        "--dev",
        path_str(&plain.dev),
        "--out",
        path_str(&out),
        "--lexical-dropout",
        "1",
    ]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--lexical-dropout"), "{}", stderr(&refused));
}

fn tagger_learns_and_is_used(t: Tagged) {
    for f in ["head.json", "head.safetensors", "train-log.jsonl"] {
        assert!(t.head.join(f).exists(), "{f} written");
    }
    let log: Vec<Value> = fs::read_to_string(t.head.join("train-log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log[0]["dev_score"], "strict_iob2_f1");
    assert!(log.len() >= 2, "one line per epoch after the header");
    let spec = json(&t.head.join("head.json"));
    assert_eq!(spec["kind"], "tagger");
    assert!(spec["training"]["dev_score"]["value"].as_f64().unwrap() > 0.9, "{spec}");

    // eval at the gold words gives the development score the training selected on.
    let report = t.head.parent().unwrap().join("report");
    let run = docclass(&["eval", "--model", path_str(&t.head), path_str(&t.dev), "--report", path_str(&report)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let metrics = json(&report.join("metrics.json"));
    assert_eq!(metrics["schema"], "docclass-eval/2");
    let strict = metrics["entities"]["strict_iob2"]["f1"].as_f64().unwrap();
    assert!((strict - spec["training"]["dev_score"]["value"].as_f64().unwrap()).abs() < 0.02, "{metrics}");
    for kind in ["LOC", "NRM", "ORG"] {
        assert!(metrics["entities"]["default"]["per_type"][kind]["support"].as_u64().unwrap() > 0);
    }
    assert!(fs::read_to_string(report.join("report.md")).unwrap().contains("strict IOB2"));

    // From the cache training filled (f32), eval scores the development data exactly as
    // training did, without encoding, and says where its features came from.
    let cached_report = t.head.parent().unwrap().join("cached-report");
    let run = docclass(&[
        "eval",
        "--model",
        path_str(&t.head),
        path_str(&t.dev),
        "--report",
        path_str(&cached_report),
        "--cache",
        path_str(&t.cache),
        "--precision",
        "f32",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("30 of 30 texts from the cache") && !stderr(&run).contains("encoded"),
        "{}",
        stderr(&run)
    );
    let metrics = json(&cached_report.join("metrics.json"));
    let cached_strict = metrics["entities"]["strict_iob2"]["f1"].as_f64().unwrap();
    assert!((cached_strict - spec["training"]["dev_score"]["value"].as_f64().unwrap()).abs() < 1e-6, "{metrics}");
    assert!(metrics.get("throughput").is_none_or(Value::is_null), "{metrics}");
    assert!(metrics["warnings"].to_string().contains("feature cache"), "{metrics}");

    // classify on raw text: words are split as in the corpus, offsets index the text.
    let input = t.head.parent().unwrap().join("doc.txt");
    let text = "Das Bundesgericht in Kassel hat nach § 7 StGB heute abgewiesen.";
    fs::write(&input, text).unwrap();
    let out = t.head.parent().unwrap().join("out.jsonl");
    let run = common::classify(&t.head, &input, &out, &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    let record = &read_records(&out)[0];
    let entities = record["entities"].as_array().unwrap();
    let found: Vec<(String, String)> =
        entities.iter().map(|e| (e["label"].as_str().unwrap().into(), e["text"].as_str().unwrap().into())).collect();
    assert!(found.contains(&("NRM".into(), "§ 7 StGB".into())), "{found:?}");
    for e in entities {
        let (start, end) = (e["start"].as_u64().unwrap() as usize, e["end"].as_u64().unwrap() as usize);
        assert_eq!(char_slice(text, start, end), e["text"].as_str().unwrap());
    }
}

#[test]
fn the_same_seed_gives_the_same_head_and_features_come_from_the_cache() {
    let a = trained_tagger("3");
    let b = trained_tagger("3");
    assert_eq!(fs::read(a.head.join("head.safetensors")).unwrap(), fs::read(b.head.join("head.safetensors")).unwrap());
    assert!(json(&a.head.join("head.json")).get("context").is_none(), "the default tagger reads features linearly");
    // The context layer's batches run in shards on threads: its head depends on the
    // seed, not on how many threads.
    let bilstm = ["--tagger-context", "bilstm"];
    let two_threads = trained_tagger_with("3", &[&bilstm[..], &["--threads", "2"]].concat());
    let one_thread = trained_tagger_with("3", &[&bilstm[..], &["--threads", "1"]].concat());
    assert_eq!(
        fs::read(two_threads.head.join("head.safetensors")).unwrap(),
        fs::read(one_thread.head.join("head.safetensors")).unwrap()
    );
    assert_eq!(json(&one_thread.head.join("head.json"))["context"]["hidden"], 128);
    // A second training run with other settings reads the cached features.
    let again = train(&[
        path_str(&a.train),
        "--dev",
        path_str(&a.dev),
        "--encoder",
        path_str(&fixture("xlm-roberta-base")),
        "--out",
        path_str(&a.head),
        "--force",
        "--cache",
        path_str(&a.cache),
        "--lexical-buckets",
        "1024",
        "--max-lexical-rows",
        "40",
        "--epochs",
        "2",
        "--word-features",
        "brackets",
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stderr(&again).matches("texts from the cache").count(), 2, "{}", stderr(&again));
    // The development score training selects on is that of the head it writes, with only
    // the 40 lexical rows it keeps; the head reads the word features it was trained on.
    let spec = json(&a.head.join("head.json"));
    assert_eq!(spec["word_features"], "brackets");
    let report = a.head.parent().unwrap().join("pruned-report");
    let run = docclass(&[
        "eval",
        "--model",
        path_str(&a.head),
        path_str(&a.dev),
        "--report",
        path_str(&report),
        "--cache",
        path_str(&a.cache),
        "--precision",
        "f32",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let strict = json(&report.join("metrics.json"))["entities"]["strict_iob2"]["f1"].as_f64().unwrap();
    assert!((strict - spec["training"]["dev_score"]["value"].as_f64().unwrap()).abs() < 1e-6, "{strict} {spec}");
    // The head directory is not replaced without --force.
    let refused =
        train(&[path_str(&a.train), "--encoder", path_str(&fixture("xlm-roberta-base")), "--out", path_str(&a.head)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--force"));
}

#[test]
fn a_classifier_chooses_its_settings_by_cross_validation_and_reports_what_each_half_adds() {
    let dir = tempfile::tempdir().unwrap();
    let (train_path, test) = (dir.path().join("train.tsv"), dir.path().join("test.tsv"));
    fs::write(&train_path, synthetic_documents(80, 0)).unwrap();
    fs::write(&test, synthetic_documents(20, 1000)).unwrap();
    let head = dir.path().join("topic");
    let run = train_classifier(dir.path(), &train_path, &head, &["--cross-validate", "4", "--log-format", "json"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let reported = common::event(&run, "cross_validation").expect("the cross-validation is reported");
    assert_eq!((reported["folds"].as_u64(), reported["score"].as_str()), (Some(4), Some("macro_f1")));
    assert!(reported["lexical_only"].is_object() && reported["dense_only"].is_object(), "{reported}");
    let spec = json(&head.join("head.json"));
    assert_eq!(spec["labels"], serde_json::json!(["arbeit", "steuer"]));
    assert_eq!(spec["format"], "docclass-head/2");
    assert_eq!(spec["training"]["train_examples"], 80, "a classifier holds nothing out: CV chooses its settings");
    assert_eq!(spec["training"]["dev_examples"], 0);
    let cv = &spec["training"]["cross_validation"];
    let fold_scores: Vec<f64> = cv["fold_scores"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(fold_scores.len(), 4, "{cv}");
    assert!((cv["mean"].as_f64().unwrap() - fold_scores.iter().sum::<f64>() / 4.0).abs() < 1e-12);
    assert!(fold_scores.iter().all(|&s| s >= 0.9), "the vocabulary separates the labels in every fold: {cv}");
    // The same folds score each half alone; the vocabulary alone separates the labels.
    for part in ["lexical_only", "dense_only", "combined"] {
        assert_eq!(cv[part]["fold_scores"].as_array().unwrap().len(), 4, "{part}: {cv}");
    }
    assert!(cv["lexical_only"]["mean"].as_f64().unwrap() >= 0.9, "{cv}");
    let grid = cv["grid"].as_array().unwrap();
    let c_values = |model: &str| -> Vec<f64> {
        grid.iter().filter(|g| g["setting"]["model"] == model).map(|g| g["setting"]["c"].as_f64().unwrap()).collect()
    };
    assert_eq!(c_values("lexical"), [1.0, 3.0, 10.0, 30.0, 100.0], "the lexical C lies inside its grid: {cv}");
    // Every dense C from 0.003 up separates the labels, with less log loss the larger it
    // is: the grid grows twice past its end (0.03), and no further.
    assert_eq!(c_values("dense"), [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3], "{cv}");
    let log = fs::read_to_string(head.join("train-log.jsonl")).unwrap();
    assert_eq!(
        log.lines().count(),
        4 * 3 + 12 + 1,
        "a line per fold (the first pass and the two grown grids), per setting, and the summary: {log}"
    );
    let report = dir.path().join("report");
    let run = docclass(&["eval", "--model", path_str(&head), path_str(&test), "--report", path_str(&report)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let metrics = json(&report.join("metrics.json"));
    let c = &metrics["classification"];
    assert!(c["accuracy"].as_f64().unwrap() >= 0.9, "{metrics}");
    assert_eq!(c["per_class"].as_array().unwrap().len(), 2);
    assert_eq!(c["per_class"][0]["support"], 10);
    assert_eq!(read_records(&report.join("predictions.jsonl.gz")).len(), 20);

    // eval from the feature cache: the first run encodes the test texts into it, the
    // second reads them; both decide as a run of the model at the same precision does.
    let live = dir.path().join("live-f32");
    let run = docclass(&[
        "eval",
        "--model",
        path_str(&head),
        path_str(&test),
        "--report",
        path_str(&live),
        "--precision",
        "f32",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let live_records = read_records(&live.join("predictions.jsonl.gz"));
    // (The test file repeats some texts: each is encoded once.)
    for (attempt, expected) in [(0, "encoded 12 texts"), (1, "20 of 20 texts from the cache")] {
        let cached = dir.path().join(format!("cached-{attempt}"));
        let cache = dir.path().join("eval-cache");
        let run = docclass(&[
            "eval",
            "--model",
            path_str(&head),
            path_str(&test),
            "--report",
            path_str(&cached),
            "--precision",
            "f32",
            "--cache",
            path_str(&cache),
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        assert!(stderr(&run).contains(expected), "{}", stderr(&run));
        let records = read_records(&cached.join("predictions.jsonl.gz"));
        assert_eq!(records.len(), 20);
        for (a, b) in records.iter().zip(&live_records) {
            assert_eq!((&a["id"], &a["label"]), (&b["id"], &b["label"]));
            assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 0.01, "{a} {b}");
        }
    }

    // The first run encoded every layer of the 2-layer fixture; one of them is cut from that.
    // With JSON logs, every message (the epochs included) is one JSON object per line.
    let one_layer = dir.path().join("one-layer");
    let run = train(&[
        path_str(&train_path),
        "--encoder",
        path_str(&fixture("bert-base")),
        "--out",
        path_str(&one_layer),
        "--cache",
        path_str(&dir.path().join("cache")),
        "--layers",
        "2",
        "--log-format",
        "json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let events: Vec<Value> = stderr(&run).lines().map(|l| serde_json::from_str(l).expect("a JSON log line")).collect();
    let named = |event: &str| events.iter().filter(|e| e["event"] == event).collect::<Vec<_>>();
    assert_eq!(named("features_cached").len(), 1, "{events:?}");
    assert_eq!(named("features_cached")[0]["cached"], 80, "{events:?}");
    assert!(named("features_encoded").is_empty(), "{events:?}");
    let folds = named("fold");
    assert!(folds.iter().all(|e| e["folds"] == 5) && folds.len() % 5 == 0, "5 folds by default: {events:?}");
    assert!(named("cross_validation")[0]["dense_only"]["mean"].as_f64().is_some(), "{events:?}");
    assert_eq!(named("wrote").len(), 1, "{events:?}");
    assert_eq!(json(&one_layer.join("head.json"))["layers"], serde_json::json!([2]));

    // A failed retraining (a dev label the training data lacks) leaves the head as it was.
    let bad_dev = dir.path().join("dev.tsv");
    fs::write(&bad_dev, "label\ttext\nmiete\tDer Vermieter kündigt\n").unwrap();
    let before = fs::read(head.join("head.safetensors")).unwrap();
    let run = train(&[
        path_str(&train_path),
        "--dev",
        path_str(&bad_dev),
        "--encoder",
        path_str(&fixture("bert-base")),
        "--out",
        path_str(&head),
        "--force",
        "--cache",
        path_str(&dir.path().join("cache")),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("label \"miete\" does not occur in the training data"), "{}", stderr(&run));
    assert_eq!(fs::read(head.join("head.safetensors")).unwrap(), before);
    assert!(!dir.path().join(".topic.partial").exists(), "no half-written head is left behind");
}

/// Documents longer than a window (windows of 12 tokens): the head pools the windows'
/// mean and maximum, and `eval` (the inference pipeline) scores the development data as
/// training did, so both sides compute the same features.
#[test]
fn multi_window_documents_pool_mean_and_max_alike_in_training_and_inference() {
    let dir = tempfile::tempdir().unwrap();
    let (train_path, dev) = (dir.path().join("train.tsv"), dir.path().join("dev.tsv"));
    let long = |n: usize, offset: usize| -> String {
        let short = synthetic_documents(n, offset);
        let mut lines = short.lines();
        let mut out = format!("{}\n", lines.next().unwrap());
        for (i, line) in lines.enumerate() {
            let (label, text) = line.split_once('\t').unwrap();
            // The signal sits in one window, behind filler.
            let filler = FILLER.iter().cycle().skip(i).take(12).copied().collect::<Vec<_>>().join(" ");
            out.push_str(&format!("{label}\t{filler} {text}\n"));
        }
        out
    };
    fs::write(&train_path, long(60, 0)).unwrap();
    fs::write(&dev, long(20, 1000)).unwrap();
    let head = dir.path().join("long");
    let run = train_classifier(
        dir.path(),
        &train_path,
        &head,
        &["--dev", path_str(&dev), "--max-len", "12", "--pooling", "mean-max"],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let spec = json(&head.join("head.json"));
    assert_eq!(spec["pooling"], "mean_max");
    assert!(spec["training"]["cross_validation"]["grid"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["setting"]["pooling"] == "mean_max"));
    let trained = spec["training"]["dev_score"]["value"].as_f64().unwrap();
    let report = dir.path().join("report");
    let run = docclass(&[
        "eval",
        "--model",
        path_str(&head),
        path_str(&dev),
        "--report",
        path_str(&report),
        "--max-len",
        "12",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let records = read_records(&report.join("predictions.jsonl.gz"));
    assert!(records.iter().all(|r| r["windows"].as_u64().unwrap() > 1), "every document spans several windows");
    let evaluated = json(&report.join("metrics.json"))["classification"]["macro_f1"].as_f64().unwrap();
    assert!((evaluated - trained).abs() < 1e-9, "eval {evaluated} against training's dev score {trained}");
    assert!(evaluated >= 0.9, "{evaluated}");

    // Evidence adds up to the logit over several windows, with the maximum's dimensions
    // given to the windows that hold them; with every contribution listed, every window is.
    let texts: Vec<String> =
        fs::read_to_string(&dev).unwrap().lines().skip(1).map(|l| l.split_once('\t').unwrap().1.to_string()).collect();
    for (top, every_part_listed) in [("4", false), ("100000", true)] {
        let out = dir.path().join(format!("explained-{top}.jsonl"));
        let run = docclass(&[
            "classify",
            "--model",
            path_str(&head),
            path_str(&dev),
            "--out",
            path_str(&out),
            "--max-len",
            "12",
            "--explain",
            top,
            "--quiet",
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        let records = read_records(&out);
        assert_eq!(records.len(), texts.len());
        for (record, text) in records.iter().zip(&texts) {
            common::check_linear_evidence(record, text, top.parse().unwrap());
            let contributions = record["evidence"]["contributions"].as_array().unwrap();
            if every_part_listed {
                // Only punctuation and stop words are left in the rest.
                let windows = contributions.iter().filter(|c| c["source"] == "window").count();
                assert_eq!(windows as u64, record["windows"].as_u64().unwrap());
                assert!(contributions.iter().any(|c| c["source"] == "word"));
                assert!(!contributions
                    .iter()
                    .any(|c| ["und", "der", "die"].contains(&c["text"].as_str().unwrap_or(""))));
            }
        }
    }
}

#[test]
fn bad_training_data_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let encoder = fixture("bert-base");
    let out = dir.path().join("head");
    let run_on = |name: &str, content: &str| -> String {
        let path = dir.path().join(name);
        fs::write(&path, content).unwrap();
        let run = train(&[path_str(&path), "--encoder", path_str(&encoder), "--out", path_str(&out)]);
        assert_eq!(run.status.code(), Some(1), "{name}");
        stderr(&run)
    };
    assert!(
        run_on("tags.conll", "Das O\nGericht B-ORG\nin Q-LOC\n").contains("tags.conll:3: \"Q-LOC\" is not an IOB2 tag")
    );
    assert!(run_on("short.conll", "Das O\nGericht\n").contains("short.conll:2: expected a word and a tag"));
    assert!(run_on("empty.tsv", "").contains("empty.tsv: empty document"));
    let one = "label\ttext\na\teins\na\tzwei\nb\tdrei\n";
    assert!(run_on("one.tsv", one).contains("label \"b\" has 1 training example(s); at least 2 are needed"));
    assert!(run_on("noheader.tsv", "a\tb\n").contains("no text column \"text\""));
    assert!(!out.exists(), "nothing is written for bad data");
}

#[test]
fn a_head_refuses_an_encoder_it_was_not_trained_on() {
    let t = trained_tagger("1");
    let pipeline = t.head.parent().unwrap().join("pipeline");
    fs::create_dir(&pipeline).unwrap();
    let other = fixture("bert-base");
    fs::write(
        pipeline.join("pipeline.json"),
        serde_json::json!({"encoder": path_str(&other), "heads": [path_str(&t.head)]}).to_string(),
    )
    .unwrap();
    let input = pipeline.join("doc.txt");
    fs::write(&input, "Text").unwrap();
    let run = common::classify(&pipeline, &input, &pipeline.join("out.jsonl"), &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("another encoder"), "{}", stderr(&run));

    // Weights that are not the ones head.json was written with (a half-finished copy).
    let weights = t.head.join("head.safetensors");
    let mut bytes = fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&weights, bytes).unwrap();
    let run = common::classify(&t.head, &input, &pipeline.join("out.jsonl"), &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("the weights do not belong to head.json"), "{}", stderr(&run));
}

/// The shipped default pipeline (real encoder, committed heads) on real documents.
#[test]
#[ignore = "needs the real encoder or datasets: run scripts/setup.sh"]
fn default_pipeline_classifies_court_passages_and_finds_legal_entities() {
    real_model();
    let (passages, sentences) = (dataset("ler_court_cls/test.tsv"), dataset("ler/ler_test.conll"));
    let dir = tempfile::tempdir().unwrap();
    // Every 80th test passage (11 of 838).
    let lines: Vec<String> = fs::read_to_string(&passages).unwrap().lines().map(String::from).collect();
    let mut sample = vec![lines[0].clone()];
    sample.extend(lines[1..].iter().step_by(80).cloned());
    let input = dir.path().join("passages.tsv");
    fs::write(&input, sample.join("\n") + "\n").unwrap();
    let out = dir.path().join("out.jsonl");
    // No --model: the default pipeline models/de-legal.
    let run = docclass(&["classify", path_str(&input), "--out", path_str(&out)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let records = read_records(&out);
    assert_eq!(records[0]["model"], "de-legal@int8", "the default pipeline at the default precision");
    let correct =
        records.iter().zip(&sample[1..]).filter(|(r, line)| r["label"].as_str() == line.split('\t').next()).count();
    assert!(correct >= 10, "{correct} of {} passages classified correctly", records.len());
    // Court passages cite norms, courts and decisions: most have entities, and every
    // entity's offsets index its passage.
    let with_entities = records.iter().filter(|r| !r["entities"].as_array().unwrap().is_empty()).count();
    assert!(with_entities >= records.len() - 2, "{with_entities} of {} passages have entities", records.len());
    for (record, line) in records.iter().zip(&sample[1..]) {
        let passage = line.split_once('\t').unwrap().1;
        for e in record["entities"].as_array().unwrap() {
            let (start, end) = (e["start"].as_u64().unwrap() as usize, e["end"].as_u64().unwrap() as usize);
            assert_eq!(char_slice(passage, start, end), e["text"].as_str().unwrap());
            // The mean of marginal probabilities (once up to 1.0072 from f32 rounding).
            let score = e["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score), "{e}");
        }
    }

    // The committed head explains its labels exactly, in one window and in several.
    for max_len in ["512", "64"] {
        let explained = dir.path().join(format!("explained-{max_len}.jsonl"));
        let run = docclass(&[
            "classify",
            path_str(&input),
            "--out",
            path_str(&explained),
            "--explain",
            "8",
            "--max-len",
            max_len,
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        let records = read_records(&explained);
        for (record, line) in records.iter().zip(&sample[1..]) {
            common::check_linear_evidence(record, line.split_once('\t').unwrap().1, 8);
        }
        let windows = records.iter().map(|r| r["windows"].as_u64().unwrap()).min().unwrap();
        assert!(max_len != "64" || windows > 1, "every passage spans several windows of 64 tokens");
    }

    // The analyst's tools on real output: a review queue with the evidence marked, and
    // the overview page with the legal entities.
    let explained = dir.path().join("explained-512.jsonl");
    let queue = dir.path().join("queue.csv");
    let run = docclass(&["review", path_str(&explained), "--out", path_str(&queue), "--budget", "4"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let csv = fs::read_to_string(&queue).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.contains('⟦'), "the evidence terms are marked: {csv}");
    let overview = dir.path().join("overview.html");
    let run = docclass(&["report", path_str(&explained), "--out", path_str(&overview)]);
    assert!(run.status.success(), "{}", stderr(&run));
    let html = fs::read_to_string(&overview).unwrap();
    for section in ["Documents per label", "Most frequent NRM entities", "Least confident documents", "<mark>"] {
        assert!(html.contains(section), "{section}");
    }

    // Entities of a real test sentence, with offsets into the text.
    let text = fs::read_to_string(&sentences).unwrap();
    let first: Vec<&str> =
        text.split("\r\n\r\n").next().unwrap().lines().map(|l| l.split(' ').next().unwrap()).collect();
    let sentence = first.join(" ");
    let doc = dir.path().join("sentence.txt");
    fs::write(&doc, &sentence).unwrap();
    let out = dir.path().join("sentence.jsonl");
    let run = docclass(&["classify", path_str(&doc), "--out", path_str(&out)]);
    assert!(run.status.success(), "{}", stderr(&run));
    for e in read_records(&out)[0]["entities"].as_array().unwrap() {
        let (start, end) = (e["start"].as_u64().unwrap() as usize, e["end"].as_u64().unwrap() as usize);
        assert_eq!(char_slice(&sentence, start, end), e["text"].as_str().unwrap());
    }
}

/// Without a terminal, training says how far it is in `progress` lines (here every 0 s
/// instead of 30); a head moved away from its encoder finds it by fingerprint in
/// `$DOCCLASS_ENCODERS`, and says where it looked when it cannot; a head in a folder
/// named `head` is named after the folder above.
/// A classifier trained into `DIR/topics/head` with JSON log lines and a progress line
/// every moment: the run, the head and the encoder it read.
fn trained_into_head_folder(dir: &Path) -> (std::process::Output, PathBuf, PathBuf) {
    let train_path = dir.join("train.tsv");
    fs::write(&train_path, synthetic_documents(40, 0)).unwrap();
    let head = dir.join("topics").join("head");
    let encoder = fixture("bert-base");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_docclass"))
        .args(["train", path_str(&train_path), "--encoder", path_str(&encoder), "--out", path_str(&head)])
        .args(["--cache", path_str(&dir.join("cache")), "--lexical-buckets", "4096", "--log-format", "json"])
        .env("DOCCLASS_PROGRESS_SECONDS", "0")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    (run, head, encoder)
}

/// Without a terminal, progress goes to the log as events; a head in a folder named
/// `head` takes its parent's name, and gets a model card.
#[test]
fn progress_without_a_terminal_and_head_names() {
    let dir = tempfile::tempdir().unwrap();
    let (run, head, _) = trained_into_head_folder(dir.path());
    let events: Vec<Value> = stderr(&run).lines().map(|l| serde_json::from_str(l).expect("a JSON log line")).collect();
    assert!(events.iter().any(|e| e["event"] == "progress"), "{events:?}");
    let spec = json(&head.join("head.json"));
    assert_eq!(spec["name"], "topics", "the folder above `head`");
    assert!(head.join("README.md").exists(), "a model card");
}

/// A head moved away from its encoder does not find it by its recorded path: the error
/// says where it looked, and `$DOCCLASS_ENCODERS` finds it by fingerprint.
#[test]
fn a_moved_head_finds_its_encoder_by_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let (_, head, encoder) = trained_into_head_folder(dir.path());
    let moved = dir.path().join("elsewhere").join("deeper").join("topics");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&head, &moved).unwrap();
    let input = dir.path().join("in.txt");
    fs::write(&input, "Der Arbeitgeber sprach die Kündigung aus.").unwrap();
    let out = dir.path().join("out.jsonl");
    let classify = |encoders: Option<&Path>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_docclass"));
        command.args(["classify", "--model", path_str(&moved), path_str(&input), "--out", path_str(&out), "--force"]);
        command.env_remove("DOCCLASS_ENCODERS");
        if let Some(encoders) = encoders {
            command.env("DOCCLASS_ENCODERS", encoders);
        }
        command.output().unwrap()
    };
    let lost = classify(None);
    assert_eq!(lost.status.code(), Some(1), "{}", stderr(&lost));
    let message = stderr(&lost);
    assert!(message.contains("was not found; looked in") && message.contains("DOCCLASS_ENCODERS"), "{message}");
    let found = classify(Some(&encoder));
    assert!(found.status.success(), "{}", stderr(&found));
    assert_eq!(read_records(&out)[0]["label"], "arbeit");
}

/// Several labels per document: one sigmoid per label, settings chosen on micro-F1.
#[test]
fn a_multi_label_classifier_learns_labels_that_occur_together() {
    let dir = tempfile::tempdir().unwrap();
    let train_path = dir.path().join("multi.tsv");
    let mut rows = String::from("labels\ttext\n");
    for i in 0..72 {
        let (tax, labour) = (i % 3 != 1, i % 3 != 0);
        let mut words = vec![FILLER[i % 6]];
        let mut labels = Vec::new();
        if tax {
            words.extend(["Finanzamt", "Steuerbescheid"]);
            labels.push("steuer");
        }
        if labour {
            words.extend(["Arbeitgeber", "Kündigung"]);
            labels.push("arbeit");
        }
        words.push(FILLER[(i + 3) % 6]);
        rows.push_str(&format!("{}\t{}\n", labels.join("|"), words.join(" ")));
    }
    fs::write(&train_path, rows).unwrap();
    let head = dir.path().join("multi");
    let run = train_classifier(dir.path(), &train_path, &head, &["--label-column", "labels", "--label-separator", "|"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let spec = json(&head.join("head.json"));
    assert_eq!(spec["multi_label"], true);
    let cv = &spec["training"]["cross_validation"];
    assert_eq!(cv["score"], "micro_f1");
    assert!(cv["mean"].as_f64().unwrap() >= 0.9, "{cv}");
}

/// classify → review → people fill `gold` → train with the queue → the new head changes
/// its mind on the corrected documents.
#[test]
fn a_review_queue_feeds_training_and_the_new_head_learns_the_corrections() {
    let dir = tempfile::tempdir().unwrap();
    let train_path = dir.path().join("train.tsv");
    fs::write(&train_path, synthetic_documents(60, 0)).unwrap();
    let first = dir.path().join("first");
    let run = train_classifier(dir.path(), &train_path, &first, &[]);
    assert!(run.status.success(), "{}", stderr(&run));

    // An inbox: customs letters the head has never seen, one of them twice, and
    // ordinary letters.
    let customs: Vec<String> = (0..6)
        .map(|i| format!("Das Zollamt {} prüft die Zollanmeldung {} {}", CITIES[i % 4], FILLER[i], FILLER[(i + 2) % 6]))
        .collect();
    let ordinary: Vec<String> =
        synthetic_documents(6, 500).lines().skip(1).map(|l| l.split_once('\t').unwrap().1.to_string()).collect();
    let mut lines: Vec<String> = vec![serde_json::json!({"id": "leer", "text": "   "}).to_string()];
    for (i, text) in customs.iter().enumerate() {
        lines.push(serde_json::json!({"id": format!("zoll-{i}"), "text": text}).to_string());
    }
    lines.push(serde_json::json!({"id": "zoll-copy", "text": customs[0]}).to_string());
    for (i, text) in ordinary.iter().enumerate() {
        lines.push(serde_json::json!({"id": format!("brief-{i}"), "text": text}).to_string());
    }
    let inbox = dir.path().join("inbox.jsonl");
    fs::write(&inbox, lines.join("\n") + "\n").unwrap();
    let results = dir.path().join("results.jsonl");
    let run = docclass(&[
        "classify",
        "--model",
        path_str(&first),
        path_str(&inbox),
        "--out",
        path_str(&results),
        "--explain",
        "5",
        "--quiet",
    ]);
    assert_eq!(run.status.code(), Some(3), "one document is empty: {}", stderr(&run));
    let before: std::collections::HashMap<String, String> = read_records(&results)
        .iter()
        .filter(|r| r["error"].is_null())
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["label"].as_str().unwrap().to_string()))
        .collect();

    // The overview of the inbox: every document counted once, the failure by reason,
    // the least confident with their text, nothing fetched from elsewhere.
    let overview = dir.path().join("overview.html");
    let run = docclass(&["report", path_str(&results), "--out", path_str(&overview), "--sample", "3"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let html = fs::read_to_string(&overview).unwrap();
    assert!(html.contains("<h1>Overview of 14 documents</h1>"), "{html}");
    for (label, n) in before.values().fold(std::collections::BTreeMap::new(), |mut m, l| {
        *m.entry(l.clone()).or_insert(0) += 1;
        m
    }) {
        assert!(html.contains(&format!("<tr><td>{label}</td><td>{n}</td>")), "{label}: {n}");
    }
    assert!(html.contains("<td>empty document</td><td>1</td>"), "the failure, by reason");
    assert!(html.contains("Documents per month"));
    let sampled = html.split("Least confident documents").nth(1).unwrap();
    assert_eq!(sampled.matches("<tr><td>0.").count(), 3, "three least confident documents");
    assert!(sampled.contains("Zoll"), "their texts are read from the inbox");
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "self-contained");

    let queue = dir.path().join("queue.csv");
    let run = docclass(&["review", path_str(&results), "--out", path_str(&queue), "--budget", "9"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let csv = fs::read_to_string(&queue).unwrap();
    assert!(csv.starts_with('\u{feff}'), "a byte-order mark, so that spreadsheets read UTF-8");
    let mut reader = ::csv::Reader::from_reader(csv.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["id", "source", "label", "score", "runner_up", "runner_up_score", "excerpt", "gold"]);
    let rows: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
    assert!(!rows.is_empty() && rows.len() <= 9, "{csv}");
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert!(!(ids.contains(&"zoll-0") && ids.contains(&"zoll-copy")), "an exact duplicate is queued once: {ids:?}");
    let queued_customs: Vec<&str> = ids.iter().copied().filter(|id| id.starts_with("zoll")).collect();
    assert!(queued_customs.len() >= 3, "the unfamiliar letters are the uncertain ones: {ids:?}");

    // People file every customs letter under the label the head did not give it, and
    // leave the other rows empty.
    let corrected = |id: &str| if before[id] == "steuer" { "arbeit" } else { "steuer" };
    let mut filled = Vec::from("\u{feff}".as_bytes());
    {
        let mut writer = ::csv::Writer::from_writer(&mut filled);
        writer.write_record(&header).unwrap();
        for row in &rows {
            let mut row = row.clone();
            if row[0].starts_with("zoll") {
                row[7] = corrected(&row[0]).to_string();
            }
            writer.write_record(&row).unwrap();
        }
    }
    fs::write(&queue, filled).unwrap();

    let second = dir.path().join("second");
    let run =
        train_classifier(dir.path(), &train_path, &second, &["--review", path_str(&queue), "--log-format", "json"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let joined = common::event(&run, "review").expect("the queue's rows are counted");
    let skipped = rows.len() - queued_customs.len();
    assert_eq!(
        (joined["labelled"].as_u64(), joined["unlabelled"].as_u64()),
        (Some(queued_customs.len() as u64), Some(skipped as u64))
    );
    let after_path = dir.path().join("after.jsonl");
    let run = docclass(&[
        "classify",
        "--model",
        path_str(&second),
        path_str(&inbox),
        "--out",
        path_str(&after_path),
        "--quiet",
    ]);
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    for record in read_records(&after_path) {
        let id = record["id"].as_str().unwrap();
        if queued_customs.contains(&id) {
            assert_eq!(record["label"], corrected(id), "{id}: the new head learnt the correction");
        }
    }

    // The two heads disagree on the corrected letters: a disagreement queue holds those.
    let changed: Vec<String> = read_records(&after_path)
        .iter()
        .filter(|r| r["error"].is_null() && r["label"].as_str() != Some(before[r["id"].as_str().unwrap()].as_str()))
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let disagreements = dir.path().join("disagreements.csv");
    let run = docclass(&[
        "review",
        path_str(&results),
        path_str(&after_path),
        "--strategy",
        "disagreement",
        "--out",
        path_str(&disagreements),
        "--budget",
        "50",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = fs::read_to_string(&disagreements).unwrap();
    let mut reader = ::csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let mut queued: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_string()).collect();
    queued.sort();
    let mut expected = changed.clone();
    expected.sort();
    // An exact duplicate of a queued letter is left out.
    if expected.iter().any(|e| e == "zoll-0") {
        expected.retain(|id| id != "zoll-copy");
    }
    assert_eq!(queued, expected);
}
