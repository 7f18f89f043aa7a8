//! Loading a model directory: a Hugging Face checkpoint (`config.json`,
//! `model.safetensors`, `tokenizer.json`), plus docclass's optional `docclass.json`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::config::{EncoderConfig, HfConfig, Precision};
use super::encoder::{Encoder, WordEmbeddings};
use super::head_file;
use super::heads::{self, ClassificationHead, TaskHead, TokenClassificationHead};
use super::int8::QuantizedTable;
use super::weights::SafetensorFiles;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {what}", path.display())]
    Missing { path: PathBuf, what: String },
    #[error("{0}")]
    Config(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// docclass's own settings for a model directory, in `docclass.json` (optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelSettings {
    /// Text put before every window, such as e5's `"query: "`.
    #[serde(default)]
    pub input_prefix: String,
}

pub const SETTINGS_FILE: &str = "docclass.json";

/// What a loaded model is, decided once when it is loaded: commands, the feature cache,
/// resume state and reports ask it instead of hashing or naming the model again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelIdentity {
    /// SHA-256 of the encoder's files ([`fingerprint`]): what trained heads and cached
    /// features record.
    pub encoder_fingerprint: String,
    /// SHA-256 of everything that determines the model's output: the encoder's
    /// fingerprint and, for a pipeline or a trained head, `pipeline.json` and each head's
    /// files. For a bare checkpoint, the encoder's fingerprint.
    pub fingerprint: String,
    /// The arithmetic the encoder runs in.
    pub precision: Precision,
    /// The name written into every record: the directory's, `name@int8` at int8.
    pub record_name: String,
}

impl ModelIdentity {
    /// What a run's results depend on: the fingerprint, and the precision unless f32
    /// (records of another precision are other results; f32 keys are as they were
    /// before precisions existed).
    pub fn results_key(&self) -> String {
        marked(&self.fingerprint, self.precision)
    }
}

/// `name@int8` for a precision other than f32; f32 names and keys stay as they were
/// before precisions existed.
fn marked(name: &str, precision: Precision) -> String {
    match precision {
        Precision::F32 => name.to_string(),
        precision => format!("{name}@{precision}"),
    }
}

pub struct ModelBundle {
    pub dir: PathBuf,
    pub identity: ModelIdentity,
    pub config: HfConfig,
    pub encoder: Encoder,
    pub tokenizer: crate::text::tokenizer::Tokenizer,
    pub heads: Vec<Box<dyn TaskHead>>,
    pub settings: ModelSettings,
}

/// `pipeline.json`: an encoder and the trained heads that read it, as paths relative
/// to the pipeline directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PipelineSpec {
    pub encoder: String,
    pub heads: Vec<String>,
}

pub const PIPELINE_FILE: &str = "pipeline.json";

