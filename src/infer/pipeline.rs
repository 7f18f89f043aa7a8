//! The run loop for one chunk of documents: tokenize in parallel, cut windows, encode
//! them in length-sorted batches (one encoder pass per window for all heads), and
//! assemble one record per document in input order.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::Tensor;
use rayon::prelude::*;

use super::batching::plan_batches;
use super::features::word_means;
use crate::decode::entities::{decode_entities, Aggregation, Entity, TokenScores};
use crate::decode::scores::{argmax, rank, sigmoid, softmax, weighted_mean, window_max};
use crate::eval::entities::{spans as spans_of_tags, SpanMode};
use crate::ingest::{Document, Item};
use crate::model::encoder::{first_token, mean_pool};
use crate::model::heads::{ClassificationHead, Pooling};
use crate::model::trained::{DocumentPooling, Tagger, TrainedHead};
use crate::model::{Head, ModelBundle, PackedBatch};
use crate::output::record::{Classification, Record};
use crate::text::lexical::split_words;
use crate::text::windows::token_owners;
use crate::text::{DocTokens, TextEncoder, Window, WindowOptions};

#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    pub windows: WindowOptions,
    /// Real tokens per encoder batch.
    pub batch_tokens: usize,
    pub aggregation: Aggregation,
    pub top_k: Option<usize>,
}

impl PipelineOptions {
    /// Every text read whole, with windows overlapping by the default stride: for
    /// training and evaluation data.
    pub fn whole_texts(pipeline: &Pipeline, batch_tokens: usize) -> Result<Self> {
        Ok(Self {
            windows: WindowOptions { stride: pipeline.text.stride(None)?, max_windows: usize::MAX, truncate: false },
            batch_tokens: batch_tokens.max(1),
            aggregation: Aggregation::First,
            top_k: None,
        })
    }

    /// Each text truncated to its first window: for embedding short texts and for
    /// benchmarks that compare with truncating pipelines.
    pub fn first_window_only(batch_tokens: usize) -> Self {
        Self {
            windows: WindowOptions { stride: 0, max_windows: 1, truncate: true },
            batch_tokens,
            aggregation: Aggregation::First,
            top_k: None,
        }
    }
}

/// One encoder and the heads it feeds.
pub struct Pipeline {
    pub encoder: crate::model::Encoder,
    pub text: TextEncoder,
    pub heads: Vec<Head>,
    pub model_name: String,
}

/// What one window contributes to its document.
#[derive(Default)]
pub(crate) struct WindowOutput {
    /// Mean of the window's token states (zero-shot heads).
    pub(crate) mean: Option<Vec<f32>>,
    /// Feature extraction for training: the asked-for layers, concatenated per token,
    /// for the window's content tokens (`content × dim`), and their mean over the whole
    /// window (`dim`), as `mean` is for the last layer.
    pub(crate) layer_rows: Option<Vec<f32>>,
    pub(crate) layer_mean: Option<Vec<f32>>,
    /// Per head index: label probabilities of a classification head, or the tag
    /// probabilities of a token head, row after row for the window's content tokens.
    heads: Vec<Vec<f32>>,
}

/// Texts with their windows' outputs, and the tokens encoded.
pub(crate) struct EncodedTexts {
    pub(crate) prepared: Vec<Prepared>,
    pub(crate) outputs: Vec<Vec<WindowOutput>>,
    pub(crate) tokens: usize,
}

/// A document ready for the encoder.
pub(crate) struct Prepared {
    pub(crate) tokens: DocTokens,
    pub(crate) windows: Vec<Window>,
}

/// Totals of one `process` call, for progress and benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkStats {
    pub documents: usize,
    pub failed: usize,
    pub tokens: usize,
}

