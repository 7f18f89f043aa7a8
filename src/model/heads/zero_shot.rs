//! Zero-shot classification on the bare encoder: labels are short descriptions, embedded
//! like documents (see `infer::zero_shot` for reading them).

use std::any::Any;

use super::{classification, BatchStates, DocumentOutputs, HeadResult, Task, TaskHead};
use crate::decode::scores::softmax;

/// A label's similarity to a document is the highest cosine similarity of any of its
/// descriptions to the document's embedding (the mean token state over its windows);
/// the scores are the softmax of these similarities divided by `temperature`.
pub struct ZeroShotHead {
    pub name: String,
    pub labels: Vec<String>,
    /// Unit-length description embeddings with the index of their label.
    pub descriptions: Vec<(usize, Vec<f32>)>,
    pub temperature: f32,
}

impl ZeroShotHead {
    /// Label probabilities for a document embedding (any length; it is normalised here).
    pub fn probabilities(&self, embedding: &[f32]) -> Vec<f32> {
        let unit = unit_length(embedding);
        let mut best = vec![f32::NEG_INFINITY; self.labels.len()];
        for (label, description) in &self.descriptions {
            let cosine = description.iter().zip(&unit).map(|(a, b)| a * b).sum::<f32>();
            best[*label] = best[*label].max(cosine);
        }
        let scaled: Vec<f32> = best.iter().map(|c| c / self.temperature).collect();
        softmax(&scaled)
    }
}

impl TaskHead for ZeroShotHead {
    fn name(&self) -> &str {
        &self.name
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn task(&self) -> Task {
        Task::ClassifyDocuments
    }

    /// The window's mean token state of the last layer.
    fn forward(&self, batch: &BatchStates) -> candle_core::Result<Vec<Vec<f32>>> {
        batch.window_means(&[batch.last()])
    }

    fn assemble(&self, document: &DocumentOutputs) -> HeadResult {
        let probs = self.probabilities(&document.length_weighted_mean());
        HeadResult::Classification(classification(&self.labels, &probs, false, document.top_k))
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub fn unit_length(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}
