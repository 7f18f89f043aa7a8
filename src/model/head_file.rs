//! The files of a head `docclass train` writes, and the weights both kinds share. A head
//! directory holds `head.json` (what the head is, which encoder and layers it reads, how
//! it was trained) and `head.safetensors` (its weights). This file only reads and writes
//! them: each head kind in `model::heads` builds itself from a [`HeadFile`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use half::f16;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::config::Precision;
use super::profile::TrainingProfile;
use crate::hashing::sha256_hex;
use crate::text::lexical::LexicalScheme;
use crate::text::word_features::WordFeatureSet;

pub const HEAD_FILE: &str = "head.json";
/// The names people read for a head's labels (`LABEL<TAB>NAME`), beside `head.json` when
/// `train --label-names` gave them.
pub const LABEL_NAMES_FILE: &str = "label-names.tsv";
pub const WEIGHTS_FILE: &str = "head.safetensors";
/// The format `train` writes. Heads of format 1 have no lexical scheme nor pooling
/// (word n-grams, mean pooling) and are read as such; a docclass that reads only format
/// 1 refuses format 2 instead of ignoring what it does not know.
pub const HEAD_FORMAT: &str = "docclass-head/2";
const READABLE_FORMATS: [&str; 2] = ["docclass-head/1", HEAD_FORMAT];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    DocumentClassifier,
    Tagger,
}

/// `head.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadSpec {
    pub format: String,
    pub kind: HeadKind,
    pub name: String,
    pub labels: Vec<String>,
    #[serde(default)]
    pub multi_label: bool,
    /// Encoder layers read, concatenated (1-based).
    pub layers: Vec<usize>,
    /// The encoder directory, relative to the head directory, and its fingerprint.
    pub encoder: String,
    pub encoder_fingerprint: String,
    /// The encoder's arithmetic when the head's features were computed (absent: f32).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub encoder_precision: Precision,
    /// Buckets of the hashed lexical features; 0: none.
    pub lexical_buckets: usize,
    /// Classifier: which lexical features the buckets hold (absent: word n-grams only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lexical_scheme: Option<LexicalScheme>,
    /// Classifier: how window features are pooled over a document (absent: the mean).
    #[serde(default, skip_serializing_if = "DocumentPooling::is_mean")]
    pub pooling: DocumentPooling,
    /// Tagger: which CRF word features it reads (absent: the base set).
    #[serde(default, skip_serializing_if = "WordFeatureSet::is_base")]
    pub word_features: WordFeatureSet,
    /// Tagger: words ending in a period that stay one word (`Abs.`), from the training data.
    #[serde(default)]
    pub abbreviations: Vec<String>,
    /// Tagger: its context layer between the encoder features and the CRF (absent: the
    /// CRF reads the features linearly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextSpec>,
    /// How the head was made: data, settings, scores. Not read by docclass.
    #[serde(default)]
    pub training: serde_json::Value,
    /// What the training data looked like, for `docclass drift` (absent in heads trained
    /// before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<TrainingProfile>,
    /// SHA-256 of `head.safetensors`: the pair is checked at load, so a description is
    /// never used with the weights of another training run.
    #[serde(default)]
    pub weights_sha256: String,
}

/// The context layer's sizes and character vocabulary, as `head.json` stores them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContextSpec {
    /// Width of a word's projected encoder features.
    pub projection: usize,
    /// LSTM state width per direction.
    pub hidden: usize,
    pub char_dim: usize,
    pub char_filters: usize,
    /// Characters a filter sees at once.
    pub char_width: usize,
    /// Characters of a word read at most: its first and last halves of this.
    pub word_chars: usize,
    /// Characters with an embedding, in id order after padding and unknown.
    pub chars: String,
}

/// How a document classifier pools its windows' mean features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentPooling {
    /// The mean over windows, weighted by their length.
    #[default]
    Mean,
    /// That mean beside the element-wise maximum over windows, so that a topic one
    /// window of a long document carries is not averaged away.
    MeanMax,
}

