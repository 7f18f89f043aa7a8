//! The tokenizer docclass runs: `tokenizers`' own pipeline (added tokens, normalizer,
//! pre-tokenizer, post-processor, offsets), read from `tokenizer.json` by the crate's
//! own deserializer, with one change: a Unigram model is read into [`CompactUnigram`]
//! instead of the crate's trie (300 MB less for e5). Other models (WordPiece, BPE) are
//! the crate's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::TokenizerImpl;
use tokenizers::{DecoderWrapper, Model, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Token};

use super::unigram::CompactUnigram;

pub type Tokenizer =
    TokenizerImpl<TokenModel, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

/// Reads a `tokenizer.json`.
pub fn load(path: &Path) -> Result<Tokenizer, String> {
    let json = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&json).map_err(|e| e.to_string())
}

/// The model of a tokenizer: a Unigram in compact form, or one of the crate's own.
pub enum TokenModel {
    Unigram(CompactUnigram),
    Crate(ModelWrapper),
}

impl<'de> Deserialize<'de> for TokenModel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The model's JSON is kept as text and read twice: once for its type, then as
        // that type, without building the crate's Unigram on the way.
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        #[derive(Deserialize)]
        struct Kind {
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        let kind: Kind = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        if kind.kind.as_deref() != Some("Unigram") {
            return serde_json::from_str(raw.get()).map(TokenModel::Crate).map_err(D::Error::custom);
        }
        #[derive(Deserialize)]
        struct UnigramJson {
            vocab: Vec<(String, f64)>,
            #[serde(default)]
            unk_id: Option<usize>,
            #[serde(default)]
            byte_fallback: bool,
        }
        let unigram: UnigramJson = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        CompactUnigram::new(unigram.vocab, unigram.unk_id, unigram.byte_fallback)
            .map(TokenModel::Unigram)
            .map_err(D::Error::custom)
    }
}

/// Each method goes to the model inside.
macro_rules! delegate {
    ($self:ident, $model:ident => $call:expr) => {
        match $self {
            TokenModel::Unigram($model) => $call,
            TokenModel::Crate($model) => $call,
        }
    };
}

impl Model for TokenModel {
    type Trainer = TrainerWrapper;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        delegate!(self, m => m.tokenize(sequence))
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        delegate!(self, m => m.token_to_id(token))
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        delegate!(self, m => m.id_to_token(id))
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        delegate!(self, m => m.get_vocab())
    }

    fn get_vocab_size(&self) -> usize {
        delegate!(self, m => m.get_vocab_size())
    }

    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        delegate!(self, m => m.save(folder, prefix))
    }

    fn get_trainer(&self) -> TrainerWrapper {
        delegate!(self, m => m.get_trainer())
    }
}
