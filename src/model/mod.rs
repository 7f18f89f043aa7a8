//! Models: Hugging Face configs, the encoder, task heads, and loading a model directory.

#[cfg(target_arch = "x86_64")]
pub mod amx;
pub mod attention;
pub mod bundle;
pub mod config;
pub mod cpu;
pub mod encoder;
pub mod head_file;
pub mod heads;
pub mod import_e5;
pub mod int8;
pub mod kernels;
pub mod profile;
pub mod weights;

pub use bundle::{ModelBundle, ModelError};
pub use config::{Architecture, EncoderConfig, HfConfig, Precision};
pub use encoder::{Encoder, PackedBatch};
pub use heads::{ClassificationHead, TaskHead, TokenClassificationHead, ZeroShotHead};
