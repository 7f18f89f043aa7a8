//! Single-label classification metrics: accuracy, per-class precision/recall/F1/support
//! and their macro average, as scikit-learn computes them (a class with no prediction
//! has precision 0; F1 is 0 where precision + recall is 0).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassificationMetrics {
    pub documents: usize,
    pub accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassScores>,
}

/// `gold` and `predicted` are label indices into `labels`, one pair per document.
/// Classes that occur in neither are left out of the averages, as scikit-learn does.
pub fn classification_metrics(labels: &[String], gold: &[usize], predicted: &[usize]) -> ClassificationMetrics {
    assert_eq!(gold.len(), predicted.len(), "one prediction per gold label");
    let k = labels.len();
    let (mut tp, mut gold_count, mut predicted_count) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    for (&g, &p) in gold.iter().zip(predicted) {
        gold_count[g] += 1;
        predicted_count[p] += 1;
        if g == p {
            tp[g] += 1;
        }
    }
    let per_class: Vec<ClassScores> = (0..k)
        .filter(|&c| gold_count[c] + predicted_count[c] > 0)
        .map(|c| {
            let (precision, recall, f1) = prf(tp[c], predicted_count[c], gold_count[c]);
            ClassScores { label: labels[c].clone(), precision, recall, f1, support: gold_count[c] }
        })
        .collect();
    let n = per_class.len().max(1) as f64;
    ClassificationMetrics {
        documents: gold.len(),
        accuracy: tp.iter().sum::<usize>() as f64 / gold.len().max(1) as f64,
        macro_precision: per_class.iter().map(|c| c.precision).sum::<f64>() / n,
        macro_recall: per_class.iter().map(|c| c.recall).sum::<f64>() / n,
        macro_f1: per_class.iter().map(|c| c.f1).sum::<f64>() / n,
        per_class,
    }
}

/// Precision, recall and F1 from true positives, predicted and gold counts.
pub fn prf(tp: usize, predicted: usize, gold: usize) -> (f64, f64, f64) {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (p, r) = (ratio(tp, predicted), ratio(tp, gold));
    let f1 = if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
    (p, r, f1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_on_a_small_case() {
        // sklearn: y_true=[0,0,1,2], y_pred=[0,1,1,1] → precision [1, 1/3, 0], recall [.5, 1, 0]
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let m = classification_metrics(&labels, &[0, 0, 1, 2], &[0, 1, 1, 1]);
        assert_eq!(m.accuracy, 0.5);
        assert!((m.per_class[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].precision - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].f1 - 0.5).abs() < 1e-12);
        assert_eq!(m.per_class[2].f1, 0.0);
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
    }
}
