//! The document classifier `docclass train` writes: logistic regression on the text's
//! pooled encoder features plus TF-IDF of hashed word and character n-grams. It is
//! linear in its features, so a window's contribution is computed once per window and
//! documents combine them by (weighted) means, exactly as training pooled the features.

use std::any::Any;
use std::collections::HashMap;

use super::{classification, BatchStates, DocumentOutputs, HeadResult, Task, TaskHead};
use crate::decode::scores::{argmax, sigmoid, softmax, window_max};
use crate::model::head_file::{DocumentPooling, HeadFile, HeadSpec, LinearScores};
use crate::output::record::{CharRange, Classification, Contribution, Evidence, RunnerUp};
use crate::text::lexical::LexicalScheme;
use crate::text::word_shares::WordShares;

pub struct DocumentClassifier {
    pub spec: HeadSpec,
    pub scores: LinearScores,
    /// Inverse document frequency per lexical bucket.
    pub idf: Vec<f32>,
}

impl DocumentClassifier {
    /// The classifier of a head directory, on an encoder of `hidden` features per layer.
    pub fn from_file(file: HeadFile, hidden: usize) -> anyhow::Result<Self> {
        let dim = hidden * file.spec.layers.len() * file.spec.pooling.parts();
        let scores = file.linear_scores(dim)?;
        let idf = if scores.lexical.ids.is_empty() { Vec::new() } else { file.get("idf", file.spec.lexical_buckets)? };
        Ok(Self { spec: file.spec, scores, idf })
    }

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

    /// Each window's share of the dense part of `label`'s logit: its length-weighted
    /// share of the mean, and the dimensions of the maximum it holds.
    fn window_values(&self, document: &DocumentOutputs, label: usize) -> Vec<f64> {
        let dim = self.scores.dim();
        let weights = &self.scores.dense[label * dim..(label + 1) * dim];
        let features = document.outputs.first().map_or(0, |o| o.len());
        let (mean_weights, max_weights) = weights.split_at(features);
        let total: f32 = document.windows.iter().map(|w| w.content.len() as f32).sum();
        let mut values: Vec<f64> = document
            .outputs
            .iter()
            .zip(document.windows)
            .map(|(row, w)| f64::from(w.content.len() as f32 / total * dot(mean_weights, row)))
            .collect();
        if self.spec.pooling == DocumentPooling::MeanMax {
            for (j, weight) in max_weights.iter().enumerate() {
                // The window that holds the maximum of dimension j (the first on ties).
                let holder = (0..document.outputs.len())
                    .reduce(|best, w| if document.outputs[w][j] > document.outputs[best][j] { w } else { best })
                    .expect("a document has a window");
                values[holder] += f64::from(weight * document.outputs[holder][j]);
            }
        }
        values
    }

