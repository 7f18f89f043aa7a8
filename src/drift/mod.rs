//! `docclass drift`: whether an intake still looks like what the head was trained on.
//! Results files are streamed once, record by record, into counters per period (day,
//! week or month) whose size does not grow with the intake; each period is then compared
//! with a reference — the training profile in the head (`model::profile`), or an earlier
//! period's results — and checked against thresholds.

mod compare;
pub mod estimate;
pub mod render;
pub mod stats;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::infer::runner::failure_reason;
use crate::model::head_file::{HeadKind, HeadSpec};
use crate::model::profile::{confidence_bin, Histogram, TrainingProfile, CONFIDENCE_BINS, TOKEN_EDGES, WINDOW_EDGES};
use crate::output::dates::{Period, RecordDates};
use crate::output::results::{for_each_record, ResultRecord};
pub use compare::{
    compare, Alert, BinShare, ConfidenceDrift, EntityRate, InputDrift, LabelDrift, LabelShare, PeriodReport,
};
use estimate::{Calibration, EstimateSums};

/// The thresholds a period is checked against: name, default, what crossing it means.
pub const THRESHOLDS: [(&str, f64, &str); 10] = [
    ("min_documents", 50.0, "periods with fewer documents are reported but raise no alert"),
    ("label_p", 0.001, "label shares: chi-square p-value below this ..."),
    ("label_share", 0.05, "... and some label's share moved by at least this"),
    ("confidence_p", 0.001, "top scores: Kolmogorov–Smirnov p-value below this ..."),
    ("confidence_ks", 0.1, "... and a KS distance of at least this"),
    ("accuracy_drop", 0.05, "estimated accuracy this far below the reference's"),
    (
        "macro_f1_drop",
        0.1,
        "estimated macro-F1 this far below the reference's (the estimate runs low on imbalanced labels)",
    ),
    ("tokens_psi", 0.25, "document length in tokens: population stability index above this"),
    ("unknown_share", 0.01, "unknown-token share this far above the reference's"),
    ("failed_share", 0.05, "share of failed documents this far above the reference's"),
];

/// The thresholds in force: the defaults with `NAME=VALUE` overrides.
pub fn thresholds(overrides: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut values: BTreeMap<String, f64> = THRESHOLDS.iter().map(|(n, v, _)| (n.to_string(), *v)).collect();
    for given in overrides {
        let Some((name, value)) = given.split_once('=') else {
            anyhow::bail!("--threshold {given:?}: write NAME=VALUE");
        };
        let slot = values.get_mut(name.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "--threshold {given:?}: no threshold {name:?}; the thresholds are {}",
                THRESHOLDS.map(|t| t.0).join(", ")
            )
        })?;
        *slot =
            value.trim().parse().map_err(|_| anyhow::anyhow!("--threshold {given:?}: {value:?} is not a number"))?;
    }
    Ok(values)
}

/// What one period (or the reference results) looked like, counted record by record.
#[derive(Clone, Debug)]
pub struct Counts {
    pub documents: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub extractors: BTreeMap<String, u64>,
    /// Classified documents by their top label.
    pub labels: BTreeMap<String, u64>,
    /// Classified documents by top-score bin.
    pub confidence: Vec<u64>,
    pub confidence_sum: f64,
    pub below_review: u64,
    pub tokens: Histogram,
    pub windows: Histogram,
    pub window_sum: u64,
    /// Tokens, and unknown ones, of the records that count them.
    pub token_sum: u64,
    pub unknown_sum: u64,
    /// Entities by type, and the documents and tokens of the records that list entities.
    pub entities: BTreeMap<String, u64>,
    pub entity_documents: u64,
    pub entity_tokens: u64,
    pub estimate: EstimateSums,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            documents: 0,
            failed: 0,
            failures: BTreeMap::new(),
            extractors: BTreeMap::new(),
            labels: BTreeMap::new(),
            confidence: vec![0; CONFIDENCE_BINS],
            confidence_sum: 0.0,
            below_review: 0,
            tokens: Histogram::new(&TOKEN_EDGES),
            windows: Histogram::new(&WINDOW_EDGES),
            window_sum: 0,
            token_sum: 0,
            unknown_sum: 0,
            entities: BTreeMap::new(),
            entity_documents: 0,
            entity_tokens: 0,
            estimate: EstimateSums::default(),
        }
    }
}

