//! The heads of Hugging Face `*ForSequenceClassification` and `*ForTokenClassification`
//! checkpoints, computed as transformers computes them (tensor names follow the
//! checkpoint 1:1).

use std::any::Any;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::{classification, BatchStates, DocumentOutputs, HeadResult, Task, TaskHead};
use crate::decode::entities::{decode_entities, TokenScores};
use crate::decode::scores::{sigmoid, softmax};
use crate::model::config::{Activation, Architecture, HfConfig};
use crate::model::encoder::{first_token, mean_pool, Linear};
use crate::text::windows::token_owners;

/// How a classification head turns a window's token states into one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPooling {
    /// The first token (`[CLS]`/`<s>`): HF `*ForSequenceClassification`.
    First,
    /// Mean over the window's tokens: e5's sentence embedding.
    Mean,
}

/// Document classification: a pooled window vector, an optional dense layer with an
/// activation, then the output layer. A document's scores are its windows' label
/// probabilities averaged, weighted by window length.
pub struct ClassificationHead {
    pub name: String,
    pub labels: Vec<String>,
    pub pooling: TokenPooling,
    pub hidden_layer: Option<(Linear, Activation)>,
    pub output: Linear,
    /// Sigmoid per label instead of a softmax over labels.
    pub multi_label: bool,
}

fn config_error(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

impl ClassificationHead {
    /// The head of a HF `*ForSequenceClassification` checkpoint, named as transformers names it:
    /// BERT: `bert.pooler.dense` + tanh, `classifier`; XLM-R: `classifier.dense` + tanh,
    /// `classifier.out_proj`; DistilBERT: `pre_classifier` + ReLU, `classifier`.
    pub fn load_hf(vb: &VarBuilder, config: &HfConfig, hidden: usize, name: &str) -> candle_core::Result<Self> {
        let labels = config.labels().map_err(config_error)?;
        let n = labels.len();
        let (hidden_layer, output) = match config.architecture().map_err(config_error)? {
            Architecture::Bert => (
                (Linear::load(&vb.pp("bert.pooler"), "dense", hidden, hidden)?, Activation::Tanh),
                Linear::load(vb, "classifier", hidden, n)?,
            ),
            Architecture::XlmRoberta => (
                (Linear::load(vb, "classifier.dense", hidden, hidden)?, Activation::Tanh),
                Linear::load(vb, "classifier.out_proj", hidden, n)?,
            ),
            Architecture::DistilBert => (
                (Linear::load(vb, "pre_classifier", hidden, hidden)?, Activation::Relu),
                Linear::load(vb, "classifier", hidden, n)?,
            ),
        };
        Ok(Self {
            name: name.to_string(),
            labels,
            pooling: TokenPooling::First,
            hidden_layer: Some(hidden_layer),
            output,
            multi_label: config.is_multi_label(),
        })
    }

    /// Logits `[windows, labels]` from pooled window vectors `[windows, hidden]`.
    pub fn logits(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        let xs = match &self.hidden_layer {
            Some((layer, activation)) => layer.forward_activated(pooled, Some(*activation))?,
            None => pooled.clone(),
        };
        self.output.forward(&xs)
    }

    fn probabilities(&self, logits: &[f32]) -> Vec<f32> {
        if self.multi_label {
            sigmoid(logits)
        } else {
            softmax(logits)
        }
    }
}

impl TaskHead for ClassificationHead {
    fn name(&self) -> &str {
        &self.name
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn task(&self) -> Task {
        Task::ClassifyDocuments
    }

    fn forward(&self, batch: &BatchStates) -> candle_core::Result<Vec<Vec<f32>>> {
        let hidden = batch.last_layer()?;
        let pooled = match self.pooling {
            TokenPooling::First => first_token(&hidden, batch.starts())?,
            TokenPooling::Mean => mean_pool(&hidden, batch.starts(), batch.lens())?,
        };
        Ok(self.logits(&pooled)?.to_vec2::<f32>()?.iter().map(|l| self.probabilities(l)).collect())
    }

    fn assemble(&self, document: &DocumentOutputs) -> HeadResult {
        let probs = document.length_weighted_mean();
        HeadResult::Classification(classification(&self.labels, &probs, self.multi_label, document.top_k))
    }

    fn describe(&self) -> String {
        format!("{} ({} labels)", self.name, self.labels.len())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Token classification (`*ForTokenClassification`): one linear layer over every token;
/// entities are grouped from the tag probabilities of each token, read in the window
/// where it has the most context, as transformers' pipeline groups them.
pub struct TokenClassificationHead {
    pub name: String,
    pub labels: Vec<String>,
    pub output: Linear,
}

impl TokenClassificationHead {
    pub fn load_hf(vb: &VarBuilder, config: &HfConfig, hidden: usize, name: &str) -> candle_core::Result<Self> {
        let labels = config.labels().map_err(config_error)?;
        let output = Linear::load(vb, "classifier", hidden, labels.len())?;
        Ok(Self { name: name.to_string(), labels, output })
    }

    /// Logits `[tokens, labels]` from hidden states `[tokens, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.output.forward(hidden)
    }
}

impl TaskHead for TokenClassificationHead {
    fn name(&self) -> &str {
        &self.name
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn task(&self) -> Task {
        Task::TagTokens
    }

    /// The tag probabilities of each content token, row after row.
    fn forward(&self, batch: &BatchStates) -> candle_core::Result<Vec<Vec<f32>>> {
        let n_labels = self.labels.len();
        let logits = self.logits(&batch.last_layer()?)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(batch
            .content_rows(&logits, n_labels)
            .into_iter()
            .map(|rows| rows.chunks(n_labels).flat_map(softmax).collect())
            .collect())
    }

    fn assemble(&self, document: &DocumentOutputs) -> HeadResult {
        let n_labels = self.labels.len();
        let windows = document.windows;
        let owners = token_owners(windows, document.tokens.len());
        let tokens: Vec<TokenScores> = owners
            .iter()
            .enumerate()
            .map(|(j, &(w, _))| {
                let row = j - windows[w].content.start;
                let (start, end) = document.tokens.offsets[j];
                TokenScores {
                    probs: &document.outputs[w][row * n_labels..(row + 1) * n_labels],
                    start,
                    end,
                    word: document.tokens.word_ids[j],
                }
            })
            .collect();
        HeadResult::Entities(decode_entities(document.text, &tokens, &self.labels, document.aggregation))
    }

    fn describe(&self) -> String {
        format!("{} ({} tags)", self.name, self.labels.len())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
