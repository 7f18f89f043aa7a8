//! The tagger `docclass train` writes: a linear-chain CRF over words. A word's emission
//! is the mean of its tokens' projected encoder features (or what its context layer
//! makes of them, see `context`) plus hashed word features; tags are decoded with
//! Viterbi under IOB2 constraints, and each word's confidence is the marginal
//! probability of its tag.

use std::any::Any;
use std::collections::{HashMap, HashSet};

use candle_core::{Device, Tensor};

use super::context::{pad_segments, segments, unpadded, weight_shapes, ContextLayer};
use super::{BatchStates, DocumentOutputs, HeadResult, Task, TaskHead};
use crate::decode::entities::Entity;
use crate::decode::iob2::{self, SpanMode};
use crate::model::head_file::{HeadFile, HeadSpec, LinearScores};
use crate::text::lexical::split_words;
use crate::text::windows::{token_owners, word_means};
use crate::text::word_features::WordFeatures;

/// Which tag may follow which under IOB2: `I-X` only after `B-X` or `I-X`, and never first.
pub struct Transitions {
    /// `[from, to]`.
    pub scores: Vec<f32>,
    pub start: Vec<f32>,
    pub end: Vec<f32>,
    pub allowed: Vec<bool>,
    pub allowed_start: Vec<bool>,
}

pub struct Tagger {
    pub spec: HeadSpec,
    /// The lexical weights; the dense ones and bias too when the head has no context layer.
    pub scores: LinearScores,
    /// The trained layer between the encoder features and the CRF, if any.
    pub context: Option<ContextLayer>,
    pub transitions: Transitions,
    pub abbreviations: HashSet<String>,
}

/// Impossible under the constraints; finite so that sums stay finite.
const FORBIDDEN: f32 = -1.0e4;

impl Tagger {
    /// The tagger of a head directory, on an encoder of `hidden` features per layer.
    pub fn from_file(file: HeadFile, hidden: usize) -> anyhow::Result<Self> {
        let k = file.spec.labels.len();
        let encoder_dim = hidden * file.spec.layers.len();
        let (scores, context) = match &file.spec.context {
            None => (file.linear_scores(encoder_dim)?, None),
            Some(spec) => {
                let mut weights = HashMap::new();
                for (name, shape) in weight_shapes(spec, encoder_dim, k) {
                    let values = file.get(name, shape.iter().product())?;
                    weights.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
                }
                let scores =
                    LinearScores { dense: Vec::new(), bias: vec![0.0; k], lexical: file.lexical_table()?, labels: k };
                (scores, Some(ContextLayer::new(spec.clone(), weights)?))
            }
        };
        let (allowed, allowed_start) = iob2::allowed_transitions(&file.spec.labels);
        let transitions = Transitions {
            scores: file.get("transitions", k * k)?,
            start: file.get("start", k)?,
            end: file.get("end", k)?,
            allowed,
            allowed_start,
        };
        let abbreviations = file.spec.abbreviations.iter().cloned().collect();
        Ok(Self { spec: file.spec, scores, context, transitions, abbreviations })
    }

    /// Width of a word's row that `forward` gives: tag scores, or the context layer's
    /// projected features.
    fn row_width(&self) -> usize {
        self.context.as_ref().map_or(self.scores.labels, |c| c.spec.projection)
    }

    /// Emission scores `[words, tags]` from the words' rows (`dense · x`, or the context
    /// layer's `projection · x`), plus bias and lexical features.
    pub fn emissions(&self, rows: &[f32], words: &[String]) -> anyhow::Result<Vec<f32>> {
        let k = self.scores.labels;
        let mut out = match &self.context {
            None => rows.to_vec(),
            Some(layer) => context_emissions(layer, rows, words)?,
        };
        let mut buckets = Vec::new();
        let features = WordFeatures::new(words, self.spec.word_features);
        for (i, row) in out.chunks_exact_mut(k).enumerate() {
            row.iter_mut().zip(&self.scores.bias).for_each(|(e, b)| *e += b);
            if self.spec.lexical_buckets > 0 {
                buckets.clear();
                features.of(i, self.spec.lexical_buckets, &mut buckets);
                self.scores.add_lexical(buckets.iter().map(|&b| (b, 1.0)), row);
            }
        }
        Ok(out)
    }

