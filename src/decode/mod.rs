//! Model outputs to results: scores per label (windows combined) and entity spans.

pub mod entities;
pub mod iob2;
pub mod scores;

pub use entities::{decode_entities, Aggregation, Entity, TokenScores};
pub use scores::{rank, sigmoid, softmax, LabelScore};
