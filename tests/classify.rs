//! End-to-end tests of `docclass classify`, driving the real binary on small inputs.

mod common;

use std::fs;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Long German text with umlauts, ß, §, non-breaking spaces and emoji: many windows of
/// the tiny fixture models (64 positions).
fn tricky_text() -> String {
    let mut text = String::new();
    for i in 0..12 {
        text.push_str(&format!(
            "Frau Müller aus München 😀 klagte gemäß §\u{a0}3 AsylG gegen die Straße Nr.\u{a0}{i}; \
             der Kläger Herr Schmidt wohnt in Köln und Düsseldorf – Grüße! 🇩🇪 "
        ));
    }
    text
}

fn write_jsonl(dir: &std::path::Path, texts: &[String]) -> std::path::PathBuf {
    let path = dir.join("docs.jsonl");
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("doc-{i}"), "text": t}).to_string())
        .collect();
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn entity_offsets_index_the_original_text_across_windows() {
    let dir = tempfile::tempdir().unwrap();
    let text = tricky_text();
    let input = write_jsonl(dir.path(), &[text.clone(), "Kurz: Herr Müller in Köln.".into()]);
    for model in ["xlm-roberta-tokcls", "bert-tokcls"] {
        for strategy in ["first", "average", "max", "simple"] {
            let out = dir.path().join(format!("{model}-{strategy}.jsonl"));
            let run =
                classify(&fixture(model), &input, &out, &["--aggregation", strategy, "--stride", "16", "--quiet"]);
            assert!(run.status.success(), "{model} {strategy}: {}", String::from_utf8_lossy(&run.stderr));
            let records = read_records(&out);
            assert!(records[0]["windows"].as_u64().unwrap() > 3, "the long text must need several windows");
            let entities = records[0]["entities"].as_array().unwrap();
            assert!(!entities.is_empty(), "{model} {strategy}: the random head tags something");
            let text_chars = text.chars().count() as u64;
            assert!(
                entities.iter().any(|e| e["start"].as_u64().unwrap() > text_chars / 2),
                "{model} {strategy}: entities from later windows"
            );
            let mut previous_end = 0;
            for e in entities {
                let (start, end) = (e["start"].as_u64().unwrap() as usize, e["end"].as_u64().unwrap() as usize);
                assert!(
                    start < end && start >= previous_end,
                    "{model} {strategy}: spans in order, not overlapping: {e}"
                );
                assert_eq!(char_slice(&text, start, end), e["text"].as_str().unwrap(), "{model} {strategy}: {e}");
                assert_eq!(e["text"].as_str().unwrap().trim(), e["text"].as_str().unwrap());
                previous_end = end;
            }
        }
    }
}

/// At both precisions; at int8 also with every int8 kernel this CPU has (the tiny model's
/// 32 inputs are half a quantization block: the padded path).
#[test]
fn output_is_identical_for_any_thread_count_and_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = (0..9).map(|i| tricky_text().chars().take((i + 1) * 90).collect()).collect();
    let input = write_jsonl(dir.path(), &texts);
    let run = |precision: &str, kernel: &str, threads: &str, batch: &str| {
        let out = dir.path().join(format!("out-{precision}-{kernel}-{threads}-{batch}.jsonl"));
        let status = Command::new(env!("CARGO_BIN_EXE_docclass"))
            .args(["classify", "--model", path_str(&fixture("xlm-roberta-tokcls")), path_str(&input)])
            .args(["--out", path_str(&out), "--precision", precision, "--threads", threads])
            .args(["--batch-tokens", batch, "--stride", "8", "--quiet"])
            .env(docclass::model::int8::KERNEL_ENV, kernel)
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        fs::read(out).unwrap()
    };
    let mut outputs = Vec::new();
    for precision in ["f32", "int8"] {
        let reference = run(precision, "", "1", "100000");
        assert_eq!(reference, run(precision, "", "2", "100000"), "{precision}");
        assert_eq!(reference, run(precision, "", "2", "64"), "{precision}");
        assert_eq!(reference, run(precision, "", "1", "150"), "{precision}");
        if precision == "int8" {
            // The slower kernels (each where the CPU has it) give the same bits.
            assert_eq!(reference, run(precision, "avx512-vnni", "2", "64"), "int8 with the VNNI kernel");
            assert_eq!(reference, run(precision, "avx2", "2", "64"), "int8 with the AVX2 kernel");
            assert_eq!(reference, run(precision, "portable", "2", "64"), "int8 with the portable kernel");
        }
        outputs.push(reference);
    }
    // int8 runs other arithmetic, not only under another name: with the names taken out,
    // the numbers differ.
    let without_model = |bytes: &[u8]| -> Vec<serde_json::Value> {
        let text = String::from_utf8_lossy(bytes);
        text.lines()
            .map(|l| {
                let mut record: serde_json::Value = serde_json::from_str(l).unwrap();
                record.as_object_mut().unwrap().remove("model");
                record
            })
            .collect()
    };
    assert!(String::from_utf8_lossy(&outputs[1]).contains("\"model\":\"xlm-roberta-tokcls@int8\""));
    assert_ne!(without_model(&outputs[0]), without_model(&outputs[1]), "int8 gives other numbers than f32");
}

