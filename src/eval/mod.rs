//! Scoring predictions against gold labels: the metrics, with the names and averages of
//! scikit-learn's `classification_report` and seqeval.

pub mod alignment;
pub mod classification;
pub mod compare;
pub mod entities;
pub mod html;
pub mod metrics;
pub mod render;
pub mod scoring;
pub mod stats;
