//! Encoder features of whole texts, which heads are trained on: the states of chosen
//! layers, concatenated, averaged over the text and over each word. Trained heads read
//! the same quantities at inference (see `model::head_file`), so training and inference
//! share this one definition.

use anyhow::Result;
use rayon::prelude::*;

use super::pipeline::{Pipeline, PipelineOptions};
use crate::decode::scores::{weighted_mean, window_max};
use crate::text::windows::{token_owners, word_means};

/// The features of one text.
pub struct TextFeatures {
    /// Mean of the concatenated layers over the text (windows weighted by their length).
    pub mean: Vec<f32>,
    /// Element-wise maximum of the windows' means: a signal that one window of a long
    /// text carries is not averaged away.
    pub max: Vec<f32>,
    /// One row per word span, flattened `words × dim`: the mean over the tokens that
    /// overlap the word.
    pub words: Vec<f32>,
}

impl Pipeline {
    /// Features of `texts`; `word_spans[i]` (character offsets, ascending) are the words
    /// of text `i`, or empty when only the text mean is wanted.
    pub fn text_features(
        &self,
        texts: &[&str],
        word_spans: &[Vec<(usize, usize)>],
        layers: &[usize],
        options: &PipelineOptions,
    ) -> Result<Vec<TextFeatures>> {
        let encoded = self.encode_texts(texts, options, false, Some(layers))?;
        let no_words = Vec::new();
        Ok(encoded
            .prepared
            .par_iter()
            .zip(&encoded.outputs)
            .enumerate()
            .map(|(i, (p, outs))| {
                let mean = weighted_mean(
                    p.windows
                        .iter()
                        .zip(outs)
                        .map(|(w, o)| (o.layer_mean.as_deref().expect("features requested"), w.content.len() as f32)),
                );
                let max = window_max(outs.iter().map(|o| o.layer_mean.as_deref().expect("features requested")));
                let dim = mean.len();
                let owners = token_owners(&p.windows, p.tokens.len());
                let token_row = |j: usize| -> &[f32] {
                    let w = owners[j].0;
                    let row = j - p.windows[w].content.start;
                    &outs[w].layer_rows.as_deref().expect("features requested")[row * dim..(row + 1) * dim]
                };
                let spans = word_spans.get(i).unwrap_or(&no_words);
                let words = word_means(&p.tokens.offsets, token_row, spans, dim);
                TextFeatures { mean, max, words }
            })
            .collect())
    }
}
