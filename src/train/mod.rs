//! Fitting heads on encoder features: labelled data in, a head directory out that
//! `classify` loads with its encoder. Features come from the feature cache, so a head
//! is refitted with other settings in minutes.

pub mod cache;
pub mod classifier;
pub mod data;
pub mod logistic;
pub mod optim;
pub mod tagger;

/// A small deterministic generator (SplitMix64): the same seed gives the same split,
/// initialisation and order on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

use std::path::{Component, Path, PathBuf};

use anyhow::Result;

use crate::cli::TrainArgs;
use crate::commands::train::TrainContext;
use crate::hashing::file_sha256;
use optim::Fitted;

/// Folder names that say nothing about what a head does (`runs/blurbs/head`).
const GENERIC_FOLDER_NAMES: [&str; 6] = ["head", "model", "out", "output", "classifier", "tagger"];

/// The head's name in output records: --name, else the output directory's name, or its
/// parent's when that name is a generic one such as `head`.
pub fn head_name(args: &TrainArgs) -> String {
    if let Some(name) = &args.name {
        return name.clone();
    }
    let absolute = args.out.canonicalize().unwrap_or_else(|_| std::path::absolute(&args.out).unwrap_or(args.out.clone()));
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
    args: &TrainArgs,
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
pub fn dev_name(args: &TrainArgs) -> String {
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
    let args = context.args;
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
pub fn epoch_fit_record(args: &TrainArgs, fitted: &Fitted, score_name: &str) -> serde_json::Value {
    serde_json::json!({
        "learning_rate": decimal(args.learning_rate),
        "dense_learning_rate": decimal(args.dense_learning_rate),
        "l2": decimal(args.l2),
        "batch_size": args.batch_size,
        "max_epochs": args.epochs,
        "patience": args.patience,
        "best_epoch": fitted.best_epoch,
        "dev_score": {"name": score_name, "value": fitted.best_score},
        "fit_seconds": (fitted.seconds * 10.0).round() / 10.0,
        "epochs": fitted.log.len(),
    })
}