    /// The tags of a sentence's words from their mean encoder features (`words × dim`
    /// in the head's layers, as the feature cache keeps them): what `word_tags` gives
    /// from the encoder's outputs, up to the rounding of the cached features.
    pub fn tags_of_word_features(&self, features: &[f32], words: &[String]) -> anyhow::Result<Vec<String>> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let dim = features.len() / words.len();
        let rows: Vec<f32> = match &self.context {
            Some(layer) => Tensor::from_slice(features, (words.len(), dim), &Device::Cpu)?
                .matmul(&layer.projection().t()?)?
                .flatten_all()?
                .to_vec1()?,
            None => {
                let mut rows = vec![0.0; words.len() * self.scores.labels];
                for (x, row) in features.chunks_exact(dim).zip(rows.chunks_exact_mut(self.scores.labels)) {
                    self.scores.project(x, row);
                }
                rows
            }
        };
        let (tags, _) = self.decode(&self.emissions(&rows, words)?);
        Ok(tags.iter().map(|&t| self.spec.labels[t].clone()).collect())
    }

    /// The best tag sequence and each word's marginal probability of its tag.
    pub fn decode(&self, emissions: &[f32]) -> (Vec<usize>, Vec<f32>) {
        let tags = viterbi(&self.transitions, emissions, self.scores.labels);
        let marginals = forward_backward(&self.transitions, emissions, self.scores.labels).0;
        let k = self.scores.labels;
        let confidence = tags.iter().enumerate().map(|(i, &t)| marginals[i * k + t]).collect();
        (tags, confidence)
    }
}

impl Tagger {
    /// The tag of each word span of the document and its marginal probability.
    fn tags_with_confidence(
        &self,
        document: &DocumentOutputs,
        chars: &[char],
        spans: &[(usize, usize)],
    ) -> (Vec<String>, Vec<f32>) {
        let width = self.row_width();
        let words: Vec<String> = spans.iter().map(|&(a, b)| chars[a..b].iter().collect()).collect();
        let windows = document.windows;
        let owners = token_owners(windows, document.tokens.len());
        let token_row = |j: usize| -> &[f32] {
            let w = owners[j].0;
            let row = j - windows[w].content.start;
            &document.outputs[w][row * width..(row + 1) * width]
        };
        let rows = word_means(&document.tokens.offsets, token_row, spans, width);
        // The layer's weights were checked against its sizes at load, and its inputs are
        // built here to match: candle fails only on shapes that disagree.
        let emissions = self.emissions(&rows, &words).expect("the context layer's shapes agree");
        let (tags, confidence) = self.decode(&emissions);
        (tags.iter().map(|&t| self.spec.labels[t].clone()).collect(), confidence)
    }
}

impl TaskHead for Tagger {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn labels(&self) -> &[String] {
        &self.spec.labels
    }

    fn task(&self) -> Task {
        Task::TagWords
    }

    fn layers(&self, _last: usize) -> Vec<usize> {
        self.spec.layers.clone()
    }

    /// `dense · x` (or the context layer's `projection · x`) of each content token.
    /// Linear, so the mean over a word's tokens equals the weights applied to the word's
    /// mean features, as training computed it.
    fn forward(&self, batch: &BatchStates) -> candle_core::Result<Vec<Vec<f32>>> {
        let features = batch.layers(&self.spec.layers)?;
        let weights = match &self.context {
            Some(layer) => layer.projection().clone(),
            None => Tensor::from_slice(&self.scores.dense, (self.scores.labels, features.dim(1)?), features.device())?,
        };
        let projected = features.matmul(&weights.t()?)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(batch.content_rows(&projected, self.row_width()))
    }

