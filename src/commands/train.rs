//! `docclass train`: labelled data → encoder features (cached) → a fitted head directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::{configure_run, Outcome};

use crate::cli::{DataArgs, PoolingArg, TaggerContextArg, TrainArgs, TrainTask, WordFeaturesArg};
use crate::fsutil::refuse_existing_dir;
use crate::infer::{Pipeline, PipelineOptions};
use crate::ingest::labelled::{
    read_conll, read_documents, read_label_names, read_tag_map, Column, DocumentColumns, LabelledDocument,
    TaggedSentence,
};
use crate::ingest::FieldNames;
use crate::logging;
use crate::model::head_file::ContextSpec;
use crate::model::ModelBundle;
use crate::review::GoldLabels;
use crate::text::word_features::WordFeatureSet;
use crate::train::cache::{cache_dir, features, FeatureRequest, FeatureSet};
use crate::train::{ClassifierConfig, ContextSettings, PoolingChoice, Split, TaggerConfig, TrainConfig, TrainContext};

pub fn run(args: TrainArgs) -> Result<Outcome> {
    let task = args.data_format.task_of(&args.train);
    if task == TrainTask::Tag
        && args.tagger_context != TaggerContextArg::Linear
        && std::env::var_os("CANDLE_NUM_THREADS").is_none()
    {
        // The context layer trains shards of each batch on threads of their own; candle's
        // own pool would split every small op of each shard again. Safe at this point: no
        // other thread has started yet.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let threads = configure_run(&args.run)?;
    let started = Instant::now();
    let config = lower(&args, task)?;
    // Read (and so checked) before the slow encoding; the head keeps a copy of the file.
    let label_names = args.label_names.as_deref().map(read_label_names).transpose()?.unwrap_or_default();
    if !args.features_only {
        refuse_existing_dir(&args.out, args.force, "head")?;
    }
    let encoder_dir = args.encoder.clone().unwrap_or_else(|| super::resolve_default(super::DEFAULT_ENCODER));
    let bundle = ModelBundle::load_at(&encoder_dir, args.run.training_precision())
        .with_context(|| format!("loading encoder {}", encoder_dir.display()))?;
    let encoder_layers = bundle.encoder_config().layers;
    let layers = if args.layers.is_empty() { default_layers(task, encoder_layers) } else { args.layers.clone() };
    if let Some(&bad) = layers.iter().find(|&&l| l == 0 || l > encoder_layers) {
        bail!("--layers: the encoder has layers 1 to {encoder_layers}, not {bad}");
    }
    let pipeline = Pipeline::new(bundle, args.run.max_len)?;
    let identity = pipeline.identity.clone();
    let options = PipelineOptions::whole_texts(&pipeline, args.run.batch_tokens)?;
    let cache_dir = cache_dir(args.cache.as_deref());
    let encode = |label: &str, texts: &[String], spans: &[Vec<(usize, usize)>]| -> Result<FeatureSet> {
        let request = FeatureRequest { label, texts, word_spans: spans };
        features(&pipeline, &layers, encoder_layers, &options, &cache_dir, &request)
    };
    // The head is written into a hidden sibling folder and renamed into place when
    // complete: a run that fails or is killed leaves the previous head as it was.
    let staging = staging_dir(&args.out)?;
    let context = TrainContext {
        pipeline: &pipeline,
        windows: &options.windows,
        config: &config,
        encoder_dir: &encoder_dir,
        encoder_fingerprint: &identity.encoder_fingerprint,
        encoder_precision: identity.precision,
        layers: &layers,
        staging: &staging,
    };

    let stage = Stage { args: &args, context: &context, encode: &encode };
    let finished = match task {
        TrainTask::Classify => {
            let columns = args.data_format.columns(args.label_separator.clone());
            let mut train = read_documents(&args.train, &columns)?;
            let known: BTreeSet<String> = train.iter().flat_map(|d| d.labels.iter().cloned()).collect();
            train.extend(reviewed_documents(&args, &known, &label_names)?);
            crate::train::classifier::check_label_counts(&args.train, train.iter().map(|d| &d.labels))?;
            let dev = args.dev.as_ref().map(|p| read_documents(p, &columns)).transpose()?;
            let texts = |docs: &[LabelledDocument]| (docs.iter().map(|d| d.text.clone()).collect(), Vec::new());
            // A classifier chooses its settings by cross-validation: no data is held out.
            stage.fit(&train, dev.as_deref(), false, texts, crate::train::classifier::train)?
        }
        TrainTask::Tag => {
            let tag_map = args.data_format.tag_map()?;
            let train = read_conll(&args.train, tag_map.as_ref())?;
            let dev = args.dev.as_ref().map(|p| read_conll(p, tag_map.as_ref())).transpose()?;
            let texts = |sentences: &[TaggedSentence]| sentences.iter().map(TaggedSentence::text_and_spans).unzip();
            stage.fit(&train, dev.as_deref(), true, texts, crate::train::tagger::train)?
        }
    };
    if !finished {
        return Ok(Outcome::Complete);
    }
    let seconds = started.elapsed().as_secs_f64();
    logging::info(
        "trained",
        &format!("trained in {seconds:.0} s with {threads} threads"),
        json!({"seconds": seconds, "threads": threads}),
    );
    Ok(Outcome::Complete)
}

/// The encoder layers a head reads unless told: a classifier the last four; a tagger the
/// four around the middle (5–8 of 12), which on LER's dev split beat the last four and
/// layers 7–10 (eval/legal-entities/features-2026-12/): e5 was trained for sentence
/// embeddings at its top, and its middle layers keep more about each word.
fn default_layers(task: TrainTask, encoder_layers: usize) -> Vec<usize> {
    let first = match task {
        TrainTask::Classify => encoder_layers.saturating_sub(3),
        TrainTask::Tag => (encoder_layers / 2).saturating_sub(1),
    }
    .max(1);
    (first..=encoder_layers.min(first + 3)).collect()
}

/// The command line lowered into the library's settings; refuses options that the
/// task does not read.
fn lower(args: &TrainArgs, task: TrainTask) -> Result<TrainConfig> {
    if task == TrainTask::Tag && (args.cross_validate.is_some() || args.pooling != PoolingArg::Auto) {
        bail!("--cross-validate and --pooling are for classifiers; a tagger is selected on its development data and reads each word");
    }
    for (option, rate) in [("--lexical-dropout", args.lexical_dropout), ("--dropout", args.dropout)] {
        if !(0.0..1.0).contains(&rate) {
            bail!("{option}: a share from 0 up to (not including) 1, not {rate}");
        }
    }
    Ok(TrainConfig {
        train: args.train.clone(),
        dev: args.dev.clone(),
        out: args.out.clone(),
        name: args.name.clone(),
        seed: args.seed,
        lexical_buckets: args.lexical_buckets,
        max_lexical_rows: args.max_lexical_rows,
        refit_with_dev: args.refit_with_dev,
        classifier: ClassifierConfig {
            multi_label: args.label_separator.is_some(),
            folds: args.cross_validate.unwrap_or(crate::train::classifier::DEFAULT_FOLDS),
            pooling: match args.pooling {
                PoolingArg::Auto => PoolingChoice::Auto,
                PoolingArg::Mean => PoolingChoice::Mean,
                PoolingArg::MeanMax => PoolingChoice::MeanMax,
            },
        },
        tagger: TaggerConfig {
            epochs: args.epochs,
            patience: args.patience,
            learning_rate: args.learning_rate,
            dense_learning_rate: args.dense_learning_rate,
            l2: args.l2,
            lexical_dropout: args.lexical_dropout,
            batch_size: args.batch_size,
            word_features: match args.word_features {
                WordFeaturesArg::Base => WordFeatureSet::Base,
                WordFeaturesArg::Brackets => WordFeatureSet::Brackets,
            },
            context: match args.tagger_context {
                TaggerContextArg::Linear => None,
                TaggerContextArg::Bilstm => Some(ContextSettings {
                    sizes: ContextSpec {
                        projection: args.projection,
                        hidden: args.hidden,
                        char_dim: 32,
                        char_filters: 64,
                        char_width: 3,
                        word_chars: 20,
                        chars: String::new(),
                    },
                    dropout: args.dropout,
                }),
            },
        },
    })
}

type Encode<'a> = dyn Fn(&str, &[String], &[Vec<(usize, usize)>]) -> Result<FeatureSet> + 'a;

/// The steps every head goes through: features of the training and dev data (from the
/// cache when they are there), the split, fitting into the staging folder, publishing.
struct Stage<'a> {
    args: &'a TrainArgs,
    context: &'a TrainContext<'a>,
    encode: &'a Encode<'a>,
}

