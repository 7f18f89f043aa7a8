//! `classify` on a generated corpus of real and broken documents: every file gets its
//! record (the right extractor, or an error that names the problem), the run goes on
//! and ends with exit status 3.

mod common;

use common::corpus::{write_corpus, Outcome};
use common::*;

#[test]
fn every_document_of_a_broken_archive_gets_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let expected = write_corpus(&inbox);
    let out = dir.path().join("out.jsonl");
    let run = classify(&fixture("bert-seqcls"), &inbox, &out, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "some documents failed: exit 3; {stderr}");
    let records = read_records(&out);
    for e in &expected {
        let matching: Vec<&serde_json::Value> =
            records.iter().filter(|r| r["id"].as_str().unwrap().ends_with(&e.id_suffix)).collect();
        assert_eq!(matching.len(), 1, "{}: one record, got {matching:?}", e.id_suffix);
        let r = matching[0];
        match e.outcome {
            Outcome::Read { extractor, .. } => {
                assert!(r.get("error").is_none(), "{}: {r}", e.id_suffix);
                assert_eq!(r["extractor"], extractor, "{}: {r}", e.id_suffix);
                assert!(r["label"].is_string(), "{}: classified: {r}", e.id_suffix);
            }
            Outcome::Error(message) => {
                let error = r["error"].as_str().unwrap_or_else(|| panic!("{}: an error record: {r}", e.id_suffix));
                assert!(error.contains(message), "{}: {error:?} should say {message:?}", e.id_suffix);
            }
            Outcome::Either => {}
        }
    }
    assert_eq!(records.len(), expected.len(), "no other records (the photo attachment of the mail is not text)");
    // The summary counts the failures by reason.
    assert!(stderr.contains("failed (") && stderr.contains("empty document: "), "{stderr}");
}

#[test]
fn extracted_text_is_what_the_documents_say() {
    // Records do not carry the text, so the extractors are read directly on the same files.
    let dir = tempfile::tempdir().unwrap();
    let expected = write_corpus(dir.path());
    for e in expected {
        let Outcome::Read { contains, .. } = e.outcome else { continue };
        let id = e.id_suffix.clone();
        if id.contains('#') || !dir.path().join(&id).exists() {
            continue;
        }
        let kind = docclass::ingest::extract::Kind::of(&id).unwrap();
        let bytes = std::fs::read(dir.path().join(&id)).unwrap();
        let text = docclass::ingest::extract::extract(kind, &bytes, 16 << 20).unwrap().text;
        assert!(text.contains(contains), "{id}: {text:?} should contain {contains:?}");
    }
    let (_, attachments) =
        docclass::ingest::extract::email(&std::fs::read(dir.path().join("mail.eml")).unwrap()).unwrap();
    let names: Vec<&str> = attachments.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["widerspruch.rtf", "foto.jpg"]);
}
