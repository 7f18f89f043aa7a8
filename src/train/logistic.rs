//! L2-regularised logistic regression fitted to convergence with L-BFGS, as
//! scikit-learn's `LogisticRegression(C=…, solver="lbfgs")` fits it: the intercept is
//! not penalised, the objective is `C · Σ loss + ½ ‖W‖²` (here divided by the number of
//! examples). Softmax over labels, or one sigmoid per label for multi-label data.
//!
//! Inputs are rows of dense features (standardised encoder features) and sparse
//! features (TF-IDF columns), either of which may be empty. Every sum runs in a fixed
//! order whatever the thread count, so the same data gives the same weights.
//!
//! ~450 lines: the objective, its gradient and the L-BFGS loop belong together.

use rayon::prelude::*;

use crate::decode::scores::{sigmoid, softmax};

/// One example: dense features, sparse `(column, value)` features sorted by column,
/// and its label indices.
pub struct Row {
    pub dense: Vec<f32>,
    pub sparse: Vec<(u32, f32)>,
    pub labels: Vec<usize>,
}

/// The shape of a problem.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub labels: usize,
    pub dense: usize,
    pub sparse: usize,
    pub multi_label: bool,
}

/// Fitted weights: dense `[labels, dense]`, sparse `[sparse, labels]`, bias `[labels]`,
/// one flat vector in that order.
#[derive(Clone, Debug)]
pub struct LinearModel {
    pub shape: Shape,
    pub params: Vec<f32>,
}

impl LinearModel {
    pub fn zeros(shape: Shape) -> Self {
        Self { shape, params: vec![0.0; shape.labels * (shape.dense + shape.sparse + 1)] }
    }

    pub fn dense(&self) -> &[f32] {
        &self.params[..self.shape.labels * self.shape.dense]
    }

    pub fn sparse(&self) -> &[f32] {
        let at = self.shape.labels * self.shape.dense;
        &self.params[at..at + self.shape.labels * self.shape.sparse]
    }

    pub fn bias(&self) -> &[f32] {
        &self.params[self.params.len() - self.shape.labels..]
    }

    pub fn logits(&self, row: &Row) -> Vec<f32> {
        let Shape { labels: k, dense: dim, .. } = self.shape;
        let mut logits = self.bias().to_vec();
        if dim > 0 {
            for (l, w) in logits.iter_mut().zip(self.dense().chunks_exact(dim)) {
                *l += dot_f32(w, &row.dense);
            }
        }
        let sparse = self.sparse();
        for &(column, value) in &row.sparse {
            let weights = &sparse[column as usize * k..(column as usize + 1) * k];
            logits.iter_mut().zip(weights).for_each(|(l, w)| *l += value * w);
        }
        logits
    }

    /// Probabilities from logits: softmax, or a sigmoid per label.
    pub fn activate(multi_label: bool, logits: &[f32]) -> Vec<f32> {
        if multi_label {
            sigmoid(logits)
        } else {
            softmax(logits)
        }
    }
}

/// A dot product in eight independent lanes, which the compiler turns into SIMD (a
/// single running sum must be added in order and stays scalar).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The negative log-likelihood of `labels` under `probs`.
pub fn example_loss(multi_label: bool, probs: &[f32], labels: &[usize]) -> f64 {
    if multi_label {
        probs
            .iter()
            .enumerate()
            .map(|(l, &p)| -f64::from(if labels.contains(&l) { p } else { 1.0 - p }).max(1e-12).ln())
            .sum()
    } else {
        -f64::from(probs[labels[0]]).max(1e-12).ln()
    }
}

/// Each label's weight so that every label weighs as much in the loss as any other
/// (scikit-learn's `class_weight="balanced"`: n / (labels · count)), from each
/// example's (first) label.
pub fn balanced_weights(first_labels: impl Iterator<Item = usize>, labels: usize) -> Vec<f32> {
    let mut counts = vec![0usize; labels];
    let mut n = 0usize;
    first_labels.for_each(|l| {
        counts[l] += 1;
        n += 1;
    });
    counts.iter().map(|&c| if c == 0 { 0.0 } else { n as f32 / (labels * c) as f32 }).collect()
}

/// Rows per parallel task; fixed, so that sums do not depend on the thread count.
const ROWS_PER_TASK: usize = 64;
/// Dense or sparse columns per parallel task of the gradient.
const COLUMNS_PER_TASK: usize = 256;