impl Counts {
    /// Streams the records of one results file into these counts (no periods: for a
    /// reference, which needs no dates).
    pub fn add_file(&mut self, path: &Path, watch: &Watched) -> Result<()> {
        for_each_record(path, |_, record| {
            self.add(&record, watch);
            Ok(())
        })
    }

    pub fn classified(&self) -> u64 {
        self.labels.values().sum()
    }

    fn add(&mut self, record: &ResultRecord, watch: &Watched) {
        self.documents += 1;
        if let Some(error) = &record.error {
            self.failed += 1;
            *self.failures.entry(failure_reason(error)).or_default() += 1;
            return;
        }
        if let Some(extractor) = &record.extractor {
            *self.extractors.entry(extractor.clone()).or_default() += 1;
        }
        if let Some(windows) = record.windows {
            self.windows.add(windows as f64);
            self.window_sum += windows as u64;
        }
        if let Some(tokens) = record.tokens {
            self.tokens.add(tokens as f64);
            self.token_sum += tokens as u64;
            self.unknown_sum += record.unknown_tokens.unwrap_or(0) as u64;
            if let Some(entities) = &record.entities {
                self.entity_documents += 1;
                self.entity_tokens += tokens as u64;
                for entity in entities {
                    *self.entities.entry(entity.label.clone()).or_default() += 1;
                }
            }
        }
        if let Some(c) = record.classification(watch.head.as_deref()) {
            let score = f64::from(c.score);
            *self.labels.entry(c.label.clone()).or_default() += 1;
            self.confidence[confidence_bin(score)] += 1;
            self.confidence_sum += score;
            if score < watch.review_below {
                self.below_review += 1;
            }
            if let Some(labels) = &watch.estimated_labels {
                let scores: Vec<(&str, f64)> =
                    c.scores.iter().map(|s| (s.label.as_str(), f64::from(s.score))).collect();
                self.estimate.add(&watch.calibration, labels, &c.label, score, &scores);
            }
        }
    }
}

/// What is watched in each record.
pub struct Watched {
    /// The classification head (by name under `heads`; `None`: the record's own).
    pub head: Option<String>,
    pub review_below: f64,
    /// The single-label head's labels, where accuracy is estimated.
    pub estimated_labels: Option<Vec<String>>,
    pub calibration: Calibration,
}

/// What a period is compared with.
#[derive(Clone, Debug, Serialize)]
pub struct Reference {
    /// Where it comes from, for people.
    pub description: String,
    pub documents: u64,
    /// Documents per label.
    pub labels: BTreeMap<String, u64>,
    /// Top scores by bin (out of fold for a training profile).
    pub confidence: Option<Vec<u64>>,
    pub below_review_share: Option<f64>,
    pub accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
    pub tokens: Option<Histogram>,
    pub windows: Option<Histogram>,
    pub unknown_share: Option<f64>,
    pub failed_share: f64,
    pub entities_per_1000_tokens: BTreeMap<String, f64>,
}

impl Reference {
    /// From the training profiles of a model's heads: the classifier's for labels,
    /// confidences and inputs; the tagger's for entities.
    pub fn from_profiles(
        classifier: Option<(&str, &TrainingProfile)>,
        tagger: Option<(&str, &TrainingProfile)>,
        review_below: f64,
    ) -> Self {
        let mut description = Vec::new();
        let mut reference = Reference {
            description: String::new(),
            documents: 0,
            labels: BTreeMap::new(),
            confidence: None,
            below_review_share: None,
            accuracy: None,
            macro_f1: None,
            tokens: None,
            windows: None,
            unknown_share: None,
            failed_share: 0.0,
            entities_per_1000_tokens: BTreeMap::new(),
        };
        if let Some((name, profile)) = classifier {
            description.push(format!("the training profile of {name} ({} documents)", profile.examples));
            reference.documents = profile.examples;
            reference.labels = profile.labels.clone();
            reference.tokens = Some(profile.tokens.clone());
            reference.windows = Some(profile.windows.clone());
            reference.unknown_share = Some(profile.unknown_token_share);
            if let Some(oof) = &profile.out_of_fold {
                // An intake is labelled by the head, errors included: its labels are
                // compared with the head's out-of-fold labels, not the gold ones.
                if !oof.predicted.is_empty() {
                    reference.labels = oof.predicted.clone();
                }
                let below: u64 = oof.documents[..confidence_bin(review_below)].iter().sum();
                reference.below_review_share = Some(below as f64 / oof.documents.iter().sum::<u64>().max(1) as f64);
                reference.confidence = Some(oof.documents.clone());
                reference.accuracy = Some(oof.accuracy);
                reference.macro_f1 = Some(oof.macro_f1);
            }
        }
        if let Some((name, profile)) = tagger {
            description.push(format!("the training profile of {name} ({} sentences)", profile.examples));
            reference.entities_per_1000_tokens = profile.entities_per_1000_tokens.clone();
            // A tagger's sentences are no documents: only the per-token share carries over.
            reference.unknown_share = reference.unknown_share.or(Some(profile.unknown_token_share));
        }
        reference.description = description.join(" and ");
        reference
    }

