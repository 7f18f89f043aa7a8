//! Choosing a classifier's settings on out-of-fold logits: the settings compared, how
//! logits are scored, and the blend that stacks the two models (and calibrates each
//! model alone the same way, so the three are scored alike).

use std::collections::BTreeMap;

use serde_json::json;

use super::super::logistic::{balanced_weights, example_loss, minimize, LinearModel};
use crate::decode::scores::argmax;
use crate::eval::classification::{classification_metrics, prf};
use crate::model::head_file::DocumentPooling;

/// One of the settings cross-validation compares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Setting {
    Lexical { c: f64 },
    Dense { pooling: DocumentPooling, c: f64 },
}

impl Setting {
    /// The inverse of the L2 penalty's strength.
    pub(super) fn c(&self) -> f64 {
        match self {
            Setting::Lexical { c } | Setting::Dense { c, .. } => *c,
        }
    }

    /// The same model with another C.
    pub(super) fn with_c(&self, c: f64) -> Setting {
        match *self {
            Setting::Lexical { .. } => Setting::Lexical { c },
            Setting::Dense { pooling, .. } => Setting::Dense { pooling, c },
        }
    }

    pub(super) fn describe(&self) -> serde_json::Value {
        match self {
            Setting::Lexical { c } => json!({"model": "lexical", "c": c}),
            Setting::Dense { pooling, c } => json!({"model": "dense", "pooling": pooling, "c": c}),
        }
    }
}

/// The task: labels, single- or multi-label, and the score settings are chosen on.
pub(super) struct Task<'l> {
    pub(super) labels: &'l [String],
    pub(super) multi_label: bool,
}

impl Task<'_> {
    pub(super) fn score_name(&self) -> &'static str {
        if self.multi_label {
            "micro_f1"
        } else {
            "macro_f1"
        }
    }

    /// Macro-F1 of the argmax (micro-F1 of p ≥ 0.5 for multi-label) of `logits`.
    pub(super) fn score(&self, logits: &[Vec<f32>], gold: &[&[usize]]) -> f64 {
        if self.multi_label {
            let (mut tp, mut predicted, mut total) = (0, 0, 0);
            for (l, g) in logits.iter().zip(gold) {
                for (label, &z) in l.iter().enumerate() {
                    let (is_predicted, is_gold) = (z >= 0.0, g.contains(&label));
                    tp += usize::from(is_predicted && is_gold);
                    predicted += usize::from(is_predicted);
                    total += usize::from(is_gold);
                }
            }
            prf(tp, predicted, total).2
        } else {
            let gold: Vec<usize> = gold.iter().map(|g| g[0]).collect();
            let predicted: Vec<usize> = logits.iter().map(|l| argmax(l)).collect();
            classification_metrics(self.labels, &gold, &predicted).macro_f1
        }
    }

    pub(super) fn log_loss(&self, logits: &[Vec<f32>], gold: &[&[usize]]) -> f64 {
        let total: f64 = logits
            .iter()
            .zip(gold)
            .map(|(l, g)| example_loss(self.multi_label, &LinearModel::activate(self.multi_label, l), g))
            .sum();
        total / logits.len().max(1) as f64
    }
}

/// Out-of-fold logits and their scores: the mean over the folds and the log loss.
pub(super) struct Scored {
    pub(super) logits: Vec<Vec<f32>>,
    pub(super) fold_scores: Vec<f64>,
    pub(super) mean: f64,
    pub(super) log_loss: f64,
}

impl Scored {
    pub(super) fn summary(&self) -> serde_json::Value {
        json!({"mean": self.mean, "fold_scores": self.fold_scores, "log_loss": self.log_loss})
    }
}

/// One setting's out-of-fold logits as fitted, and scored after its own blend.
pub(super) struct Evaluated {
    pub(super) setting: Setting,
    pub(super) raw: Vec<Vec<f32>>,
    pub(super) blend: Blend,
    pub(super) scored: Scored,
}

/// A blend of models' logits: `Σ weight_m · logits_m + c`, with the per-label bias c.
/// Over the two models it is the stacking; over one, it rescales and shifts that
/// model's logits, which is how each model alone is scored (so that the lexical-only,
/// dense-only and combined scores are measured alike).
#[derive(Clone, Debug)]
pub(super) struct Blend {
    pub(super) weights: Vec<f32>,
    pub(super) bias: Vec<f32>,
    /// Whether every label weighed the same in the loss it was fitted on.
    pub(super) balanced: bool,
}

impl Blend {
    pub(super) fn logits(&self, parts: &[&[f32]]) -> Vec<f32> {
        let mut out = self.bias.clone();
        for (part, w) in parts.iter().zip(&self.weights) {
            out.iter_mut().zip(*part).for_each(|(o, z)| *o += w * z);
        }
        out
    }