    /// The logit of `label` taken apart exactly, and against `runner_up`'s: the bias;
    /// each window's share of the dense part; and each lexical feature's weight times
    /// its TF-IDF value, shared equally among the places it was read at and summed onto
    /// the words there. The `top` strongest words and windows are listed; punctuation,
    /// stop words and the rest are summed in `rest`.
    fn evidence(
        &self,
        document: &DocumentOutputs,
        counts: &[(u32, f32)],
        logits: &[f32],
        label: usize,
        runner_up: Option<usize>,
        top: usize,
    ) -> Evidence {
        let lanes: Vec<usize> = std::iter::once(label).chain(runner_up).collect();
        // Per lane, then turned into (value, versus) per contribution.
        let mut parts: Vec<(Contribution, Vec<f64>)> = Vec::new();
        let mut hidden = vec![0.0f64; lanes.len()];
        let window_values: Vec<Vec<f64>> = lanes.iter().map(|&l| self.window_values(document, l)).collect();
        let chars: Vec<char> = document.text.chars().collect();
        for (w, window) in document.windows.iter().enumerate() {
            let start = document.tokens.offsets[window.content.start].0;
            let end = document.tokens.offsets[window.content.end - 1].1;
            let text = opening(&chars[start..end], WINDOW_TEXT_CHARS);
            let contribution = Contribution::Window { window: w, start, end, text, value: 0.0, versus: None };
            parts.push((contribution, window_values.iter().map(|v| v[w]).collect()));
        }
        if !self.idf.is_empty() {
            let scheme = self.lexical_scheme();
            let buckets = self.spec.lexical_buckets;
            let mut occurrences: HashMap<u32, Vec<(usize, usize)>> = HashMap::new();
            scheme.visit_terms(document.text, buckets, |bucket, start, end| {
                occurrences.entry(bucket).or_default().push((start, end));
            });
            let mut shares = WordShares::new(document.text, lanes.len());
            let mut values = vec![0.0f64; lanes.len()];
            for (bucket, tf_idf) in scheme.tf_idf(counts, &self.idf) {
                let Some(row) = self.scores.lexical.row(bucket) else { continue };
                let mut places = occurrences.remove(&bucket).unwrap_or_default();
                // A short word is one n-gram for several n: the same place, counted once.
                places.sort_unstable();
                places.dedup();
                for (v, &l) in values.iter_mut().zip(&lanes) {
                    *v = f64::from(row[l].to_f32() * tf_idf) / places.len().max(1) as f64;
                }
                for &(start, end) in &places {
                    shares.add(start, end, &values);
                }
            }
            hidden.iter_mut().zip(shares.unplaced()).for_each(|(h, u)| *h += u);
            for word in shares.totals() {
                if !word.readable {
                    hidden.iter_mut().zip(&word.values).for_each(|(h, v)| *h += v);
                    continue;
                }
                let occurrences = word.occurrences.iter().map(|&(start, end)| CharRange { start, end }).collect();
                let contribution = Contribution::Word { text: word.text, occurrences, value: 0.0, versus: None };
                parts.push((contribution, word.values));
            }
        }
        let versus = |values: &[f64]| values.get(1).map(|r| values[0] - r);
        let strength = |values: &[f64]| versus(values).unwrap_or(values[0]).abs();
        parts.sort_by(|a, b| strength(&b.1).total_cmp(&strength(&a.1)));
        let magnitude = |values: &[f64]| values[0].abs();
        let all: f64 = parts.iter().map(|p| magnitude(&p.1)).sum::<f64>() + hidden[0].abs();
        let listed: f64 = parts.iter().take(top).map(|p| magnitude(&p.1)).sum();
        let mut rest = hidden.clone();
        for (_, values) in parts.iter().skip(top) {
            rest.iter_mut().zip(values).for_each(|(r, v)| *r += v);
        }
        parts.truncate(top);
        let contributions = parts
            .into_iter()
            .map(|(mut c, values)| {
                let (value, against) = (values[0] as f32, versus(&values).map(|v| v as f32));
                match &mut c {
                    Contribution::Word { value: v, versus: r, .. }
                    | Contribution::Window { value: v, versus: r, .. } => {
                        (*v, *r) = (value, against);
                    }
                }
                c
            })
            .collect();
        let bias = self.scores.bias[label];
        Evidence::Linear {
            label: self.spec.labels[label].clone(),
            logit: logits[label],
            bias,
            runner_up: runner_up.map(|r| RunnerUp {
                label: self.spec.labels[r].clone(),
                logit: logits[r],
                bias_versus: bias - self.scores.bias[r],
            }),
            contributions,
            rest: rest[0] as f32,
            rest_versus: versus(&rest).map(|v| v as f32),
            explained: if all > 0.0 { (listed / all) as f32 } else { 1.0 },
        }
    }
}

/// Characters of a window's text shown with its evidence.
const WINDOW_TEXT_CHARS: usize = 160;

