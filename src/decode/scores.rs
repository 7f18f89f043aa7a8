//! Probabilities from logits, and ranked label scores.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// Softmax computed as transformers does (shift by the maximum first).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

pub fn sigmoid(logits: &[f32]) -> Vec<f32> {
    logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect()
}

/// Index of the highest score; the first one on ties, as numpy's argmax.
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

/// Labels by descending score (label order on ties), cut to `top_k` if given.
pub fn rank(labels: &[String], scores: &[f32], top_k: Option<usize>) -> Vec<LabelScore> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(top_k.unwrap_or(labels.len()));
    order.into_iter().map(|i| LabelScore { label: labels[i].clone(), score: scores[i] }).collect()
}

/// The element-wise maximum of rows of equal length (empty for no rows).
pub fn window_max<'a>(rows: impl IntoIterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut max: Vec<f32> = Vec::new();
    for row in rows {
        if max.is_empty() {
            max = row.to_vec();
        } else {
            max.iter_mut().zip(row).for_each(|(m, &x)| *m = m.max(x));
        }
    }
    max
}

/// Weighted mean of equally long rows.
pub fn weighted_mean<'a>(rows: impl IntoIterator<Item = (&'a [f32], f32)>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    let mut total = 0.0f32;
    for (row, weight) in rows {
        if sum.is_empty() {
            sum = vec![0.0; row.len()];
        }
        for (s, &x) in sum.iter_mut().zip(row) {
            *s += weight * x;
        }
        total += weight;
    }
    sum.iter_mut().for_each(|s| *s /= total);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_is_shift_invariant() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(p, softmax(&[1001.0, 1002.0, 1003.0]));
        assert!((p[2] - 0.665_240_9).abs() < 1e-6);
    }

    #[test]
    fn rank_orders_by_score_then_label_order() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let ranked = rank(&labels, &[0.2, 0.4, 0.4], Some(2));
        assert_eq!(ranked.iter().map(|l| l.label.as_str()).collect::<Vec<_>>(), vec!["b", "c"]);
    }

    #[test]
    fn weighted_mean_weights_rows() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        assert_eq!(weighted_mean([(&a[..], 3.0), (&b[..], 1.0)]), vec![0.75, 0.25]);
    }
}
