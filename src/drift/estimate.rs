//! Accuracy and macro-F1 estimated without labels from the head's scores, as NannyML's
//! confidence-based performance estimation (CBPE) does: with calibrated scores, a
//! document's top label is right with the probability of its top score, so the expected
//! confusion matrix, and with it accuracy and each label's F1, follow from the scores.
//!
//! The scores are calibrated by the head's cross-validation: per bin of the top score,
//! the out-of-fold accuracy's difference to the mean score, shrunk towards none where a
//! bin holds few documents. The interval is the sampling error of the period's own
//! documents (each document's rightness a Bernoulli draw); it assumes that calibration
//! still holds, which is what a shift can break: eval/drift/ records the estimate's
//! measured error.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::profile::{confidence_bin, OutOfFold, CONFIDENCE_BINS};

/// Bins of the calibration: [`CONFIDENCE_BINS`] merged in groups of this many.
const MERGED: usize = 5;
/// Documents' worth of weight that keeps a bin's correction near zero until its own
/// documents outweigh it.
const SHRINK_DOCUMENTS: f64 = 20.0;
/// 95% normal interval.
const Z: f64 = 1.959_964;

/// Top score → probability that the top label is right.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// Per merged bin, what to add to a top score (none: the scores as they are).
    shift: Option<Vec<f64>>,
}

impl Calibration {
    /// The scores as they are (a head without out-of-fold predictions).
    pub fn identity() -> Self {
        Self { shift: None }
    }

    pub fn from_out_of_fold(oof: &OutOfFold) -> Self {
        let shift = (0..CONFIDENCE_BINS / MERGED)
            .map(|b| {
                let bins = b * MERGED..(b + 1) * MERGED;
                let documents: u64 = oof.documents[bins.clone()].iter().sum();
                let correct: u64 = oof.correct[bins.clone()].iter().sum();
                let score_sum: f64 = oof.score_sum[bins].iter().sum();
                (correct as f64 - score_sum) / (documents as f64 + SHRINK_DOCUMENTS)
            })
            .collect();
        Self { shift: Some(shift) }
    }

    pub fn is_identity(&self) -> bool {
        self.shift.is_none()
    }

    pub fn probability_right(&self, top_score: f64) -> f64 {
        match &self.shift {
            None => top_score.clamp(0.0, 1.0),
            Some(shift) => (top_score + shift[confidence_bin(top_score) / MERGED]).clamp(0.0, 1.0),
        }
    }
}

/// The running sums of one period's estimate.
#[derive(Clone, Debug, Default)]
pub struct EstimateSums {
    documents: u64,
    right: f64,
    right_variance: f64,
    labels: BTreeMap<String, LabelSums>,
}

/// One label's expected confusion counts.
#[derive(Clone, Debug, Default)]
struct LabelSums {
    predicted: f64,
    true_positive: f64,
    true_positive_variance: f64,
    false_negative: f64,
    false_negative_variance: f64,
}

/// The estimate of one period.
#[derive(Clone, Debug, Serialize)]
pub struct Estimate {
    pub accuracy: f64,
    pub accuracy_low: f64,
    pub accuracy_high: f64,
    pub macro_f1: f64,
    pub macro_f1_low: f64,
    pub macro_f1_high: f64,
}

impl EstimateSums {
    /// One document: its top label and score, and the scores the record lists (`scores`,
    /// all labels unless `--top-k` cut them). `labels` are the head's labels.
    pub fn add(
        &mut self,
        calibration: &Calibration,
        labels: &[String],
        top: &str,
        top_score: f64,
        scores: &[(&str, f64)],
    ) {
        let right = calibration.probability_right(top_score);
        self.documents += 1;
        self.right += right;
        self.right_variance += right * (1.0 - right);
        let entry = self.label(top);
        entry.predicted += 1.0;
        entry.true_positive += right;
        entry.true_positive_variance += right * (1.0 - right);
        // The rest of the probability goes to the other labels in proportion to their
        // scores; labels the record does not list share what their scores left.
        let others: std::collections::HashMap<&str, f64> = scores.iter().filter(|(l, _)| *l != top).copied().collect();
        let listed: f64 = others.values().sum();
        let unlisted = labels.iter().filter(|l| *l != top && !others.contains_key(l.as_str())).count();
        let rest_of_scores = (1.0 - top_score).max(0.0);
        let scale = if rest_of_scores > 1e-9 { (1.0 - right) / rest_of_scores } else { 0.0 };
        let unlisted_each =
            if unlisted > 0 { ((rest_of_scores - listed).max(0.0) * scale) / unlisted as f64 } else { 0.0 };
        for label in labels.iter().filter(|l| *l != top) {
            let q = others.get(label.as_str()).map_or(unlisted_each, |s| s * scale).clamp(0.0, 1.0);
            let entry = self.label(label);
            entry.false_negative += q;
            entry.false_negative_variance += q * (1.0 - q);
        }
    }

