//! Results files read back (`review`, `report`): the part of each record those need,
//! streamed record by record from JSONL or the CSV `classify` writes, plain or gzip.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::writer::CSV_HEADER;
use crate::decode::{Entity, LabelScore};
use crate::ingest::Source;

/// A record as `classify` wrote it, the fields a reader of results needs.
#[derive(Clone, Debug, Deserialize)]
pub struct ResultRecord {
    pub id: String,
    pub source: Source,
    #[serde(flatten)]
    classification: Option<Classified>,
    #[serde(default)]
    heads: BTreeMap<String, Classified>,
    #[serde(default)]
    pub entities: Option<Vec<Entity>>,
    #[serde(default)]
    pub error: Option<String>,
    /// What the input looked like (absent in CSV results and older records).
    #[serde(default)]
    pub windows: Option<usize>,
    #[serde(default)]
    pub tokens: Option<usize>,
    #[serde(default)]
    pub unknown_tokens: Option<usize>,
    #[serde(default)]
    pub extractor: Option<String>,
    /// Input fields the record kept (`classify --date-field`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// One head's classification of a record.
#[derive(Clone, Debug, Deserialize)]
pub struct Classified {
    pub label: String,
    pub score: f32,
    #[serde(default)]
    pub scores: Vec<LabelScore>,
    /// `classify --explain`.
    #[serde(default)]
    pub evidence: Option<serde_json::Value>,
}

impl ResultRecord {
    /// The classification of `head`, by its name under `heads` (default: the record's own).
    pub fn classification(&self, head: Option<&str>) -> Option<&Classified> {
        match head {
            None => self.classification.as_ref(),
            Some(name) => self.heads.get(name),
        }
    }
}

/// Calls `each(line, record)` for every record of a results file (JSONL, or the CSV
/// `classify` writes; plain or gzip), its source path as it can be opened from here.
pub fn for_each_record(path: &Path, mut each: impl FnMut(usize, ResultRecord) -> Result<()>) -> Result<()> {
    let mut reader = crate::fsutil::open_text(path)?;
    let first = reader.fill_buf().with_context(|| format!("{}: cannot read", path.display()))?;
    let csv_header = CSV_HEADER.join(",");
    if first.starts_with(csv_header.as_bytes()) {
        return for_each_csv_record(path, reader, each);
    }
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut record: ResultRecord = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}:{}: not a record of docclass classify (results are read as JSONL, or as the CSV classify writes)",
                path.display(),
                i + 1
            )
        })?;
        record.source.path = crate::fsutil::resolve_from_file_of(path, &record.source.path);
        each(i + 1, record)?;
    }
    Ok(())
}

/// The CSV output of `classify`: its columns become a record (a CSV file has no room for
/// further heads or evidence).
fn for_each_csv_record(
    path: &Path,
    reader: Box<dyn BufRead>,
    mut each: impl FnMut(usize, ResultRecord) -> Result<()>,
) -> Result<()> {
    let mut rows = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
    let column = |name: &str| CSV_HEADER.iter().position(|&c| c == name).expect("a column of the output");
    let (id, source_path, source_line, label, score, scores, entities, error) = (
        column("id"),
        column("path"),
        column("line"),
        column("label"),
        column("score"),
        column("scores"),
        column("entities"),
        column("error"),
    );
    for row in rows.records() {
        let row = row.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = row.position().map_or(0, |p| p.line() as usize);
        let at = || format!("{}:{line}", path.display());
        let cell = |k: usize| row.get(k).unwrap_or("");
        let json = |k: usize| -> Result<Option<serde_json::Value>> {
            Ok(if cell(k).is_empty() { None } else { Some(serde_json::from_str(cell(k)).with_context(at)?) })
        };
        let classification = if cell(label).is_empty() {
            None
        } else {
            Some(Classified {
                label: cell(label).to_string(),
                score: cell(score).parse().with_context(|| format!("{}: score {:?}", at(), cell(score)))?,
                scores: json(scores)?.map(serde_json::from_value).transpose().with_context(at)?.unwrap_or_default(),
                evidence: None,
            })
        };
        let recorded = Source { path: cell(source_path).to_string(), line: cell(source_line).parse().ok() };
        let record = ResultRecord {
            id: cell(id).to_string(),
            source: Source { path: crate::fsutil::resolve_from_file_of(path, &recorded.path), ..recorded },
            classification,
            heads: BTreeMap::new(),
            entities: json(entities)?.map(serde_json::from_value).transpose().with_context(at)?,
            error: Some(cell(error).to_string()).filter(|e| !e.is_empty()),
            windows: None,
            tokens: None,
            unknown_tokens: None,
            extractor: None,
            fields: BTreeMap::new(),
        };
        each(line, record)?;
    }
    Ok(())
}