    /// The weights and bias with the lowest (label-weighted) log loss of the blended
    /// logits of `models` (each: one logit row per example).
    pub(super) fn fit(task: &Task, models: &[&[Vec<f32>]], gold: &[&[usize]], balanced: bool) -> Blend {
        let (k, m) = (task.labels.len(), models.len());
        let label_weights: Vec<f32> =
            if balanced { balanced_weights(gold.iter().map(|g| g[0]), k) } else { vec![1.0; k] };
        let n = gold.len().max(1) as f32;
        let mut objective = |p: &[f32], grad: &mut [f32]| -> f64 {
            let blend = Blend { weights: p[..m].to_vec(), bias: p[m..].to_vec(), balanced };
            grad.fill(0.0);
            let mut loss = 0.0f64;
            for (i, g) in gold.iter().enumerate() {
                let parts: Vec<&[f32]> = models.iter().map(|l| &l[i][..]).collect();
                let w = if task.multi_label { 1.0 } else { label_weights[g[0]] };
                let probs = LinearModel::activate(task.multi_label, &blend.logits(&parts));
                loss += f64::from(w) * example_loss(task.multi_label, &probs, g);
                for y in 0..k {
                    let dy = w * (probs[y] - f32::from(u8::from(g.contains(&y)))) / n;
                    for (gm, part) in grad[..m].iter_mut().zip(&parts) {
                        *gm += dy * part[y];
                    }
                    grad[m + y] += dy;
                }
            }
            loss / f64::from(n)
        };
        let mut start = vec![0.0f32; m + k];
        start[..m].fill(1.0 / m as f32);
        let p = minimize(start, 1e-6, &mut objective);
        Blend { weights: p[..m].to_vec(), bias: p[m..].to_vec(), balanced }
    }

    /// The better blend of `models`, fitted with and without balanced label weights
    /// (by the mean fold score), and its evaluation.
    pub(super) fn choose(
        task: &Task,
        models: &[&[Vec<f32>]],
        gold: &[&[usize]],
        evaluate: impl Fn(Vec<Vec<f32>>) -> Scored,
    ) -> (Blend, Scored) {
        let options: &[bool] = if task.multi_label { &[false] } else { &[false, true] };
        options
            .iter()
            .map(|&balanced| {
                let blend = Blend::fit(task, models, gold, balanced);
                let logits = (0..gold.len())
                    .map(|i| blend.logits(&models.iter().map(|l| &l[i][..]).collect::<Vec<_>>()))
                    .collect();
                (blend, evaluate(logits))
            })
            .reduce(|a, b| if b.1.mean > a.1.mean { b } else { a })
            .expect("at least one option")
    }
}

/// `k` folds of examples whose (first) labels are `labels` (indices, ascending): each
/// label's examples, in order, cut into `k` contiguous blocks, block `f` of every label
/// going to fold `f`.
pub(super) fn blocked_folds(labels: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut by_label: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        by_label.entry(label).or_default().push(i);
    }
    let mut folds = vec![Vec::new(); k];
    for positions in by_label.values() {
        let n = positions.len();
        for (f, fold) in folds.iter_mut().enumerate() {
            fold.extend(&positions[f * n / k..(f + 1) * n / k]);
        }
    }
    folds.iter_mut().for_each(|fold| fold.sort_unstable());
    folds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_contiguous_blocks_of_each_label() {
        // Label 0 at positions 0-5, label 1 at 6-9: each cut into 2 blocks.
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
        assert_eq!(blocked_folds(&labels, 2), vec![vec![0, 1, 2, 6, 7], vec![3, 4, 5, 8, 9]]);
        // Interleaved labels keep their own order.
        assert_eq!(blocked_folds(&[0, 1, 0, 1, 0, 1], 3), vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
    }

    #[test]
    fn stacking_weighs_the_informative_model() {
        // The lexical logits know the label, the dense ones are noise: β ≫ |α|.
        let labels = ["a".to_string(), "b".to_string()];
        let task = Task { labels: &labels, multi_label: false };
        let gold_labels: Vec<Vec<usize>> = (0..40).map(|i| vec![i % 2]).collect();
        let gold: Vec<&[usize]> = gold_labels.iter().map(|g| &g[..]).collect();
        let lexical: Vec<Vec<f32>> = gold_labels
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let sure = if i % 10 == 0 { -1.0 } else { 1.0 };
                if g[0] == 0 {
                    vec![sure, -sure]
                } else {
                    vec![-sure, sure]
                }
            })
            .collect();
        let dense: Vec<Vec<f32>> =
            (0..40).map(|i| if (i / 2) % 2 == 0 { vec![1.0, -1.0] } else { vec![-1.0, 1.0] }).collect();
        let blend = Blend::fit(&task, &[&dense, &lexical], &gold, false);
        assert!(blend.weights[1] > 0.5 && blend.weights[0].abs() < 0.2 * blend.weights[1], "{blend:?}");
    }
}