impl DocumentPooling {
    pub fn is_mean(&self) -> bool {
        *self == DocumentPooling::Mean
    }

    /// How many pooled rows of the encoder features the dense weights read.
    pub fn parts(&self) -> usize {
        match self {
            DocumentPooling::Mean => 1,
            DocumentPooling::MeanMax => 2,
        }
    }
}

/// The weights both heads share: a dense layer over encoder features and a hashed
/// lexical table.
pub struct LinearScores {
    /// `[labels, dim]`, row-major.
    pub dense: Vec<f32>,
    pub bias: Vec<f32>,
    pub lexical: LexicalTable,
    pub labels: usize,
}

/// The rows of the hashed lexical table that training kept (the rest are zero): bucket
/// ids in ascending order and their rows `[ids, labels]`, in 16 bits as the head file
/// stores them (half the memory of f32: 18 MB for the legal-entities head's 600,000 rows).
#[derive(Default)]
pub struct LexicalTable {
    pub ids: Vec<u32>,
    pub rows: Vec<f16>,
    pub labels: usize,
}

impl LexicalTable {
    /// The rows of `dense` (`[buckets, labels]`) with the largest norms, at most
    /// `max_rows` (0: every non-zero row), as a sparse table, rounded to 16 bits.
    pub fn prune(dense: &[f32], labels: usize, max_rows: usize) -> Self {
        let mut rows: Vec<(u32, f32)> = dense
            .chunks_exact(labels)
            .enumerate()
            .map(|(b, row)| (b as u32, row.iter().map(|w| w * w).sum::<f32>()))
            .filter(|(_, norm)| *norm > 0.0)
            .collect();
        if max_rows > 0 && rows.len() > max_rows {
            // Largest norm first; ties by bucket, so the choice is deterministic.
            rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            rows.truncate(max_rows);
        }
        let mut ids: Vec<u32> = rows.into_iter().map(|(b, _)| b).collect();
        ids.sort_unstable();
        let rows = ids
            .iter()
            .flat_map(|&b| dense[b as usize * labels..(b as usize + 1) * labels].iter().map(|&w| f16::from_f32(w)))
            .collect();
        Self { ids, rows, labels }
    }

    pub fn row(&self, bucket: u32) -> Option<&[f16]> {
        let i = self.ids.binary_search(&bucket).ok()?;
        Some(&self.rows[i * self.labels..(i + 1) * self.labels])
    }
}

impl LinearScores {
    pub fn dim(&self) -> usize {
        self.dense.len() / self.labels
    }

    /// `dense · x` (no bias) for one feature row.
    pub fn project(&self, x: &[f32], out: &mut [f32]) {
        for (o, w) in out.iter_mut().zip(self.dense.chunks_exact(x.len())) {
            *o = w.iter().zip(x).map(|(a, b)| a * b).sum();
        }
    }

    /// Adds the lexical weights of `buckets` (each with weight `value`) to `out`.
    pub fn add_lexical(&self, buckets: impl IntoIterator<Item = (u32, f32)>, out: &mut [f32]) {
        for (b, value) in buckets {
            if let Some(row) = self.lexical.row(b) {
                for (o, w) in out.iter_mut().zip(row) {
                    *o += value * w.to_f32();
                }
            }
        }
    }
}

/// A head directory read and checked: its description, and its weights' bytes.
pub struct HeadFile {
    pub spec: HeadSpec,
    weights_path: PathBuf,
    bytes: Vec<u8>,
}

