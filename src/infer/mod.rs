//! Running documents through the model: the runner takes chunks of documents (shards,
//! state, checkpoints); per chunk, windows sorted by length are packed into batches under
//! a token budget, one encoder pass per batch feeds every head, and each document's
//! results are assembled.

pub mod batching;
pub mod features;
pub mod pipeline;
pub mod runner;
pub mod zero_shot;

pub use batching::plan_batches;
pub use pipeline::{Pipeline, PipelineOptions, ReadyDocument};