#[test]
fn bad_inputs_get_error_records_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    fs::create_dir(&inputs).unwrap();
    fs::write(inputs.join("a_good.txt"), "Der Kläger wohnt in Köln.").unwrap();
    fs::write(inputs.join("b_empty.txt"), "").unwrap();
    fs::write(inputs.join("c_binary.txt"), b"\x00\x01\x02PK\x03\x04 binary").unwrap();
    fs::write(inputs.join("d_latin1.txt"), b"Die Kl\xe4gerin wohnt in der Stra\xdfe am Flu\xdf \xa7 3.").unwrap();
    fs::write(
        inputs.join("e_rows.jsonl"),
        "{\"id\": 7, \"text\": \"Gemäß § 3 AsylG.\"}\n{not json}\n\n{\"text\": 5}\n{\"text\": \"Frau Müller.\"}\n",
    )
    .unwrap();
    fs::write(
        inputs.join("f_table.csv"),
        "\u{feff}id,text\nr1,\"Das Gericht, in Leipzig.\"\nr2,zu,viele,felder\nr3,Straße\n",
    )
    .unwrap();
    fs::write(inputs.join("g_scan.pdf"), b"%PDF-1.4").unwrap();
    fs::write(inputs.join("h_photo.png"), b"\x89PNG\r\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let run = classify(&fixture("bert-seqcls"), &inputs, &out, &["--quiet"]);
    assert_eq!(
        run.status.code(),
        Some(3),
        "some documents failed: exit 3; stderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let records = read_records(&out);
    let summary: Vec<(String, bool)> = records
        .iter()
        .map(|r| (r["id"].as_str().unwrap().rsplit('/').next().unwrap().to_string(), r.get("error").is_some()))
        .collect();
    let expected = [
        ("a_good.txt", false),
        ("b_empty.txt", true),
        ("c_binary.txt", true),
        ("d_latin1.txt", false),
        ("7", false),
        ("e_rows.jsonl:2", true),
        ("e_rows.jsonl:4", true),
        ("e_rows.jsonl:5", false),
        ("r1", false),
        ("f_table.csv:3", true),
        ("r3", false),
        ("g_scan.pdf", true),
        ("h_photo.png", true),
    ];
    let expected: Vec<(String, bool)> = expected.iter().map(|(id, e)| (id.to_string(), *e)).collect();
    assert_eq!(summary, expected);
    let by_id = |suffix: &str| records.iter().find(|r| r["id"].as_str().unwrap().ends_with(suffix)).unwrap();
    assert_eq!(by_id("d_latin1.txt")["encoding"], "windows-1252");
    assert!(by_id("b_empty.txt")["error"].as_str().unwrap().contains("empty"));
    assert!(by_id("c_binary.txt")["error"].as_str().unwrap().contains("binary"));
    assert!(by_id("e_rows.jsonl:2")["error"].as_str().unwrap().contains("malformed JSON"));
    assert_eq!(by_id("e_rows.jsonl:2")["source"]["line"], 2);
    assert!(by_id("f_table.csv:3")["error"].as_str().unwrap().contains("4 fields"));
    assert!(by_id("g_scan.pdf")["error"].as_str().unwrap().contains("not a readable PDF"));
    assert!(by_id("h_photo.png")["error"].as_str().unwrap().contains("unsupported"));
    for r in records.iter().filter(|r| r.get("error").is_none()) {
        let scores: f32 = r["scores"].as_array().unwrap().iter().map(|s| s["score"].as_f64().unwrap() as f32).sum();
        assert!((scores - 1.0).abs() < 1e-4, "softmax scores sum to 1: {r}");
        assert_eq!(r["model"], "bert-seqcls@int8");
    }
}

#[test]
fn existing_output_is_kept_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("doc.txt");
    fs::write(&input, "Der Kläger wohnt in Köln.").unwrap();
    let out = dir.path().join("out.jsonl");
    fs::write(&out, "earlier results\n").unwrap();
    let model = fixture("bert-seqcls");
    let args = ["classify", "--model", path_str(&model), path_str(&input), "--out", path_str(&out), "--quiet"];
    let run = docclass(&args);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("--force"));
    assert_eq!(fs::read_to_string(&out).unwrap(), "earlier results\n");
    let forced: Vec<&str> = args.iter().copied().chain(["--force"]).collect();
    assert!(docclass(&forced).status.success());
    assert_eq!(read_records(&out).len(), 1);
}

