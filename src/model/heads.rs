//! Task heads that read the encoder's hidden states. A pipeline runs the encoder once
//! per window and feeds every head from that one pass.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::config::{Activation, Architecture, HfConfig};
use super::encoder::Linear;

/// How a classification head turns a window's token states into one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The first token (`[CLS]`/`<s>`): HF `*ForSequenceClassification`.
    First,
    /// Mean over the window's tokens: e5's sentence embedding.
    Mean,
}

/// Document classification: a pooled window vector, an optional dense layer with an
/// activation, then the output layer.
pub struct ClassificationHead {
    pub name: String,
    pub labels: Vec<String>,
    pub pooling: Pooling,
    pub hidden_layer: Option<(Linear, Activation)>,
    pub output: Linear,
    /// Sigmoid per label instead of a softmax over labels.
    pub multi_label: bool,
}

impl ClassificationHead {
    /// The head of a HF `*ForSequenceClassification` checkpoint, named as transformers names it:
    /// BERT: `bert.pooler.dense` + tanh, `classifier`; XLM-R: `classifier.dense` + tanh,
    /// `classifier.out_proj`; DistilBERT: `pre_classifier` + ReLU, `classifier`.
    pub fn load_hf(vb: &VarBuilder, config: &HfConfig, hidden: usize, name: &str) -> candle_core::Result<Self> {
        let labels = config.labels().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let n = labels.len();
        let arch = config.architecture().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let (hidden_layer, output) = match arch {
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
            pooling: Pooling::First,
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
}

/// Token classification (`*ForTokenClassification`): one linear layer over every token.
pub struct TokenClassificationHead {
    pub name: String,
    pub labels: Vec<String>,
    pub output: Linear,
}

impl TokenClassificationHead {
    pub fn load_hf(vb: &VarBuilder, config: &HfConfig, hidden: usize, name: &str) -> candle_core::Result<Self> {
        let labels = config.labels().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let output = Linear::load(vb, "classifier", hidden, labels.len())?;
        Ok(Self { name: name.to_string(), labels, output })
    }

    /// Logits `[tokens, labels]` from hidden states `[tokens, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.output.forward(hidden)
    }
}

/// Zero-shot classification on the bare encoder: labels are short descriptions, embedded
/// like documents. A label's similarity to a document is the highest cosine similarity of
/// any of its descriptions; the scores are the softmax of these similarities divided by
/// `temperature`.
pub struct ZeroShotHead {
    pub name: String,
    pub labels: Vec<String>,
    /// Unit-length description embeddings with the index of their label.
    pub descriptions: Vec<(usize, Vec<f32>)>,
    pub temperature: f32,
}

impl ZeroShotHead {
    /// Label probabilities for a document embedding (any length; it is normalised here).
    pub fn probabilities(&self, embedding: &[f32]) -> Vec<f32> {
        let unit = unit_length(embedding);
        let mut best = vec![f32::NEG_INFINITY; self.labels.len()];
        for (label, description) in &self.descriptions {
            let cosine = description.iter().zip(&unit).map(|(a, b)| a * b).sum::<f32>();
            best[*label] = best[*label].max(cosine);
        }
        let scaled: Vec<f32> = best.iter().map(|c| c / self.temperature).collect();
        crate::decode::softmax(&scaled)
    }
}

pub fn unit_length(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

// A pipeline holds a few heads: their size in memory does not matter, and boxing the
// large variant would only clutter the matches on it.
#[allow(clippy::large_enum_variant)]
pub enum Head {
    Classification(ClassificationHead),
    TokenClassification(TokenClassificationHead),
    ZeroShot(ZeroShotHead),
    /// A head trained by `docclass train`.
    Trained(super::trained::TrainedHead),
}
