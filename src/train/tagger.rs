//! Fitting a tagger: a linear-chain CRF over words, with learned transition scores under
//! IOB2 constraints. A word's emission scores are its hashed word features' weights plus
//! either the context layer's scores (`model::heads::context`: a BiLSTM over projected
//! encoder features and a character CNN) or scores linear in its standardised encoder
//! features. Trained with Adam on mini-batches of sentences (the negative
//! log-likelihood, by forward-backward; candle's autograd carries its gradient through
//! the context layer) and selected on the development set's strict IOB2 entity F1.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, Var};
use rayon::prelude::*;
use serde_json::json;

use super::cache::FeatureSet;
use super::optim::{Adam, EpochLoop, Standardizer};
use super::{head_record, ContextSettings, Example, Split, TrainContext};
use crate::decode::iob2::{self, SpanMode};
use crate::eval::entities::entity_metrics;
use crate::ingest::labelled::TaggedSentence;
use crate::logging;
use crate::model::head_file::ContextSpec;
use crate::model::head_file::{save_head, HeadKind, HeadSpec, LexicalTable, HEAD_FORMAT};
use crate::model::heads::context::{weight_shapes, ContextLayer, Dropout};
use crate::model::heads::tagger::{forward_backward, viterbi, Transitions};
use crate::rng::Rng;
use crate::text::lexical::word_features;

/// A word ending in a period must occur this often in training to count as an abbreviation.
const MIN_ABBREVIATION_COUNT: usize = 2;

struct Prepared<'a> {
    features: &'a FeatureSet,
    index: usize,
    words: &'a [String],
    gold: &'a [String],
    /// Hashed word features, per word.
    lexical: Vec<Vec<u32>>,
    tags: Vec<usize>,
}

