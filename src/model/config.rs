//! `config.json` of a Hugging Face checkpoint, normalised into what the encoder needs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// The encoder families docclass runs. They share one layer structure and differ in
/// tensor names, position ids and the shape of their classification heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Bert,
    XlmRoberta,
    DistilBert,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::XlmRoberta => "xlm-roberta",
            Architecture::DistilBert => "distilbert",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf, `hidden_act: "gelu"` in transformers.
    GeluErf,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
    /// Only in classification heads (BERT pooler, XLM-R classifier).
    Tanh,
}

impl Activation {
    fn parse(name: &str) -> Result<Self, ModelError> {
        match name {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(ModelError::Unsupported(format!("activation function {other:?}"))),
        }
    }
}

/// The fields of `config.json` that docclass reads, for all three families
/// (DistilBERT names its sizes differently; both spellings are accepted).
#[derive(Clone, Debug, Deserialize)]
pub struct HfConfig {
    pub model_type: Option<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub hidden_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub hidden_act: Option<String>,
    pub layer_norm_eps: Option<f64>,
    pub type_vocab_size: Option<usize>,
    pub position_embedding_type: Option<String>,
    // DistilBERT spellings.
    pub dim: Option<usize>,
    pub n_layers: Option<usize>,
    pub n_heads: Option<usize>,
    pub hidden_dim: Option<usize>,
    pub activation: Option<String>,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub pad_token_id: Option<u32>,
    pub id2label: Option<BTreeMap<String, String>>,
    pub problem_type: Option<String>,
}

impl HfConfig {
    pub fn architecture(&self) -> Result<Architecture, ModelError> {
        match self.model_type.as_deref() {
            Some("bert") => Ok(Architecture::Bert),
            Some("xlm-roberta") | Some("roberta") => Ok(Architecture::XlmRoberta),
            Some("distilbert") => Ok(Architecture::DistilBert),
            Some(other) => Err(ModelError::Unsupported(format!(
                "model_type {other:?} (supported: bert, xlm-roberta, roberta, distilbert)"
            ))),
            None => Err(ModelError::Unsupported("config.json has no model_type".into())),
        }
    }

    /// Labels in id order, from `id2label`. Ids must be 0..n without gaps.
    pub fn labels(&self) -> Result<Vec<String>, ModelError> {
        let Some(map) = &self.id2label else { return Ok(Vec::new()) };
        let mut pairs = Vec::with_capacity(map.len());
        for (id, label) in map {
            let id: usize =
                id.parse().map_err(|_| ModelError::Config(format!("id2label key {id:?} is not a number")))?;
            pairs.push((id, label.clone()));
        }
        pairs.sort();
        for (expected, (id, _)) in pairs.iter().enumerate() {
            if *id != expected {
                return Err(ModelError::Config(format!("id2label has no entry for id {expected}")));
            }
        }
        Ok(pairs.into_iter().map(|(_, label)| label).collect())
    }

    pub fn is_multi_label(&self) -> bool {
        self.problem_type.as_deref() == Some("multi_label_classification")
    }

    pub fn encoder_config(&self) -> Result<EncoderConfig, ModelError> {
        let arch = self.architecture()?;
        let need = |value: Option<usize>, name: &str| {
            value.ok_or_else(|| ModelError::Config(format!("config.json lacks {name}")))
        };
        if let Some(kind) = &self.position_embedding_type {
            if kind != "absolute" {
                return Err(ModelError::Unsupported(format!("position_embedding_type {kind:?}")));
            }
        }
        let config = match arch {
            Architecture::DistilBert => EncoderConfig {
                arch,
                hidden: need(self.dim, "dim")?,
                layers: need(self.n_layers, "n_layers")?,
                heads: need(self.n_heads, "n_heads")?,
                intermediate: need(self.hidden_dim, "hidden_dim")?,
                activation: Activation::parse(self.activation.as_deref().unwrap_or("gelu"))?,
                // transformers hard-codes this epsilon for DistilBERT.
                layer_norm_eps: 1e-12,
                vocab: self.vocab_size,
                max_positions: self.max_position_embeddings,
                type_vocab: 0,
                pad_token_id: self.pad_token_id.unwrap_or(0),
            },
            Architecture::Bert | Architecture::XlmRoberta => EncoderConfig {
                arch,
                hidden: need(self.hidden_size, "hidden_size")?,
                layers: need(self.num_hidden_layers, "num_hidden_layers")?,
                heads: need(self.num_attention_heads, "num_attention_heads")?,
                intermediate: need(self.intermediate_size, "intermediate_size")?,
                activation: Activation::parse(self.hidden_act.as_deref().unwrap_or("gelu"))?,
                layer_norm_eps: self.layer_norm_eps.unwrap_or(1e-12),
                vocab: self.vocab_size,
                max_positions: self.max_position_embeddings,
                type_vocab: self.type_vocab_size.unwrap_or(2),
                pad_token_id: self.pad_token_id.unwrap_or(if arch == Architecture::Bert { 0 } else { 1 }),
            },
        };
        if config.heads == 0 || config.hidden % config.heads != 0 {
            return Err(ModelError::Config(format!(
                "hidden size {} is not a multiple of {} attention heads",
                config.hidden, config.heads
            )));
        }
        Ok(config)
    }
}

/// Everything the encoder needs to know, the same for all families.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    pub arch: Architecture,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub pad_token_id: u32,
}

impl EncoderConfig {
    /// The position id of a sequence's first token. RoBERTa-style models number
    /// positions from `pad_token_id + 1` (transformers' `create_position_ids_from_input_ids`).
    pub fn first_position(&self) -> usize {
        match self.arch {
            Architecture::XlmRoberta => self.pad_token_id as usize + 1,
            _ => 0,
        }
    }

    /// The longest sequence (special tokens included) the position table allows.
    pub fn max_sequence_len(&self) -> usize {
        self.max_positions - self.first_position()
    }
}

/// The arithmetic the encoder's dense layers run in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout: the encoder as trained, transformers parity.
    #[default]
    F32,
    /// int8 dense layers, word embeddings in 4 or 8 bits (`model::int8`).
    Int8,
}

impl Precision {
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        })
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            _ => Err(format!("unknown precision {s:?}: expected f32 or int8")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Precision;

    #[test]
    fn precision_parses_and_prints() {
        for p in [Precision::F32, Precision::Int8] {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert!("q4".parse::<Precision>().is_err());
    }
}