impl ModelBundle {
    /// A model directory: a pipeline (`pipeline.json`), one trained head (`head.json`),
    /// or a Hugging Face checkpoint; the encoder at f32.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        Self::load_at(dir, Precision::F32)
    }

    /// [`Self::load`] with the encoder at `precision`.
    pub fn load_at(dir: &Path, precision: Precision) -> Result<Self, ModelError> {
        let mut bundle = Self::load_any(dir, precision)?;
        bundle.identity.record_name = marked(&bundle.identity.record_name, precision);
        Ok(bundle)
    }

    fn load_any(dir: &Path, precision: Precision) -> Result<Self, ModelError> {
        match pipeline_spec(dir)? {
            Some(spec) => Self::load_pipeline(dir, &spec, precision),
            None => Self::load_checkpoint(dir, precision),
        }
    }

    /// The encoder of `spec` with its trained heads, named after the pipeline directory.
    fn load_pipeline(dir: &Path, spec: &PipelineSpec, precision: Precision) -> Result<Self, ModelError> {
        let (encoder_dir, encoder_fingerprint) = find_encoder(dir, spec)?;
        let mut bundle = Self::load_encoder(&encoder_dir, precision, Some(encoder_fingerprint.clone()))?;
        let hidden = bundle.encoder_config().hidden;
        for head in &spec.heads {
            let head_dir = dir.join(head);
            let loaded = heads::load_trained(&head_dir, &encoder_fingerprint, hidden)
                .map_err(|e| ModelError::Invalid { path: head_dir.clone(), message: format!("{e:#}") })?;
            bundle.heads.push(loaded);
        }
        bundle.identity.fingerprint = pipeline_fingerprint(dir, spec, &encoder_fingerprint)?;
        bundle.identity.record_name = directory_name(dir);
        Ok(bundle)
    }

    fn load_checkpoint(dir: &Path, precision: Precision) -> Result<Self, ModelError> {
        Self::load_encoder(dir, precision, None)
    }

    /// A Hugging Face checkpoint; its fingerprint is hashed once it has loaded, unless
    /// finding it already did.
    fn load_encoder(dir: &Path, precision: Precision, known: Option<String>) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::Missing {
                path: dir.to_path_buf(),
                what: "model directory not found (run scripts/setup.sh to fetch the default encoder)".into(),
            });
        }
        let config_path = dir.join("config.json");
        let config: HfConfig =
            serde_json::from_str(&read_to_string(&config_path, "the model configuration")?).map_err(|e| {
                ModelError::Invalid { path: config_path.clone(), message: format!("not a valid config: {e}") }
            })?;
        let encoder_config = config.encoder_config()?;

        let tokenizer_path = dir.join("tokenizer.json");
        require(&tokenizer_path, "the tokenizer")?;
        let tokenizer = crate::text::tokenizer::load(&tokenizer_path).map_err(|e| ModelError::Invalid {
            path: tokenizer_path.clone(),
            message: format!("cannot load the tokenizer: {e}"),
        })?;
        let tokenizer_vocab = tokenizer.get_vocab_size(true);
        if tokenizer_vocab > encoder_config.vocab {
            return Err(ModelError::Invalid {
                path: tokenizer_path,
                message: format!(
                    "the tokenizer has {tokenizer_vocab} tokens but the model only {} embeddings: tokenizer and weights do not belong together",
                    encoder_config.vocab
                ),
            });
        }

        let settings_path = dir.join(SETTINGS_FILE);
        let settings = if settings_path.exists() {
            serde_json::from_str(&read_to_string(&settings_path, "docclass settings")?)
                .map_err(|e| ModelError::Invalid { path: settings_path, message: e.to_string() })?
        } else {
            ModelSettings::default()
        };

        let weight_files = weight_files(dir)?;
        let weights_label = weight_files[0].clone();
        let invalid_weights = |e: candle_core::Error| ModelError::Invalid {
            path: weights_label.clone(),
            message: format!("weights do not match config.json: {e}"),
        };
        let tensors = SafetensorFiles::open(&weight_files)
            .map_err(|e| ModelError::Config(format!("not a readable safetensors file: {e}")))?;
        let base = encoder_config.arch.base_prefix();
        let words = Encoder::word_embeddings_name(&encoder_config);
        let prefixed = tensors.contains_tensor(&format!("{base}.{words}"));
        let words = if prefixed { format!("{base}.{words}") } else { words.to_string() };
        let (vocab, hidden) = (encoder_config.vocab, encoder_config.hidden);
        // At int8 the word embeddings (the largest tensor) are quantized as they are read
        // when stored at f32, so that the table is never whole at f32 in memory.
        let streamed = match precision {
            Precision::Int8 if tensors.is_f32(&words) => {
                let mut table = QuantizedTable::with_capacity(vocab, hidden);
                let (_, columns) =
                    tensors.for_each_f32_rows(&words, 4096, |rows| table.push_rows(rows)).map_err(invalid_weights)?;
                if columns != hidden {
                    return Err(invalid_weights(candle_core::Error::Msg(format!(
                        "{words} has {columns} columns, the hidden size is {hidden}"
                    ))));
                }
                Some(table)
            }
            _ => None,
        };
        let vb = VarBuilder::from_backend(Box::new(tensors), DType::F32, Device::Cpu);
        let word_embeddings = match (precision, streamed) {
            (Precision::Int8, Some(table)) => WordEmbeddings::Int8(table),
            (Precision::Int8, None) => {
                // Stored in another dtype (f16): converted whole, then quantized.
                let mut table = QuantizedTable::with_capacity(vocab, hidden);
                let whole = vb.get((vocab, hidden), &words).and_then(|t| t.flatten_all()?.to_vec1::<f32>());
                table.push_rows(&whole.map_err(invalid_weights)?);
                WordEmbeddings::Int8(table)
            }
            (Precision::F32, _) => WordEmbeddings::F32(vb.get((vocab, hidden), &words).map_err(invalid_weights)?),
        };
        let encoder_vb = if prefixed { vb.pp(base) } else { vb.clone() };
        let encoder =
            Encoder::load_at(&encoder_vb, &encoder_config, precision, word_embeddings).map_err(invalid_weights)?;
        let heads = load_hf_heads(&vb, &config, &encoder_config).map_err(invalid_weights)?;

        let encoder_fingerprint = match known {
            Some(known) => known,
            None => fingerprint(dir)?,
        };
        let identity = ModelIdentity {
            fingerprint: encoder_fingerprint.clone(),
            encoder_fingerprint,
            precision,
            record_name: directory_name(dir),
        };
        Ok(Self { dir: dir.to_path_buf(), identity, config, encoder, tokenizer, heads, settings })
    }

    pub fn encoder_config(&self) -> &EncoderConfig {
        self.encoder.config()
    }
}

