//! The transformer encoder shared by BERT, XLM-RoBERTa and DistilBERT, run on
//! *packed* batches: the windows of a batch are laid end to end in one `[tokens, hidden]`
//! matrix, so no compute is spent on padding. Dense layers see all tokens at once;
//! attention runs per window over exactly its own tokens, which is what an attention
//! mask does in a padded batch. A window's result therefore does not depend on what
//! else is in its batch.

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;

use super::attention::{AttentionArithmetic, WindowAttention};
use super::config::Precision;
use super::config::{Activation, Architecture, EncoderConfig};
use super::int8::{self, QuantizedLinear, QuantizedTable};
use super::kernels::{BiasActivation, LayerNormRows};

/// A dense layer stored as `[in, out]`, so that the packed activations multiply it
/// without a transpose per call.
#[derive(Clone, Debug)]
pub struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Loads `{name}.weight` (`[out, in]`, as `nn.Linear` stores it) and `{name}.bias`.
    pub fn load(vb: &VarBuilder, name: &str, in_dim: usize, out_dim: usize) -> candle_core::Result<Self> {
        let weight = vb.get((out_dim, in_dim), &format!("{name}.weight"))?;
        let bias = vb.get(out_dim, &format!("{name}.bias"))?;
        Self::from_weight(&weight, bias)
    }

    pub fn from_weight(weight: &Tensor, bias: Tensor) -> candle_core::Result<Self> {
        Ok(Self { weight_t: weight.t()?.contiguous()?, bias })
    }

    /// Several layers that read the same input as one wider layer (query, key, value).
    fn fused(parts: &[Linear]) -> candle_core::Result<Self> {
        let weights: Vec<&Tensor> = parts.iter().map(|p| &p.weight_t).collect();
        let biases: Vec<&Tensor> = parts.iter().map(|p| &p.bias).collect();
        Ok(Self { weight_t: Tensor::cat(&weights, 1)?, bias: Tensor::cat(&biases, 0)? })
    }
}

impl Linear {
    /// `activation(xs · W + b)` for `xs` of shape `[rows, in]`, bias and activation in one pass.
    pub fn forward_activated(&self, xs: &Tensor, activation: Option<Activation>) -> candle_core::Result<Tensor> {
        xs.matmul(&self.weight_t)?.apply_op2_no_bwd(&self.bias, &BiasActivation(activation))
    }
}

impl Module for Linear {
    /// `xs` is `[rows, in]`.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_activated(xs, None)
    }
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    /// Loads `{name}.weight`/`{name}.bias`, or the `gamma`/`beta` of old TF-converted checkpoints.
    fn load(vb: &VarBuilder, name: &str, dim: usize, eps: f64) -> candle_core::Result<Self> {
        let (w, b) = if vb.contains_tensor(&format!("{name}.weight")) { ("weight", "bias") } else { ("gamma", "beta") };
        Ok(Self {
            weight: vb.get(dim, &format!("{name}.{w}"))?.to_vec1()?,
            bias: vb.get(dim, &format!("{name}.{b}"))?.to_vec1()?,
            eps: eps as f32,
        })
    }

    fn op(&self) -> LayerNormRows<'_> {
        LayerNormRows { weight: &self.weight, bias: &self.bias, eps: self.eps }
    }

    /// The norm of `xs + residual`, in one pass.
    fn forward_residual(&self, xs: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        xs.apply_op2_no_bwd(residual, &self.op())
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.apply_op1_no_bwd(&self.op())
    }
}

/// Checkpoint tensor names of one family. Tensor names follow the checkpoint 1:1.
struct TensorNames {
    word: &'static str,
    position: &'static str,
    token_type: Option<&'static str>,
    embedding_norm: &'static str,
    layer: &'static str,
    query: &'static str,
    key: &'static str,
    value: &'static str,
    attention_out: &'static str,
    attention_norm: &'static str,
    ffn_in: &'static str,
    ffn_out: &'static str,
    ffn_norm: &'static str,
}

const BERT_NAMES: TensorNames = TensorNames {
    word: "embeddings.word_embeddings.weight",
    position: "embeddings.position_embeddings.weight",
    token_type: Some("embeddings.token_type_embeddings.weight"),
    embedding_norm: "embeddings.LayerNorm",
    layer: "encoder.layer",
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_out: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    ffn_norm: "output.LayerNorm",
};

const DISTILBERT_NAMES: TensorNames = TensorNames {
    word: "embeddings.word_embeddings.weight",
    position: "embeddings.position_embeddings.weight",
    token_type: None,
    embedding_norm: "embeddings.LayerNorm",
    layer: "transformer.layer",
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attention_out: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    ffn_in: "ffn.lin1",
    ffn_out: "ffn.lin2",
    ffn_norm: "output_layer_norm",
};

impl Architecture {
    fn tensor_names(self) -> &'static TensorNames {
        match self {
            Architecture::Bert | Architecture::XlmRoberta => &BERT_NAMES,
            Architecture::DistilBert => &DISTILBERT_NAMES,
        }
    }

    /// The prefix task checkpoints put before the encoder's tensors (`bert.` in
    /// `BertForSequenceClassification`); bare encoder checkpoints have none.
    pub fn base_prefix(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::XlmRoberta => "roberta",
            Architecture::DistilBert => "distilbert",
        }
    }
}