    /// From the counts of earlier results; their estimated accuracy is the reference's.
    pub fn from_counts(description: String, counts: &Counts, estimated_labels: Option<&[String]>) -> Self {
        let classified = counts.classified();
        let estimate = estimated_labels.and_then(|labels| counts.estimate.estimate(labels));
        Reference {
            description,
            documents: counts.documents,
            labels: counts.labels.clone(),
            confidence: (classified > 0).then(|| counts.confidence.clone()),
            below_review_share: (classified > 0).then(|| counts.below_review as f64 / classified as f64),
            accuracy: estimate.as_ref().map(|e| e.accuracy),
            macro_f1: estimate.as_ref().map(|e| e.macro_f1),
            tokens: (counts.tokens.total() > 0).then(|| counts.tokens.clone()),
            windows: (counts.windows.total() > 0).then(|| counts.windows.clone()),
            unknown_share: (counts.token_sum > 0).then(|| counts.unknown_sum as f64 / counts.token_sum as f64),
            failed_share: counts.failed as f64 / counts.documents.max(1) as f64,
            entities_per_1000_tokens: entity_rates(counts),
        }
    }
}

pub(crate) fn entity_rates(counts: &Counts) -> BTreeMap<String, f64> {
    if counts.entity_tokens == 0 {
        return BTreeMap::new();
    }
    counts.entities.iter().map(|(k, &n)| (k.clone(), n as f64 * 1000.0 / counts.entity_tokens as f64)).collect()
}

/// Records streamed into counters per period, and all together.
pub struct Intake {
    period: Period,
    dates: RecordDates,
    pub periods: BTreeMap<String, Counts>,
    pub all: Counts,
    /// Records without a readable date (they count in `all` only).
    pub undated: u64,
    pub files: Vec<String>,
}

impl Intake {
    pub fn new(period: Period, dates: RecordDates) -> Self {
        Self { period, dates, periods: BTreeMap::new(), all: Counts::default(), undated: 0, files: Vec::new() }
    }

    pub fn add_file(&mut self, path: &Path, watch: &Watched) -> Result<()> {
        self.files.push(path.display().to_string());
        for_each_record(path, |_, record| {
            self.all.add(&record, watch);
            match self.dates.day_of(&record) {
                Some(day) => self.periods.entry(self.period.name(day)).or_default().add(&record, watch),
                None => self.undated += 1,
            }
            Ok(())
        })
    }

    pub fn date_source(&self) -> String {
        match self.dates.field() {
            Some(field) => format!("the records' field {field:?}"),
            None => "the modification time of each record's source file".into(),
        }
    }
}

/// The whole report: `drift.json`.
#[derive(Clone, Debug, Serialize)]
pub struct DriftReport {
    pub results: Vec<String>,
    pub model: String,
    pub reference: Reference,
    pub period: String,
    pub dates: String,
    pub undated: u64,
    pub thresholds: BTreeMap<String, f64>,
    /// What the report could not do, in words (no profile, multi-label head, …).
    pub notes: Vec<String>,
    pub estimate_method: String,
    pub all: PeriodReport,
    pub periods: Vec<PeriodReport>,
    /// Periods with an alert.
    pub drifted: Vec<String>,
}

/// The watched classification head and the tagger of a model's trained heads: the
/// named one (`--head`) or the first classifier, and the first tagger.
pub fn watched_heads<'a>(specs: &'a [HeadSpec], head: Option<&str>) -> (Option<&'a HeadSpec>, Option<&'a HeadSpec>) {
    let classifier = specs
        .iter()
        .filter(|s| s.kind == HeadKind::DocumentClassifier)
        .find(|s| head.is_none_or(|name| s.name == name));
    let tagger = specs.iter().find(|s| s.kind == HeadKind::Tagger);
    (classifier, tagger)
}