    /// A label's sums, added at its first document (without a copy of its name after).
    fn label(&mut self, label: &str) -> &mut LabelSums {
        if !self.labels.contains_key(label) {
            self.labels.insert(label.to_string(), LabelSums::default());
        }
        self.labels.get_mut(label).expect("just inserted")
    }

    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// The estimate, with 95% intervals (normal approximation; macro-F1's by the delta
    /// method, labels taken as independent).
    pub fn estimate(&self, labels: &[String]) -> Option<Estimate> {
        if self.documents == 0 {
            return None;
        }
        let n = self.documents as f64;
        let accuracy = self.right / n;
        let accuracy_sd = self.right_variance.sqrt() / n;
        let (mut f1_sum, mut variance_sum) = (0.0, 0.0);
        let empty = LabelSums::default();
        for label in labels {
            let sums = self.labels.get(label).unwrap_or(&empty);
            let denominator = sums.true_positive + sums.predicted + sums.false_negative;
            if denominator <= 0.0 {
                // Neither predicted nor expected: F1 is undefined; counted as 0 as the
                // evaluation's macro-F1 counts a label without documents.
                continue;
            }
            let f1 = 2.0 * sums.true_positive / denominator;
            let d_tp = 2.0 * (sums.predicted + sums.false_negative) / denominator.powi(2);
            let d_fn = -2.0 * sums.true_positive / denominator.powi(2);
            f1_sum += f1;
            variance_sum += d_tp.powi(2) * sums.true_positive_variance + d_fn.powi(2) * sums.false_negative_variance;
        }
        let k = labels.len().max(1) as f64;
        let macro_f1 = f1_sum / k;
        let macro_sd = variance_sum.sqrt() / k;
        let interval = |value: f64, sd: f64| ((value - Z * sd).max(0.0), (value + Z * sd).min(1.0));
        let (accuracy_low, accuracy_high) = interval(accuracy, accuracy_sd);
        let (macro_f1_low, macro_f1_high) = interval(macro_f1, macro_sd);
        Some(Estimate { accuracy, accuracy_low, accuracy_high, macro_f1, macro_f1_low, macro_f1_high })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn labels() -> Vec<String> {
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    }

    /// Documents whose true label is drawn from their scores: the estimate must find the
    /// accuracy and macro-F1 that the draws give, within its interval.
    #[test]
    fn calibrated_scores_estimate_the_drawn_accuracy() {
        let labels = labels();
        let mut rng = Rng::new(7);
        let mut sums = EstimateSums::default();
        let (mut right, mut confusion) = (0usize, [[0f64; 3]; 3]);
        let n = 20_000;
        for _ in 0..n {
            let raw: Vec<f64> = (0..3).map(|_| f64::from(rng.next_f32()).powi(3) + 0.01).collect();
            let total: f64 = raw.iter().sum();
            let scores: Vec<f64> = raw.iter().map(|r| r / total).collect();
            let top = (0..3).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
            let draw = f64::from(rng.next_f32());
            let truth = if draw < scores[0] {
                0
            } else if draw < scores[0] + scores[1] {
                1
            } else {
                2
            };
            right += usize::from(truth == top);
            confusion[truth][top] += 1.0;
            let listed: Vec<(&str, f64)> = labels.iter().map(String::as_str).zip(scores.iter().copied()).collect();
            sums.add(&Calibration::identity(), &labels, &labels[top], scores[top], &listed);
        }
        let estimate = sums.estimate(&labels).unwrap();
        let accuracy = right as f64 / n as f64;
        assert!(estimate.accuracy_low <= accuracy && accuracy <= estimate.accuracy_high, "{estimate:?} vs {accuracy}");
        let f1 = |k: usize| {
            let tp = confusion[k][k];
            let predicted: f64 = (0..3).map(|t| confusion[t][k]).sum();
            let actual: f64 = confusion[k].iter().sum();
            2.0 * tp / (predicted + actual)
        };
        let macro_f1 = (f1(0) + f1(1) + f1(2)) / 3.0;
        assert!((estimate.macro_f1 - macro_f1).abs() < 0.01, "{estimate:?} vs {macro_f1}");
    }

    #[test]
    fn out_of_fold_calibration_corrects_overconfidence() {
        // Out of fold, documents scored 0.9 were right half of the time.
        let mut oof = OutOfFold::from_predictions(5, &[], 0.0);
        let bin = confidence_bin(0.9);
        oof.documents[bin] = 1000;
        oof.correct[bin] = 500;
        oof.score_sum[bin] = 900.0;
        let calibration = Calibration::from_out_of_fold(&oof);
        let p = calibration.probability_right(0.9);
        assert!((p - (0.9 - 400.0 / 1020.0)).abs() < 1e-9, "{p}");
        // An empty bin leaves the score as it is.
        assert_eq!(calibration.probability_right(0.3), 0.3);
    }

    #[test]
    fn labels_cut_by_top_k_share_the_rest() {
        let labels = labels();
        let mut sums = EstimateSums::default();
        sums.add(&Calibration::identity(), &labels, "a", 0.6, &[("a", 0.6)]);
        let c = &sums.labels;
        assert!((c["b"].false_negative - 0.2).abs() < 1e-12 && (c["c"].false_negative - 0.2).abs() < 1e-12);
    }
}