/// An encoder's dense layer at the precision it runs in.
enum Dense {
    F32(Linear),
    Int8(QuantizedLinear),
}

impl Dense {
    fn new(linear: Linear, precision: Precision) -> candle_core::Result<Self> {
        Ok(match precision {
            Precision::F32 => Dense::F32(linear),
            Precision::Int8 => Dense::Int8(QuantizedLinear::new(&linear.weight_t.t()?, linear.bias)?),
        })
    }

    fn forward_activated(&self, xs: &Tensor, activation: Option<Activation>) -> candle_core::Result<Tensor> {
        match self {
            Dense::F32(linear) => linear.forward_activated(xs, activation),
            Dense::Int8(linear) => linear.forward_activated(xs, activation),
        }
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_activated(xs, None)
    }
}

struct EncoderLayer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    ffn_in: Dense,
    ffn_out: Dense,
    ffn_norm: LayerNorm,
}

/// The word-embedding table: f32, or int8 rows dequantized per batch.
pub enum WordEmbeddings {
    F32(Tensor),
    Int8(QuantizedTable),
}

impl WordEmbeddings {
    fn lookup(&self, ids: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        match self {
            WordEmbeddings::F32(table) => table.index_select(&Tensor::from_slice(ids, ids.len(), device)?, 0),
            WordEmbeddings::Int8(table) => table.lookup(ids, device),
        }
    }
}

/// Windows laid end to end: `ids` holds every window's tokens, `lens` their lengths.
#[derive(Clone, Debug, Default)]
pub struct PackedBatch {
    pub ids: Vec<u32>,
    pub lens: Vec<usize>,
}

impl PackedBatch {
    pub fn push(&mut self, ids: &[u32]) {
        self.ids.extend_from_slice(ids);
        self.lens.push(ids.len());
    }

    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// Start offset of each window in the packed rows.
    pub fn starts(&self) -> Vec<usize> {
        self.lens
            .iter()
            .scan(0, |offset, len| {
                let start = *offset;
                *offset += len;
                Some(start)
            })
            .collect()
    }
}

pub struct Encoder {
    config: EncoderConfig,
    word_embeddings: WordEmbeddings,
    position_embeddings: Tensor,
    /// Row 0 of the token type table: docclass always feeds token type 0, as
    /// transformers does when no `token_type_ids` are given.
    token_type_row: Option<Tensor>,
    embedding_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    attention: AttentionArithmetic,
    device: Device,
}

impl Encoder {
    /// The f32 encoder; `vb` points at the encoder's own tensors (prefix already applied).
    pub fn load(vb: &VarBuilder, config: &EncoderConfig) -> candle_core::Result<Self> {
        let words = WordEmbeddings::F32(vb.get((config.vocab, config.hidden), config.arch.tensor_names().word)?);
        Self::load_at(vb, config, Precision::F32, words)
    }

