//! Scoring predictions against gold labels: the metrics, with the names and averages of
//! scikit-learn's `classification_report` and seqeval.

pub mod classification;
pub mod entities;
