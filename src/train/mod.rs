//! Fitting heads on encoder features: labelled data in, a head directory out that
//! `classify` loads with its encoder. Features come from the feature cache, so a head
//! is refitted with other settings in minutes.

pub mod cache;
pub mod classifier;
pub mod logistic;
pub mod optim;
pub mod tagger;

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Result};

use std::collections::BTreeMap;

use crate::hashing::file_sha256;
use crate::model::profile::{Histogram, TrainingProfile, TOKEN_EDGES, WINDOW_EDGES};
use crate::rng::Rng;
use cache::FeatureSet;
use optim::Fitted;

// Each kind's settings live with its training code.
pub use classifier::{ClassifierConfig, PoolingChoice};
pub use tagger::{ContextSettings, TaggerConfig};

/// What a training run was asked for: plain settings that `commands::train` lowers the
/// command line into (the library never sees the command line).
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub train: PathBuf,
    pub dev: Option<PathBuf>,
    /// The head directory the run publishes to.
    pub out: PathBuf,
    pub name: Option<String>,
    pub seed: u64,
    /// Buckets of the hashed lexical features; 0: none.
    pub lexical_buckets: usize,
    /// The most lexical rows a head keeps (0: all).
    pub max_lexical_rows: usize,
    /// Fit the head on training and development data together: a classifier also
    /// chooses its settings on both; a tagger fits again for the epochs it selected.
    pub refit_with_dev: bool,
    pub classifier: ClassifierConfig,
    pub tagger: TaggerConfig,
}

/// What the fitting code needs to know about the run.
pub struct TrainContext<'a> {
    /// The encoder's pipeline, and the windows texts are cut into, as `classify` cuts
    /// them (for the profile's token and window counts).
    pub pipeline: &'a crate::infer::Pipeline,
    pub windows: &'a crate::text::WindowOptions,
    pub config: &'a TrainConfig,
    pub encoder_dir: &'a Path,
    pub encoder_fingerprint: &'a str,
    pub encoder_precision: crate::model::Precision,
    pub layers: &'a [usize],
    /// Where the head is written before it is moved to `config.out`.
    pub staging: &'a Path,
}

/// Training and development examples with their features: `--dev`, a held-out share
/// of the training data drawn with the seed, or (for a classifier) none.
pub struct Split<'a, T> {
    pub train: Vec<Example<'a, T>>,
    pub dev: Vec<Example<'a, T>>,
    /// Where the development data came from, for the head's record.
    pub dev_source: String,
}

/// One labelled example and where its features are.
pub struct Example<'a, T> {
    pub item: &'a T,
    pub features: &'a FeatureSet,
    pub index: usize,
}

impl<'a, T> Split<'a, T> {
    /// `dev_share`: the share of `train` held out when no `dev` is given (`None`: none).
    pub fn new(
        train: (&'a [T], &'a FeatureSet),
        dev: Option<(&'a [T], &'a FeatureSet)>,
        dev_share: Option<f64>,
        seed: u64,
    ) -> Result<Self> {
        let examples = |(items, features): (&'a [T], &'a FeatureSet)| -> Vec<Example<'a, T>> {
            items.iter().enumerate().map(|(index, item)| Example { item, features, index }).collect()
        };
        if let Some(dev) = dev {
            return Ok(Split { train: examples(train), dev: examples(dev), dev_source: "--dev".into() });
        }
        let Some(dev_share) = dev_share else {
            return Ok(Split { train: examples(train), dev: Vec::new(), dev_source: "none".into() });
        };
        if !(dev_share > 0.0 && dev_share < 1.0) {
            bail!("--dev-share must lie between 0 and 1, not {dev_share}");
        }
        let mut all = examples(train);
        Rng::new(seed).shuffle(&mut all);
        let held_out = ((all.len() as f64 * dev_share).round() as usize).max(1);
        if held_out >= all.len() {
            bail!("too little training data to hold out a development part: give --dev");
        }
        let train = all.split_off(held_out);
        Ok(Split {
            train,
            dev: all,
            dev_source: format!("{:.0}% of the training data, seed {seed}", dev_share * 100.0),
        })
    }
}

/// The profile's input half: tokens and windows per text, and the share of unknown
/// tokens, counted as `classify` counts them in its records. Also returns all tokens.
pub fn input_profile(context: &TrainContext, texts: &[&str]) -> Result<(TrainingProfile, u64)> {
    use rayon::prelude::*;
    let counts: Vec<(usize, usize, usize)> =
        texts.par_iter().map(|t| context.pipeline.input_counts(t, context.windows)).collect::<Result<_>>()?;
    let mut tokens = Histogram::new(&TOKEN_EDGES);
    let mut windows = Histogram::new(&WINDOW_EDGES);
    let (mut all, mut unknown) = (0u64, 0u64);
    for &(t, w, u) in &counts {
        tokens.add(t as f64);
        windows.add(w as f64);
        all += t as u64;
        unknown += u as u64;
    }
    let profile = TrainingProfile {
        examples: texts.len() as u64,
        labels: BTreeMap::new(),
        entities_per_1000_tokens: BTreeMap::new(),
        tokens,
        windows,
        unknown_token_share: unknown as f64 / all.max(1) as f64,
        out_of_fold: None,
    };
    Ok((profile, all))
}

