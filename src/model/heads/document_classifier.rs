//! The document classifier `docclass train` writes: logistic regression on the text's
//! pooled encoder features plus TF-IDF of hashed word and character n-grams. It is
//! linear in its features, so a window's contribution is computed once per window and
//! documents combine them by (weighted) means, exactly as training pooled the features.

use std::any::Any;

use super::{classification, BatchStates, DocumentOutputs, HeadResult, Task, TaskHead};
use crate::decode::scores::{sigmoid, softmax, window_max};
use crate::model::trained::{DocumentPooling, HeadSpec, LinearScores};
use crate::text::lexical::LexicalScheme;

pub struct DocumentClassifier {
    pub spec: HeadSpec,
    pub scores: LinearScores,
    /// Inverse document frequency per lexical bucket.
    pub idf: Vec<f32>,
}

impl DocumentClassifier {
    pub fn lexical_scheme(&self) -> LexicalScheme {
        self.spec.lexical_scheme.unwrap_or(LexicalScheme::WORDS_ONLY)
    }

    /// Label probabilities from the text's pooled features (as [`DocumentPooling`] says: the
    /// mean, or the mean followed by the maximum) and its text.
    pub fn probabilities(&self, pooled: &[f32], text: &str) -> Vec<f32> {
        let counts = if self.idf.is_empty() {
            Vec::new()
        } else {
            self.lexical_scheme().term_counts(text, self.spec.lexical_buckets)
        };
        let logits = self.logits(pooled, &counts);
        if self.spec.multi_label {
            sigmoid(&logits)
        } else {
            softmax(&logits)
        }
    }
}

impl DocumentClassifier {
    /// The logits from pooled features and the text's term counts (by bucket, as
    /// [`LexicalScheme::term_counts`] gives them); training scores data with it too.
    pub fn logits(&self, pooled: &[f32], counts: &[(u32, f32)]) -> Vec<f32> {
        let mut logits = self.scores.bias.clone();
        let mut dense = vec![0.0; logits.len()];
        self.scores.project(pooled, &mut dense);
        logits.iter_mut().zip(&dense).for_each(|(l, d)| *l += d);
        if !self.idf.is_empty() {
            self.scores.add_lexical(self.lexical_scheme().tf_idf(counts, &self.idf), &mut logits);
        }
        logits
    }
}

impl TaskHead for DocumentClassifier {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn labels(&self) -> &[String] {
        &self.spec.labels
    }

    fn task(&self) -> Task {
        Task::ClassifyDocuments
    }

    fn layers(&self, _last: usize) -> Vec<usize> {
        self.spec.layers.clone()
    }

    /// The window's mean features.
    fn forward(&self, batch: &BatchStates) -> candle_core::Result<Vec<Vec<f32>>> {
        batch.window_means(&self.spec.layers)
    }

    fn assemble(&self, document: &DocumentOutputs) -> HeadResult {
        let mut pooled = document.length_weighted_mean();
        if self.spec.pooling == DocumentPooling::MeanMax {
            pooled.extend(window_max(document.outputs.iter().copied()));
        }
        let probs = self.probabilities(&pooled, document.text);
        HeadResult::Classification(classification(&self.spec.labels, &probs, self.spec.multi_label, document.top_k))
    }

    fn describe(&self) -> String {
        format!("{} (trained, {} labels)", self.spec.name, self.spec.labels.len())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
