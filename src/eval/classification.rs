//! Classification metrics with scikit-learn's conventions: accuracy; per-class
//! precision, recall, F1 and support with their macro, micro and support-weighted
//! averages (classes that occur in neither gold nor predictions are left out; a class
//! with no prediction has precision 0; F1 is 0 where precision + recall is 0); the
//! confusion matrix; log loss; calibration; accuracy against coverage; and the
//! multi-label scores (per label, micro/macro averages, subset accuracy, Hamming loss).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Average {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Row and column labels: gold in rows, predicted in columns.
    pub labels: Vec<String>,
    pub counts: Vec<Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub documents: usize,
    pub accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub micro: Average,
    pub weighted: Average,
    pub per_class: Vec<ClassScores>,
    pub confusion_matrix: ConfusionMatrix,
}

/// `gold` and `predicted` are label indices into `labels`, one pair per document.
pub fn classification_metrics(labels: &[String], gold: &[usize], predicted: &[usize]) -> ClassificationMetrics {
    assert_eq!(gold.len(), predicted.len(), "one prediction per gold label");
    let k = labels.len();
    let (mut tp, mut gold_count, mut predicted_count) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    let mut confusion = vec![vec![0usize; k]; k];
    for (&g, &p) in gold.iter().zip(predicted) {
        gold_count[g] += 1;
        predicted_count[p] += 1;
        confusion[g][p] += 1;
        if g == p {
            tp[g] += 1;
        }
    }
    let present: Vec<usize> = (0..k).filter(|&c| gold_count[c] + predicted_count[c] > 0).collect();
    let per_class: Vec<ClassScores> = present
        .iter()
        .map(|&c| {
            let (precision, recall, f1) = prf(tp[c], predicted_count[c], gold_count[c]);
            ClassScores { label: labels[c].clone(), precision, recall, f1, support: gold_count[c] }
        })
        .collect();
    let averages = averages(&per_class, tp.iter().sum(), predicted.len(), gold.len());
    let correct: usize = tp.iter().sum();
    ClassificationMetrics {
        documents: gold.len(),
        accuracy: correct as f64 / gold.len().max(1) as f64,
        macro_precision: averages.0.precision,
        macro_recall: averages.0.recall,
        macro_f1: averages.0.f1,
        micro: averages.1,
        weighted: averages.2,
        confusion_matrix: ConfusionMatrix {
            labels: present.iter().map(|&c| labels[c].clone()).collect(),
            counts: present.iter().map(|&g| present.iter().map(|&p| confusion[g][p]).collect()).collect(),
        },
        per_class,
    }
}

/// Macro, micro and support-weighted averages of per-class scores.
fn averages(per_class: &[ClassScores], tp: usize, predicted: usize, gold: usize) -> (Average, Average, Average) {
    let n = per_class.len().max(1) as f64;
    let mean = |f: fn(&ClassScores) -> f64| per_class.iter().map(f).sum::<f64>() / n;
    let support: usize = per_class.iter().map(|c| c.support).sum();
    let weighted = |f: fn(&ClassScores) -> f64| {
        if support == 0 {
            0.0
        } else {
            per_class.iter().map(|c| f(c) * c.support as f64).sum::<f64>() / support as f64
        }
    };
    let (precision, recall, f1) = prf(tp, predicted, gold);
    (
        Average { precision: mean(|c| c.precision), recall: mean(|c| c.recall), f1: mean(|c| c.f1) },
        Average { precision, recall, f1 },
        Average { precision: weighted(|c| c.precision), recall: weighted(|c| c.recall), f1: weighted(|c| c.f1) },
    )
}

/// Precision, recall and F1 from true positives, predicted and gold counts.
pub fn prf(tp: usize, predicted: usize, gold: usize) -> (f64, f64, f64) {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (p, r) = (ratio(tp, predicted), ratio(tp, gold));
    let f1 = if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
    (p, r, f1)
}

/// Mean negative log-probability of the gold label, as scikit-learn's `log_loss`
/// (1.9): probabilities are clipped to [ε, 1 − ε], ε the machine epsilon of f64, and
/// not renormalised. `gold_probabilities[i]` is document i's gold-label probability.
pub fn log_loss(gold_probabilities: &[f64]) -> f64 {
    let eps = f64::EPSILON;
    let total: f64 = gold_probabilities.iter().map(|p| -p.clamp(eps, 1.0 - eps).ln()).sum();
    total / gold_probabilities.len().max(1) as f64
}

