//! Zero-shot classification on the bare encoder: labels are short descriptions, embedded
//! like documents (see `infer::zero_shot` for reading them).

use std::any::Any;

use super::{classification, BatchStates, DocumentOutputs, HeadResult, Task, TaskHead};
use crate::decode::scores::{argmax, softmax};
use crate::output::record::Evidence;

/// A label's similarity to a document is the highest cosine similarity of any of its
/// descriptions to the document's embedding (the mean token state over its windows);
/// the scores are the softmax of these similarities divided by `temperature`.
pub struct ZeroShotHead {
    pub name: String,
    pub labels: Vec<String>,
    pub descriptions: Vec<Description>,
    pub temperature: f32,
}

/// One line of the label file.
pub struct Description {
    /// The index of its label.
    pub label: usize,
    pub text: String,
    /// Of unit length.
    pub embedding: Vec<f32>,
}

impl ZeroShotHead {
    /// Label probabilities for a document embedding (any length; it is normalised here).
    pub fn probabilities(&self, embedding: &[f32]) -> Vec<f32> {
        let cosines = self.cosines(embedding);
        let mut best = vec![f32::NEG_INFINITY; self.labels.len()];
        for (description, cosine) in self.descriptions.iter().zip(&cosines) {
            best[description.label] = best[description.label].max(*cosine);
        }
        let scaled: Vec<f32> = best.iter().map(|c| c / self.temperature).collect();
        softmax(&scaled)
    }

    /// Each description's cosine similarity to the document embedding.
    fn cosines(&self, embedding: &[f32]) -> Vec<f32> {
        let unit = unit_length(embedding);
        self.descriptions.iter().map(|d| d.embedding.iter().zip(&unit).map(|(a, b)| a * b).sum::<f32>()).collect()
    }

    /// The description of `label` closest to the document.
    fn evidence(&self, embedding: &[f32], label: usize) -> Evidence {
        let (description, cosine) = self
            .descriptions
            .iter()
            .zip(self.cosines(embedding))
            .filter(|(d, _)| d.label == label)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("every label has a description");
        Evidence::Description { label: self.labels[label].clone(), description: description.text.clone(), cosine }
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
        let embedding = document.length_weighted_mean();
        let probs = self.probabilities(&embedding);
        let mut result = classification(&self.labels, &probs, false, document.top_k);
        if document.explain.is_some() {
            result.evidence = Some(self.evidence(&embedding, argmax(&probs)));
        }
        HeadResult::Classification(result)
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