impl HeadFile {
    /// Reads a head directory; `encoder_fingerprint` must match the one it was trained on,
    /// and the weights must be the ones `head.json` names.
    pub fn read(dir: &Path, encoder_fingerprint: &str) -> Result<Self> {
        let spec_path = dir.join(HEAD_FILE);
        let spec: HeadSpec = serde_json::from_str(
            &std::fs::read_to_string(&spec_path).with_context(|| format!("{}: cannot read", spec_path.display()))?,
        )
        .with_context(|| format!("{}: not a valid head description", spec_path.display()))?;
        if !READABLE_FORMATS.contains(&spec.format.as_str()) {
            bail!("{}: format {:?}, this docclass reads {HEAD_FORMAT:?}", spec_path.display(), spec.format);
        }
        if spec.encoder_fingerprint != encoder_fingerprint {
            bail!(
                "{}: the head was trained on another encoder (fingerprint {}…, this encoder {}…): retrain it with docclass train",
                dir.display(),
                &spec.encoder_fingerprint[..12.min(spec.encoder_fingerprint.len())],
                &encoder_fingerprint[..12.min(encoder_fingerprint.len())]
            );
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights_path).with_context(|| format!("{}: cannot read", weights_path.display()))?;
        if sha256_hex(&bytes) != spec.weights_sha256 {
            bail!(
                "{}: the weights do not belong to {HEAD_FILE} (an interrupted copy or training run?): copy the head again or retrain it",
                weights_path.display()
            );
        }
        SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: not a readable safetensors file", weights_path.display()))?;
        Ok(Self { spec, weights_path, bytes })
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("checked when read")
    }

    /// The tensor `name` as f32 values, which must be `len`.
    pub fn get(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.values(name, len, to_f32)
    }

    /// A tensor in 16 bits, as heads store their large tables (`get` widens to f32).
    fn get_f16(&self, name: &str, len: usize) -> Result<Vec<f16>> {
        self.values(name, len, |view| match view.dtype() {
            Dtype::F16 => view.data().chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect(),
            _ => to_f32(view).into_iter().map(f16::from_f32).collect(),
        })
    }

    /// The tensor `name` read by `convert`, which must give `len` values.
    fn values<T>(&self, name: &str, len: usize, convert: impl Fn(&TensorView) -> Vec<T>) -> Result<Vec<T>> {
        let tensors = self.tensors();
        let view =
            tensors.tensor(name).with_context(|| format!("{}: no tensor {name}", self.weights_path.display()))?;
        let values = convert(&view);
        if values.len() != len {
            bail!("{}: {name} has {} values, expected {len}", self.weights_path.display(), values.len());
        }
        Ok(values)
    }

    /// The linear scores every trained head has, on `dim` dense features.
    pub fn linear_scores(&self, dim: usize) -> Result<LinearScores> {
        let k = self.spec.labels.len();
        Ok(LinearScores {
            dense: self.get("dense", k * dim)?,
            bias: self.get("bias", k)?,
            lexical: self.lexical_table()?,
            labels: k,
        })
    }

    /// The rows of the hashed lexical features that the head kept (none without buckets).
    pub fn lexical_table(&self) -> Result<LexicalTable> {
        let k = self.spec.labels.len();
        Ok(match self.tensors().tensor("lexical_ids") {
            Ok(view) if self.spec.lexical_buckets > 0 => {
                let ids: Vec<u32> =
                    view.data().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                if ids.windows(2).any(|w| w[0] >= w[1])
                    || ids.last().is_some_and(|&b| b as usize >= self.spec.lexical_buckets)
                {
                    bail!("{}: lexical_ids are not ascending bucket ids", self.weights_path.display());
                }
                let rows = self.get_f16("lexical", ids.len() * k)?;
                LexicalTable { ids, rows, labels: k }
            }
            _ => LexicalTable { labels: k, ..Default::default() },
        })
    }
}

fn to_f32(view: &TensorView) -> Vec<f32> {
    let data = view.data();
    match view.dtype() {
        Dtype::F16 => data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        _ => Vec::new(),
    }
}