/// The columns of the sparse features: for each column, the rows that use it and the
/// value, so that the gradient of a column is one pass over its own entries.
struct ByColumn {
    starts: Vec<usize>,
    entries: Vec<(u32, f32)>,
}

impl ByColumn {
    fn new(rows: &[Row], columns: usize) -> Self {
        let mut starts = vec![0usize; columns + 1];
        rows.iter().flat_map(|r| &r.sparse).for_each(|&(c, _)| starts[c as usize + 1] += 1);
        for c in 0..columns {
            starts[c + 1] += starts[c];
        }
        let mut next = starts.clone();
        let mut entries = vec![(0u32, 0.0f32); starts[columns]];
        for (i, row) in rows.iter().enumerate() {
            for &(c, v) in &row.sparse {
                entries[next[c as usize]] = (i as u32, v);
                next[c as usize] += 1;
            }
        }
        Self { starts, entries }
    }
}

/// A fit: the examples, their shape and the penalty.
pub struct Fit<'a> {
    pub rows: &'a [Row],
    pub shape: Shape,
    /// The inverse of the L2 penalty's strength, as scikit-learn's `C`.
    pub c: f64,
}

/// A fit's data laid out for its objective: the dense features as one row-major
/// matrix (for GEMM), the sparse ones also by column.
struct Layout {
    dense: Vec<f32>,
    by_column: ByColumn,
}