pub fn train(context: &TrainContext, split: Split<TaggedSentence>) -> Result<()> {
    let args = context.config;
    let tagging = &args.tagger;
    // Tags: O first, then B-/I- of each type in alphabetical order.
    let kinds: BTreeSet<String> = split
        .train
        .iter()
        .flat_map(|e| e.item.tags.iter())
        .filter_map(|t| iob2::entity_type(t).map(String::from))
        .collect();
    if kinds.is_empty() {
        bail!("{}: no entity tags in the training data", args.train.display());
    }
    let mut tags = vec!["O".to_string()];
    for kind in &kinds {
        tags.push(format!("B-{kind}"));
        tags.push(format!("I-{kind}"));
    }
    for kind in &kinds {
        let n = split.train.iter().flat_map(|e| &e.item.tags).filter(|t| **t == format!("B-{kind}")).count();
        if n < super::MIN_EXAMPLES {
            bail!(
                "{}: entity type {kind:?} begins {n} time(s); at least {} are needed",
                args.train.display(),
                super::MIN_EXAMPLES
            );
        }
    }
    let index = super::label_index(&tags, split.dev.iter().map(|e| (e.item.line, &e.item.tags[..])), "tag", args)?;

    let buckets = args.lexical_buckets;
    let dim = split.train[0].features.dim;
    let standardizer =
        Standardizer::fit(split.train.iter().flat_map(|e| e.features.words(e.index).chunks_exact(dim)), dim);
    let (train_set, repaired) = prepare(&split.train, &tags, &index, buckets, true);
    let (dev_set, _) = prepare(&split.dev, &tags, &index, buckets, false);
    if repaired > 0 {
        logging::warning(
            "repaired_tags",
            &format!("{repaired} training tag(s) were I- without a B- before them; trained as B-"),
            json!({"repaired": repaired}),
        );
    }
    let abbreviations = abbreviations(&split.train);

    let k = tags.len();
    let emitter = match &tagging.context {
        None => Emitter::Linear,
        Some(settings) => Emitter::Context(ContextEmitter::new(settings, char_vocabulary(&split.train), dim, k)),
    };
    let model = Model {
        k,
        dim,
        buckets,
        dense_rate: tagging.dense_learning_rate / tagging.learning_rate,
        standardizer: &standardizer,
        constraints: iob2::allowed_transitions(&tags),
        emitter,
    };
    let mut adam = Adam::new(model.len(), tagging.learning_rate, tagging.l2);
    let log_path = context.staging.join("train-log.jsonl");
    let words_total: usize = train_set.iter().map(|s| s.tags.len()).sum();
    logging::info(
        "training_data",
        &format!(
            "{} training sentences ({words_total} words), {} development sentences, {k} tags, {dim} feature dimensions",
            train_set.len(),
            dev_set.len()
        ),
        json!({"train_sentences": train_set.len(), "train_words": words_total, "dev_sentences": dev_set.len(), "tags": k, "dim": dim}),
    );
    // The context layer runs on padded batches: sentences of similar length go together,
    // and the loop shuffles whole batches.
    let batches: Vec<Vec<usize>> = match model.emitter {
        Emitter::Linear => (0..train_set.len()).map(|i| vec![i]).collect(),
        Emitter::Context(_) => by_length(&train_set, tagging.batch_size),
    };
    let examples_per_step = match model.emitter {
        Emitter::Linear => tagging.batch_size,
        Emitter::Context(_) => 1,
    };
    let mut dropout = Dropout { rate: tagging.context.as_ref().map_or(0.0, |c| c.dropout), rng: Rng::new(args.seed) };
    let failure: RefCell<Option<anyhow::Error>> = RefCell::new(None);
    let fitted = EpochLoop {
        learning_rate: tagging.learning_rate,
        max_epochs: tagging.epochs,
        patience: tagging.patience,
        score_name: "strict_iob2_f1",
        log_path: &log_path,
        examples: batches.len(),
        batch_size: examples_per_step,
        seed: args.seed,
    }
    .run(
        model.initial(args.seed),
        |params, learning_rate, chosen| {
            adam.learning_rate = learning_rate;
            let sentences: Vec<&Prepared> = chosen.iter().flat_map(|&b| &batches[b]).map(|&i| &train_set[i]).collect();
            match model.step(params, &mut adam, &sentences, &mut dropout) {
                // The loop averages over its examples (batches here): scaled to a mean per sentence.
                Ok(loss) => loss * (batches.len() as f64 / train_set.len() as f64),
                Err(e) => {
                    failure.borrow_mut().get_or_insert(e);
                    f64::NAN
                }
            }
        },
        |params| match model.decode_all(params, &dev_set) {
            Ok(decoded) => {
                let predicted: Vec<Vec<String>> =
                    decoded.into_iter().map(|tags_of| tags_of.into_iter().map(|t| tags[t].clone()).collect()).collect();
                let gold: Vec<Vec<String>> = dev_set.iter().map(|s| s.gold.to_vec()).collect();
                entity_metrics(&gold, &predicted, SpanMode::StrictIob2).f1
            }
            Err(e) => {
                failure.borrow_mut().get_or_insert(e);
                f64::NAN
            }
        },
    )?;
    if let Some(e) = failure.into_inner() {
        return Err(e.context("training the tagger"));
    }
    let p = &fitted.params;
    let spec = HeadSpec {
        format: HEAD_FORMAT.into(),
        kind: HeadKind::Tagger,
        name: super::head_name(args),
        labels: tags.clone(),
        multi_label: false,
        layers: context.layers.to_vec(),
        encoder: super::relative_encoder_path(context.staging, context.encoder_dir),
        encoder_fingerprint: context.encoder_fingerprint.to_string(),
        encoder_precision: context.encoder_precision,
        lexical_buckets: buckets,
        lexical_scheme: None,
        pooling: Default::default(),
        abbreviations,
        context: model.emitter.spec().cloned(),
        training: head_record(
            context,
            &split.dev_source,
            split.train.len(),
            split.dev.len(),
            super::epoch_fit_record(tagging, &fitted, "strict_iob2_f1"),
        )?,
        weights_sha256: String::new(), // set by save_head
    };
    let (transitions, start, end) = model.transition_params(p);
    let mut f32_tensors = model.dense_tensors(p);
    f32_tensors.extend([("transitions", transitions.to_vec()), ("start", start.to_vec()), ("end", end.to_vec())]);
    let lexical = LexicalTable::prune(model.lexical(p), k, args.max_lexical_rows);
    save_head(context.staging, &spec, &f32_tensors, &BTreeMap::new(), &lexical)?;
    logging::info(
        "selected",
        &format!("best epoch {}, dev strict IOB2 F1 {:.4}", fitted.best_epoch, fitted.best_score),
        json!({"best_epoch": fitted.best_epoch, "dev_score": fitted.best_score, "score": "strict_iob2_f1"}),
    );
    Ok(())
}