    /// The encoder at `precision`, with its word-embedding table as the bundle read it
    /// (at int8, quantized row block by row block: see [`Self::word_embeddings_name`]).
    pub fn load_at(
        vb: &VarBuilder,
        config: &EncoderConfig,
        precision: Precision,
        word_embeddings: WordEmbeddings,
    ) -> candle_core::Result<Self> {
        let names = config.arch.tensor_names();
        let h = config.hidden;
        let rows = match &word_embeddings {
            WordEmbeddings::F32(table) => table.dim(0)?,
            WordEmbeddings::Int8(table) => table.rows(),
        };
        if rows != config.vocab {
            candle_core::bail!("{rows} word embeddings for a vocabulary of {}", config.vocab);
        }
        let position_embeddings = vb.get((config.max_positions, h), names.position)?;
        let token_type_row = match names.token_type {
            Some(name) if config.type_vocab > 0 => Some(vb.get((config.type_vocab, h), name)?.get(0)?),
            _ => None,
        };
        let embedding_norm = LayerNorm::load(vb, names.embedding_norm, h, config.layer_norm_eps)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let lvb = vb.pp(format!("{}.{i}", names.layer));
            let query = Linear::load(&lvb, names.query, h, h)?;
            let key = Linear::load(&lvb, names.key, h, h)?;
            let value = Linear::load(&lvb, names.value, h, h)?;
            let dense = |linear: Linear| Dense::new(linear, precision);
            layers.push(EncoderLayer {
                qkv: dense(Linear::fused(&[query, key, value])?)?,
                attention_out: dense(Linear::load(&lvb, names.attention_out, h, h)?)?,
                attention_norm: LayerNorm::load(&lvb, names.attention_norm, h, config.layer_norm_eps)?,
                ffn_in: dense(Linear::load(&lvb, names.ffn_in, h, config.intermediate)?)?,
                ffn_out: dense(Linear::load(&lvb, names.ffn_out, config.intermediate, h)?)?,
                ffn_norm: LayerNorm::load(&lvb, names.ffn_norm, h, config.layer_norm_eps)?,
            });
        }
        Ok(Self {
            config: config.clone(),
            word_embeddings,
            position_embeddings,
            token_type_row,
            embedding_norm,
            layers,
            attention: AttentionArithmetic::for_precision(precision, h / config.heads),
            device: vb.device().clone(),
        })
    }

    /// How this encoder computes attention (chosen once, when it was loaded).
    pub fn attention_arithmetic(&self) -> AttentionArithmetic {
        self.attention
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// The name of the word-embedding tensor, relative to the encoder's prefix.
    pub fn word_embeddings_name(config: &EncoderConfig) -> &'static str {
        config.arch.tensor_names().word
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Hidden states of the last layer, `[batch.tokens(), hidden]`.
    pub fn forward(&self, batch: &PackedBatch) -> candle_core::Result<Tensor> {
        let last = self.layers.len();
        Ok(self.forward_layers(batch, &[last])?.pop().expect("one layer asked for"))
    }

    /// Hidden states after each of `layers` (1 = first layer, `config.layers` = last),
    /// in the order asked for, each `[batch.tokens(), hidden]`. The pass stops at the
    /// deepest layer asked for.
    pub fn forward_layers(&self, batch: &PackedBatch, layers: &[usize]) -> candle_core::Result<Vec<Tensor>> {
        let deepest = layers.iter().copied().max().unwrap_or(0);
        if layers.iter().any(|&l| l == 0 || l > self.layers.len()) {
            candle_core::bail!("layers {layers:?} asked for; the encoder has layers 1 to {}", self.layers.len());
        }
        let n = batch.tokens();
        let first = self.config.first_position() as u32;
        let mut positions = Vec::with_capacity(n);
        for &len in &batch.lens {
            if len + first as usize > self.config.max_positions {
                candle_core::bail!(
                    "a window of {len} tokens exceeds the {} positions of the model",
                    self.config.max_positions
                );
            }
            positions.extend((0..len as u32).map(|p| p + first));
        }
        let positions = Tensor::from_vec(positions, n, &self.device)?;
        let mut xs = self
            .word_embeddings
            .lookup(&batch.ids, &self.device)?
            .add(&self.position_embeddings.index_select(&positions, 0)?)?;
        if let Some(row) = &self.token_type_row {
            xs = xs.broadcast_add(row)?;
        }
        let mut xs = self.embedding_norm.forward(&xs)?;
        let mut kept: Vec<(usize, Tensor)> = Vec::with_capacity(layers.len());
        for (i, layer) in self.layers.iter().take(deepest).enumerate() {
            xs = self.layer_forward(layer, &xs, &batch.lens)?;
            if layers.contains(&(i + 1)) {
                kept.push((i + 1, xs.clone()));
            }
        }
        Ok(layers.iter().map(|l| kept.iter().find(|(k, _)| k == l).expect("kept above").1.clone()).collect())
    }

    fn layer_forward(&self, layer: &EncoderLayer, xs: &Tensor, lens: &[usize]) -> candle_core::Result<Tensor> {
        let qkv = layer.qkv.forward(xs)?;
        let context = self.attention(&qkv, lens)?;
        let xs = layer.attention_norm.forward_residual(&layer.attention_out.forward(&context)?, xs)?;
        let activation = Some(self.config.activation);
        let ffn = match (&layer.ffn_in, &layer.ffn_out) {
            (Dense::Int8(inner), Dense::Int8(outer)) => int8::feed_forward(inner, outer, &xs, activation)?,
            (inner, outer) => outer.forward(&inner.forward_activated(&xs, activation)?)?,
        };
        layer.ffn_norm.forward_residual(&ffn, &xs)
    }

    /// Scaled dot-product attention of each window over its own tokens.
    /// `qkv` is `[tokens, 3 * hidden]`; returns `[tokens, hidden]`.
    fn attention(&self, qkv: &Tensor, lens: &[usize]) -> candle_core::Result<Tensor> {
        qkv.apply_op1_no_bwd(&WindowAttention {
            lens: lens.to_vec(),
            heads: self.config.heads,
            arithmetic: self.attention,
        })
    }
}

/// Mean of the rows `[start, start + len)` of `hidden` for each window: e5's pooling.
pub fn mean_pool(hidden: &Tensor, starts: &[usize], lens: &[usize]) -> candle_core::Result<Tensor> {
    let pooled = starts
        .iter()
        .zip(lens)
        .map(|(&start, &len)| hidden.narrow(0, start, len)?.mean(0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::stack(&pooled, 0)
}

/// The first row of each window (`[CLS]` / `<s>`), which HF classification heads read.
pub fn first_token(hidden: &Tensor, starts: &[usize]) -> candle_core::Result<Tensor> {
    let idx: Vec<u32> = starts.iter().map(|&s| s as u32).collect();
    let idx = Tensor::from_vec(idx, starts.len(), hidden.device())?;
    hidden.index_select(&idx, 0)
}