fn directory_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// Where the default encoder lives, relative to a checkout.
pub const DEFAULT_ENCODER: &str = "models/multilingual-e5-small";

/// `relative` in the current directory if it exists there, else in the checkout the
/// binary was built in (so that the installed binary finds the project's models).
pub fn resolve_default(relative: &str) -> PathBuf {
    let local = PathBuf::from(relative);
    if local.exists() {
        return local;
    }
    let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    if checkout.exists() {
        checkout
    } else {
        local
    }
}

/// What a model directory holds in trained heads: a pipeline's `pipeline.json`, or for
/// one head directory a pipeline of that head alone; `None` for a checkpoint.
fn pipeline_spec(dir: &Path) -> Result<Option<PipelineSpec>, ModelError> {
    let pipeline_path = dir.join(PIPELINE_FILE);
    if pipeline_path.is_file() {
        let spec = serde_json::from_str(&read_to_string(&pipeline_path, "the pipeline")?)
            .map_err(|e| ModelError::Invalid { path: pipeline_path.clone(), message: e.to_string() })?;
        return Ok(Some(spec));
    }
    let head_path = dir.join(head_file::HEAD_FILE);
    if head_path.is_file() {
        let head = read_head_spec(&head_path)?;
        return Ok(Some(PipelineSpec { encoder: head.encoder, heads: vec![".".into()] }));
    }
    Ok(None)
}

/// The descriptions (`head.json`) of a model directory's trained heads, without loading
/// any weights: a pipeline's heads in its order, a head directory's one, none for a
/// checkpoint.
pub fn trained_head_specs(dir: &Path) -> Result<Vec<head_file::HeadSpec>, ModelError> {
    let heads = pipeline_spec(dir)?.map_or_else(Vec::new, |spec| spec.heads);
    heads.iter().map(|head| read_head_spec(&dir.join(head).join(head_file::HEAD_FILE))).collect()
}

fn read_head_spec(path: &Path) -> Result<head_file::HeadSpec, ModelError> {
    serde_json::from_str(&read_to_string(path, "the head")?)
        .map_err(|e| ModelError::Invalid { path: path.to_path_buf(), message: e.to_string() })
}

/// The encoder a pipeline's heads were trained on, and its fingerprint: the directory
/// the pipeline names (relative to it) when that is the right encoder, else the first
/// with the heads' fingerprint among the directories of `$DOCCLASS_ENCODERS` (separated
/// like `PATH`) and the default encoder. So a head folder moved away from its encoder
/// still finds it, and never loads another one.
fn find_encoder(dir: &Path, spec: &PipelineSpec) -> Result<(PathBuf, String), ModelError> {
    let recorded = dir.join(&spec.encoder);
    let wanted = match spec.heads.first() {
        Some(head) => read_head_spec(&dir.join(head).join(head_file::HEAD_FILE))?.encoder_fingerprint,
        None => return Ok((recorded.clone(), fingerprint(&recorded)?)),
    };
    let mut candidates = vec![recorded];
    if let Some(paths) = std::env::var_os("DOCCLASS_ENCODERS") {
        candidates.extend(std::env::split_paths(&paths));
    }
    candidates.push(resolve_default(DEFAULT_ENCODER));
    let mut looked = Vec::new();
    for candidate in candidates {
        if !candidate.join("config.json").is_file() {
            looked.push(format!("{} (no encoder there)", candidate.display()));
            continue;
        }
        match fingerprint(&candidate) {
            Ok(found) if found == wanted => return Ok((candidate, found)),
            Ok(found) => {
                looked.push(format!("{} (another encoder, fingerprint {}…)", candidate.display(), &found[..12]))
            }
            Err(e) => looked.push(format!("{} ({e})", candidate.display())),
        }
    }
    Err(ModelError::Missing {
        path: dir.to_path_buf(),
        what: format!(
            "the encoder the heads were trained on (fingerprint {}…) was not found; looked in {}. \
             Put its directory in DOCCLASS_ENCODERS, or retrain the head",
            &wanted[..12.min(wanted.len())],
            looked.join(", ")
        ),
    })
}

