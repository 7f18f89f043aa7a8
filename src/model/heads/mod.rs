//! Task heads: components around one shared encoder, as spaCy's pipes are. Each head kind
//! implements [`TaskHead`]: which encoder layers it reads, its forward pass on a packed
//! batch's layer states (one output per window), and how a document's window outputs
//! become its part of the record. The run loop in `infer::pipeline` only moves batches;
//! adding a head kind is one file here plus where it is loaded (`model::bundle` for
//! checkpoint heads, [`load_trained`] for heads `docclass train` writes).

pub mod context;
pub mod document_classifier;
pub mod fine_tuned;
pub mod tagger;
pub mod zero_shot;

use std::any::Any;

use candle_core::Tensor;

use super::encoder::mean_pool;
use super::head_file::{HeadFile, HeadKind};
use crate::decode::entities::{Aggregation, Entity};
use crate::decode::scores::{argmax, rank};
use crate::output::record::Classification;
use crate::text::{DocTokens, Window};

pub use document_classifier::DocumentClassifier;
pub use fine_tuned::{ClassificationHead, TokenClassificationHead, TokenPooling};
pub use tagger::Tagger;
pub use zero_shot::ZeroShotHead;

/// What a head gives a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Label scores for the whole document.
    ClassifyDocuments,
    /// Entities from subword tokens (a checkpoint's token head).
    TagTokens,
    /// IOB2 tags of words, hence entities; can also tag given words (CoNLL data).
    TagWords,
}

/// One head kind. `forward` runs once per batch, `assemble` once per document.
pub trait TaskHead: Send + Sync {
    fn name(&self) -> &str;
    /// Labels of a classifier, tags of a tagger.
    fn labels(&self) -> &[String];
    fn task(&self) -> Task;
    /// The encoder layers it reads (1-based, concatenated in this order); `last` is the
    /// encoder's last layer, which checkpoint heads read.
    fn layers(&self, last: usize) -> Vec<usize> {
        vec![last]
    }
    /// One output row per window of the batch, in batch order.
    fn forward(&self, batch: &BatchStates) -> candle_core::Result<Vec<Vec<f32>>>;
    /// The document's result from its windows' outputs.
    fn assemble(&self, document: &DocumentOutputs) -> HeadResult;
    /// The tag of each word span (character offsets, ascending) of the document, for
    /// heads of [`Task::TagWords`].
    fn word_tags(&self, _document: &DocumentOutputs, _words: &[(usize, usize)]) -> Option<Vec<String>> {
        None
    }
    /// A short description for `docclass model check`.
    fn describe(&self) -> String;
    /// The concrete head, for tests that compare its logits with transformers.
    fn as_any(&self) -> &dyn Any;
}

/// The head in a directory `docclass train` wrote: its file read and checked, and the
/// head kind it names built from it. One line per kind.
pub fn load_trained(
    dir: &std::path::Path,
    encoder_fingerprint: &str,
    hidden: usize,
) -> anyhow::Result<Box<dyn TaskHead>> {
    let file = HeadFile::read(dir, encoder_fingerprint)?;
    Ok(match file.spec.kind {
        HeadKind::DocumentClassifier => Box::new(DocumentClassifier::from_file(file, hidden)?),
        HeadKind::Tagger => Box::new(Tagger::from_file(file, hidden)?),
    })
}

/// A head's part of a record.
pub enum HeadResult {
    Classification(Classification),
    Entities(Vec<Entity>),
}

/// The encoder states of one packed batch: the layers the heads asked for, and where
/// each window's rows lie.
pub struct BatchStates {
    layers: Vec<usize>,
    states: Vec<Tensor>,
    last: usize,
    starts: Vec<usize>,
    lens: Vec<usize>,
    /// Frame tokens before and after each window's content (`[CLS]`, a prefix, `[SEP]`).
    leading: usize,
    trailing: usize,
}

impl BatchStates {
    /// `states[i]` holds layer `layers[i]` for all tokens of the batch, windows back to
    /// back with the given lengths.
    pub fn new(
        layers: Vec<usize>,
        states: Vec<Tensor>,
        last: usize,
        lens: Vec<usize>,
        (leading, trailing): (usize, usize),
    ) -> Self {
        let starts = lens.iter().scan(0, |offset, len| Some(std::mem::replace(offset, *offset + len))).collect();
        Self { layers, states, last, starts, lens, leading, trailing }
    }

    pub fn windows(&self) -> usize {
        self.lens.len()
    }

    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    /// The states of `layers`, concatenated along the hidden dimension: `[tokens, width]`.
    pub fn layers(&self, layers: &[usize]) -> candle_core::Result<Tensor> {
        let parts: Vec<&Tensor> = layers
            .iter()
            .map(|l| {
                &self.states[self.layers.iter().position(|k| k == l).expect("the loop fetches every head's layers")]
            })
            .collect();
        if parts.len() == 1 {
            Ok(parts[0].clone())
        } else {
            Tensor::cat(&parts, 1)
        }
    }

    /// The encoder's last layer (1-based).
    pub fn last(&self) -> usize {
        self.last
    }

    pub fn last_layer(&self) -> candle_core::Result<Tensor> {
        self.layers(&[self.last])
    }

    /// Each window's mean over all its tokens (frame included, as e5 pools) of `layers`.
    pub fn window_means(&self, layers: &[usize]) -> candle_core::Result<Vec<Vec<f32>>> {
        mean_pool(&self.layers(layers)?, &self.starts, &self.lens)?.to_vec2::<f32>()
    }

    /// Per window, the rows `[content tokens, width]` of `rows` (`[tokens, width]` of
    /// the whole batch, flattened), without the frame tokens.
    pub fn content_rows(&self, rows: &[f32], width: usize) -> Vec<Vec<f32>> {
        self.starts
            .iter()
            .zip(&self.lens)
            .map(|(&start, &len)| {
                let content = len - self.leading - self.trailing;
                rows[(start + self.leading) * width..(start + self.leading + content) * width].to_vec()
            })
            .collect()
    }
}

/// One document as a head assembles it: its text, tokens, windows, and this head's
/// output for each window.
pub struct DocumentOutputs<'a> {
    pub text: &'a str,
    pub tokens: &'a DocTokens,
    pub windows: &'a [Window],
    pub outputs: Vec<&'a [f32]>,
    pub top_k: Option<usize>,
    pub aggregation: Aggregation,
    /// Explain the chosen label with this many contributions (heads that can).
    pub explain: Option<usize>,
}

impl DocumentOutputs<'_> {
    /// The mean of the window outputs, each weighted by its number of content tokens.
    pub fn length_weighted_mean(&self) -> Vec<f32> {
        crate::decode::scores::weighted_mean(
            self.outputs.iter().zip(self.windows).map(|(o, w)| (*o, w.content.len() as f32)),
        )
    }
}

/// A classification from label probabilities: the best label, the ranked scores, and
/// for a multi-label head every label at 0.5 or more.
pub fn classification(labels: &[String], probs: &[f32], multi_label: bool, top_k: Option<usize>) -> Classification {
    let best = argmax(probs);
    Classification {
        label: labels[best].clone(),
        score: probs[best],
        scores: rank(labels, probs, top_k),
        labels: multi_label
            .then(|| labels.iter().zip(probs).filter(|(_, &p)| p >= 0.5).map(|(l, _)| l.clone()).collect()),
        evidence: None,
    }
}
