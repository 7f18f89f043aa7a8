//! The tagger's parameters and their gradient: one flat vector (the emitter's weights,
//! the lexical table, the transitions) that Adam and the epoch loop move, the CRF's
//! gradient by forward-backward, each emitter's emissions, and the context layer's
//! gradient by candle's autograd (its weights' layout is in `context`).

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::context::ContextEmitter;
use crate::model::head_file::{ContextSpec, LexicalTable};
use crate::model::heads::context::{unpadded, ContextLayer, Dropout};
use crate::model::heads::tagger::{forward_backward, viterbi, Transitions};
use crate::rng::Rng;
use crate::train::cache::FeatureSet;
use crate::train::optim::{Adam, Standardizer};

/// A training or development sentence as fitting reads it.
pub(super) struct Prepared<'a> {
    pub(super) features: &'a FeatureSet,
    pub(super) index: usize,
    pub(super) words: &'a [String],
    pub(super) gold: &'a [String],
    /// Hashed word features, per word.
    pub(super) lexical: Vec<Vec<u32>>,
    /// What each lexical weight counts: 1, or more in a training copy with some of the
    /// features dropped.
    pub(super) lexical_scale: f32,
    pub(super) tags: Vec<usize>,
}

impl<'a> Prepared<'a> {
    /// A training copy with each hashed feature dropped at `rate`, the others counted
    /// 1 / (1 − rate) times, so that a word's expected lexical score stays what decoding,
    /// which reads them all, sees.
    fn with_lexical_dropped(&self, rate: f32, rng: &mut Rng) -> Prepared<'a> {
        let lexical = self
            .lexical
            .iter()
            .map(|buckets| buckets.iter().copied().filter(|_| rng.next_f32() >= rate).collect())
            .collect();
        Prepared { lexical, lexical_scale: self.lexical_scale / (1.0 - rate), tags: self.tags.clone(), ..*self }
    }
}

/// Indices of `sentences` in batches of `size` sentences of similar length (sorted by
/// length; ties in order), so that a batch pads little.
fn by_length(sentences: &[Prepared], size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sentences.len()).collect();
    order.sort_by_key(|&i| sentences[i].tags.len());
    order.chunks(size.max(1)).map(<[usize]>::to_vec).collect()
}

/// What turns a word's encoder features into emission scores.
pub(super) enum Emitter {
    /// `dense · x + bias`: parameters `[k, dim]` then `[k]`.
    Linear,
    /// The context layer: parameters in the order of [`weight_shapes`].
    Context(ContextEmitter),
}

/// Parameter layout: the emitter's (see [`Emitter`]), lexical `[buckets, k]`,
/// transitions `[k, k]`, start `[k]`, end `[k]`.
pub(super) struct Model<'a> {
    pub(super) k: usize,
    pub(super) dim: usize,
    pub(super) buckets: usize,
    /// The emitter's learning rate relative to the lexical weights'.
    pub(super) dense_rate: f32,
    /// Share of the hashed word features each training step drops.
    pub(super) lexical_dropout: f32,
    pub(super) standardizer: &'a Standardizer,
    pub(super) constraints: (Vec<bool>, Vec<bool>),
    pub(super) emitter: Emitter,
}

/// The CRF's gradient on one sentence.
pub(super) struct CrfGradient {
    pub(super) loss: f64,
    /// Per word and tag, `[n, k]`: marginal minus gold.
    pub(super) emissions: Vec<f32>,
    /// Transitions, start, end.
    pub(super) transitions: Vec<f32>,
}

/// Parts of a batch whose context-layer gradients are computed in parallel.
const CONTEXT_SHARDS: usize = 2;

/// Largest norm of the context layer's gradient on one batch; larger ones are scaled
/// down to it, as an LSTM's gradient can burst.
const MAX_GRADIENT_NORM: f32 = 5.0;

impl Emitter {
    pub(super) fn spec(&self) -> Option<&ContextSpec> {
        match self {
            Emitter::Linear => None,
            Emitter::Context(c) => Some(&c.spec),
        }
    }
}

