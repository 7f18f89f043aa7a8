//! The files an evaluation writes, as types: `metrics.json` ([`MetricsFile`]), the
//! per-document lines `--compare` reads ([`DocumentLine`]), and `comparison.json`
//! ([`Comparison`]). Scoring fills them, the reports render them, and `--compare` reads
//! them back through the same types, so a renamed field is a compile error instead of
//! a "–" in a report.

use serde::{Deserialize, Serialize};

use super::classification::{Calibration, ClassificationMetrics, Coverage, MultiLabelMetrics};
use super::entities::{EntityMetrics, ErrorCounts, ErrorKind};
use super::stats::{BootstrapInterval, McNemar};

/// The version of `metrics.json`'s layout (documented in eval/README.md).
pub const METRICS_SCHEMA: &str = "docclass-eval/2";
pub const COMPARISON_SCHEMA: &str = "docclass-compare/1";

/// `metrics.json`: where the numbers came from, then the task's metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    pub schema: String,
    pub command: String,
    pub docclass_version: String,
    pub model: ModelInfo,
    pub data: DataInfo,
    pub predictions: PredictionsInfo,
    pub seconds: f64,
    /// Where a model ran (not for a results file).
    pub throughput: Option<Throughput>,
    pub machine: Machine,
    pub warnings: Vec<String>,
    #[serde(flatten)]
    pub task: TaskMetrics,
}

/// The model that ran (path, name, fingerprint), or the system that wrote the results
/// file (its name, where known).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The encoder's arithmetic (absent in reports written before it could be chosen: f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<crate::model::Precision>,
}

/// The gold data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub path: String,
    pub sha256: String,
    pub documents: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionsInfo {
    pub path: String,
    /// Of the uncompressed records.
    pub sha256: String,
    pub ran_model: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub documents_per_s: f64,
    pub tokens_per_s: u64,
    pub tokens: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub threads: usize,
    pub cores: usize,
    pub cpu: Option<String>,
    pub os: String,
}

/// The metrics of what was scored, under the task's key in `metrics.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskMetrics {
    Classification(SingleLabelReport),
    MultiLabel(MultiLabelMetrics),
    Entities(EntityReport),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SingleLabelReport {
    #[serde(flatten)]
    pub metrics: ClassificationMetrics,
    /// None where a record lacks any label's probability (e.g. `classify --top-k`).
    pub log_loss: Option<f64>,
    pub calibration: Option<Calibration>,
    pub coverage: Option<Coverage>,
    /// The most confident mistakes.
    pub errors: Vec<ClassificationError>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassificationError {
    pub id: String,
    pub gold: String,
    pub predicted: String,
    pub confidence: Option<f64>,
    /// The start of the text, on one line.
    pub context: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityReport {
    pub default: EntityMetrics,
    pub strict_iob2: EntityMetrics,
    /// Gold entities by how the predictions met them, and spurious predictions (strict IOB2).
    pub error_counts: ErrorCounts,
    pub errors: Vec<EntityErrorExample>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityErrorExample {
    pub kind: ErrorKind,
    pub id: String,
    pub gold: Option<SpanText>,
    pub predicted: Option<SpanText>,
    /// The words around the span, the span in ⟦ ⟧.
    pub context: String,
}

/// An entity with its words: type, text, and word range `[start, end)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanText {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    pub words: (usize, usize),
}

/// One headline number of a task, for summaries and comparisons.
pub struct Headline {
    pub name: &'static str,
    pub value: Option<f64>,
    pub higher_is_better: bool,
}

impl TaskMetrics {
    /// The numbers `--compare` puts side by side.
    pub fn headline(&self) -> Vec<Headline> {
        let up = |name, value: f64| Headline { name, value: Some(value), higher_is_better: true };
        let down = |name, value: Option<f64>| Headline { name, value, higher_is_better: false };
        match self {
            TaskMetrics::Classification(c) => vec![
                up("accuracy", c.metrics.accuracy),
                up("macro-F1", c.metrics.macro_f1),
                up("macro precision", c.metrics.macro_precision),
                up("macro recall", c.metrics.macro_recall),
                up("weighted F1", c.metrics.weighted.f1),
                down("log loss", c.log_loss),
                down("ECE", c.calibration.as_ref().map(|c| c.ece)),
                Headline {
                    name: "coverage at target accuracy",
                    value: c.coverage.as_ref().and_then(|c| c.target.as_ref()).map(|t| t.coverage),
                    higher_is_better: true,
                },
            ],
            TaskMetrics::MultiLabel(m) => vec![
                up("subset accuracy", m.subset_accuracy),
                up("micro-F1", m.micro.f1),
                up("macro-F1", m.macro_f1),
                down("Hamming loss", Some(m.hamming_loss)),
            ],
            TaskMetrics::Entities(e) => {
                let count = |n: usize| Some(n as f64);
                vec![
                    up("strict IOB2 F1", e.strict_iob2.f1),
                    up("strict IOB2 precision", e.strict_iob2.precision),
                    up("strict IOB2 recall", e.strict_iob2.recall),
                    up("default-mode F1", e.default.f1),
                    up("exact", e.error_counts.exact as f64),
                    down("partial", count(e.error_counts.partial)),
                    down("wrong type", count(e.error_counts.wrong_type)),
                    down("missed", count(e.error_counts.missed)),
                    down("spurious", count(e.error_counts.spurious)),
                ]
            }
        }
    }
}

/// One document's gold and prediction, a line of `documents.jsonl.gz`: label lists for
/// classification, `[type, start, end]` word spans for entities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentLine<T> {
    pub id: String,
    pub gold: T,
    pub predicted: T,
    /// Single-label classification only: the predicted label's probability, `null`
    /// where the record gives none.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present_or_null")]
    pub confidence: Option<Option<f64>>,
}

pub type LabelLine = DocumentLine<Vec<String>>;
pub type SpanLine = DocumentLine<Vec<(String, usize, usize)>>;

/// A field that may be absent (`None`), present but `null` (`Some(None)`), or a value.
mod present_or_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Option<f64>>, serializer: S) -> Result<S::Ok, S::Error> {
        value.flatten().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<f64>>, D::Error> {
        Option::<f64>::deserialize(deserializer).map(Some)
    }
}

/// `comparison.json`: two reports of the same gold data side by side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub schema: String,
    pub command: String,
    pub docclass_version: String,
    pub a: ComparedReport,
    pub b: ComparedReport,
    pub documents: usize,
    pub metrics: Vec<MetricDelta>,
    pub mcnemar: McNemar,
    /// Paired bootstrap intervals of the headline metrics.
    pub bootstrap: Vec<BootstrapInterval>,
    /// Of each label's F1 (classification), or each entity type's strict F1; absent in
    /// comparisons of early 2026 and where there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_class_bootstrap: Vec<BootstrapInterval>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComparedReport {
    pub report: String,
    pub model: ModelInfo,
    pub data: DataInfo,
}

/// A headline metric of both reports and `b − a`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    pub metric: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub delta: Option<f64>,
    /// `A` or `B`, whichever is better; none when equal or unknown.
    pub better: Option<String>,
}
