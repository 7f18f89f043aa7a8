//! Results files read back (`review`, `report`): the part of each record those need,
//! streamed line by line from JSONL, plain or gzip.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

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

/// Calls `each(line, record)` for every record of a results file, its source path as
/// it can be opened from here.
pub fn for_each_record(path: &Path, mut each: impl FnMut(usize, ResultRecord) -> Result<()>) -> Result<()> {
    for (i, line) in crate::fsutil::open_text(path)?.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut record: ResultRecord = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a record of docclass classify", path.display(), i + 1))?;
        record.source.path = crate::fsutil::resolve_from_file_of(path, &record.source.path);
        each(i + 1, record)?;
    }
    Ok(())
}
