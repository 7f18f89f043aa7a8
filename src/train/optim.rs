//! What both heads' fitting shares: feature standardisation, Adam, and the epoch loop
//! with early stopping on the development score, a progress bar and a training log.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use half::f16;
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::json;

use crate::logging;
use crate::rng::Rng;

/// Per-dimension mean and standard deviation of the training features. Heads train on
/// standardised features (the encoder's outputs have dimensions of very different
/// scale) and fold the standardisation into their weights when saved.
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
}

impl Standardizer {
    pub fn fit<'a>(rows: impl Iterator<Item = &'a [f16]>, dim: usize) -> Self {
        let mut sum = vec![0.0f64; dim];
        let mut squares = vec![0.0f64; dim];
        let mut n = 0usize;
        for row in rows {
            for ((s, q), x) in sum.iter_mut().zip(&mut squares).zip(row) {
                let x = f64::from(x.to_f32());
                *s += x;
                *q += x * x;
            }
            n += 1;
        }
        let n = n.max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let scale = sum
            .iter()
            .zip(&squares)
            .map(|(s, q)| ((q / n - (s / n).powi(2)).max(0.0).sqrt() as f32).max(1e-6))
            .collect();
        Self { mean, scale }
    }

    pub fn apply(&self, row: &[f16], out: &mut [f32]) {
        for (((o, x), m), s) in out.iter_mut().zip(row).zip(&self.mean).zip(&self.scale) {
            *o = (x.to_f32() - m) / s;
        }
    }

    /// Weights `[k, dim]` and bias for standardised inputs → the same function of raw inputs.
    pub fn fold(&self, weights: &[f32], bias: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let dim = self.mean.len();
        let mut folded = weights.to_vec();
        let mut folded_bias = bias.to_vec();
        for (row, b) in folded.chunks_exact_mut(dim).zip(&mut folded_bias) {
            for ((w, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *w /= s;
                *b -= *w * m;
            }
        }
        (folded, folded_bias)
    }
}

/// Adam with lazy updates: a sparse parameter block updates only the rows a batch
/// touched (the lexical tables have millions of weights, a batch uses a few thousand).
pub struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    pub learning_rate: f32,
    pub l2: f32,
    step: i32,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

impl Adam {
    pub fn new(parameters: usize, learning_rate: f32, l2: f32) -> Self {
        Self { m: vec![0.0; parameters], v: vec![0.0; parameters], learning_rate, l2, step: 0 }
    }

    /// Starts a step; call before the updates of one batch.
    pub fn next_step(&mut self) {
        self.step += 1;
    }

    /// Updates `params[at..at + grads.len()]` (positions in the whole parameter vector)
    /// with the learning rate times `scale`.
    pub fn update(&mut self, params: &mut [f32], at: usize, grads: &[f32], scale: f32) {
        let correction1 = 1.0 - BETA1.powi(self.step);
        let correction2 = 1.0 - BETA2.powi(self.step);
        let rate = self.learning_rate * scale * correction2.sqrt() / correction1;
        let range = at..at + grads.len();
        for (((p, m), v), &g) in
            params[range.clone()].iter_mut().zip(&mut self.m[range.clone()]).zip(&mut self.v[range]).zip(grads)
        {
            let g = g + self.l2 * *p;
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= rate * *m / (v.sqrt() + EPSILON);
        }
    }
}

/// One line of the training log.
#[derive(Clone, Debug, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub learning_rate: f32,
    pub train_loss: f64,
    /// The development score the head is selected on (named in the log's first line).
    pub dev_score: f64,
    pub seconds: f64,
    pub best: bool,
}

/// Runs epochs until `max_epochs` or `patience` epochs without a better development
/// score; keeps the parameters of the best epoch. After an epoch without improvement
/// the learning rate is halved (and training goes on from the best parameters), so
/// that Adam settles into the optimum instead of circling it. `step(params,
/// learning_rate, batch)` trains on the examples of one batch and returns their summed
/// loss; `score(params)` is the development score.
pub struct EpochLoop<'a> {
    pub learning_rate: f32,
    /// Examples per step, drawn in a new order each epoch from `seed`.
    pub batch_size: usize,
    pub seed: u64,
    pub max_epochs: usize,
    pub patience: usize,
    pub score_name: &'a str,
    pub log_path: &'a Path,
    pub examples: usize,
}

pub struct Fitted {
    pub params: Vec<f32>,
    pub best_epoch: usize,
    pub best_score: f64,
    pub log: Vec<EpochRecord>,
    pub seconds: f64,
}