impl Stage<'_> {
    /// Returns false when only features were wanted. Without `dev`, a share of `train`
    /// is held out as development data when `hold_out` says so.
    fn fit<T>(
        &self,
        train: &[T],
        dev: Option<&[T]>,
        hold_out: bool,
        inputs: impl Fn(&[T]) -> (Vec<String>, Vec<Vec<(usize, usize)>>),
        fit: impl FnOnce(&TrainContext, Split<T>) -> Result<()>,
    ) -> Result<bool> {
        let args = self.args;
        let (texts, spans) = inputs(train);
        let train_features = (self.encode)(&display(&args.train), &texts, &spans)?;
        let dev_features = match (dev, &args.dev) {
            (Some(dev), Some(path)) => {
                let (texts, spans) = inputs(dev);
                Some((self.encode)(&display(path), &texts, &spans)?)
            }
            _ => None,
        };
        if args.features_only {
            return Ok(false);
        }
        let staging = self.context.staging;
        prepare_staging(staging)?;
        if let Some(names) = &args.label_names {
            let copy = staging.join(crate::model::head_file::LABEL_NAMES_FILE);
            std::fs::copy(names, &copy)
                .with_context(|| format!("copying {} to {}", names.display(), copy.display()))?;
        }
        let dev_share = if hold_out { Some(args.dev_share) } else { None };
        let split = Split::new((train, &train_features), dev.zip(dev_features.as_ref()), dev_share, args.seed)?;
        publish(staging, &args.out, fit(self.context, split))?;
        Ok(true)
    }
}