    /// Entities of the words, split as in the training corpus.
    fn assemble(&self, document: &DocumentOutputs) -> HeadResult {
        let spans = split_words(document.text, &self.abbreviations);
        if spans.is_empty() {
            return HeadResult::Entities(Vec::new());
        }
        let chars: Vec<char> = document.text.chars().collect();
        let (labels, confidence) = self.tags_with_confidence(document, &chars, &spans);
        let entities = iob2::spans(&labels, SpanMode::StrictIob2)
            .into_iter()
            .map(|span| {
                let (start, end) = (spans[span.start].0, spans[span.end - 1].1);
                let words = span.end - span.start;
                Entity {
                    text: chars[start..end].iter().collect(),
                    label: span.kind,
                    start,
                    end,
                    score: confidence[span.start..span.end].iter().sum::<f32>() / words as f32,
                }
            })
            .collect();
        HeadResult::Entities(entities)
    }

    fn word_tags(&self, document: &DocumentOutputs, words: &[(usize, usize)]) -> Option<Vec<String>> {
        let chars: Vec<char> = document.text.chars().collect();
        Some(self.tags_with_confidence(document, &chars, words).0)
    }

    fn describe(&self) -> String {
        format!("{} (trained, {} labels)", self.spec.name, self.spec.labels.len())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The context layer's emissions `[n, tags]` of a document's words from their rows
/// `projection · x`: run over the document's sentences, as training ran over the corpus's.
fn context_emissions(layer: &ContextLayer, rows: &[f32], words: &[String]) -> candle_core::Result<Vec<f32>> {
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let width = layer.spec.projection;
    let segments = segments(words);
    let (packed, lengths) = pad_segments(rows, width, &segments, &Device::Cpu)?;
    let inputs = layer.add_projection_bias(&packed)?;
    let sentences: Vec<&[String]> = segments.iter().map(|s| &words[s.clone()]).collect();
    let char_ids = layer.sentence_char_ids(&sentences, packed.dim(1)?, &Device::Cpu)?;
    let scores = layer.emissions(&inputs, &char_ids, &lengths, None)?;
    Ok(unpadded(&scores, &lengths)?.concat())
}

fn transition(t: &Transitions, from: usize, to: usize, k: usize) -> f32 {
    if t.allowed[from * k + to] {
        t.scores[from * k + to]
    } else {
        FORBIDDEN
    }
}

fn start_score(t: &Transitions, tag: usize) -> f32 {
    if t.allowed_start[tag] {
        t.start[tag]
    } else {
        FORBIDDEN
    }
}

/// The highest-scoring tag sequence for `[n, k]` emissions.
pub fn viterbi(t: &Transitions, emissions: &[f32], k: usize) -> Vec<usize> {
    let n = emissions.len() / k;
    if n == 0 {
        return Vec::new();
    }
    let mut score: Vec<f32> = (0..k).map(|y| start_score(t, y) + emissions[y]).collect();
    let mut back = vec![0usize; n * k];
    for i in 1..n {
        let mut next = vec![0.0f32; k];
        for to in 0..k {
            let (best_from, best) = (0..k)
                .map(|from| (from, score[from] + transition(t, from, to, k)))
                .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
            next[to] = best + emissions[i * k + to];
            back[i * k + to] = best_from;
        }
        score = next;
    }
    let mut last =
        (0..k).map(|y| (y, score[y] + t.end[y])).fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a }).0;
    let mut tags = vec![0usize; n];
    for i in (0..n).rev() {
        tags[i] = last;
        last = back[i * k + last];
    }
    tags
}

fn log_sum_exp(values: impl Iterator<Item = f32> + Clone) -> f32 {
    let max = values.clone().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f32>().ln()
}

