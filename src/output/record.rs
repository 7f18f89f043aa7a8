//! One record per document: its classification, entities, and how it was read; or, for
//! a document that could not be read or processed, the error instead.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decode::{Entity, LabelScore};
use crate::ingest::Source;

/// The result of one classification head for one document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classification {
    pub label: String,
    pub score: f32,
    /// All labels by descending score, or the `--top-k` best.
    pub scores: Vec<LabelScore>,
    /// Multi-label heads: every label whose sigmoid score is at least 0.5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Why the head chose `label` (`classify --explain K`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// Why a document got its label.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// A linear head's logit for the label, taken apart exactly: `bias` + the
    /// `contributions` + `rest` = `logit`.
    Linear {
        label: String,
        logit: f32,
        bias: f32,
        /// The strongest contributions (by absolute value), strongest first.
        contributions: Vec<Contribution>,
        /// The sum of all other contributions.
        rest: f32,
    },
    /// A zero-shot head: the label description closest to the document.
    Description { label: String, description: String, cosine: f32 },
}

/// One part of a linear head's logit.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Contribution {
    /// A hashed lexical feature: word uni- or bigrams, or character n-grams (`block`),
    /// with every occurrence as character offsets into the original text and the text
    /// there (several texts where different n-grams share the feature's bucket).
    Terms { block: TermBlock, texts: Vec<String>, occurrences: Vec<Span>, value: f32 },
    /// A window's encoder features: `window` by position, its characters `start..end`.
    Window { window: usize, start: usize, end: usize, value: f32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TermBlock {
    Words,
    Characters,
}

/// Characters `start..end` of the original text (Unicode scalar values, as entities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    pub id: String,
    pub source: Source,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// Results of further classification heads, by head name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub heads: BTreeMap<String, Classification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<Vec<Entity>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    /// Which reader or extractor gave the text (`pdf`, `docx`, `eml`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extractor: Option<&'static str>,
    /// The document's position in the run's input order (the same in every shard), by
    /// which `docclass merge` puts shard outputs back in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    pub fn failed(id: String, source: Source, model: &str, error: String) -> Self {
        Self {
            id,
            source,
            classification: None,
            heads: BTreeMap::new(),
            entities: None,
            windows: None,
            encoding: None,
            extractor: None,
            index: None,
            model: model.to_string(),
            error: Some(error),
        }
    }

    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }
}