/// Writes `head.json` and `head.safetensors`; `f16_tensors` are stored as f16 (the
/// large tables), the others as f32, and the lexical table's rows as f16 with their ids.
pub fn save_head(
    dir: &Path,
    spec: &HeadSpec,
    f32_tensors: &BTreeMap<&str, Vec<f32>>,
    f16_tensors: &BTreeMap<&str, Vec<f32>>,
    lexical: &LexicalTable,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    if !lexical.ids.is_empty() {
        let ids = lexical.ids.iter().flat_map(|b| b.to_le_bytes()).collect();
        data.push(("lexical_ids".into(), Dtype::U32, vec![lexical.ids.len()], ids));
        let rows = lexical.rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push(("lexical".into(), Dtype::F16, vec![lexical.rows.len()], rows));
    }
    for (name, values) in f32_tensors {
        data.push((
            name.to_string(),
            Dtype::F32,
            vec![values.len()],
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    for (name, values) in f16_tensors {
        let bytes = values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect();
        data.push((name.to_string(), Dtype::F16, vec![values.len()], bytes));
    }
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(name, dtype, shape, bytes)| Ok((name.clone(), TensorView::new(*dtype, shape.clone(), bytes)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let bytes = safetensors::serialize(views, None)?;
    std::fs::write(dir.join(WEIGHTS_FILE), &bytes)?;
    let spec = HeadSpec { weights_sha256: sha256_hex(&bytes), ..spec.clone() };
    std::fs::write(dir.join(HEAD_FILE), serde_json::to_string_pretty(&spec)? + "\n")?;
    Ok(())
}

/// The encoder directory a head names, resolved against the head directory.
pub fn encoder_dir(head_dir: &Path, spec: &HeadSpec) -> PathBuf {
    head_dir.join(&spec.encoder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(encoder_fingerprint: &str) -> HeadSpec {
        HeadSpec {
            format: HEAD_FORMAT.to_string(),
            kind: HeadKind::DocumentClassifier,
            name: "test".into(),
            labels: vec!["a".into(), "b".into()],
            multi_label: false,
            layers: vec![1],
            encoder: "../encoder".into(),
            encoder_fingerprint: encoder_fingerprint.into(),
            encoder_precision: Precision::F32,
            lexical_buckets: 8,
            lexical_scheme: None,
            word_features: Default::default(),
            pooling: DocumentPooling::Mean,
            abbreviations: Vec::new(),
            context: None,
            training: serde_json::Value::Null,
            profile: None,
            weights_sha256: String::new(),
        }
    }

    /// A head written and read back: the same weights (the dense ones at f32, the lexical
    /// rows at f16), and a head that does not belong is refused.
    #[test]
    fn a_head_file_round_trips_and_refuses_what_does_not_belong() {
        let dir = tempfile::tempdir().unwrap();
        let dense = vec![0.5, -1.25, 2.0, 0.0, 0.75, -0.5];
        let f32_tensors = BTreeMap::from([("dense", dense.clone()), ("bias", vec![0.1, -0.1])]);
        let f16_tensors = BTreeMap::from([("idf", vec![1.5; 8])]);
        let rows = [0.25, -0.5, 1.0, 2.0].map(f16::from_f32).to_vec();
        let lexical = LexicalTable { ids: vec![2, 5], rows, labels: 2 };
        save_head(dir.path(), &spec("abc"), &f32_tensors, &f16_tensors, &lexical).unwrap();

        let file = HeadFile::read(dir.path(), "abc").unwrap();
        assert_eq!(file.spec.labels, ["a", "b"]);
        let scores = file.linear_scores(3).unwrap();
        assert_eq!((scores.dense, scores.bias), (dense, vec![0.1, -0.1]));
        assert_eq!(scores.lexical.row(5), Some(&[f16::from_f32(1.0), f16::from_f32(2.0)][..]));
        assert_eq!(scores.lexical.row(3), None);
        assert_eq!(file.get("idf", 8).unwrap(), vec![1.5; 8]);
        assert!(file.get("idf", 7).is_err(), "a tensor of the wrong size");
        assert!(file.linear_scores(4).is_err(), "dense weights for another encoder width");

        let other = HeadFile::read(dir.path(), "xyz").err().unwrap().to_string();
        assert!(other.contains("trained on another encoder"), "{other}");
        let weights = dir.path().join(WEIGHTS_FILE);
        let mut bytes = std::fs::read(&weights).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&weights, bytes).unwrap();
        let mixed = HeadFile::read(dir.path(), "abc").err().unwrap().to_string();
        assert!(mixed.contains("do not belong"), "{mixed}");
    }
}