impl EpochLoop<'_> {
    pub fn run(
        &self,
        mut params: Vec<f32>,
        mut step: impl FnMut(&mut Vec<f32>, f32, &[usize]) -> f64,
        score: impl Fn(&[f32]) -> f64,
    ) -> Result<Fitted> {
        let started = Instant::now();
        if let Some(parent) = self.log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut log_file =
            std::fs::File::create(self.log_path).with_context(|| format!("creating {}", self.log_path.display()))?;
        writeln!(log_file, "{}", json!({"dev_score": self.score_name}))?;
        let mut best: Option<(f64, usize, Vec<f32>)> = None;
        let mut log = Vec::new();
        let mut learning_rate = self.learning_rate;
        let mut rng = Rng::new(self.seed);
        for e in 1..=self.max_epochs {
            let epoch_started = Instant::now();
            let train_loss = self.epoch((e, self.max_epochs), &mut rng, &mut params, &mut step, learning_rate);
            let dev_score = score(&params);
            let improved = best.as_ref().is_none_or(|(s, _, _)| dev_score > *s);
            let record = EpochRecord {
                epoch: e,
                learning_rate,
                train_loss,
                dev_score,
                seconds: epoch_started.elapsed().as_secs_f64(),
                best: improved,
            };
            if improved {
                best = Some((dev_score, e, params.clone()));
            } else {
                learning_rate /= 2.0;
                params.clone_from(&best.as_ref().expect("an earlier epoch was best").2);
            }
            logging::info(
                "epoch",
                &format!(
                    "epoch {e:>2}: train loss {train_loss:.4}, dev {} {dev_score:.4}{} ({:.0} s)",
                    self.score_name,
                    if improved { " (best)" } else { "" },
                    record.seconds
                ),
                json!(record),
            );
            writeln!(log_file, "{}", serde_json::to_string(&record)?)?;
            log.push(record);
            let best_epoch = best.as_ref().map_or(e, |b| b.1);
            if e - best_epoch >= self.patience {
                logging::info(
                    "early_stop",
                    &format!("no better dev score for {} epochs: stopping", self.patience),
                    json!({"patience": self.patience, "best_epoch": best_epoch}),
                );
                break;
            }
        }
        let (best_score, best_epoch, params) = best.context("no epoch was run (--epochs 0)")?;
        Ok(Fitted { params, best_epoch, best_score, log, seconds: started.elapsed().as_secs_f64() })
    }
}

impl EpochLoop<'_> {
    /// Runs one epoch per learning rate in `schedule`, shuffled from the same seed, with
    /// no development score, following what selection chose: the final fit on training
    /// and development data together, or a cross-validation fold. `what` names it in
    /// messages and in the training log, which it appends to.
    pub fn replay(
        &self,
        mut params: Vec<f32>,
        mut step: impl FnMut(&mut Vec<f32>, f32, &[usize]) -> f64,
        schedule: &[f32],
        what: &str,
    ) -> Result<Vec<f32>> {
        let mut log_file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.log_path)
            .with_context(|| format!("appending to {}", self.log_path.display()))?;
        writeln!(log_file, "{}", json!({"replay": what, "epochs": schedule.len(), "examples": self.examples}))?;
        let mut rng = Rng::new(self.seed);
        for (e, &learning_rate) in schedule.iter().enumerate() {
            let epoch_started = Instant::now();
            let train_loss = self.epoch((e + 1, schedule.len()), &mut rng, &mut params, &mut step, learning_rate);
            let seconds = epoch_started.elapsed().as_secs_f64();
            let record = json!({
                "replay": what, "epoch": e + 1, "learning_rate": learning_rate, "train_loss": train_loss, "seconds": seconds,
            });
            logging::info(
                "replay_epoch",
                &format!("{what} epoch {:>2}: loss {train_loss:.4} ({seconds:.0} s)", e + 1),
                record.clone(),
            );
            writeln!(log_file, "{record}")?;
        }
        Ok(params)
    }
}

impl EpochLoop<'_> {
    /// One pass over the examples in a new order from `rng`; returns the mean loss.
    /// `(epoch, epochs)` label the progress bar.
    fn epoch(
        &self,
        (epoch, epochs): (usize, usize),
        rng: &mut Rng,
        params: &mut Vec<f32>,
        step: &mut impl FnMut(&mut Vec<f32>, f32, &[usize]) -> f64,
        learning_rate: f32,
    ) -> f64 {
        let bar = epoch_bar(epoch, epochs, self.examples);
        let mut order: Vec<usize> = (0..self.examples).collect();
        rng.shuffle(&mut order);
        let mut loss = 0.0;
        for batch in order.chunks(self.batch_size.max(1)) {
            loss += step(params, learning_rate, batch);
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        loss / self.examples.max(1) as f64
    }
}

impl Fitted {
    /// The learning rates of the epochs that improved the development score, in order:
    /// the path that led to the selected parameters.
    pub fn selected_schedule(&self) -> Vec<f32> {
        self.log.iter().filter(|r| r.best).map(|r| r.learning_rate).collect()
    }
}

fn epoch_bar(epoch: usize, epochs: usize, examples: usize) -> ProgressBar {
    let bar = logging::progress_bar(
        examples as u64,
        "epoch {prefix}: {bar:30} {pos}/{len} · {elapsed}, ETA {eta} {msg}",
        false,
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