/// A SHA-256 over every file that determines what the encoder computes (configuration,
/// tokenizer, docclass settings, weights), as hex: trained heads and cached features
/// record it, so that they are never used with another encoder.
pub fn fingerprint(dir: &Path) -> Result<String, ModelError> {
    use sha2::{Digest, Sha256};
    let mut files = vec![dir.join("config.json"), dir.join("tokenizer.json")];
    if dir.join(SETTINGS_FILE).exists() {
        files.push(dir.join(SETTINGS_FILE));
    }
    files.extend(weight_files(dir)?);
    let mut hash = Sha256::new();
    for path in files {
        let mut file = std::fs::File::open(&path)
            .map_err(|e| ModelError::Invalid { path: path.clone(), message: e.to_string() })?;
        hash.update(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().as_bytes());
        std::io::copy(&mut file, &mut hash)
            .map_err(|e| ModelError::Invalid { path: path.clone(), message: e.to_string() })?;
    }
    Ok(format!("{:x}", hash.finalize()))
}

/// A SHA-256 over everything that determines a pipeline's (or trained head directory's)
/// output: the encoder's fingerprint, `pipeline.json` where there is one, and each head's
/// `head.json` (which names the SHA-256 of its weights, checked at load) and weights.
fn pipeline_fingerprint(dir: &Path, spec: &PipelineSpec, encoder_fingerprint: &str) -> Result<String, ModelError> {
    use sha2::{Digest, Sha256};
    let invalid = |path: &Path, message: String| ModelError::Invalid { path: path.to_path_buf(), message };
    let pipeline_path = dir.join(PIPELINE_FILE);
    let mut files = if pipeline_path.is_file() { vec![pipeline_path] } else { Vec::new() };
    for head in &spec.heads {
        let head_dir = dir.join(head);
        files.push(head_dir.join(head_file::HEAD_FILE));
        files.push(head_dir.join(head_file::WEIGHTS_FILE));
    }
    let mut hash = Sha256::new();
    hash.update(encoder_fingerprint.as_bytes());
    for path in files {
        let mut file = std::fs::File::open(&path).map_err(|e| invalid(&path, e.to_string()))?;
        std::io::copy(&mut file, &mut hash).map_err(|e| invalid(&path, e.to_string()))?;
    }
    Ok(format!("{:x}", hash.finalize()))
}

/// Heads named by `architectures` in config.json.
fn load_hf_heads(
    vb: &VarBuilder,
    config: &HfConfig,
    encoder: &EncoderConfig,
) -> candle_core::Result<Vec<Box<dyn TaskHead>>> {
    let mut heads: Vec<Box<dyn TaskHead>> = Vec::new();
    for arch in &config.architectures {
        if arch.ends_with("ForSequenceClassification") {
            heads.push(Box::new(ClassificationHead::load_hf(vb, config, encoder.hidden, "classification")?));
        } else if arch.ends_with("ForTokenClassification") {
            heads.push(Box::new(TokenClassificationHead::load_hf(vb, config, encoder.hidden, "entities")?));
        }
    }
    Ok(heads)
}

/// `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let parsed: serde_json::Value = serde_json::from_str(&read_to_string(&index, "the weights index")?)
            .map_err(|e| ModelError::Invalid { path: index.clone(), message: e.to_string() })?;
        let mut files: Vec<PathBuf> = parsed["weight_map"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_str()).map(|f| dir.join(f)).collect())
            .unwrap_or_default();
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Err(ModelError::Invalid { path: index, message: "weight_map lists no files".into() });
        }
        return Ok(files);
    }
    let what = if dir.join("pytorch_model.bin").exists() {
        "model.safetensors is missing; docclass reads only safetensors and never unpickles pytorch_model.bin \
         (convert it with transformers: model.save_pretrained(dir, safe_serialization=True))"
    } else {
        "model.safetensors is missing"
    };
    Err(ModelError::Missing { path: single, what: what.into() })
}

fn require(path: &Path, what: &str) -> Result<(), ModelError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ModelError::Missing { path: path.to_path_buf(), what: format!("{what} is missing") })
    }
}

fn read_to_string(path: &Path, what: &str) -> Result<String, ModelError> {
    require(path, what)?;
    std::fs::read_to_string(path).map_err(|e| ModelError::Invalid { path: path.to_path_buf(), message: e.to_string() })
}
