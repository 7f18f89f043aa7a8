//! Fitting a tagger: a linear-chain CRF over words, with learned transition scores under
//! IOB2 constraints. A word's emission scores are its hashed word features' weights plus
//! either the context layer's scores (`model::heads::context`: a BiLSTM over projected
//! encoder features and a character CNN) or scores linear in its standardised encoder
//! features. Trained with Adam on mini-batches of sentences (the negative
//! log-likelihood, by forward-backward; candle's autograd carries its gradient through
//! the context layer), with a share of the hashed word features dropped in each step,
//! and selected on the development set's strict IOB2 entity F1.

mod context;
mod model;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use serde_json::json;

use super::optim::{Adam, EpochLoop, Standardizer};
use super::{head_record, Example, Split, TrainContext};
use crate::decode::iob2::{self, SpanMode};
use crate::eval::entities::entity_metrics;
use crate::ingest::labelled::TaggedSentence;
use crate::logging;
use crate::model::head_file::{save_head, ContextSpec, HeadKind, HeadSpec, LexicalTable, HEAD_FORMAT};
use crate::model::profile::TrainingProfile;
use crate::rng::Rng;
use crate::text::word_features::{WordFeatureSet, WordFeatures};
use context::ContextEmitter;
use model::{Emitter, Model, Prepared};

/// Settings only a tagger reads (Adam with early stopping on the development data).
#[derive(Clone, Debug)]
pub struct TaggerConfig {
    pub epochs: usize,
    pub patience: usize,
    pub learning_rate: f32,
    pub dense_learning_rate: f32,
    pub l2: f32,
    /// Share of the hashed word features dropped in each training step.
    pub lexical_dropout: f32,
    pub batch_size: usize,
    /// Which CRF word features the lexical weights read.
    pub word_features: WordFeatureSet,
    /// The trained context layer between the encoder features and the CRF; `None`: the
    /// CRF reads the features linearly.
    pub context: Option<ContextSettings>,
}

/// A tagger's context layer to train (see `model::heads::context`).
#[derive(Clone, Debug)]
pub struct ContextSettings {
    /// Its sizes; training fills in the characters from the data.
    pub sizes: ContextSpec,
    /// Share of the LSTM's inputs and outputs dropped while training.
    pub dropout: f32,
}

/// A word ending in a period must occur this often in training to count as an abbreviation.
const MIN_ABBREVIATION_COUNT: usize = 2;

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
    let (train_set, mut repaired) = prepare(&split.train, &tags, &index, buckets, tagging.word_features);
    // Scoring reads the development sentences' gold tags as written; the repaired ids
    // serve only a refit, which trains on them.
    let (dev_set, dev_repaired) = prepare(&split.dev, &tags, &index, buckets, tagging.word_features);
    if args.refit_with_dev {
        repaired += dev_repaired;
    }
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
        lexical_dropout: tagging.lexical_dropout,
        standardizer: &standardizer,
        constraints: iob2::allowed_transitions(&tags),
        emitter,
    };
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
    let batches = model.batches(&train_set, tagging.batch_size);
    let epoch_loop = |examples: usize| EpochLoop {
        learning_rate: tagging.learning_rate,
        max_epochs: tagging.epochs,
        patience: tagging.patience,
        score_name: "strict_iob2_f1",
        log_path: &log_path,
        examples,
        batch_size: model.batches_per_step(tagging.batch_size),
        seed: args.seed,
    };
    let failure: RefCell<Option<anyhow::Error>> = RefCell::new(None);
    let fitted = epoch_loop(batches.len()).run(
        model.initial(args.seed),
        steps(&model, tagging, args.seed, (&train_set, &batches), &failure),
        // Scored as written: the head keeps only the strongest lexical rows.
        |params| {
            let score = model.decode_all(&model.as_written(params, args.max_lexical_rows), &dev_set).map(|decoded| {
                let predicted: Vec<Vec<String>> =
                    decoded.into_iter().map(|tags_of| tags_of.into_iter().map(|t| tags[t].clone()).collect()).collect();
                let gold: Vec<Vec<String>> = dev_set.iter().map(|s| s.gold.to_vec()).collect();
                entity_metrics(&gold, &predicted, SpanMode::StrictIob2).f1
            });
            value_or_nan(&failure, score)
        },
    )?;
    if let Some(e) = failure.take() {
        return Err(e.context("training the tagger"));
    }
    // With --refit-with-dev the selected path (its epochs' learning rates) is fitted
    // again from the start on training and development sentences together.
    let refit = if args.refit_with_dev {
        let all: Vec<Prepared> = train_set.into_iter().chain(dev_set).collect();
        let batches = model.batches(&all, tagging.batch_size);
        let schedule = fitted.selected_schedule();
        let started = std::time::Instant::now();
        let params = epoch_loop(batches.len()).replay(
            model.initial(args.seed),
            steps(&model, tagging, args.seed, (&all, &batches), &failure),
            &schedule,
            "refit on training and development data",
        )?;
        if let Some(e) = failure.take() {
            return Err(e.context("fitting the tagger again on training and development data"));
        }
        let record = json!({"sentences": all.len(), "epochs": schedule.len(), "fit_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0});
        Some((params, record))
    } else {
        None
    };
    let mut fit_record = super::epoch_fit_record(tagging, &fitted, "strict_iob2_f1");
    let p = match &refit {
        Some((params, record)) => {
            // The dev score above measured the first fit; the head is the second.
            fit_record["refit_with_dev"] = record.clone();
            params
        }
        None => &fitted.params,
    };
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
        word_features: tagging.word_features,
        pooling: Default::default(),
        abbreviations,
        context: model.emitter.spec().cloned(),
        training: head_record(context, &split.dev_source, split.train.len(), split.dev.len(), fit_record)?,
        profile: Some(training_profile(context, &split)?),
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

/// The epoch loop's step over `(sentences, batches)`: Adam from a fresh state, dropout
/// drawn from `seed`; a failed step gives NaN and is kept in `failure`.
fn steps<'a>(
    model: &'a Model,
    tagging: &TaggerConfig,
    seed: u64,
    data: (&'a [Prepared<'a>], &'a [Vec<usize>]),
    failure: &'a RefCell<Option<anyhow::Error>>,
) -> impl FnMut(&mut Vec<f32>, f32, &[usize]) -> f64 + 'a {
    let mut adam = Adam::new(model.len(), tagging.learning_rate, tagging.l2);
    let mut dropout_rng = Rng::new(seed);
    move |params, learning_rate, chosen| {
        value_or_nan(failure, model.step_batches(params, &mut adam, &mut dropout_rng, learning_rate, data, chosen))
    }
}