impl Pipeline {
    /// `max_len` caps the window length below the model's own maximum.
    pub fn new(bundle: ModelBundle, max_len: Option<usize>) -> Result<Self> {
        let model_max = bundle.encoder_config().max_sequence_len();
        let max_len = max_len.map_or(model_max, |m| m.min(model_max));
        let text = TextEncoder::new(bundle.tokenizer, &bundle.settings.input_prefix, max_len)
            .with_context(|| format!("{}: tokenizer", bundle.dir.display()))?;
        Ok(Self { encoder: bundle.encoder, text, heads: bundle.heads, model_name: bundle.name })
    }

    /// The width of one encoder layer's states.
    pub fn hidden_size(&self) -> usize {
        self.encoder.config().hidden
    }

    /// Records for `items`, in their order, and what was done.
    pub fn process(&self, items: Vec<Item>, options: &PipelineOptions) -> Result<(Vec<Record>, ChunkStats)> {
        // A document that cannot be read or tokenized is already its (error) record.
        let prepared: Vec<Result<(Document, Prepared), Box<Record>>> = items
            .into_par_iter()
            .map(|item| {
                let doc = item.map_err(|f| Box::new(Record::failed(f.id, f.source, &self.model_name, f.error)))?;
                match self.prepare(&doc.text, &options.windows) {
                    Ok(p) => Ok((doc, p)),
                    Err(e) => Err(Box::new(Record::failed(doc.id, doc.source, &self.model_name, format!("{e:#}")))),
                }
            })
            .collect();

        // All windows of the chunk, each with the index of its document.
        let mut window_ids: Vec<Vec<u32>> = Vec::new();
        let mut window_doc: Vec<usize> = Vec::new();
        for (d, item) in prepared.iter().enumerate() {
            if let Ok((_, p)) = item {
                for window in &p.windows {
                    window_ids.push(self.text.window_ids(&p.tokens, window));
                    window_doc.push(d);
                }
            }
        }
        let has_zero_shot = self.heads.iter().any(|h| matches!(h, Head::ZeroShot(_)));
        let outputs = self.encode_windows(&window_ids, options.batch_tokens, has_zero_shot, None)?;
        let mut per_doc: Vec<Vec<WindowOutput>> = prepared.iter().map(|_| Vec::new()).collect();
        for (&d, out) in window_doc.iter().zip(outputs) {
            per_doc[d].push(out);
        }

        let mut stats = ChunkStats { documents: prepared.len(), ..Default::default() };
        stats.tokens = window_ids.iter().map(Vec::len).sum();
        let records: Vec<Record> = prepared
            .into_par_iter()
            .zip(per_doc)
            .map(|(item, outs)| match item {
                Ok((doc, p)) => self.assemble(doc, &p, &outs, options),
                Err(record) => *record,
            })
            .collect();
        stats.failed = records.iter().filter(|r| r.is_error()).count();
        Ok((records, stats))
    }

    /// Entities of a trained tagger: words split as in its training corpus, each word's
    /// emission from the mean of its tokens' projected features, Viterbi over the words.
    fn tag_words(&self, tagger: &Tagger, text: &str, p: &Prepared, outs: &[WindowOutput], h: usize) -> Vec<Entity> {
        let spans = split_words(text, &tagger.abbreviations);
        if spans.is_empty() {
            return Vec::new();
        }
        let chars: Vec<char> = text.chars().collect();
        let (labels, confidence) = self.word_tags(tagger, &chars, &spans, p, outs, h);
        spans_of_tags(&labels, SpanMode::StrictIob2)
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
            .collect()
    }

