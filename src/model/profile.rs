//! What a head's training data looked like, kept in `head.json` (`profile`) so that
//! `docclass drift` can tell when an intake no longer looks like it: label shares, the
//! out-of-fold confidences and accuracy of the cross-validation, document length and the
//! share of unknown tokens. Plain data: `train` fills it, `drift` reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bins of the top score over [0, 1]: fine enough for a Kolmogorov–Smirnov distance,
/// merged into coarser ones for calibration.
pub const CONFIDENCE_BINS: usize = 100;

/// Upper bounds (inclusive) of the token-count bins, doubling; one more bin above.
pub const TOKEN_EDGES: [f64; 11] = [16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];
/// Upper bounds (inclusive) of the windows-per-document bins; one more bin above.
pub const WINDOW_EDGES: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0];

/// Counts of values in fixed bins: bin `i` holds values above `edges[i - 1]` up to
/// `edges[i]`, the last one everything above the last edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(edges: &[f64]) -> Self {
        Self { edges: edges.to_vec(), counts: vec![0; edges.len() + 1] }
    }

    pub fn add(&mut self, value: f64) {
        let bin = self.edges.partition_point(|&edge| edge < value);
        self.counts[bin] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each bin's share of the values (all 0 when there are none).
    pub fn shares(&self) -> Vec<f64> {
        let total = self.total().max(1) as f64;
        self.counts.iter().map(|&c| c as f64 / total).collect()
    }

    /// The bins' names for people: `≤ 16`, `17–32`, …, `> 16384` (integer values).
    pub fn bin_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.counts.len());
        for (i, edge) in self.edges.iter().enumerate() {
            names.push(match i {
                0 => format!("≤ {edge}"),
                _ if self.edges[i - 1] + 1.0 == *edge => format!("{edge}"),
                _ => format!("{}–{edge}", self.edges[i - 1] + 1.0),
            });
        }
        names.push(format!("> {}", self.edges.last().copied().unwrap_or(0.0)));
        names
    }
}

/// The training data's profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingProfile {
    /// Documents (a classifier) or sentences (a tagger) the head was fitted on.
    pub examples: u64,
    /// A classifier's documents per label (each label of a multi-label document counts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, u64>,
    /// A tagger's entities per 1,000 tokens, by type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entities_per_1000_tokens: BTreeMap<String, f64>,
    /// Tokens per example, and windows per example at the run's window size.
    pub tokens: Histogram,
    pub windows: Histogram,
    /// The share of tokens that are the tokenizer's unknown token or a byte fallback.
    pub unknown_token_share: f64,
    /// A classifier's cross-validation, as its out-of-fold predictions scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_fold: Option<OutOfFold>,
}

/// The out-of-fold predictions of a classifier's cross-validation (each document scored
/// by the head fitted without its fold), by the top score's bin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutOfFold {
    pub folds: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Documents per bin of the top score ([`CONFIDENCE_BINS`] bins over [0, 1]).
    pub documents: Vec<u64>,
    /// Of those, the ones whose top label was right.
    pub correct: Vec<u64>,
    /// The sum of their top scores.
    pub score_sum: Vec<f64>,
    /// Documents per top label: what an intake like the training data is labelled as
    /// (errors included), to compare an intake's labels with.
    #[serde(default)]
    pub predicted: BTreeMap<String, u64>,
}

/// The bin of a top score in [0, 1].
pub fn confidence_bin(score: f64) -> usize {
    ((score.clamp(0.0, 1.0) * CONFIDENCE_BINS as f64) as usize).min(CONFIDENCE_BINS - 1)
}

impl OutOfFold {
    /// From each document's top label and score, and whether that label was right.
    pub fn from_predictions(folds: usize, predictions: &[(&str, f64, bool)], macro_f1: f64) -> Self {
        let mut out = Self {
            folds,
            accuracy: 0.0,
            macro_f1,
            documents: vec![0; CONFIDENCE_BINS],
            correct: vec![0; CONFIDENCE_BINS],
            score_sum: vec![0.0; CONFIDENCE_BINS],
            predicted: BTreeMap::new(),
        };
        for &(label, score, right) in predictions {
            *out.predicted.entry(label.to_string()).or_default() += 1;
            let bin = confidence_bin(score);
            out.documents[bin] += 1;
            out.correct[bin] += u64::from(right);
            out.score_sum[bin] += score;
        }
        let right = predictions.iter().filter(|p| p.2).count();
        out.accuracy = right as f64 / predictions.len().max(1) as f64;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_the_bin_of_their_upper_edge() {
        let mut h = Histogram::new(&[1.0, 2.0, 4.0]);
        for v in [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 100.0] {
            h.add(v);
        }
        assert_eq!(h.counts, vec![2, 1, 2, 2]);
        assert_eq!(h.bin_names(), vec!["≤ 1", "2", "3–4", "> 4"]);
        assert!((h.shares().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn out_of_fold_bins_count_scores_and_hits() {
        let predictions = [("a", 0.995, true), ("a", 1.0, true), ("b", 0.42, false), ("a", 0.0, false)];
        let oof = OutOfFold::from_predictions(5, &predictions, 0.5);
        assert_eq!(oof.predicted, BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 1)]));
        assert_eq!(oof.accuracy, 0.5);
        assert_eq!(oof.documents[99], 2);
        assert_eq!(oof.correct[99], 2);
        assert_eq!(oof.documents[42] + oof.documents[0], 2);
        assert_eq!(oof.documents.iter().sum::<u64>(), 4);
    }
}