/// The first `limit` characters of `chars` on one line, cut at a word with `…`.
fn opening(chars: &[char], limit: usize) -> String {
    let text: String = chars.iter().take(limit).collect();
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if chars.len() > limit {
        if let Some(space) = line.rfind(' ') {
            line.truncate(space);
        }
        line.push('…');
    }
    line
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl DocumentClassifier {
    /// What `assemble` decides, without evidence, from a text's window features pooled
    /// as the feature cache keeps them: their length-weighted mean and their maximum.
    pub fn classify_pooled(&self, mean: &[f32], max: &[f32], text: &str, top_k: Option<usize>) -> Classification {
        let mut pooled = mean.to_vec();
        if self.spec.pooling == DocumentPooling::MeanMax {
            pooled.extend_from_slice(max);
        }
        let logits = self.logits(&pooled, &self.term_counts(text));
        classification(&self.spec.labels, &self.probabilities(&logits), self.spec.multi_label, top_k)
    }

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
            // A multi-label head decides each label alone: there is no runner-up.
            let runner_up = (!self.spec.multi_label && probs.len() > 1)
                .then(|| {
                    (0..probs.len()).filter(|&l| l != label).reduce(|a, b| if probs[b] > probs[a] { b } else { a })
                })
                .flatten();
            result.evidence = Some(self.evidence(document, &counts, &logits, label, runner_up, top));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::entities::Aggregation;
    use crate::model::head_file::{HeadKind, LexicalTable, HEAD_FORMAT};
    use crate::rng::Rng;
    use crate::text::{DocTokens, Window};

    const TEXT: &str = "Die Klage wird abgewiesen, weil der Kläger zum Termin nicht erschien.";

    /// A head on two features per window (pooled by mean and maximum) and 64 lexical
    /// buckets, with weights from `seed`.
    fn classifier(seed: u64) -> DocumentClassifier {
        let (k, dim, buckets) = (3, 2, 64);
        let mut rng = Rng::new(seed);
        let mut random = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect() };
        let spec = HeadSpec {
            format: HEAD_FORMAT.into(),
            kind: HeadKind::DocumentClassifier,
            name: "test".into(),
            labels: ["a", "b", "c"].map(String::from).to_vec(),
            multi_label: false,
            layers: vec![1],
            encoder: ".".into(),
            encoder_fingerprint: "fp".into(),
            encoder_precision: Default::default(),
            lexical_buckets: buckets,
            lexical_scheme: Some(LexicalScheme::WORDS_AND_CHARS),
            word_features: Default::default(),
            pooling: DocumentPooling::MeanMax,
            abbreviations: Vec::new(),
            context: None,
            training: serde_json::Value::Null,
            profile: None,
            weights_sha256: String::new(),
        };
        let rows = random(buckets * k).into_iter().map(half::f16::from_f32).collect();
        let lexical = LexicalTable { ids: (0..buckets as u32).collect(), rows, labels: k };
        let scores = LinearScores { dense: random(k * 2 * dim), bias: random(k), lexical, labels: k };
        let idf = random(buckets).into_iter().map(|x| 1.0 + x.abs()).collect();
        DocumentClassifier { spec, scores, idf }
    }

    /// The text split at spaces into tokens, in two windows.
    fn tokens() -> (DocTokens, Vec<Window>) {
        let mut offsets = Vec::new();
        let mut start = None;
        for (i, c) in TEXT.chars().chain([' ']).enumerate() {
            match (c == ' ', start) {
                (true, Some(s)) => {
                    offsets.push((s, i));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        let n = offsets.len();
        let tokens = DocTokens { ids: vec![0; n], offsets, word_ids: (0..n as u32).map(Some).collect() };
        (tokens, vec![Window { content: 0..4 }, Window { content: 4..n }])
    }

    fn explained(head: &DocumentClassifier, top: usize) -> (Classification, Evidence) {
        let (tokens, windows) = tokens();
        let outputs = [vec![0.5f32, -1.0], vec![2.0, 0.25]];
        let document = DocumentOutputs {
            text: TEXT,
            tokens: &tokens,
            windows: &windows,
            outputs: outputs.iter().map(|o| &o[..]).collect(),
            top_k: None,
            aggregation: Aggregation::First,
            explain: Some(top),
        };
        let HeadResult::Classification(mut c) = head.assemble(&document) else { panic!("a classification") };
        let evidence = c.evidence.take().expect("evidence when asked");
        (c, evidence)
    }

    /// The evidence takes the logit apart exactly, against the runner-up too, however
    /// few contributions it lists; words carry the lexical part, windows the dense one.
    #[test]
    fn evidence_adds_up_to_the_logit_and_to_the_margin_over_the_runner_up() {
        for seed in 1..6 {
            let head = classifier(seed);
            for top in [1, 3, 100] {
                let (classification, evidence) = explained(&head, top);
                let Evidence::Linear { label, logit, bias, runner_up, contributions, rest, rest_versus, explained } =
                    evidence
                else {
                    panic!("linear evidence")
                };
                assert_eq!(label, classification.label);
                assert!(contributions.len() <= top && (0.0..=1.0).contains(&explained));
                let values = |c: &Contribution| match c {
                    Contribution::Word { value, versus, .. } | Contribution::Window { value, versus, .. } => {
                        (*value, versus.expect("a single-label head has a runner-up"))
                    }
                };
                let sum: f32 = contributions.iter().map(|c| values(c).0).sum();
                assert!((bias + sum + rest - logit).abs() < 1e-4, "seed {seed}, top {top}");
                let runner_up = runner_up.expect("a runner-up");
                let margin: f32 = contributions.iter().map(|c| values(c).1).sum();
                let against = runner_up.bias_versus + margin + rest_versus.expect("a margin rest");
                assert!((against - (logit - runner_up.logit)).abs() < 1e-4, "seed {seed}, top {top}");
                if top == 100 {
                    assert!(contributions.iter().any(|c| matches!(c, Contribution::Window { .. })));
                    for c in &contributions {
                        if let Contribution::Word { text, occurrences, .. } = c {
                            let chars: Vec<char> = TEXT.chars().collect();
                            for o in occurrences {
                                let read: String = chars[o.start..o.end].iter().collect();
                                assert_eq!(read.to_lowercase(), text.to_lowercase(), "a word names its places");
                            }
                        }
                    }
                }
            }
        }
    }
}
