//! The document classifier `docclass train` writes: logistic regression on the text's
//! pooled encoder features plus TF-IDF of hashed word and character n-grams. It is
//! linear in its features, so a window's contribution is computed once per window and
//! documents combine them by (weighted) means, exactly as training pooled the features.

use std::any::Any;
use std::collections::HashMap;

use super::{classification, BatchStates, DocumentOutputs, HeadResult, Task, TaskHead};
use crate::decode::scores::{argmax, sigmoid, softmax, window_max};
use crate::model::trained::{DocumentPooling, HeadSpec, LinearScores};
use crate::output::record::{Contribution, Evidence, Span, TermBlock};
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

    /// The text's term counts by bucket (none for a head without lexical features).
    fn term_counts(&self, text: &str) -> Vec<(u32, f32)> {
        if self.idf.is_empty() {
            Vec::new()
        } else {
            self.lexical_scheme().term_counts(text, self.spec.lexical_buckets)
        }
    }

    fn probabilities(&self, logits: &[f32]) -> Vec<f32> {
        if self.spec.multi_label {
            sigmoid(logits)
        } else {
            softmax(logits)
        }
    }

    /// The logit of `label` taken apart exactly: the bias; each window's share of the
    /// dense part (its length-weighted share of the mean, and the dimensions of the
    /// maximum it holds); and each lexical bucket's weight times its TF-IDF value, with
    /// the places in the text it was counted at. The `top` largest by absolute value are
    /// listed, the others summed in `rest`.
    fn evidence(
        &self,
        document: &DocumentOutputs,
        counts: &[(u32, f32)],
        logit: f32,
        label: usize,
        top: usize,
    ) -> Evidence {
        let dim = self.scores.dim();
        let weights = &self.scores.dense[label * dim..(label + 1) * dim];
        let features = document.outputs.first().map_or(0, |o| o.len());
        let (mean_weights, max_weights) = weights.split_at(features);
        let total: f32 = document.windows.iter().map(|w| w.content.len() as f32).sum();
        let mut window_values: Vec<f32> = document
            .outputs
            .iter()
            .zip(document.windows)
            .map(|(row, w)| w.content.len() as f32 / total * dot(mean_weights, row))
            .collect();
        if self.spec.pooling == DocumentPooling::MeanMax {
            for (j, weight) in max_weights.iter().enumerate() {
                // The window that holds the maximum of dimension j (the first on ties).
                let holder = (0..document.outputs.len())
                    .reduce(|best, w| if document.outputs[w][j] > document.outputs[best][j] { w } else { best })
                    .expect("a document has a window");
                window_values[holder] += weight * document.outputs[holder][j];
            }
        }
        let mut contributions: Vec<Contribution> = window_values
            .into_iter()
            .enumerate()
            .map(|(w, value)| {
                let content = &document.windows[w].content;
                let start = document.tokens.offsets[content.start].0;
                let end = document.tokens.offsets[content.end - 1].1;
                Contribution::Window { window: w, start, end, value }
            })
            .collect();
        if !self.idf.is_empty() {
            let scheme = self.lexical_scheme();
            let buckets = self.spec.lexical_buckets;
            let mut occurrences: HashMap<u32, Vec<Span>> = HashMap::new();
            scheme.visit_terms(document.text, buckets, |bucket, start, end| {
                occurrences.entry(bucket).or_default().push(Span { start, end });
            });
            let chars: Vec<char> = document.text.chars().collect();
            let word_block = scheme.word_buckets(buckets) as u32;
            for (bucket, tf_idf) in scheme.tf_idf(counts, &self.idf) {
                let Some(row) = self.scores.lexical.row(bucket) else { continue };
                let occurrences = occurrences.remove(&bucket).unwrap_or_default();
                let mut texts: Vec<String> = Vec::new();
                for o in &occurrences {
                    let text: String = chars[o.start..o.end].iter().collect();
                    if !texts.contains(&text) {
                        texts.push(text);
                    }
                }
                let block = if bucket < word_block { TermBlock::Words } else { TermBlock::Characters };
                contributions.push(Contribution::Terms { block, texts, occurrences, value: row[label] * tf_idf });
            }
        }
        let value = |c: &Contribution| match c {
            Contribution::Terms { value, .. } | Contribution::Window { value, .. } => *value,
        };
        contributions.sort_by(|a, b| value(b).abs().total_cmp(&value(a).abs()));
        let rest = contributions.iter().skip(top).map(value).sum();
        contributions.truncate(top);
        Evidence::Linear {
            label: self.spec.labels[label].clone(),
            logit,
            bias: self.scores.bias[label],
            contributions,
            rest,
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
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
        let counts = self.term_counts(document.text);
        let logits = self.logits(&pooled, &counts);
        let probs = self.probabilities(&logits);
        let mut result = classification(&self.spec.labels, &probs, self.spec.multi_label, document.top_k);
        if let Some(top) = document.explain {
            let label = argmax(&probs);
            result.evidence = Some(self.evidence(document, &counts, logits[label], label, top));
        }
        HeadResult::Classification(result)
    }

    fn describe(&self) -> String {
        format!("{} (trained, {} labels)", self.spec.name, self.spec.labels.len())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
