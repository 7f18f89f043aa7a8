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
    /// `contributions` + `rest` = `logit`. Lexical features are summed onto the words
    /// they were read from; the encoder part is given per window.
    Linear {
        label: String,
        logit: f32,
        bias: f32,
        /// The label with the next highest score (single-label heads), against which
        /// each contribution's `versus` is counted: `runner_up.bias_versus` + the
        /// `versus` values + `rest_versus` = `logit` − `runner_up.logit`.
        #[serde(skip_serializing_if = "Option::is_none")]
        runner_up: Option<RunnerUp>,
        /// The strongest contributions, strongest first: by `versus` where there is a
        /// runner-up (what set the label apart), else by `value`. Punctuation and stop
        /// words are never listed; they stay in `rest`.
        contributions: Vec<Contribution>,
        /// The sum of all other contributions.
        rest: f32,
        #[serde(skip_serializing_if = "Option::is_none")]
        rest_versus: Option<f32>,
        /// How much of the logit the listed contributions account for: their share of
        /// the absolute values of all contributions (bias aside), from 0 to 1.
        explained: f32,
    },
    /// A zero-shot head: the label description closest to the document.
    Description { label: String, description: String, cosine: f32 },
}

/// The runner-up label of a linear head's evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunnerUp {
    pub label: String,
    pub logit: f32,
    /// The chosen label's bias minus the runner-up's.
    pub bias_versus: f32,
}

/// One part of a linear head's logit.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Contribution {
    /// A word form (every occurrence, case ignored): the lexical features read from its
    /// characters, each feature's value shared among the places it was read and, within
    /// a place, among the words it covers by their characters.
    Word {
        text: String,
        occurrences: Vec<CharRange>,
        value: f32,
        #[serde(skip_serializing_if = "Option::is_none")]
        versus: Option<f32>,
    },
    /// A window's share of the encoder features: `window` by position, its characters
    /// `start..end`, and the beginning of its text.
    Window {
        window: usize,
        start: usize,
        end: usize,
        text: String,
        value: f32,
        #[serde(skip_serializing_if = "Option::is_none")]
        versus: Option<f32>,
    },
}

/// Characters `start..end` of the original text (Unicode scalar values, as entities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CharRange {
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
    /// The document's tokens, and how many of them are unknown or byte fallbacks
    /// (characters the vocabulary lacks: `docclass drift` watches their share).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    /// Which reader or extractor gave the text (`pdf`, `docx`, `eml`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extractor: Option<&'static str>,
    /// Input fields kept by name (`classify --date-field`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
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
            tokens: None,
            unknown_tokens: None,
            encoding: None,
            extractor: None,
            fields: BTreeMap::new(),
            index: None,
            model: model.to_string(),
            error: Some(error),
        }
    }

    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// The record as a reader may see it: one with a score that is no probability (a
    /// defect in a head) becomes an error record, so that the defect never reaches a
    /// reader as a number.
    pub fn checked(self) -> Record {
        match self.score_out_of_range() {
            Some(bad) => {
                let error = format!("{bad} is not a probability (a defect in the model's head)");
                Record::failed(self.id, self.source, &self.model, error)
            }
            None => self,
        }
    }

    /// The first score that is no probability (outside 0..=1, or NaN), with where it
    /// is: a defect in a head, which must never reach a reader as a number.
    pub fn score_out_of_range(&self) -> Option<String> {
        let bad = |s: f32| !(0.0..=1.0).contains(&s);
        let classifications =
            self.classification.iter().map(|c| ("the", c)).chain(self.heads.iter().map(|(n, c)| (n.as_str(), c)));
        for (head, c) in classifications {
            if bad(c.score) {
                return Some(format!("{head} head's score {}", c.score));
            }
            if let Some(s) = c.scores.iter().find(|s| bad(s.score)) {
                return Some(format!("{head} head's score of {} {}", s.label, s.score));
            }
        }
        self.entities.iter().flatten().find(|e| bad(e.score)).map(|e| format!("entity {:?} score {}", e.text, e.score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Entity, LabelScore};

    #[test]
    fn scores_outside_zero_to_one_are_found() {
        let source = Source { path: "a.txt".into(), line: None };
        let mut record = Record::failed("a".into(), source, "m", String::new());
        record.error = None;
        assert_eq!(record.score_out_of_range(), None);
        let entity = |score| Entity { text: "BAG".into(), label: "ORG".into(), start: 0, end: 3, score };
        record.entities = Some(vec![entity(0.5), entity(1.0025)]);
        assert_eq!(record.score_out_of_range().as_deref(), Some("entity \"BAG\" score 1.0025"));
        record.entities = Some(vec![entity(1.0)]);
        let score = |score| LabelScore { label: "bag".into(), score };
        record.classification = Some(Classification {
            label: "bag".into(),
            score: 0.9,
            scores: vec![score(0.9), score(f32::NAN)],
            labels: None,
            evidence: None,
        });
        assert!(record.score_out_of_range().unwrap().contains("NaN"));
    }
}