/// Hashed word features and tag indices of each sentence; with `repair`, stray `I-`
/// tags become `B-` (returns how many).
fn prepare<'a>(
    examples: &'a [Example<'a, TaggedSentence>],
    tags: &[String],
    index: &BTreeMap<&str, usize>,
    buckets: usize,
    repair: bool,
) -> (Vec<Prepared<'a>>, usize) {
    let mut repaired = 0;
    let prepared = examples
        .iter()
        .map(|e| {
            let words = &e.item.words;
            let lexical = (0..words.len())
                .map(|i| {
                    let mut out = Vec::new();
                    if buckets > 0 {
                        word_features(words, i, buckets, &mut out);
                    }
                    out
                })
                .collect();
            let mut tag_ids: Vec<usize> = e.item.tags.iter().map(|t| index[t.as_str()]).collect();
            if repair {
                repaired += iob2::repair(&mut tag_ids, tags);
            }
            Prepared { features: e.features, index: e.index, words, gold: &e.item.tags, lexical, tags: tag_ids }
        })
        .collect();
    (prepared, repaired)
}

/// Words ending in a period, seen often enough in training, that the corpus keeps as
/// one word (`Abs.`, `vgl.`): the word splitter of `classify` keeps them too.
fn abbreviations(train: &[Example<TaggedSentence>]) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in train {
        for w in &e.item.words {
            if w.len() > 1 && w.ends_with('.') && w[..w.len() - 1].chars().any(char::is_alphabetic) {
                *counts.entry(w.as_str()).or_default() += 1;
            }
        }
    }
    counts.into_iter().filter(|(_, n)| *n >= MIN_ABBREVIATION_COUNT).map(|(w, _)| w.to_string()).collect()
}

/// Characters seen at least twice in the training words, in code point order.
fn char_vocabulary(train: &[Example<TaggedSentence>]) -> String {
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for c in train.iter().flat_map(|e| &e.item.words).flat_map(|w| w.chars()) {
        *counts.entry(c).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n >= 2).map(|(c, _)| c).collect()
}

/// Indices of `sentences` in batches of `size` sentences of similar length (sorted by
/// length; ties in order), so that a batch pads little.
fn by_length(sentences: &[Prepared], size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sentences.len()).collect();
    order.sort_by_key(|&i| sentences[i].tags.len());
    order.chunks(size.max(1)).map(<[usize]>::to_vec).collect()
}

/// What turns a word's encoder features into emission scores.
enum Emitter {
    /// `dense · x + bias`: parameters `[k, dim]` then `[k]`.
    Linear,
    /// The context layer: parameters in the order of [`weight_shapes`].
    Context(ContextEmitter),
}

/// A weight as a variable of candle's autograd, with its place in the parameters.
type Tracked = (Var, Range<usize>);

struct ContextEmitter {
    spec: ContextSpec,
    shapes: Vec<(&'static str, Vec<usize>)>,
}

impl ContextEmitter {
    fn new(settings: &ContextSettings, chars: String, dim: usize, k: usize) -> Self {
        let spec = ContextSpec { chars, ..settings.sizes.clone() };
        let shapes = weight_shapes(&spec, dim, k);
        Self { spec, shapes }
    }