impl Model<'_> {
    pub(super) fn lexical_at(&self) -> usize {
        match &self.emitter {
            Emitter::Linear => self.k * self.dim + self.k,
            Emitter::Context(c) => c.len(),
        }
    }

    pub(super) fn transitions_at(&self) -> usize {
        self.lexical_at() + self.buckets * self.k
    }

    pub(super) fn len(&self) -> usize {
        self.transitions_at() + self.k * self.k + 2 * self.k
    }

    pub(super) fn initial(&self, seed: u64) -> Vec<f32> {
        let mut p = vec![0.0; self.len()];
        if let Emitter::Context(c) = &self.emitter {
            p[..c.len()].copy_from_slice(&c.initial(seed));
        }
        p
    }

    pub(super) fn dense<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[..self.k * self.dim]
    }

    pub(super) fn bias<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[self.k * self.dim..self.lexical_at()]
    }

    pub(super) fn lexical<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[self.lexical_at()..self.transitions_at()]
    }

    /// `p` as the written head holds it: only the lexical rows that [`LexicalTable::prune`]
    /// keeps (at most `max_rows`), each rounded to 16 bits as it is stored.
    pub(super) fn as_written(&self, p: &[f32], max_rows: usize) -> Vec<f32> {
        let kept = LexicalTable::prune(self.lexical(p), self.k, max_rows);
        let mut written = p.to_vec();
        let lexical = &mut written[self.lexical_at()..self.transitions_at()];
        lexical.fill(0.0);
        for (&bucket, row) in kept.ids.iter().zip(kept.rows.chunks_exact(self.k)) {
            let at = bucket as usize * self.k;
            for (to, w) in lexical[at..at + self.k].iter_mut().zip(row) {
                *to = w.to_f32();
            }
        }
        written
    }

    pub(super) fn transition_params<'p>(&self, p: &'p [f32]) -> (&'p [f32], &'p [f32], &'p [f32]) {
        let at = self.transitions_at();
        let k = self.k;
        (&p[at..at + k * k], &p[at + k * k..at + k * k + k], &p[at + k * k + k..at + k * k + 2 * k])
    }

    pub(super) fn transitions(&self, p: &[f32]) -> Transitions {
        let (scores, start, end) = self.transition_params(p);
        Transitions {
            scores: scores.to_vec(),
            start: start.to_vec(),
            end: end.to_vec(),
            allowed: self.constraints.0.clone(),
            allowed_start: self.constraints.1.clone(),
        }
    }

    /// The emitter's weights as the head file stores them, the standardisation folded in.
    pub(super) fn dense_tensors(&self, p: &[f32]) -> BTreeMap<&'static str, Vec<f32>> {
        match &self.emitter {
            Emitter::Linear => {
                let (dense, bias) = self.standardizer.fold(self.dense(p), self.bias(p));
                [("dense", dense), ("bias", bias)].into_iter().collect()
            }
            Emitter::Context(c) => {
                let mut out: BTreeMap<&'static str, Vec<f32>> =
                    c.ranges().map(|(name, _, range)| (name, p[range].to_vec())).collect();
                let (projection, bias) =
                    self.standardizer.fold(&out["context.projection"], &out["context.projection_bias"]);
                out.insert("context.projection", projection);
                out.insert("context.projection_bias", bias);
                out
            }
        }
    }

    /// Adds the weights of each word's hashed features to its emission row.
    pub(super) fn add_lexical(&self, p: &[f32], s: &Prepared, emissions: &mut [f32]) {
        let (k, lexical, scale) = (self.k, self.lexical(p), s.lexical_scale);
        for (row, buckets) in emissions.chunks_exact_mut(k).zip(&s.lexical) {
            for &b in buckets {
                row.iter_mut().zip(&lexical[b as usize * k..(b as usize + 1) * k]).for_each(|(e, w)| *e += w * scale);
            }
        }
    }

    /// The standardised encoder features `[n, dim]` of a sentence's words.
    pub(super) fn standardized(&self, s: &Prepared, out: &mut [f32]) {
        for (row, out) in s.features.words(s.index).chunks_exact(self.dim).zip(out.chunks_exact_mut(self.dim)) {
            self.standardizer.apply(row, out);
        }
    }

    /// Linear emitter: standardised features `[n, dim]` and emissions `[n, k]` of a sentence.
    pub(super) fn linear_emissions(&self, p: &[f32], s: &Prepared) -> (Vec<f32>, Vec<f32>) {
        let (k, dim) = (self.k, self.dim);
        let n = s.tags.len();
        let mut x = vec![0.0f32; n * dim];
        self.standardized(s, &mut x);
        let (dense, bias) = (self.dense(p), self.bias(p));
        let mut emissions = vec![0.0f32; n * k];
        for i in 0..n {
            let xi = &x[i * dim..(i + 1) * dim];
            for (y, ey) in emissions[i * k..(i + 1) * k].iter_mut().enumerate() {
                *ey = bias[y] + dense[y * dim..(y + 1) * dim].iter().zip(xi).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        self.add_lexical(p, s, &mut emissions);
        (x, emissions)
    }

    /// Context emitter: the layer's emissions `[B, T, k]` of a batch of sentences padded
    /// to `T` words (without the lexical part).
    pub(super) fn context_emissions(
        &self,
        layer: &ContextLayer,
        batch: &[&Prepared],
        dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let t = batch.iter().map(|s| s.tags.len()).max().unwrap_or(0);
        let dim = self.dim;
        let mut x = vec![0.0f32; batch.len() * t * dim];
        for (s, out) in batch.iter().zip(x.chunks_exact_mut(t * dim)) {
            self.standardized(s, &mut out[..s.tags.len() * dim]);
        }
        let inputs = Tensor::from_vec(x, (batch.len(), t, dim), &Device::Cpu)?;
        let sentences: Vec<&[String]> = batch.iter().map(|s| s.words).collect();
        let char_ids = layer.sentence_char_ids(&sentences, t, &Device::Cpu)?;
        let lengths: Vec<usize> = batch.iter().map(|s| s.tags.len()).collect();
        Ok(layer.emissions(&layer.project(&inputs)?, &char_ids, &lengths, dropout)?)
    }

    /// Each sentence's emissions `[n, k]`, lexical part included, from the context
    /// layer's padded `[B, T, k]` output.
    pub(super) fn unpad(&self, p: &[f32], padded: &Tensor, batch: &[&Prepared]) -> Result<Vec<Vec<f32>>> {
        let lengths: Vec<usize> = batch.iter().map(|s| s.tags.len()).collect();
        let mut rows = unpadded(padded, &lengths)?;
        rows.iter_mut().zip(batch).for_each(|(e, s)| self.add_lexical(p, s, e));
        Ok(rows)
    }

    /// The best tags of every sentence.
    pub(super) fn decode_all(&self, p: &[f32], sentences: &[Prepared]) -> Result<Vec<Vec<usize>>> {
        let transitions = self.transitions(p);
        match &self.emitter {
            Emitter::Linear => Ok(sentences
                .par_iter()
                .map(|s| viterbi(&transitions, &self.linear_emissions(p, s).1, self.k))
                .collect()),
            Emitter::Context(c) => {
                let (layer, _) = c.layer(p, false)?;
                let mut out = vec![Vec::new(); sentences.len()];
                for batch in by_length(sentences, 64) {
                    let chosen: Vec<&Prepared> = batch.iter().map(|&i| &sentences[i]).collect();
                    let emissions = self.unpad(p, &self.context_emissions(&layer, &chosen, None)?, &chosen)?;
                    let decoded: Vec<Vec<usize>> =
                        emissions.par_iter().map(|e| viterbi(&transitions, e, self.k)).collect();
                    for (i, tags) in batch.into_iter().zip(decoded) {
                        out[i] = tags;
                    }
                }
                Ok(out)
            }
        }
    }

    pub(super) fn crf_gradient(&self, transitions: &Transitions, emissions: &[f32], gold: &[usize]) -> CrfGradient {
        let k = self.k;
        let (marginals, pairs, log_z) = forward_backward(transitions, emissions, k);
        let n = gold.len();
        let mut gold_score = transitions.start[gold[0]] + transitions.end[gold[n - 1]];
        for i in 0..n {
            gold_score += emissions[i * k + gold[i]];
            if i > 0 {
                gold_score += transitions.scores[gold[i - 1] * k + gold[i]];
            }
        }
        let mut g = marginals;
        for i in 0..n {
            g[i * k + gold[i]] -= 1.0;
        }
        let mut trans = pairs;
        trans.resize(k * k + 2 * k, 0.0);
        for i in 1..n {
            trans[gold[i - 1] * k + gold[i]] -= 1.0;
        }
        for y in 0..k {
            // Start and end scores get the same gradient as the first and last emissions.
            trans[k * k + y] = g[y];
            trans[k * k + k + y] = g[(n - 1) * k + y];
        }
        CrfGradient { loss: f64::from(log_z - gold_score), emissions: g, transitions: trans }
    }

    /// The linear emitter's gradient (dense weights, then bias) on one sentence.
    pub(super) fn linear_gradient(&self, x: &[f32], g: &[f32]) -> Vec<f32> {
        let (k, dim) = (self.k, self.dim);
        let mut dense = vec![0.0f32; k * dim + k];
        for (xi, gi) in x.chunks_exact(dim).zip(g.chunks_exact(k)) {
            for (y, &gy) in gi.iter().enumerate() {
                if gy.abs() < 1e-7 {
                    continue;
                }
                for (d, &xd) in dense[y * dim..(y + 1) * dim].iter_mut().zip(xi) {
                    *d += gy * xd;
                }
                dense[k * dim + y] += gy;
            }
        }
        dense
    }

    /// The CRF's gradients on a shard of a batch and the context layer's gradient (scaled
    /// by `scale`, one over the batch's size), by candle's autograd.
    pub(super) fn context_gradient(
        &self,
        c: &ContextEmitter,
        p: &[f32],
        transitions: &Transitions,
        shard: &[&Prepared],
        dropout: &mut Dropout,
        scale: f32,
    ) -> Result<(Vec<CrfGradient>, Vec<f32>)> {
        let (layer, vars) = c.layer(p, true)?;
        let padded = self.context_emissions(&layer, shard, Some(dropout))?;
        let emissions = self.unpad(p, &padded, shard)?;
        let crf: Vec<CrfGradient> =
            shard.iter().zip(&emissions).map(|(s, e)| self.crf_gradient(transitions, e, &s.tags)).collect();
        // d loss / d emissions, padded like the layer's output: the gradient of
        // `sum(emissions · g)` with g held fixed is the CRF's.
        let (b, t, k) = padded.dims3()?;
        let mut g = vec![0.0f32; b * t * k];
        for (out, sentence) in g.chunks_exact_mut(t * k).zip(&crf) {
            out[..sentence.emissions.len()].iter_mut().zip(&sentence.emissions).for_each(|(o, x)| *o = x * scale);
        }
        let surrogate = padded.mul(&Tensor::from_vec(g, (b, t, k), &Device::Cpu)?)?.sum_all()?;
        let grads = surrogate.backward()?;
        let mut dense = vec![0.0f32; self.lexical_at()];
        for (var, range) in &vars {
            if let Some(grad) = grads.get(var) {
                dense[range.clone()].copy_from_slice(&grad.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        Ok((crf, dense))
    }

    /// The units the epoch loop shuffles: single sentences for the linear emitter; for
    /// the context layer, which runs on padded batches, batches of `batch_size`
    /// sentences of similar length, shuffled whole.
    pub(super) fn batches(&self, sentences: &[Prepared], batch_size: usize) -> Vec<Vec<usize>> {
        match self.emitter {
            Emitter::Linear => (0..sentences.len()).map(|i| vec![i]).collect(),
            Emitter::Context(_) => by_length(sentences, batch_size),
        }
    }

    /// How many of [`Self::batches`]' units make one optimizer step.
    pub(super) fn batches_per_step(&self, batch_size: usize) -> usize {
        match self.emitter {
            Emitter::Linear => batch_size,
            Emitter::Context(_) => 1,
        }
    }

    /// One optimizer step on the `chosen` units of `(sentences, batches)`; returns the
    /// loss as a mean per sentence times the units chosen, as the epoch loop averages
    /// over units.
    pub(super) fn step_batches(
        &self,
        params: &mut [f32],
        adam: &mut Adam,
        dropout_rng: &mut Rng,
        learning_rate: f32,
        (sentences, batches): (&[Prepared], &[Vec<usize>]),
        chosen: &[usize],
    ) -> Result<f64> {
        adam.learning_rate = learning_rate;
        let batch: Vec<&Prepared> = chosen.iter().flat_map(|&b| &batches[b]).map(|&i| &sentences[i]).collect();
        let loss = self.step(params, adam, &batch, dropout_rng)?;
        Ok(loss * (batches.len() as f64 / sentences.len() as f64))
    }

    /// One Adam step on a batch of sentences; returns the summed loss.
    pub(super) fn step(
        &self,
        params: &mut [f32],
        adam: &mut Adam,
        batch: &[&Prepared],
        dropout_rng: &mut Rng,
    ) -> Result<f64> {
        let dropped: Vec<Prepared>;
        let batch: Vec<&Prepared> = if self.lexical_dropout > 0.0 {
            dropped = batch.iter().map(|s| s.with_lexical_dropped(self.lexical_dropout, dropout_rng)).collect();
            dropped.iter().collect()
        } else {
            batch.to_vec()
        };
        let transitions = self.transitions(params);
        let p: &[f32] = params;
        let scale = 1.0 / batch.len() as f32;
        let (crf, dense): (Vec<CrfGradient>, Vec<f32>) = match &self.emitter {
            Emitter::Linear => {
                let per_sentence: Vec<(CrfGradient, Vec<f32>)> = batch
                    .par_iter()
                    .map(|s| {
                        let (x, emissions) = self.linear_emissions(p, s);
                        let crf = self.crf_gradient(&transitions, &emissions, &s.tags);
                        let dense = self.linear_gradient(&x, &crf.emissions);
                        (crf, dense)
                    })
                    .collect();
                let mut dense = vec![0.0f32; self.lexical_at()];
                for (_, d) in &per_sentence {
                    dense.iter_mut().zip(d).for_each(|(a, b)| *a += b * scale);
                }
                (per_sentence.into_iter().map(|(crf, _)| crf).collect(), dense)
            }
            Emitter::Context(c) => {
                // Shards of the batch run on their own threads, each through candle on one
                // thread: the ops of one sentence batch are too small to split well. A fixed
                // number of shards keeps the head independent of the thread count.
                let shards: Vec<&[&Prepared]> = batch.chunks(batch.len().div_ceil(CONTEXT_SHARDS)).collect();
                let seeds: Vec<u64> = shards.iter().map(|_| dropout_rng.next_u64()).collect();
                let per_shard: Vec<(Vec<CrfGradient>, Vec<f32>)> = shards
                    .par_iter()
                    .zip(seeds)
                    .map(|(shard, seed)| {
                        let mut dropout = Dropout { rate: c.dropout, rng: Rng::new(seed) };
                        self.context_gradient(c, p, &transitions, shard, &mut dropout, scale)
                    })
                    .collect::<Result<_>>()?;
                let mut dense = vec![0.0f32; self.lexical_at()];
                let mut crf = Vec::with_capacity(batch.len());
                for (shard_crf, shard_dense) in per_shard {
                    dense.iter_mut().zip(&shard_dense).for_each(|(a, b)| *a += b);
                    crf.extend(shard_crf);
                }
                let norm = dense.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > MAX_GRADIENT_NORM {
                    dense.iter_mut().for_each(|x| *x *= MAX_GRADIENT_NORM / norm);
                }
                (crf, dense)
            }
        };
        let k = self.k;
        let mut trans = vec![0.0f32; k * k + 2 * k];
        let mut lexical: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        let mut loss = 0.0;
        for (s, g) in batch.iter().zip(&crf) {
            loss += g.loss;
            trans.iter_mut().zip(&g.transitions).for_each(|(a, b)| *a += b * scale);
            let weight = scale * s.lexical_scale;
            for (buckets, row) in s.lexical.iter().zip(g.emissions.chunks_exact(k)) {
                for &b in buckets {
                    let entry = lexical.entry(b).or_insert_with(|| vec![0.0; k]);
                    entry.iter_mut().zip(row).for_each(|(a, r)| *a += r * weight);
                }
            }
        }
        adam.next_step();
        adam.update(params, 0, &dense, self.dense_rate);
        let lexical_at = self.lexical_at();
        for (b, row) in lexical {
            adam.update(params, lexical_at + b as usize * k, &row, 1.0);
        }
        adam.update(params, self.transitions_at(), &trans, 1.0);
        Ok(loss)
    }
}