impl Fit<'_> {
    /// Fits from `start` (a warm start from a nearby `C`, or zeros).
    pub fn run(&self, start: Option<&LinearModel>) -> LinearModel {
        let layout = Layout {
            dense: self.rows.iter().flat_map(|r| r.dense.iter().copied()).collect(),
            by_column: ByColumn::new(self.rows, self.shape.sparse),
        };
        let initial = start.map_or_else(|| LinearModel::zeros(self.shape), LinearModel::clone);
        // scikit-learn stops at a largest gradient entry of 1e-4 of C · Σ loss + ½‖W‖²;
        // this objective is that divided by C · n.
        let tolerance = 1e-4 / (self.c * self.rows.len().max(1) as f64);
        let params =
            minimize(initial.params, tolerance, &mut |p: &[f32], grad: &mut [f32]| self.objective(&layout, p, grad));
        LinearModel { shape: self.shape, params }
    }

    /// The objective at `p`, its gradient written into `grad`.
    fn objective(&self, layout: &Layout, p: &[f32], grad: &mut [f32]) -> f64 {
        let Shape { labels: k, dense: dim, sparse, multi_label } = self.shape;
        let n = self.rows.len();
        let scale = 1.0 / n.max(1) as f32;
        let (weights_dense, rest) = p.split_at(k * dim);
        let (weights_sparse, bias) = rest.split_at(k * sparse);
        // Logits `[n, k]`: bias, plus X Wᵀ, plus the sparse features.
        let mut logits: Vec<f32> = (0..n).flat_map(|_| bias.iter().copied()).collect();
        if dim > 0 && n > 0 {
            // SAFETY: the strides describe X `[n, dim]`, Wᵀ (W is `[k, dim]`) and logits `[n, k]`.
            unsafe {
                gemm::gemm(
                    n,
                    k,
                    dim,
                    logits.as_mut_ptr(),
                    1,
                    k as isize,
                    true,
                    layout.dense.as_ptr(),
                    1,
                    dim as isize,
                    weights_dense.as_ptr(),
                    dim as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(rayon::current_num_threads()),
                );
            }
        }
        // Per row: the sparse part of the logits, then the loss and its gradient by the
        // logits (written over the logits).
        let losses: Vec<f64> = logits
            .par_chunks_mut(ROWS_PER_TASK * k)
            .zip(self.rows.par_chunks(ROWS_PER_TASK))
            .flat_map_iter(|(logits, rows)| {
                logits
                    .chunks_exact_mut(k)
                    .zip(rows)
                    .map(|(z, row)| {
                        for &(column, value) in &row.sparse {
                            let w = &weights_sparse[column as usize * k..(column as usize + 1) * k];
                            z.iter_mut().zip(w).for_each(|(z, w)| *z += value * w);
                        }
                        let probs = LinearModel::activate(multi_label, z);
                        let loss = example_loss(multi_label, &probs, &row.labels);
                        z.copy_from_slice(&probs);
                        for &l in &row.labels {
                            z[l] -= 1.0;
                        }
                        z.iter_mut().for_each(|g| *g *= scale);
                        loss
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let logit_grad = logits;
        let loss = losses.iter().sum::<f64>() * f64::from(scale);
        let (dense_grad, rest) = grad.split_at_mut(k * dim);
        let (sparse_grad, bias_grad) = rest.split_at_mut(k * sparse);
        if dim > 0 && n > 0 {
            // SAFETY: Gᵀ (G is `[n, k]`) times X `[n, dim]` into `[k, dim]`.
            unsafe {
                gemm::gemm(
                    k,
                    dim,
                    n,
                    dense_grad.as_mut_ptr(),
                    1,
                    dim as isize,
                    false,
                    logit_grad.as_ptr(),
                    k as isize,
                    1,
                    layout.dense.as_ptr(),
                    1,
                    dim as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(rayon::current_num_threads()),
                );
            }
        } else {
            dense_grad.fill(0.0);
        }
        let by_column = &layout.by_column;
        sparse_grad.par_chunks_mut(COLUMNS_PER_TASK * k).enumerate().for_each(|(task, out)| {
            for (j, o) in out.chunks_exact_mut(k).enumerate() {
                let column = task * COLUMNS_PER_TASK + j;
                o.fill(0.0);
                for &(row, value) in &by_column.entries[by_column.starts[column]..by_column.starts[column + 1]] {
                    let g = &logit_grad[row as usize * k..(row as usize + 1) * k];
                    o.iter_mut().zip(g).for_each(|(o, g)| *o += value * g);
                }
            }
        });
        bias_grad.fill(0.0);
        for g in logit_grad.chunks_exact(k) {
            bias_grad.iter_mut().zip(g).for_each(|(b, g)| *b += g);
        }
        // The penalty ½‖W‖² / (C n) on every weight but the bias.
        let penalty = 1.0 / (self.c * n.max(1) as f64);
        let weights = k * (dim + sparse);
        let mut squares = 0.0f64;
        for (g, &w) in grad[..weights].iter_mut().zip(&p[..weights]) {
            *g += (penalty as f32) * w;
            squares += f64::from(w) * f64::from(w);
        }
        loss + 0.5 * penalty * squares
    }
}

/// Most L-BFGS iterations of one fit (scikit-learn's default for lbfgs).
const MAX_ITERATIONS: usize = 100;
/// Correction pairs L-BFGS keeps.
const MEMORY: usize = 8;
/// Converged when an iteration lowers the objective by less than this, relatively.
const RELATIVE_DECREASE: f64 = 1e-9;

/// Vector entries per parallel task of the L-BFGS vector operations; fixed, so that
/// the sums do not depend on the thread count.
const ENTRIES_PER_TASK: usize = 1 << 14;

/// `a · b`, summed in f64 per fixed block, the blocks added in order.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let partial: Vec<f64> = a
        .par_chunks(ENTRIES_PER_TASK)
        .zip(b.par_chunks(ENTRIES_PER_TASK))
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum())
        .collect();
    partial.iter().sum()
}

/// `y += a · x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.par_chunks_mut(ENTRIES_PER_TASK)
        .zip(x.par_chunks(ENTRIES_PER_TASK))
        .for_each(|(y, x)| y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x));
}

/// `out = a - b`.
fn difference(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.par_chunks_mut(ENTRIES_PER_TASK)
        .zip(a.par_chunks(ENTRIES_PER_TASK).zip(b.par_chunks(ENTRIES_PER_TASK)))
        .for_each(|(o, (a, b))| o.iter_mut().zip(a).zip(b).for_each(|((o, a), b)| *o = a - b));
}