    /// Where each weight lies in the parameter vector.
    fn ranges(&self) -> impl Iterator<Item = (&'static str, &[usize], Range<usize>)> + '_ {
        let mut at = 0;
        self.shapes.iter().map(move |(name, shape)| {
            let n: usize = shape.iter().product();
            at += n;
            (*name, &shape[..], at - n..at)
        })
    }

    fn len(&self) -> usize {
        self.ranges().last().map_or(0, |(_, _, r)| r.end)
    }

    /// The layer on the parameters `p`; with `track`, its weights are variables whose
    /// gradients a backward pass finds (returned with their place in `p`).
    fn layer(&self, p: &[f32], track: bool) -> Result<(ContextLayer, Vec<Tracked>)> {
        let mut weights = HashMap::new();
        let mut vars = Vec::new();
        for (name, shape, range) in self.ranges() {
            let tensor = Tensor::from_slice(&p[range.clone()], shape, &Device::Cpu)?;
            if track {
                let var = Var::from_tensor(&tensor)?;
                weights.insert(name, var.as_tensor().clone());
                vars.push((var, range));
            } else {
                weights.insert(name, tensor);
            }
        }
        Ok((ContextLayer::new(self.spec.clone(), weights)?, vars))
    }

    /// Starting weights: Glorot-uniform matrices, LSTM weights uniform in ±1/√h with a
    /// forget-gate bias of 1, other biases 0; from `seed`.
    fn initial(&self, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed ^ 0xc0_47e7);
        let mut p = vec![0.0f32; self.len()];
        let h = self.spec.hidden;
        for (name, shape, range) in self.ranges() {
            let limit = match (name, shape) {
                (_, [_]) => 0.0,
                ("context.char_table", [_, c]) => (3.0 / *c as f32).sqrt(),
                (n, _) if n.contains("forward_") || n.contains("backward_") => 1.0 / (h as f32).sqrt(),
                (_, [rows, cols]) => (6.0 / (rows + cols) as f32).sqrt(),
                _ => 0.0,
            };
            for x in &mut p[range.clone()] {
                *x = limit * (2.0 * rng.next_f32() - 1.0);
            }
            if name.ends_with("_bias") && (name.contains("forward") || name.contains("backward")) {
                p[range.start + h..range.start + 2 * h].fill(1.0);
            }
        }
        p
    }
}

/// Parameter layout: the emitter's (see [`Emitter`]), lexical `[buckets, k]`,
/// transitions `[k, k]`, start `[k]`, end `[k]`.
struct Model<'a> {
    k: usize,
    dim: usize,
    buckets: usize,
    /// The emitter's learning rate relative to the lexical weights'.
    dense_rate: f32,
    standardizer: &'a Standardizer,
    constraints: (Vec<bool>, Vec<bool>),
    emitter: Emitter,
}

/// The CRF's gradient on one sentence.
struct CrfGradient {
    loss: f64,
    /// Per word and tag, `[n, k]`: marginal minus gold.
    emissions: Vec<f32>,
    /// Transitions, start, end.
    transitions: Vec<f32>,
}

/// Parts of a batch whose context-layer gradients are computed in parallel.
const CONTEXT_SHARDS: usize = 2;

/// Largest norm of the context layer's gradient on one batch; larger ones are scaled
/// down to it, as an LSTM's gradient can burst.
const MAX_GRADIENT_NORM: f32 = 5.0;

impl Emitter {
    fn spec(&self) -> Option<&ContextSpec> {
        match self {
            Emitter::Linear => None,
            Emitter::Context(c) => Some(&c.spec),
        }
    }
}