/// Marginals `[n, k]` of each word's tag, the expected transition counts `[k, k]`, and
/// the log partition function.
pub fn forward_backward(t: &Transitions, emissions: &[f32], k: usize) -> (Vec<f32>, Vec<f32>, f32) {
    let n = emissions.len() / k;
    let mut alpha = vec![0.0f32; n * k];
    let mut beta = vec![0.0f32; n * k];
    for y in 0..k {
        alpha[y] = start_score(t, y) + emissions[y];
    }
    for i in 1..n {
        for to in 0..k {
            let prev = &alpha[(i - 1) * k..i * k];
            alpha[i * k + to] =
                log_sum_exp((0..k).map(|from| prev[from] + transition(t, from, to, k))) + emissions[i * k + to];
        }
    }
    for y in 0..k {
        beta[(n - 1) * k + y] = t.end[y];
    }
    for i in (0..n.saturating_sub(1)).rev() {
        for from in 0..k {
            beta[i * k + from] = log_sum_exp(
                (0..k).map(|to| transition(t, from, to, k) + emissions[(i + 1) * k + to] + beta[(i + 1) * k + to]),
            );
        }
    }
    let log_z = log_sum_exp((0..k).map(|y| alpha[(n - 1) * k + y] + t.end[y]));
    // Normalised per word, not by `log_z`: over long texts alpha and beta reach 10^5,
    // where f32 rounding made `alpha + beta - log_z` drift above 0 (marginals up to
    // 1.007). Shifted by the word's own maximum and divided by their sum, each marginal
    // is at most 1 and a word's marginals sum to 1.
    let mut marginals = vec![0.0f32; n * k];
    for (row, (a, b)) in marginals.chunks_exact_mut(k).zip(alpha.chunks_exact(k).zip(beta.chunks_exact(k))) {
        let max = a.iter().zip(b).map(|(a, b)| a + b).fold(f32::NEG_INFINITY, f32::max);
        for ((out, a), b) in row.iter_mut().zip(a).zip(b) {
            *out = (a + b - max).exp();
        }
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|p| *p /= sum);
    }
    let mut pairs = vec![0.0f32; k * k];
    for i in 1..n {
        for from in 0..k {
            for to in 0..k {
                let s =
                    alpha[(i - 1) * k + from] + transition(t, from, to, k) + emissions[i * k + to] + beta[i * k + to]
                        - log_z;
                pairs[from * k + to] += s.exp();
            }
        }
    }
    (marginals, pairs, log_z)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tags O, B-X, I-X with IOB2 constraints and small random scores.
    fn transitions() -> Transitions {
        let k = 3;
        let mut allowed = vec![true; k * k];
        allowed[2] = false; // O -> I-X
        Transitions {
            scores: vec![0.3, -0.2, -1.0, 0.1, -0.5, 0.7, 0.2, 0.1, 0.4],
            start: vec![0.1, 0.2, 0.0],
            end: vec![0.0, 0.1, -0.1],
            allowed,
            allowed_start: vec![true, true, false],
        }
    }

    #[test]
    fn marginals_are_probabilities_on_long_texts_with_large_emissions() {
        // Thousands of words with emissions in the tens: the log-values reach 10^5,
        // where f32 rounding once pushed marginals above 1.
        let k = 3;
        let mut state = 7u64;
        let emissions: Vec<f32> = (0..3000 * k)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) * 40.0 - 5.0
            })
            .collect();
        let (marginals, _, log_z) = forward_backward(&transitions(), &emissions, k);
        assert!(log_z.is_finite());
        for row in marginals.chunks_exact(k) {
            assert!(row.iter().all(|&p| (0.0..=1.0).contains(&p)), "{row:?}");
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{row:?}");
        }
    }

    #[test]
    fn viterbi_never_starts_inside_an_entity_or_jumps_from_outside() {
        let k = 3;
        // Emissions that favour I-X everywhere.
        let emissions = [0.0, 0.0, 5.0].repeat(4);
        let tags = viterbi(&transitions(), &emissions, k);
        assert_ne!(tags[0], 2);
        for pair in tags.windows(2) {
            assert!(!(pair[0] == 0 && pair[1] == 2), "{tags:?}");
        }
    }
}

#[cfg(test)]
mod loading_tests {
    use std::collections::BTreeMap;

    use crate::model::head_file::ContextSpec;
    use crate::model::head_file::{save_head, DocumentPooling, HeadKind, HeadSpec, LexicalTable, HEAD_FORMAT};
    use crate::model::heads::{load_trained, Task};