/// Folder names that say nothing about what a head does (`runs/blurbs/head`).
const GENERIC_FOLDER_NAMES: [&str; 6] = ["head", "model", "out", "output", "classifier", "tagger"];

/// The head's name in output records: --name, else the output directory's name, or its
/// parent's when that name is a generic one such as `head`.
pub fn head_name(args: &TrainConfig) -> String {
    if let Some(name) = &args.name {
        return name.clone();
    }
    let absolute =
        args.out.canonicalize().unwrap_or_else(|_| std::path::absolute(&args.out).unwrap_or(args.out.clone()));
    let mut names = absolute.components().rev().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
        _ => None,
    });
    let own = names.next().unwrap_or_else(|| "head".into());
    if GENERIC_FOLDER_NAMES.contains(&own.to_lowercase().as_str()) {
        names.next().unwrap_or(own)
    } else {
        own
    }
}

/// A label (or entity type) needs this many training examples to be learned at all.
pub const MIN_EXAMPLES: usize = 2;

/// Each label's index; refuses development data with a label the training data lacks.
/// `dev` gives each example's line and labels; `what` names them in the message.
pub fn label_index<'a>(
    labels: &'a [String],
    dev: impl Iterator<Item = (usize, &'a [String])>,
    what: &str,
    args: &TrainConfig,
) -> Result<std::collections::BTreeMap<&'a str, usize>> {
    let index: std::collections::BTreeMap<&str, usize> =
        labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    for (line, example) in dev {
        if let Some(unknown) = example.iter().find(|l| !index.contains_key(l.as_str())) {
            anyhow::bail!("{}:{line}: {what} {unknown:?} does not occur in the training data", dev_name(args));
        }
    }
    Ok(index)
}

/// The development data's name for messages: --dev, or the training file it was held out of.
pub fn dev_name(args: &TrainConfig) -> String {
    args.dev.as_ref().map_or_else(|| format!("{} (held-out part)", args.train.display()), |p| p.display().to_string())
}

/// `encoder_dir` as seen from `head_dir` (both existing), so that a pipeline folder can
/// be moved whole.
pub fn relative_encoder_path(head_dir: &Path, encoder_dir: &Path) -> String {
    let absolute = |p: &Path| -> PathBuf { p.canonicalize().unwrap_or_else(|_| p.to_path_buf()) };
    let (from, to) = (absolute(head_dir), absolute(encoder_dir));
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for c in &to[common..] {
        path.push(c.as_os_str());
    }
    path.to_string_lossy().into_owned()
}

/// What `head.json` records about the training run, so that it can be reproduced: the
/// data and settings every head shares, then `fit`'s fields (how this kind of head was fitted).
pub fn head_record(
    context: &TrainContext,
    dev_source: &str,
    train_examples: usize,
    dev_examples: usize,
    fit: serde_json::Value,
) -> Result<serde_json::Value> {
    let args = context.config;
    let data = |path: &Path| -> Result<serde_json::Value> {
        Ok(serde_json::json!({"path": path.display().to_string(), "sha256": file_sha256(path)?}))
    };
    let mut record = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "docclass_version": env!("CARGO_PKG_VERSION"),
        "train": data(&args.train)?,
        "dev": match &args.dev { Some(p) => data(p)?, None => serde_json::json!(dev_source) },
        "train_examples": train_examples,
        "dev_examples": dev_examples,
        "seed": args.seed,
        "lexical_buckets": args.lexical_buckets,
        "max_lexical_rows": args.max_lexical_rows,
        "layers": context.layers,
    });
    if let (Some(record), serde_json::Value::Object(fit)) = (record.as_object_mut(), fit) {
        record.extend(fit);
    }
    Ok(record)
}

/// An f32 as the shortest decimal that reads back as it (`0.01`, not the f64 widening
/// `0.009999999776482582`), for `head.json`.
pub fn decimal(x: f32) -> serde_json::Value {
    x.to_string().parse::<f64>().map_or(serde_json::Value::Null, serde_json::Value::from)
}

/// The settings and outcome of a head fitted by epochs of Adam (the tagger).
pub fn epoch_fit_record(args: &TaggerConfig, fitted: &Fitted, score_name: &str) -> serde_json::Value {
    let mut record = serde_json::json!({
        "learning_rate": decimal(args.learning_rate),
        "dense_learning_rate": decimal(args.dense_learning_rate),
        "l2": decimal(args.l2),
        "lexical_dropout": decimal(args.lexical_dropout),
        "batch_size": args.batch_size,
        "max_epochs": args.epochs,
        "patience": args.patience,
        "best_epoch": fitted.best_epoch,
        "dev_score": {"name": score_name, "value": fitted.best_score},
        "fit_seconds": (fitted.seconds * 10.0).round() / 10.0,
        "epochs": fitted.log.len(),
    });
    if let Some(c) = &args.context {
        let s = &c.sizes;
        record["context"] = serde_json::json!({
            "kind": "bilstm",
            "projection": s.projection,
            "hidden": s.hidden,
            "char_dim": s.char_dim,
            "char_filters": s.char_filters,
            "char_width": s.char_width,
            "word_chars": s.word_chars,
            "dropout": decimal(c.dropout),
        });
    }
    record
}