impl Model<'_> {
    fn lexical_at(&self) -> usize {
        match &self.emitter {
            Emitter::Linear => self.k * self.dim + self.k,
            Emitter::Context(c) => c.len(),
        }
    }

    fn transitions_at(&self) -> usize {
        self.lexical_at() + self.buckets * self.k
    }

    fn len(&self) -> usize {
        self.transitions_at() + self.k * self.k + 2 * self.k
    }

    fn initial(&self, seed: u64) -> Vec<f32> {
        let mut p = vec![0.0; self.len()];
        if let Emitter::Context(c) = &self.emitter {
            p[..c.len()].copy_from_slice(&c.initial(seed));
        }
        p
    }

    fn dense<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[..self.k * self.dim]
    }

    fn bias<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[self.k * self.dim..self.lexical_at()]
    }

    fn lexical<'p>(&self, p: &'p [f32]) -> &'p [f32] {
        &p[self.lexical_at()..self.transitions_at()]
    }

    fn transition_params<'p>(&self, p: &'p [f32]) -> (&'p [f32], &'p [f32], &'p [f32]) {
        let at = self.transitions_at();
        let k = self.k;
        (&p[at..at + k * k], &p[at + k * k..at + k * k + k], &p[at + k * k + k..at + k * k + 2 * k])
    }

    fn transitions(&self, p: &[f32]) -> Transitions {
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
    fn dense_tensors(&self, p: &[f32]) -> BTreeMap<&'static str, Vec<f32>> {
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
    fn add_lexical(&self, p: &[f32], s: &Prepared, emissions: &mut [f32]) {
        let (k, lexical) = (self.k, self.lexical(p));
        for (row, buckets) in emissions.chunks_exact_mut(k).zip(&s.lexical) {
            for &b in buckets {
                row.iter_mut().zip(&lexical[b as usize * k..(b as usize + 1) * k]).for_each(|(e, w)| *e += w);
            }
        }
    }

    /// The standardised encoder features `[n, dim]` of a sentence's words.
    fn standardized(&self, s: &Prepared, out: &mut [f32]) {
        for (row, out) in s.features.words(s.index).chunks_exact(self.dim).zip(out.chunks_exact_mut(self.dim)) {
            self.standardizer.apply(row, out);
        }
    }

    /// Linear emitter: standardised features `[n, dim]` and emissions `[n, k]` of a sentence.
    fn linear_emissions(&self, p: &[f32], s: &Prepared) -> (Vec<f32>, Vec<f32>) {
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
    fn context_emissions(
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
        let words = batch.iter().flat_map(|s| (0..t).map(|i| s.words.get(i).map_or("", String::as_str)));
        let char_ids = layer.char_ids(words, &Device::Cpu)?;
        let lengths: Vec<usize> = batch.iter().map(|s| s.tags.len()).collect();
        Ok(layer.emissions(&layer.project(&inputs)?, &char_ids, &lengths, dropout)?)
    }

    /// Each sentence's emissions `[n, k]`, lexical part included, from the context
    /// layer's padded `[B, T, k]` output.
    fn unpad(&self, p: &[f32], padded: &Tensor, batch: &[&Prepared]) -> Result<Vec<Vec<f32>>> {
        let t = padded.dim(1)?;
        let k = self.k;
        let all: Vec<f32> = padded.flatten_all()?.to_vec1()?;
        Ok(batch
            .par_iter()
            .enumerate()
            .map(|(b, s)| {
                let mut e = all[b * t * k..(b * t + s.tags.len()) * k].to_vec();
                self.add_lexical(p, s, &mut e);
                e
            })
            .collect())
    }

    /// The best tags of every sentence.
    fn decode_all(&self, p: &[f32], sentences: &[Prepared]) -> Result<Vec<Vec<usize>>> {
        let transitions = self.transitions(p);
        match &self.emitter {
            Emitter::Linear => Ok(sentences
                .par_iter()
                .map(|s| viterbi(&transitions, &self.linear_emissions(p, s).1, self.k))
                .collect()),
            Emitter::Context(c) => {
                let (layer, _) = c.layer(p, false)?;
                let mut out = vec![Vec::new(); sentences.len()];
                let refs: Vec<&Prepared> = sentences.iter().collect();
                for batch in by_length(sentences, 64) {
                    let chosen: Vec<&Prepared> = batch.iter().map(|&i| refs[i]).collect();
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

    fn crf_gradient(&self, transitions: &Transitions, emissions: &[f32], gold: &[usize]) -> CrfGradient {
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
    fn linear_gradient(&self, x: &[f32], g: &[f32]) -> Vec<f32> {
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
    fn context_gradient(
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

    /// One Adam step on a batch of sentences; returns the summed loss.
    fn step(&self, params: &mut [f32], adam: &mut Adam, batch: &[&Prepared], dropout: &mut Dropout) -> Result<f64> {
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
                let seeds: Vec<u64> = shards.iter().map(|_| dropout.rng.next_u64()).collect();
                let rate = dropout.rate;
                let per_shard: Vec<(Vec<CrfGradient>, Vec<f32>)> = shards
                    .par_iter()
                    .zip(seeds)
                    .map(|(shard, seed)| {
                        let mut dropout = Dropout { rate, rng: Rng::new(seed) };
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
            for (buckets, row) in s.lexical.iter().zip(g.emissions.chunks_exact(k)) {
                for &b in buckets {
                    let entry = lexical.entry(b).or_insert_with(|| vec![0.0; k]);
                    entry.iter_mut().zip(row).for_each(|(a, r)| *a += r * scale);
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