/// Reliability of the top-1 confidence, in `CALIBRATION_BINS` equal-width bins over
/// [0, 1] (a confidence of exactly 1 falls in the last bin).
pub const CALIBRATION_BINS: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub documents: usize,
    /// Mean confidence and accuracy of the documents in the bin (0 where it is empty).
    pub confidence: f64,
    pub accuracy: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub binning: String,
    /// Expected calibration error: Σ (documents in bin / all) · |accuracy − confidence|.
    pub ece: f64,
    /// The largest |accuracy − confidence| of a non-empty bin.
    pub mce: f64,
    pub bins: Vec<CalibrationBin>,
}

pub fn calibration(confidence: &[f64], correct: &[bool]) -> Calibration {
    let mut sums = vec![(0usize, 0.0f64, 0usize); CALIBRATION_BINS];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let bin = ((c * CALIBRATION_BINS as f64).floor() as usize).min(CALIBRATION_BINS - 1);
        sums[bin].0 += 1;
        sums[bin].1 += c;
        sums[bin].2 += usize::from(ok);
    }
    let n = confidence.len().max(1) as f64;
    let bins: Vec<CalibrationBin> = sums
        .iter()
        .enumerate()
        .map(|(i, &(documents, confidence_sum, right))| {
            let mean = |x: f64| if documents == 0 { 0.0 } else { x / documents as f64 };
            CalibrationBin {
                lower: i as f64 / CALIBRATION_BINS as f64,
                upper: (i + 1) as f64 / CALIBRATION_BINS as f64,
                documents,
                confidence: mean(confidence_sum),
                accuracy: mean(right as f64),
            }
        })
        .collect();
    let gap = |b: &CalibrationBin| (b.accuracy - b.confidence).abs();
    Calibration {
        binning: format!("{CALIBRATION_BINS} equal-width bins of the top-1 probability over [0, 1]"),
        ece: bins.iter().map(|b| b.documents as f64 / n * gap(b)).sum(),
        mce: bins.iter().filter(|b| b.documents > 0).map(gap).fold(0.0, f64::max),
        bins,
    }
}

/// Accuracy when documents whose top-1 probability is below a threshold are left for a
/// person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoveragePoint {
    pub threshold: f64,
    /// Share of documents with confidence ≥ threshold.
    pub coverage: f64,
    pub documents: usize,
    /// Accuracy on those documents (1 where there are none).
    pub accuracy: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// At fixed thresholds, for the table.
    pub table: Vec<CoveragePoint>,
    /// At every distinct confidence (thinned to at most `CURVE_POINTS`), for the curve.
    pub curve: Vec<CoveragePoint>,
    pub target_accuracy: f64,
    /// The lowest threshold whose kept documents reach the target accuracy, with the
    /// coverage it leaves; none where no threshold does.
    pub target: Option<CoveragePoint>,
}

const TABLE_THRESHOLDS: [f64; 10] = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999];
const CURVE_POINTS: usize = 200;

