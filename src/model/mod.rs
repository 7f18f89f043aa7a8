//! Models: Hugging Face configs, the encoder, task heads, and loading a model directory.

pub mod bundle;
pub mod config;
pub mod encoder;
pub mod heads;
pub mod import_e5;
pub mod kernels;
pub mod quantized;
pub mod trained;
pub mod weights;

pub use bundle::{ModelBundle, ModelError};
pub use config::{Architecture, EncoderConfig, HfConfig};
pub use encoder::{Encoder, PackedBatch};
pub use heads::{ClassificationHead, TaskHead, TokenClassificationHead, ZeroShotHead};
pub use quantized::Precision;
