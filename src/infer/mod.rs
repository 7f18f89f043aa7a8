//! Running documents through the model: windows sorted by length and packed into
//! batches under a token budget, one encoder pass per batch feeding every head, and
//! per-document assembly of the results.

pub mod batching;
pub mod features;
pub mod pipeline;
pub mod runner;
pub mod zero_shot;

pub use batching::plan_batches;
pub use pipeline::{Pipeline, PipelineOptions};