/// Minimises a smooth convex `objective(params, grad) -> value` with L-BFGS and a
/// backtracking (Armijo) line search, until the largest gradient entry is below
/// `tolerance`, the objective stops falling, or [`MAX_ITERATIONS`].
pub fn minimize(mut x: Vec<f32>, tolerance: f64, objective: &mut dyn FnMut(&[f32], &mut [f32]) -> f64) -> Vec<f32> {
    let n = x.len();
    let mut g = vec![0.0f32; n];
    let mut f = objective(&x, &mut g);
    // Correction pairs (s, y, 1 / s·y), oldest first; their buffers are reused.
    let mut history: std::collections::VecDeque<(Vec<f32>, Vec<f32>, f64)> = std::collections::VecDeque::new();
    let mut x_new = vec![0.0f32; n];
    let mut g_new = vec![0.0f32; n];
    let mut d = vec![0.0f32; n];
    for _ in 0..MAX_ITERATIONS {
        if f64::from(g.par_iter().map(|v| v.abs()).reduce(|| 0.0f32, f32::max)) < tolerance {
            break;
        }
        // Two-loop recursion: d = -H g.
        d.par_iter_mut().zip(&g).for_each(|(d, g)| *d = -g);
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &d);
            axpy(&mut d, -(a as f32), y);
            alphas.push(a);
        }
        let gamma = history
            .back()
            .map_or_else(|| 1.0 / dot(&g, &g).sqrt().max(1e-12), |(s, y, _)| dot(s, y) / dot(y, y).max(1e-30));
        d.par_iter_mut().for_each(|v| *v *= gamma as f32);
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &d);
            axpy(&mut d, (a - b) as f32, s);
        }
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (curvature lost to rounding): restart from the gradient.
            history.clear();
            d.par_iter_mut().zip(&g).for_each(|(d, g)| *d = -g);
            slope = dot(&g, &d);
        }
        let mut step = 1.0f32;
        let mut f_new;
        loop {
            x_new.par_iter_mut().zip(&x).zip(&d).for_each(|((n, x), d)| *n = x + step * d);
            f_new = objective(&x_new, &mut g_new);
            if f_new <= f + 1e-4 * f64::from(step) * slope || step < 1e-10 {
                break;
            }
            step *= 0.5;
        }
        if f_new > f {
            break;
        }
        let (mut s, mut y) = if history.len() == MEMORY {
            let (s, y, _) = history.pop_front().expect("full");
            (s, y)
        } else {
            (vec![0.0f32; n], vec![0.0f32; n])
        };
        difference(&mut s, &x_new, &x);
        difference(&mut y, &g_new, &g);
        let sy = dot(&s, &y);
        let decrease = (f - f_new) / f.abs().max(1.0);
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        f = f_new;
        if sy > 1e-12 {
            history.push_back((s, y, 1.0 / sy));
        }
        if decrease < RELATIVE_DECREASE {
            break;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimize_finds_the_minimum_of_a_quadratic() {
        // f = (x - 3)² + 10 (y + 1)²
        let mut objective = |p: &[f32], g: &mut [f32]| {
            g[0] = 2.0 * (p[0] - 3.0);
            g[1] = 20.0 * (p[1] + 1.0);
            f64::from((p[0] - 3.0).powi(2) + 10.0 * (p[1] + 1.0).powi(2))
        };
        let x = minimize(vec![0.0, 0.0], 1e-6, &mut objective);
        assert!((x[0] - 3.0).abs() < 1e-3 && (x[1] + 1.0).abs() < 1e-3, "{x:?}");
    }

    #[test]
    fn the_fit_satisfies_the_optimality_condition() {
        // Two labels, one dense and two sparse features; at the optimum the gradient of
        // the loss balances the penalty: Σ (p - y) x / n + w / (C n) = 0.
        let rows: Vec<Row> = (0..40)
            .map(|i| {
                let label = i % 2;
                let x = if (i * 7) % 5 < 3 { label as f32 } else { 1.0 - label as f32 };
                Row { dense: vec![x - 0.5], sparse: vec![(label as u32, 1.0), (2, 0.5)], labels: vec![label] }
            })
            .collect();
        let shape = Shape { labels: 2, dense: 1, sparse: 3, multi_label: false };
        let fit = Fit { rows: &rows, shape, c: 1.0 };
        let model = fit.run(None);
        let mut grad = vec![0.0f32; model.params.len()];
        let layout =
            Layout { dense: rows.iter().flat_map(|r| r.dense.clone()).collect(), by_column: ByColumn::new(&rows, 3) };
        fit.objective(&layout, &model.params, &mut grad);
        assert!(grad.iter().all(|g| g.abs() < 1e-4), "{grad:?}");
        // Column 0 marks label 0: its weight favours label 0.
        assert!(model.sparse()[0] > model.sparse()[1]);
    }
}
