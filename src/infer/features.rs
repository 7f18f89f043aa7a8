//! Encoder features of whole texts, which heads are trained on: the states of chosen
//! layers, concatenated, averaged over the text and over each word. Trained heads read
//! the same quantities at inference (see `model::trained`), so training and inference
//! share this one definition.

use anyhow::Result;
use rayon::prelude::*;

use super::pipeline::{Pipeline, PipelineOptions};
use crate::decode::scores::{weighted_mean, window_max};
use crate::text::windows::token_owners;

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

/// For each word span, the mean of `row(j)` over the tokens `j` whose character span
/// overlaps it (a token such as `).` can belong to two words). A word that no token
/// covers (only characters the tokenizer drops) gets zeros. Rows are `dim` long; the
/// result is flattened `words × dim`.
pub fn word_means<'a>(
    token_offsets: &[(usize, usize)],
    row: impl Fn(usize) -> &'a [f32],
    words: &[(usize, usize)],
    dim: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; words.len() * dim];
    let mut first = 0;
    for (w, &(start, end)) in words.iter().enumerate() {
        while first < token_offsets.len() && token_offsets[first].1 <= start {
            first += 1;
        }
        let target = &mut out[w * dim..(w + 1) * dim];
        let mut count = 0;
        for (j, &(ts, te)) in token_offsets.iter().enumerate().skip(first) {
            if ts >= end {
                break;
            }
            if te > start && te > ts {
                for (t, &x) in target.iter_mut().zip(row(j)) {
                    *t += x;
                }
                count += 1;
            }
        }
        if count > 1 {
            target.iter_mut().for_each(|t| *t /= count as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_means_average_the_overlapping_tokens() {
        // "ab c)." tokens: "ab" 0..2, " c" 2..4 (spans the space), ")." 4..6
        let offsets = [(0, 2), (2, 4), (4, 6)];
        let rows = [vec![1.0, 0.0], vec![0.0, 1.0], vec![3.0, 3.0]];
        // words: "ab" 0..2, "c" 3..4, ")" 4..5, "." 5..6, and one no token covers
        let words = [(0, 2), (3, 4), (4, 5), (5, 6), (7, 8)];
        let out = word_means(&offsets, |j| &rows[j], &words, 2);
        assert_eq!(out, vec![1.0, 0.0, 0.0, 1.0, 3.0, 3.0, 3.0, 3.0, 0.0, 0.0]);
    }
}