    fn tagger_spec(labels: &[String], context: Option<ContextSpec>) -> HeadSpec {
        HeadSpec {
            format: HEAD_FORMAT.into(),
            kind: HeadKind::Tagger,
            name: "tags".into(),
            labels: labels.to_vec(),
            multi_label: false,
            layers: vec![1],
            encoder: ".".into(),
            encoder_fingerprint: "fp".into(),
            encoder_precision: Default::default(),
            lexical_buckets: 0,
            lexical_scheme: None,
            word_features: Default::default(),
            pooling: DocumentPooling::Mean,
            abbreviations: Vec::new(),
            context,
            training: serde_json::Value::Null,
            profile: None,
            weights_sha256: String::new(),
        }
    }

    /// A tagger written as `train` writes it loads as a tagger through the one
    /// registration, and decodes under IOB2 with its transitions.
    #[test]
    fn a_tagger_file_loads_through_the_registration() {
        let dir = tempfile::tempdir().unwrap();
        let labels: Vec<String> = ["O", "B-X", "I-X"].map(String::from).to_vec();
        let (k, hidden) = (3, 4);
        let spec = HeadSpec { layers: vec![1, 2], abbreviations: vec!["Abs.".into()], ..tagger_spec(&labels, None) };
        let f32_tensors = BTreeMap::from([
            ("dense", vec![0.0; k * hidden * 2]),
            ("bias", vec![0.0; k]),
            ("transitions", vec![0.0; k * k]),
            ("start", vec![0.0; k]),
            ("end", vec![0.0; k]),
        ]);
        save_head(dir.path(), &spec, &f32_tensors, &BTreeMap::new(), &LexicalTable::default()).unwrap();
        let head = load_trained(dir.path(), "fp", hidden).unwrap();
        assert_eq!((head.task(), head.labels()), (Task::TagWords, &labels[..]));
        assert_eq!(head.layers(12), vec![1, 2]);
        let tagger = head.as_any().downcast_ref::<super::Tagger>().unwrap();
        assert!(tagger.abbreviations.contains("Abs."));
        // I-X wins every word on its own, but may neither start nor follow O.
        let (tags, confidence) = tagger.decode(&[0.0, 0.0, 3.0].repeat(3));
        assert_eq!(tags, vec![1, 2, 2]);
        assert!(confidence.iter().all(|p| (0.0..=1.0).contains(p)));
        assert!(load_trained(dir.path(), "fp", hidden + 1).is_err(), "weights for another encoder width");
    }

    /// A tagger with a context layer loads through the same registration, and scores a
    /// document sentence by sentence: each sentence as the layer scores it alone.
    #[test]
    fn a_context_tagger_scores_a_document_by_its_sentences() {
        use crate::model::heads::context::tests::{random_weights, small_spec};
        let dir = tempfile::tempdir().unwrap();
        let labels: Vec<String> = ["O", "B-X", "I-X"].map(String::from).to_vec();
        let (k, hidden) = (3, 4);
        let context = small_spec();
        let spec = HeadSpec { layers: vec![2], ..tagger_spec(&labels, Some(context.clone())) };
        let mut f32_tensors: BTreeMap<&str, Vec<f32>> = random_weights(&context, hidden, k, 3).into_iter().collect();
        f32_tensors.extend([("transitions", vec![0.0; k * k]), ("start", vec![0.0; k]), ("end", vec![0.0; k])]);
        save_head(dir.path(), &spec, &f32_tensors, &BTreeMap::new(), &LexicalTable::default()).unwrap();
        let head = load_trained(dir.path(), "fp", hidden).unwrap();
        let tagger = head.as_any().downcast_ref::<super::Tagger>().unwrap();
        let layer = tagger.context.as_ref().expect("a context layer");

        let words: Vec<String> = "ab cd . eg a .".split(' ').map(String::from).collect();
        let rows: Vec<f32> = (0..words.len() * context.projection).map(|i| (i % 7) as f32 * 0.1).collect();
        let document = tagger.emissions(&rows, &words).unwrap();
        for sentence in [0..3, 3..6] {
            let one = super::context_emissions(
                layer,
                &rows[sentence.start * context.projection..sentence.end * context.projection],
                &words[sentence.clone()],
            )
            .unwrap();
            assert_eq!(&document[sentence.start * k..sentence.end * k], &one[..]);
        }
        assert!(load_trained(dir.path(), "fp", hidden + 1).is_err(), "a projection for another encoder width");
    }
}