#[test]
fn stdout_and_csv_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("doc.txt");
    fs::write(&input, "Der Kläger wohnt in Köln.").unwrap();
    let run = docclass(&[
        "classify",
        "--model",
        path_str(&fixture("xlm-roberta-seqcls")),
        path_str(&input),
        "--out",
        "-",
        "--top-k",
        "2",
    ]);
    assert!(run.status.success());
    let record: Value = serde_json::from_slice(&run.stdout).expect("stdout holds exactly the record");
    assert_eq!(record["scores"].as_array().unwrap().len(), 2);
    assert_eq!(record["source"]["path"], path_str(&input));

    let csv_out = dir.path().join("out.csv");
    assert!(classify(&fixture("xlm-roberta-seqcls"), &input, &csv_out, &["--quiet"]).status.success());
    let csv = fs::read_to_string(&csv_out).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id,path,line,label,score,scores,entities,windows,encoding,extractor,index,model,error"
    );
    assert!(lines.next().unwrap().contains(",xlm-roberta-seqcls@int8,"));
}

#[test]
fn model_problems_are_clear_fatal_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("doc.txt");
    fs::write(&input, "Text.").unwrap();
    let out = dir.path().join("out.jsonl");
    let missing = docclass(&["classify", "--model", "/nonexistent/model", path_str(&input), "--out", path_str(&out)]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/model"));

    let no_heads = classify(&fixture("bert-base"), &input, &out, &[]);
    assert_eq!(no_heads.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_heads.stderr).contains("--zero-shot"));

    // A tokenizer with more tokens than the model has embeddings: a mismatched directory.
    let mixed = dir.path().join("mixed");
    fs::create_dir(&mixed).unwrap();
    for f in ["config.json", "model.safetensors"] {
        fs::copy(fixture("bert-base").join(f), mixed.join(f)).unwrap();
    }
    let mut config: Value = serde_json::from_str(&fs::read_to_string(mixed.join("config.json")).unwrap()).unwrap();
    config["vocab_size"] = 10.into();
    fs::write(mixed.join("config.json"), config.to_string()).unwrap();
    fs::copy(fixture("bert-base").join("tokenizer.json"), mixed.join("tokenizer.json")).unwrap();
    let run = classify(&mixed, &input, &out, &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("do not belong together"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!out.exists(), "no output is written when the model cannot load");

    // Weights cut short, as by an interrupted copy.
    let weights = fs::read(fixture("bert-base").join("model.safetensors")).unwrap();
    fs::write(mixed.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    fs::write(mixed.join("config.json"), fs::read(fixture("bert-base").join("config.json")).unwrap()).unwrap();
    let run = classify(&mixed, &input, &out, &[]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("model.safetensors: truncated"), "{stderr}");
}

/// The real encoder on real court passages, zero-shot with the shipped label file.
#[test]
#[ignore = "needs the real encoder or datasets: run scripts/setup.sh"]
fn real_encoder_classifies_court_passages_zero_shot() {
    let model = real_model();
    let test_split = dataset("ler_court_cls/test.tsv");
    let dir = tempfile::tempdir().unwrap();
    // Every 60th passage: 14 documents from all seven courts.
    let text = fs::read_to_string(test_split).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.step_by(60).collect();
    let input = dir.path().join("passages.tsv");
    fs::write(&input, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let out = dir.path().join("out.jsonl");
    let labels = root().join("labels/areas-of-law.tsv");
    let run = classify(&model, &input, &out, &["--zero-shot", path_str(&labels), "--quiet"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let records = read_records(&out);
    assert_eq!(records.len(), rows.len());
    let gold: Vec<&str> = rows.iter().map(|r| r.split('\t').next().unwrap()).collect();
    let correct = records.iter().zip(&gold).filter(|(r, g)| r["label"] == **g).count();
    // Zero-shot accuracy on the whole test split is recorded in eval/; on this sample
    // a working encoder gets most right, a broken one about 1 in 7.
    assert!(correct * 2 > records.len(), "only {correct} of {} passages classified correctly", records.len());
    for r in &records {
        assert_eq!(r["scores"].as_array().unwrap().len(), 7);
        assert_eq!(r["model"], "multilingual-e5-small@int8");
    }
}

/// Byte-identical output of the real encoder for one and two threads and two batch sizes.
#[test]
#[ignore = "needs the real encoder or datasets: run scripts/setup.sh"]
fn real_encoder_output_is_deterministic() {
    let model = real_model();
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = (0..6).map(|i| tricky_text().chars().take((i + 1) * 150).collect()).collect();
    let input = write_jsonl(dir.path(), &texts);
    let labels = root().join("labels/areas-of-law.tsv");
    let run = |precision: &str, threads: &str, batch: &str| {
        let out = dir.path().join(format!("out-{precision}-{threads}-{batch}.jsonl"));
        let status = classify(
            &model,
            &input,
            &out,
            &[
                "--zero-shot",
                path_str(&labels),
                "--precision",
                precision,
                "--threads",
                threads,
                "--batch-tokens",
                batch,
                "--max-len",
                "96",
                "--stride",
                "16",
                "--quiet",
            ],
        );
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        fs::read(out).unwrap()
    };
    assert_eq!(run("f32", "1", "100000"), run("f32", "2", "200"));
    assert_eq!(run("int8", "1", "100000"), run("int8", "2", "200"));
}

/// A fine-tuned classification head and a zero-shot head read the same encoder pass: the
/// first head fills `label`/`scores`, the others appear under `heads` by name.
#[test]
fn several_heads_share_one_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("topics.tsv");
    fs::write(&labels, "label\tdescription\nrecht\tGericht und Klage\nort\tStadt und Straße\nort\tWohnort\n").unwrap();
    let input = write_jsonl(dir.path(), &["Der Kläger wohnt in Köln.".into(), tricky_text()]);
    let out = dir.path().join("out.jsonl");
    let run = classify(
        &fixture("xlm-roberta-seqcls"),
        &input,
        &out,
        &["--zero-shot", path_str(&labels), "--quiet", "--explain", "3"],
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for record in read_records(&out) {
        // A checkpoint's head is not linear in features docclass knows: no evidence.
        assert!(record.get("evidence").is_none(), "{record}");
        let own: Vec<&str> =
            record["scores"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
        assert_eq!(own.len(), 3, "the checkpoint's own head: {record}");
        assert!(own.contains(&"abgelehnt"));
        let zero_shot = &record["heads"]["topics"];
        let mut labels: Vec<&str> =
            zero_shot["scores"].as_array().unwrap().iter().map(|s| s["label"].as_str().unwrap()).collect();
        labels.sort();
        assert_eq!(labels, vec!["ort", "recht"], "one entry per label, however many descriptions: {record}");
        // The zero-shot label comes with the description of it closest to the document.
        let evidence = &zero_shot["evidence"];
        assert_eq!(evidence["kind"], "description");
        assert_eq!(evidence["label"], zero_shot["label"]);
        let of_label: &[&str] =
            if zero_shot["label"] == "ort" { &["Stadt und Straße", "Wohnort"] } else { &["Gericht und Klage"] };
        assert!(of_label.contains(&evidence["description"].as_str().unwrap()), "{evidence}");
        assert!(evidence["cosine"].as_f64().unwrap().abs() <= 1.0 + 1e-6);
    }
}

#[test]
fn bad_zero_shot_label_files_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.tsv");
    fs::write(&labels, "label\tdescription\nrecht\tGericht\nohne beschreibung\n").unwrap();
    let input = dir.path().join("doc.txt");
    fs::write(&input, "Text.").unwrap();
    let out = dir.path().join("out.jsonl");
    let run = classify(&fixture("bert-base"), &input, &out, &["--zero-shot", path_str(&labels)]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("labels.tsv:3"), "{stderr}");
}

/// Windows advance by a window less the stride: the default overlap is a quarter of a
/// window, and a stride that would not let windows advance is refused.
#[test]
fn stride_defaults_to_a_quarter_window_and_must_fit() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_jsonl(dir.path(), &[tricky_text()]);
    let model = fixture("xlm-roberta-seqcls");
    let out = dir.path().join("out.jsonl");
    let run = classify(&model, &input, &out, &["--quiet"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let windows = read_records(&out)[0]["windows"].as_u64().unwrap();
    let truncated = dir.path().join("one.jsonl");
    let args = [
        "classify",
        "--model",
        path_str(&model),
        path_str(&input),
        "--out",
        path_str(&truncated),
        "--quiet",
        "--stride",
        "0",
    ];
    assert!(docclass(&args).status.success());
    let without_overlap = read_records(&truncated)[0]["windows"].as_u64().unwrap();
    // 64 positions, 62 text tokens a window: 47 new tokens a window with a stride of 15.
    assert!(
        windows > without_overlap && windows * 47 <= without_overlap * 62 + 2 * 47,
        "{windows} vs {without_overlap}"
    );

    let too_big = classify(&model, &input, &out, &["--force", "--stride", "62"]);
    assert_eq!(too_big.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&too_big.stderr).contains("--stride"));
}