/// A loss or score for the epoch loop, whose callbacks cannot fail: an error becomes
/// NaN, and the first one is kept in `failure` to be returned after the loop.
fn value_or_nan(failure: &RefCell<Option<anyhow::Error>>, value: Result<f64>) -> f64 {
    value.unwrap_or_else(|e| {
        failure.borrow_mut().get_or_insert(e);
        f64::NAN
    })
}

/// Hashed word features and tag indices of each sentence; stray `I-` tags become `B-`
/// (returns how many).
fn prepare<'a>(
    examples: &'a [Example<'a, TaggedSentence>],
    tags: &[String],
    index: &BTreeMap<&str, usize>,
    buckets: usize,
    word_features: WordFeatureSet,
) -> (Vec<Prepared<'a>>, usize) {
    let mut repaired = 0;
    let prepared = examples
        .iter()
        .map(|e| {
            let words = &e.item.words;
            let features = WordFeatures::new(words, word_features);
            let lexical = (0..words.len())
                .map(|i| {
                    let mut out = Vec::new();
                    if buckets > 0 {
                        features.of(i, buckets, &mut out);
                    }
                    out
                })
                .collect();
            let mut tag_ids: Vec<usize> = e.item.tags.iter().map(|t| index[t.as_str()]).collect();
            repaired += iob2::repair(&mut tag_ids, tags);
            Prepared {
                features: e.features,
                index: e.index,
                words,
                gold: &e.item.tags,
                lexical,
                lexical_scale: 1.0,
                tags: tag_ids,
            }
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

/// What `docclass drift` compares an intake with: the sentences' inputs, and entities per
/// 1,000 tokens by type.
fn training_profile(context: &TrainContext, split: &Split<TaggedSentence>) -> Result<TrainingProfile> {
    let texts: Vec<String> = split.train.iter().map(|e| e.item.text_and_spans().0).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (mut profile, tokens) = super::input_profile(context, &texts)?;
    let mut entities: BTreeMap<String, u64> = BTreeMap::new();
    for tag in split.train.iter().flat_map(|e| &e.item.tags) {
        if let Some(kind) = tag.strip_prefix("B-") {
            *entities.entry(kind.to_string()).or_default() += 1;
        }
    }
    profile.entities_per_1000_tokens =
        entities.into_iter().map(|(kind, n)| (kind, n as f64 * 1000.0 / tokens.max(1) as f64)).collect();
    Ok(profile)
}