/// `.NAME.partial` beside the head directory `out`.
fn staging_dir(out: &Path) -> Result<PathBuf> {
    out.file_name().with_context(|| format!("{}: not a directory name", out.display()))?;
    Ok(crate::fsutil::partial_path(out))
}

/// An empty staging folder (a killed run's leftovers removed).
fn prepare_staging(staging: &Path) -> Result<()> {
    if staging.exists() {
        std::fs::remove_dir_all(staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    std::fs::create_dir_all(staging).with_context(|| format!("creating {}", staging.display()))
}

/// Moves a complete head's files from `staging` into `out`, replacing those of an
/// earlier head (other files there, such as the model card, stay), or discards them
/// when fitting failed.
fn publish(staging: &Path, out: &Path, fitted: Result<()>) -> Result<()> {
    if let Err(e) = fitted {
        std::fs::remove_dir_all(staging).ok();
        return Err(e);
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // head.json goes last; it names the SHA-256 of its weights, so a run killed between
    // two moves leaves a head that refuses to load instead of a silently mixed one.
    let mut files: Vec<PathBuf> = std::fs::read_dir(staging)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort_by_key(|f| f.file_name().is_some_and(|n| n == crate::model::head_file::HEAD_FILE));
    for file in files {
        let target = out.join(file.file_name().expect("a file in the staging folder"));
        std::fs::rename(&file, &target).with_context(|| format!("moving the head to {}", target.display()))?;
    }
    std::fs::remove_dir(staging).ok();
    logging::info("wrote", &format!("wrote {}", out.display()), json!({"out": out.display().to_string()}));
    Ok(())
}

impl DataArgs {
    /// --task, else tagging for CoNLL file names and classification for the rest.
    pub fn task_of(&self, path: &Path) -> TrainTask {
        self.task.unwrap_or_else(|| {
            match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                Some("conll" | "iob" | "iob2" | "bio") => TrainTask::Tag,
                _ => TrainTask::Classify,
            }
        })
    }

    pub fn columns(&self, label_separator: Option<String>) -> DocumentColumns {
        DocumentColumns {
            text: self.text_column.clone(),
            label: self.label_column.clone(),
            no_header: self.no_header,
            label_separator,
        }
    }

    pub fn tag_map(&self) -> Result<Option<BTreeMap<String, String>>> {
        self.tag_map.as_ref().map(|p| read_tag_map(p)).transpose()
    }
}

/// The labelled rows of the --review queues as training documents, their texts read
/// again from their sources. Each gold label is matched to one of TRAIN's `known`
/// labels: a typo must not train a new class.
fn reviewed_documents(
    args: &TrainArgs,
    known: &BTreeSet<String>,
    display_names: &BTreeMap<String, String>,
) -> Result<Vec<LabelledDocument>> {
    if args.review.is_empty() {
        return Ok(Vec::new());
    }
    if args.data_format.task_of(&args.train) != TrainTask::Classify {
        bail!("--review queues label documents: they train classifiers, not taggers");
    }
    let gold_labels = GoldLabels::new(known, display_names);
    let text = match &args.data_format.text_column {
        Column::Name(name) => name.clone(),
        Column::Position(_) => "text".to_string(),
    };
    let fields = FieldNames { text, id: "id".into(), keep: Vec::new() };
    let mut documents = Vec::new();
    for queue in &args.review {
        let (rows, unlabelled) = crate::review::read_queue(queue)?;
        let paths = rows.iter().map(|r| r.source.path.clone()).collect();
        let texts = crate::review::read_texts(&paths, &fields)?;
        let labelled = rows.len();
        for row in rows {
            let gold = match gold_labels.resolve(&row.gold) {
                Some(label) => label.to_string(),
                None if args.allow_new_labels => row.gold.trim().to_string(),
                None => bail!(
                    "{}:{}: gold label {:?} of document {:?} is not a label of {} ({}); correct the row, or give --allow-new-labels to train a new class",
                    queue.display(),
                    row.line,
                    row.gold,
                    row.id,
                    args.train.display(),
                    gold_labels.listing()
                ),
            };
            let text = texts.get(&row.source, &row.id).with_context(|| {
                format!(
                    "{}:{}: document {:?} is not in {} (a queue's texts are read from their sources again)",
                    queue.display(),
                    row.line,
                    row.id,
                    row.source.path
                )
            })?;
            documents.push(LabelledDocument {
                text: text.to_string(),
                labels: vec![gold],
                line: row.line,
                id: Some(row.id),
            });
        }
        logging::info(
            "review",
            &format!(
                "{}: {labelled} reviewed documents join the training data; {unlabelled} rows without a gold label skipped",
                queue.display()
            ),
            json!({"queue": queue.display().to_string(), "labelled": labelled, "unlabelled": unlabelled}),
        );
    }
    Ok(documents)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layers_are_the_last_four_or_the_middle_four() {
        assert_eq!(default_layers(TrainTask::Classify, 12), [9, 10, 11, 12]);
        assert_eq!(default_layers(TrainTask::Tag, 12), [5, 6, 7, 8]);
        assert_eq!(default_layers(TrainTask::Classify, 6), [3, 4, 5, 6]);
        assert_eq!(default_layers(TrainTask::Tag, 6), [2, 3, 4, 5]);
        // Encoders with fewer than four layers give what they have.
        assert_eq!(default_layers(TrainTask::Classify, 2), [1, 2]);
        assert_eq!(default_layers(TrainTask::Tag, 2), [1, 2]);
        assert_eq!(default_layers(TrainTask::Tag, 1), [1]);
    }
}