    /// Names of the classification heads (trained, checkpoint, zero-shot), in output order.
    pub fn classification_head_names(&self) -> Vec<String> {
        self.heads
            .iter()
            .filter_map(|h| match h {
                Head::Classification(c) => Some(c.name.clone()),
                Head::ZeroShot(z) => Some(z.name.clone()),
                Head::Trained(TrainedHead::Classifier(c)) => Some(c.spec.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The labels of the classification head `name` (default: the first).
    pub fn classification_labels(&self, name: Option<&str>) -> Vec<String> {
        self.heads
            .iter()
            .filter_map(|h| match h {
                Head::Classification(c) => Some((&c.name, &c.labels)),
                Head::ZeroShot(z) => Some((&z.name, &z.labels)),
                Head::Trained(TrainedHead::Classifier(c)) => Some((&c.spec.name, &c.spec.labels)),
                _ => None,
            })
            .find(|(n, _)| name.is_none_or(|name| name == n.as_str()))
            .map(|(_, labels)| labels.clone())
            .unwrap_or_default()
    }

    /// The entity types of the trained tagger, if any.
    pub fn tagger_types(&self) -> Vec<String> {
        self.heads
            .iter()
            .find_map(|h| match h {
                Head::Trained(TrainedHead::Tagger(t)) => {
                    Some(t.spec.labels.iter().filter_map(|l| l.strip_prefix("B-")).map(String::from).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The tag of each word span and its marginal probability.
    fn word_tags(
        &self,
        tagger: &Tagger,
        chars: &[char],
        spans: &[(usize, usize)],
        p: &Prepared,
        outs: &[WindowOutput],
        h: usize,
    ) -> (Vec<String>, Vec<f32>) {
        let k = tagger.scores.labels;
        let words: Vec<String> = spans.iter().map(|&(a, b)| chars[a..b].iter().collect()).collect();
        let owners = token_owners(&p.windows, p.tokens.len());
        let token_row = |j: usize| -> &[f32] {
            let w = owners[j].0;
            let row = j - p.windows[w].content.start;
            &outs[w].heads[h][row * k..(row + 1) * k]
        };
        let dense_rows = word_means(&p.tokens.offsets, token_row, spans, k);
        let (tags, confidence) = tagger.decode(&tagger.emissions(&dense_rows, &words));
        (tags.iter().map(|&t| tagger.spec.labels[t].clone()).collect(), confidence)
    }

    /// Tags of pre-tokenized texts (such as CoNLL sentences: words joined by spaces, with
    /// each word's character span) from the pipeline's trained tagger.
    pub fn tag_pretokenized(
        &self,
        texts: &[String],
        word_spans: &[Vec<(usize, usize)>],
        options: &PipelineOptions,
    ) -> Result<(Vec<Vec<String>>, usize)> {
        let (h, tagger) = self
            .heads
            .iter()
            .enumerate()
            .find_map(|(h, head)| match head {
                Head::Trained(TrainedHead::Tagger(t)) => Some((h, t)),
                _ => None,
            })
            .context("the model has no tagger trained by docclass train")?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encoded = self.encode_texts(&refs, options, false, None)?;
        let tags = encoded
            .prepared
            .par_iter()
            .zip(&encoded.outputs)
            .zip(texts.par_iter().zip(word_spans))
            .map(|((p, outs), (text, spans))| {
                let chars: Vec<char> = text.chars().collect();
                self.word_tags(tagger, &chars, spans, p, outs, h).0
            })
            .collect();
        Ok((tags, encoded.tokens))
    }

    pub(crate) fn prepare(&self, text: &str, options: &WindowOptions) -> Result<Prepared> {
        let tokens = self.text.tokenize(text)?;
        anyhow::ensure!(!tokens.is_empty(), "empty document (no tokens)");
        let windows = self.text.windows(tokens.len(), options)?;
        Ok(Prepared { tokens, windows })
    }

    /// Mean-pooled embeddings of whole texts (windows weighted by their length), as e5
    /// embeds a text; not normalised. Also returns the number of tokens encoded.
    pub fn embed_texts(&self, texts: &[&str], options: &PipelineOptions) -> Result<(Vec<Vec<f32>>, usize)> {
        let encoded = self.encode_texts(texts, options, true, None)?;
        let embeddings =
            encoded.prepared.iter().zip(&encoded.outputs).map(|(p, outs)| document_mean(&p.windows, outs)).collect();
        Ok((embeddings, encoded.tokens))
    }

    /// Texts that must all be encoded (training and evaluation data: a text that cannot
    /// be tokenized is an error, not a record), with each text's window outputs.
    pub(crate) fn encode_texts(
        &self,
        texts: &[&str],
        options: &PipelineOptions,
        needs_mean: bool,
        feature_layers: Option<&[usize]>,
    ) -> Result<EncodedTexts> {
        let prepared: Vec<Prepared> =
            texts.par_iter().map(|t| self.prepare(t, &options.windows)).collect::<Result<_>>()?;
        let mut window_ids = Vec::new();
        for p in &prepared {
            window_ids.extend(p.windows.iter().map(|w| self.text.window_ids(&p.tokens, w)));
        }
        let tokens = window_ids.iter().map(Vec::len).sum();
        let mut outputs =
            self.encode_windows(&window_ids, options.batch_tokens, needs_mean, feature_layers)?.into_iter();
        let outputs = prepared.iter().map(|p| outputs.by_ref().take(p.windows.len()).collect()).collect();
        Ok(EncodedTexts { prepared, outputs, tokens })
    }

    /// Runs the encoder over all windows in planned batches and computes every head's
    /// output per window, and the window's mean token state if `needs_mean` (zero-shot
    /// heads, embeddings), and the concatenated states of `feature_layers` if given (for
    /// training heads). Results come back in the order of `window_ids`.
    pub(crate) fn encode_windows(
        &self,
        window_ids: &[Vec<u32>],
        batch_tokens: usize,
        needs_mean: bool,
        feature_layers: Option<&[usize]>,
    ) -> Result<Vec<WindowOutput>> {
        let lens: Vec<usize> = window_ids.iter().map(Vec::len).collect();
        let mut outputs: Vec<WindowOutput> = window_ids.iter().map(|_| WindowOutput::default()).collect();
        for batch_indices in plan_batches(&lens, batch_tokens) {
            let mut batch = PackedBatch::default();
            for &i in &batch_indices {
                batch.push(&window_ids[i]);
            }
            let layers = self.layers_needed(feature_layers);
            let states = LayerStates {
                layers: layers.clone(),
                states: self.encoder.forward_layers(&batch, &layers).context("encoder forward pass")?,
            };
            let mut results = self.run_heads(&states, &batch, needs_mean).context("task heads")?;
            if let Some(feature_layers) = feature_layers {
                self.keep_features(&states.concat(feature_layers)?, &batch, &mut results)?;
            }
            for (&i, out) in batch_indices.iter().zip(results) {
                outputs[i] = out;
            }
        }
        Ok(outputs)
    }

    /// The encoder layers a batch must return: the last (for checkpoint and zero-shot
    /// heads), those of the trained heads, and `feature_layers`.
    fn layers_needed(&self, feature_layers: Option<&[usize]>) -> Vec<usize> {
        let mut layers = vec![self.encoder.config().layers];
        for head in &self.heads {
            if let Head::Trained(t) = head {
                layers.extend(&t.spec().layers);
            }
        }
        layers.extend(feature_layers.unwrap_or_default());
        layers.sort_unstable();
        layers.dedup();
        layers
    }

    /// Fills `layer_rows` and `layer_mean` of each window from `features` `[tokens, dim]`.
    fn keep_features(&self, features: &Tensor, batch: &PackedBatch, outs: &mut [WindowOutput]) -> Result<()> {
        let starts = batch.starts();
        let means = mean_pool(features, &starts, &batch.lens)?.to_vec2::<f32>()?;
        let dim = features.dim(1)?;
        let rows = features.flatten_all()?.to_vec1::<f32>()?;
        let leading = self.text.leading_len();
        for ((out, mean), (&start, &len)) in outs.iter_mut().zip(means).zip(starts.iter().zip(&batch.lens)) {
            let content = len - leading - self.text.trailing_len();
            out.layer_rows = Some(rows[(start + leading) * dim..(start + leading + content) * dim].to_vec());
            out.layer_mean = Some(mean);
        }
        Ok(())
    }

    fn run_heads(
        &self,
        states: &LayerStates,
        batch: &PackedBatch,
        needs_mean: bool,
    ) -> candle_core::Result<Vec<WindowOutput>> {
        let hidden = &states.concat(&[self.encoder.config().layers])?;
        let starts = batch.starts();
        let mut outs: Vec<WindowOutput> = batch.lens.iter().map(|_| WindowOutput::default()).collect();
        let mean = if needs_mean
            || self.heads.iter().any(|h| matches!(h, Head::Classification(c) if c.pooling == Pooling::Mean))
        {
            Some(mean_pool(hidden, &starts, &batch.lens)?)
        } else {
            None
        };
        if needs_mean {
            let rows = mean.as_ref().expect("computed above").to_vec2::<f32>()?;
            for (out, row) in outs.iter_mut().zip(rows) {
                out.mean = Some(row);
            }
        }
        let leading = self.text.leading_len();
        for head in &self.heads {
            let per_window: Vec<Vec<f32>> = match head {
                Head::Classification(c) => {
                    let pooled = match c.pooling {
                        Pooling::First => first_token(hidden, &starts)?,
                        Pooling::Mean => mean.clone().expect("computed for mean-pooled heads"),
                    };
                    c.logits(&pooled)?.to_vec2::<f32>()?.iter().map(|l| class_probabilities(c, l)).collect()
                }
                Head::TokenClassification(t) => {
                    let n_labels = t.labels.len();
                    let logits = t.logits(hidden)?.flatten_all()?.to_vec1::<f32>()?;
                    starts
                        .iter()
                        .zip(&batch.lens)
                        .map(|(&start, &len)| {
                            let content = len - leading - self.text.trailing_len();
                            let rows = &logits[(start + leading) * n_labels..(start + leading + content) * n_labels];
                            rows.chunks(n_labels).flat_map(softmax).collect()
                        })
                        .collect()
                }
                Head::ZeroShot(_) => vec![Vec::new(); batch.lens.len()],
                // A trained classifier reads the window's mean features.
                Head::Trained(TrainedHead::Classifier(c)) => {
                    mean_pool(&states.concat(&c.spec.layers)?, &starts, &batch.lens)?.to_vec2::<f32>()?
                }
                // A tagger reads `dense · x` of each content token: linear, so the mean
                // over a word's tokens equals `dense` applied to the word's mean features.
                Head::Trained(TrainedHead::Tagger(t)) => {
                    let k = t.scores.labels;
                    let features = states.concat(&t.spec.layers)?;
                    let dim = features.dim(1)?;
                    let dense = Tensor::from_slice(&t.scores.dense, (k, dim), features.device())?;
                    let projected = features.matmul(&dense.t()?)?.flatten_all()?.to_vec1::<f32>()?;
                    starts
                        .iter()
                        .zip(&batch.lens)
                        .map(|(&start, &len)| {
                            let content = len - leading - self.text.trailing_len();
                            projected[(start + leading) * k..(start + leading + content) * k].to_vec()
                        })
                        .collect()
                }
            };
            for (out, values) in outs.iter_mut().zip(per_window) {
                out.heads.push(values);
            }
        }
        Ok(outs)
    }

    fn assemble(&self, doc: Document, p: &Prepared, outs: &[WindowOutput], options: &PipelineOptions) -> Record {
        let weights: Vec<f32> = p.windows.iter().map(|w| w.content.len() as f32).collect();
        let mut classifications = Vec::new();
        let mut entity_lists = Vec::new();
        for (h, head) in self.heads.iter().enumerate() {
            match head {
                Head::Classification(c) => {
                    let probs = weighted_mean(outs.iter().zip(&weights).map(|(o, &w)| (o.heads[h].as_slice(), w)));
                    classifications
                        .push((c.name.clone(), classification(&c.labels, &probs, c.multi_label, options.top_k)));
                }
                Head::ZeroShot(z) => {
                    let embedding = document_mean(&p.windows, outs);
                    let probs = z.probabilities(&embedding);
                    classifications.push((z.name.clone(), classification(&z.labels, &probs, false, options.top_k)));
                }
                Head::TokenClassification(t) => {
                    let n_labels = t.labels.len();
                    let owners = token_owners(&p.windows, p.tokens.len());
                    let tokens: Vec<TokenScores> = owners
                        .iter()
                        .enumerate()
                        .map(|(j, &(w, _))| {
                            let row = j - p.windows[w].content.start;
                            let (start, end) = p.tokens.offsets[j];
                            TokenScores {
                                probs: &outs[w].heads[h][row * n_labels..(row + 1) * n_labels],
                                start,
                                end,
                                word: p.tokens.word_ids[j],
                            }
                        })
                        .collect();
                    entity_lists.push(decode_entities(&doc.text, &tokens, &t.labels, options.aggregation));
                }
                Head::Trained(TrainedHead::Classifier(c)) => {
                    let mut pooled = weighted_mean(outs.iter().zip(&weights).map(|(o, &w)| (o.heads[h].as_slice(), w)));
                    if c.spec.pooling == DocumentPooling::MeanMax {
                        pooled.extend(window_max(outs.iter().map(|o| o.heads[h].as_slice())));
                    }
                    let probs = c.probabilities(&pooled, &doc.text);
                    let result = classification(&c.spec.labels, &probs, c.spec.multi_label, options.top_k);
                    classifications.push((c.spec.name.clone(), result));
                }
                Head::Trained(TrainedHead::Tagger(t)) => entity_lists.push(self.tag_words(t, &doc.text, p, outs, h)),
            }
        }
        // The first classification head fills `label`/`scores`, the others `heads`; a
        // checkpoint has at most one token head, whose spans fill `entities`.
        let mut classifications = classifications.into_iter();
        let first = classifications.next().map(|(_, c)| c);
        let heads: BTreeMap<String, Classification> = classifications.collect();
        Record {
            id: doc.id,
            source: doc.source,
            classification: first,
            heads,
            entities: entity_lists.into_iter().next(),
            windows: Some(p.windows.len()),
            encoding: Some(doc.encoding),
            extractor: Some(doc.extractor),
            index: None,
            model: self.model_name.clone(),
            error: None,
        }
    }
}

/// The encoder states of the layers one batch returned.
struct LayerStates {
    layers: Vec<usize>,
    states: Vec<Tensor>,
}

impl LayerStates {
    /// The states of `layers`, concatenated along the hidden dimension.
    fn concat(&self, layers: &[usize]) -> candle_core::Result<Tensor> {
        let parts: Vec<&Tensor> = layers
            .iter()
            .map(|l| &self.states[self.layers.iter().position(|k| k == l).expect("layers_needed covers every head")])
            .collect();
        if parts.len() == 1 {
            Ok(parts[0].clone())
        } else {
            Tensor::cat(&parts, 1)
        }
    }
}

fn class_probabilities(head: &ClassificationHead, logits: &[f32]) -> Vec<f32> {
    if head.multi_label {
        sigmoid(logits)
    } else {
        softmax(logits)
    }
}

fn classification(labels: &[String], probs: &[f32], multi_label: bool, top_k: Option<usize>) -> Classification {
    let best = argmax(probs);
    Classification {
        label: labels[best].clone(),
        score: probs[best],
        scores: rank(labels, probs, top_k),
        labels: multi_label
            .then(|| labels.iter().zip(probs).filter(|(_, &p)| p >= 0.5).map(|(l, _)| l.clone()).collect()),
    }
}

/// The mean of all window token states, each window weighted by its content length.
fn document_mean(windows: &[Window], outs: &[WindowOutput]) -> Vec<f32> {
    weighted_mean(
        windows
            .iter()
            .zip(outs)
            .map(|(w, o)| (o.mean.as_deref().expect("window means requested"), w.content.len() as f32)),
    )
}