pub fn coverage(confidence: &[f64], correct: &[bool], target_accuracy: f64) -> Coverage {
    let n = confidence.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]));
    // Cut points after each run of equal confidences: documents that tie are kept together.
    let mut cuts = Vec::new();
    let mut right = 0usize;
    for (i, &d) in order.iter().enumerate() {
        right += usize::from(correct[d]);
        if i + 1 == n || confidence[order[i + 1]] != confidence[d] {
            cuts.push(CoveragePoint {
                threshold: confidence[d],
                coverage: (i + 1) as f64 / n as f64,
                documents: i + 1,
                accuracy: right as f64 / (i + 1) as f64,
            });
        }
    }
    let at_threshold = |t: f64| -> CoveragePoint {
        cuts.iter().rev().find(|c| c.threshold >= t).map_or(
            CoveragePoint { threshold: t, coverage: 0.0, documents: 0, accuracy: 1.0 },
            |c| CoveragePoint { threshold: t, ..c.clone() },
        )
    };
    let step = cuts.len().div_ceil(CURVE_POINTS).max(1);
    let mut curve: Vec<CoveragePoint> = cuts.iter().step_by(step).cloned().collect();
    if let Some(last) = cuts.last().filter(|l| curve.last() != Some(*l)) {
        curve.push(last.clone());
    }
    Coverage {
        table: TABLE_THRESHOLDS.iter().map(|&t| at_threshold(t)).collect(),
        target: cuts.iter().rev().find(|c| c.accuracy >= target_accuracy).cloned(),
        curve,
        target_accuracy,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiLabelMetrics {
    pub documents: usize,
    /// Share of documents whose predicted label set equals the gold set.
    pub subset_accuracy: f64,
    /// Share of (document, label) decisions that are wrong.
    pub hamming_loss: f64,
    pub micro: Average,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub weighted: Average,
    pub per_label: Vec<ClassScores>,
}

/// `gold[i]` and `predicted[i]` are the label indices (into `labels`) of document i.
/// Every label in `labels` is scored, as scikit-learn does for indicator matrices.
pub fn multi_label_metrics(labels: &[String], gold: &[Vec<usize>], predicted: &[Vec<usize>]) -> MultiLabelMetrics {
    assert_eq!(gold.len(), predicted.len(), "one prediction per gold label set");
    let k = labels.len();
    let (mut tp, mut gold_count, mut predicted_count) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    let (mut exact, mut wrong_decisions) = (0usize, 0usize);
    for (g, p) in gold.iter().zip(predicted) {
        let (mut g, mut p) = (g.clone(), p.clone());
        g.sort_unstable();
        g.dedup();
        p.sort_unstable();
        p.dedup();
        exact += usize::from(g == p);
        for &l in &g {
            gold_count[l] += 1;
        }
        for &l in &p {
            predicted_count[l] += 1;
            tp[l] += usize::from(g.contains(&l));
        }
        wrong_decisions += g.iter().filter(|l| !p.contains(l)).count() + p.iter().filter(|l| !g.contains(l)).count();
    }
    let per_label: Vec<ClassScores> = (0..k)
        .map(|c| {
            let (precision, recall, f1) = prf(tp[c], predicted_count[c], gold_count[c]);
            ClassScores { label: labels[c].clone(), precision, recall, f1, support: gold_count[c] }
        })
        .collect();
    let (macro_average, micro, weighted) =
        averages(&per_label, tp.iter().sum(), predicted_count.iter().sum(), gold_count.iter().sum());
    let n = gold.len().max(1) as f64;
    MultiLabelMetrics {
        documents: gold.len(),
        subset_accuracy: exact as f64 / n,
        hamming_loss: wrong_decisions as f64 / (n * k.max(1) as f64),
        micro,
        macro_precision: macro_average.precision,
        macro_recall: macro_average.recall,
        macro_f1: macro_average.f1,
        weighted,
        per_label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matches_scikit_learn_on_a_small_case() {
        // sklearn: y_true=[0,0,1,2], y_pred=[0,1,1,1] → precision [1, 1/3, 0], recall [.5, 1, 0]
        let m = classification_metrics(&labels(&["a", "b", "c"]), &[0, 0, 1, 2], &[0, 1, 1, 1]);
        assert_eq!(m.accuracy, 0.5);
        assert!((m.per_class[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].precision - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].f1 - 0.5).abs() < 1e-12);
        assert_eq!(m.per_class[2].f1, 0.0);
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        // weighted F1 = (2·2/3 + 1·0.5 + 1·0) / 4; micro F1 = accuracy
        assert!((m.weighted.f1 - (4.0 / 3.0 + 0.5) / 4.0).abs() < 1e-12);
        assert_eq!(m.micro.f1, 0.5);
        assert_eq!(m.confusion_matrix.counts, vec![vec![1, 1, 0], vec![0, 1, 0], vec![0, 1, 0]]);
    }

    #[test]
    fn calibration_and_coverage_by_hand() {
        let confidence = [0.95, 0.95, 0.55, 0.35, 1.0];
        let correct = [true, false, true, false, true];
        let c = calibration(&confidence, &correct);
        // bins: [0.3,0.4): conf .35 acc 0; [0.5,0.6): .55 acc 1; [0.9,1]: (.95+.95+1)/3, acc 2/3
        let top = (0.95 + 0.95 + 1.0) / 3.0;
        let expected = (0.35 + 0.45 + 3.0 * (top - 2.0 / 3.0)) / 5.0;
        assert!((c.ece - expected).abs() < 1e-12, "{} vs {expected}", c.ece);
        assert_eq!(c.bins[9].documents, 3);
        let cov = coverage(&confidence, &correct, 0.99);
        // Kept at 1.0: one right document; at 0.95 the two tied documents come together.
        assert_eq!(cov.target.as_ref().map(|t| (t.threshold, t.documents)), Some((1.0, 1)));
        let at_090 = cov.table.iter().find(|p| p.threshold == 0.9).unwrap();
        assert_eq!((at_090.documents, at_090.accuracy), (3, 2.0 / 3.0));
        assert_eq!(cov.table[0].documents, 5);
    }

    #[test]
    fn log_loss_clips() {
        let expected = (-(0.5f64).ln() - f64::EPSILON.ln()) / 2.0;
        assert!((log_loss(&[0.5, 0.0]) - expected).abs() < 1e-12);
    }

    #[test]
    fn multi_label_by_hand() {
        let m = multi_label_metrics(&labels(&["a", "b", "c"]), &[vec![0, 1], vec![2]], &[vec![0], vec![2, 1]]);
        assert_eq!(m.subset_accuracy, 0.0);
        assert!((m.hamming_loss - 2.0 / 6.0).abs() < 1e-12);
        // tp 2, predicted 3, gold 3
        assert!((m.micro.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.per_label[1].f1, 0.0);
    }
}
