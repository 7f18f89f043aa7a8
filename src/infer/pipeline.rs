//! The run loop for one chunk of documents: tokenize in parallel, cut windows, encode
//! them in length-sorted batches (one encoder pass per window for all heads), and
//! assemble one record per document in input order.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rayon::prelude::*;

use super::batching::plan_batches;
use crate::decode::entities::Aggregation;
use crate::decode::iob2;
use crate::decode::scores::weighted_mean;
use crate::ingest::{Document, Item};
use crate::model::bundle::ModelIdentity;
use crate::model::heads::{BatchStates, DocumentOutputs, HeadResult, Task, TaskHead};
use crate::model::{ModelBundle, PackedBatch};
use crate::output::record::{Classification, Record};
use crate::text::{DocTokens, TextEncoder, Window, WindowOptions};

#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    pub windows: WindowOptions,
    /// Real tokens per encoder batch.
    pub batch_tokens: NonZeroUsize,
    pub aggregation: Aggregation,
    pub top_k: Option<usize>,
    /// Evidence for the chosen label with this many contributions (`classify --explain`).
    pub explain: Option<usize>,
}

impl PipelineOptions {
    /// Every text read whole, with windows overlapping by the default stride: for
    /// training and evaluation data.
    pub fn whole_texts(pipeline: &Pipeline, batch_tokens: NonZeroUsize) -> Result<Self> {
        Ok(Self {
            windows: WindowOptions { stride: pipeline.text.stride(None)?, max_windows: usize::MAX, truncate: false },
            batch_tokens,
            aggregation: Aggregation::First,
            top_k: None,
            explain: None,
        })
    }

    /// Each text truncated to its first window: for embedding short texts and for
    /// benchmarks that compare with truncating pipelines.
    pub fn first_window_only(batch_tokens: NonZeroUsize) -> Self {
        Self {
            windows: WindowOptions { stride: 0, max_windows: 1, truncate: true },
            batch_tokens,
            aggregation: Aggregation::First,
            top_k: None,
            explain: None,
        }
    }
}

/// One encoder and the heads it feeds.
pub struct Pipeline {
    pub encoder: crate::model::Encoder,
    pub text: TextEncoder,
    pub heads: Vec<Box<dyn TaskHead>>,
    /// What the model is (fingerprint, precision, the name records carry).
    pub identity: ModelIdentity,
}

/// What one window contributes to its document.
#[derive(Default)]
pub(crate) struct WindowOutput {
    /// Mean of the window's token states (embeddings).
    pub(crate) mean: Option<Vec<f32>>,
    /// Feature extraction for training: the asked-for layers, concatenated per token,
    /// for the window's content tokens (`content × dim`), and their mean over the whole
    /// window (`dim`), as `mean` is for the last layer.
    pub(crate) layer_rows: Option<Vec<f32>>,
    pub(crate) layer_mean: Option<Vec<f32>>,
    /// Per head index: what the head's `forward` gave for this window.
    heads: Vec<Vec<f32>>,
}

/// Texts with their windows' outputs, and the tokens encoded.
pub(crate) struct EncodedTexts {
    pub(crate) prepared: Vec<Prepared>,
    pub(crate) outputs: Vec<Vec<WindowOutput>>,
    pub(crate) tokens: usize,
}

/// A document ready for the encoder.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) tokens: DocTokens,
    pub(crate) windows: Vec<Window>,
}

/// A document tokenized and cut into windows, with the options its record is assembled
/// with; or, where it could not be read or tokenized, its error record.
#[derive(Clone)]
pub struct ReadyDocument {
    state: Result<(Document, Prepared), Box<Record>>,
    options: PipelineOptions,
}

/// Totals of one `process` call, for progress and benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkStats {
    pub documents: usize,
    pub failed: usize,
    pub tokens: usize,
    pub time: StageTimes,
}

/// Where a chunk's time went (wall time of each stage; stages run one after another).
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimes {
    /// Tokenizing and cutting windows.
    pub tokenize: Duration,
    /// The encoder's passes.
    pub encoder: Duration,
    /// The heads' forward passes on each batch.
    pub heads_forward: Duration,
    /// The heads' per-document results (decoding, entity spans, evidence).
    pub heads_assemble: Duration,
}

impl std::ops::AddAssign for StageTimes {
    fn add_assign(&mut self, other: Self) {
        self.tokenize += other.tokenize;
        self.encoder += other.encoder;
        self.heads_forward += other.heads_forward;
        self.heads_assemble += other.heads_assemble;
    }
}

impl Pipeline {
    /// `max_len` caps the window length below the model's own maximum.
    pub fn new(bundle: ModelBundle, max_len: Option<usize>) -> Result<Self> {
        let model_max = bundle.encoder_config().max_sequence_len();
        let max_len = max_len.map_or(model_max, |m| m.min(model_max));
        let text = TextEncoder::new(bundle.tokenizer, &bundle.settings.input_prefix, max_len)
            .with_context(|| format!("{}: tokenizer", bundle.dir.display()))?;
        Ok(Self { encoder: bundle.encoder, text, heads: bundle.heads, identity: bundle.identity })
    }

    /// The width of one encoder layer's states.
    pub fn hidden_size(&self) -> usize {
        self.encoder.config().hidden
    }

    /// Records for `items`, in their order, and what was done.
    pub fn process(&self, items: Vec<Item>, options: &PipelineOptions) -> Result<(Vec<Record>, ChunkStats)> {
        let started = Instant::now();
        let ready = self.ready(items, options);
        let tokenize = started.elapsed();
        let (records, mut stats) = self.process_ready(ready, options.batch_tokens)?;
        stats.time.tokenize = tokenize;
        Ok((records, stats))
    }

    /// `items` tokenized and cut into windows, each to be assembled with `options`. A
    /// document that cannot be read or tokenized is already its (error) record.
    pub fn ready(&self, items: Vec<Item>, options: &PipelineOptions) -> Vec<ReadyDocument> {
        items
            .into_par_iter()
            .map(|item| {
                let failed =
                    |id, source, error| Box::new(Record::failed(id, source, &self.identity.record_name, error));
                let state = item.map_err(|f| failed(f.id, f.source, f.error)).and_then(|doc| {
                    match self.prepare(&doc.text, &options.windows) {
                        Ok(p) => Ok((doc, p)),
                        Err(e) => Err(failed(doc.id, doc.source, format!("{e:#}"))),
                    }
                });
                ReadyDocument { state, options: *options }
            })
            .collect()
    }

    /// The tokens the encoder reads for `document`: every window with its frame.
    pub fn encoder_tokens(&self, document: &ReadyDocument) -> usize {
        let frame = self.text.leading_len() + self.text.trailing_len();
        document.state.as_ref().map_or(0, |(_, p)| p.windows.iter().map(|w| w.content.len() + frame).sum())
    }

    /// Records for documents made ready by [`Self::ready`] (possibly with different
    /// options, as a service's requests have), in their order; their windows share
    /// encoder batches of `batch_tokens`.
    pub fn process_ready(
        &self,
        documents: Vec<ReadyDocument>,
        batch_tokens: NonZeroUsize,
    ) -> Result<(Vec<Record>, ChunkStats)> {
        // All windows of the chunk, each with the index of its document.
        let mut window_ids: Vec<Vec<u32>> = Vec::new();
        let mut window_doc: Vec<usize> = Vec::new();
        for (d, document) in documents.iter().enumerate() {
            if let Ok((_, p)) = &document.state {
                for window in &p.windows {
                    window_ids.push(self.text.window_ids(&p.tokens, window));
                    window_doc.push(d);
                }
            }
        }
        let mut stats = ChunkStats { documents: documents.len(), ..Default::default() };
        let outputs = self.encode_windows(&window_ids, batch_tokens, false, None, &mut stats.time)?;
        let mut per_doc: Vec<Vec<WindowOutput>> = documents.iter().map(|_| Vec::new()).collect();
        for (&d, out) in window_doc.iter().zip(outputs) {
            per_doc[d].push(out);
        }

        stats.tokens = window_ids.iter().map(Vec::len).sum();
        let started = Instant::now();
        let records: Vec<Record> = documents
            .into_par_iter()
            .zip(per_doc)
            .map(|(document, outs)| match document.state {
                Ok((doc, p)) => self.assemble(doc, &p, &outs, &document.options),
                Err(record) => *record,
            })
            .collect();
        stats.time.heads_assemble = started.elapsed();
        stats.failed = records.iter().filter(|r| r.is_error()).count();
        Ok((records, stats))
    }

    /// Names of the classification heads (trained, checkpoint, zero-shot), in output order.
    pub fn classification_head_names(&self) -> Vec<String> {
        self.heads_for(Task::ClassifyDocuments).map(|h| h.name().to_string()).collect()
    }

    /// The labels of the classification head `name` (default: the first).
    pub fn classification_labels(&self, name: Option<&str>) -> Vec<String> {
        self.heads_for(Task::ClassifyDocuments)
            .find(|h| name.is_none_or(|name| name == h.name()))
            .map(|h| h.labels().to_vec())
            .unwrap_or_default()
    }

    /// The entity types of the word tagger, if any.
    pub fn tagger_types(&self) -> Vec<String> {
        self.heads_for(Task::TagWords).next().map(|h| iob2::entity_types(h.labels())).unwrap_or_default()
    }

    fn heads_for(&self, task: Task) -> impl Iterator<Item = &dyn TaskHead> {
        self.heads.iter().map(|h| h.as_ref()).filter(move |h| h.task() == task)
    }

    /// Tags of pre-tokenized texts (such as CoNLL sentences: words joined by spaces, with
    /// each word's character span) from the pipeline's word tagger.
    pub fn tag_pretokenized(
        &self,
        texts: &[String],
        word_spans: &[Vec<(usize, usize)>],
        options: &PipelineOptions,
    ) -> Result<(Vec<Vec<String>>, usize)> {
        let h = self
            .heads
            .iter()
            .position(|head| head.task() == Task::TagWords)
            .context("the model has no tagger trained by docclass train")?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encoded = self.encode_texts(&refs, options, false, None)?;
        let tags = encoded
            .prepared
            .par_iter()
            .zip(&encoded.outputs)
            .zip(texts.par_iter().zip(word_spans))
            .map(|((p, outs), (text, spans))| {
                let document = document_outputs(text, p, outs, h, options);
                self.heads[h].word_tags(&document, spans).expect("a word tagger tags words")
            })
            .collect();
        Ok((tags, encoded.tokens))
    }

    /// A text's tokens, windows and unknown tokens, as its record would count them.
    pub fn input_counts(&self, text: &str, options: &WindowOptions) -> Result<(usize, usize, usize)> {
        let p = self.prepare(text, options)?;
        Ok((p.tokens.len(), p.windows.len(), self.text.unknown_tokens(&p.tokens)))
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
        let mut outputs = self
            .encode_windows(&window_ids, options.batch_tokens, needs_mean, feature_layers, &mut StageTimes::default())?
            .into_iter();
        let outputs = prepared.iter().map(|p| outputs.by_ref().take(p.windows.len()).collect()).collect();
        Ok(EncodedTexts { prepared, outputs, tokens })
    }

    /// Runs the encoder over all windows in planned batches and every head's forward pass
    /// per window, and keeps the window's mean token state if `needs_mean` (embeddings)
    /// and the concatenated states of `feature_layers` if given (for training heads).
    /// Results come back in the order of `window_ids`; the encoder's and the heads' time
    /// are added to `time`.
    pub(crate) fn encode_windows(
        &self,
        window_ids: &[Vec<u32>],
        batch_tokens: NonZeroUsize,
        needs_mean: bool,
        feature_layers: Option<&[usize]>,
        time: &mut StageTimes,
    ) -> Result<Vec<WindowOutput>> {
        let lens: Vec<usize> = window_ids.iter().map(Vec::len).collect();
        let mut outputs: Vec<WindowOutput> = window_ids.iter().map(|_| WindowOutput::default()).collect();
        let layers = self.layers_needed(feature_layers);
        let last = self.encoder.config().layers;
        let frame = (self.text.leading_len(), self.text.trailing_len());
        for batch_indices in plan_batches(&lens, batch_tokens.get()) {
            let mut batch = PackedBatch::default();
            for &i in &batch_indices {
                batch.push(&window_ids[i]);
            }
            let started = Instant::now();
            let states = self.encoder.forward_layers(&batch, &layers).context("encoder forward pass")?;
            time.encoder += started.elapsed();
            let states = BatchStates::new(layers.clone(), states, last, batch.lens.clone(), frame);
            let started = Instant::now();
            let mut results: Vec<WindowOutput> = batch.lens.iter().map(|_| WindowOutput::default()).collect();
            for head in &self.heads {
                let per_window = head.forward(&states).with_context(|| format!("head {}", head.name()))?;
                for (out, values) in results.iter_mut().zip(per_window) {
                    out.heads.push(values);
                }
            }
            time.heads_forward += started.elapsed();
            if needs_mean {
                for (out, row) in results.iter_mut().zip(states.window_means(&[last])?) {
                    out.mean = Some(row);
                }
            }
            if let Some(feature_layers) = feature_layers {
                Self::keep_features(&states, feature_layers, &mut results)?;
            }
            for (&i, out) in batch_indices.iter().zip(results) {
                outputs[i] = out;
            }
        }
        Ok(outputs)
    }

    /// The encoder layers a batch must return: those the heads read, the last (for
    /// embeddings), and `feature_layers`.
    fn layers_needed(&self, feature_layers: Option<&[usize]>) -> Vec<usize> {
        let last = self.encoder.config().layers;
        let mut layers = vec![last];
        for head in &self.heads {
            layers.extend(head.layers(last));
        }
        layers.extend(feature_layers.unwrap_or_default());
        layers.sort_unstable();
        layers.dedup();
        layers
    }

    /// Fills `layer_rows` and `layer_mean` of each window with the states of `layers`.
    fn keep_features(states: &BatchStates, layers: &[usize], outs: &mut [WindowOutput]) -> Result<()> {
        let features = states.layers(layers)?;
        let dim = features.dim(1)?;
        let rows = states.content_rows(&features.flatten_all()?.to_vec1::<f32>()?, dim);
        for ((out, mean), rows) in outs.iter_mut().zip(states.window_means(layers)?).zip(rows) {
            out.layer_rows = Some(rows);
            out.layer_mean = Some(mean);
        }
        Ok(())
    }

    fn assemble(&self, doc: Document, p: &Prepared, outs: &[WindowOutput], options: &PipelineOptions) -> Record {
        let mut classifications = Vec::new();
        let mut entity_lists = Vec::new();
        for (h, head) in self.heads.iter().enumerate() {
            match head.assemble(&document_outputs(&doc.text, p, outs, h, options)) {
                HeadResult::Classification(c) => classifications.push((head.name().to_string(), c)),
                HeadResult::Entities(e) => entity_lists.push(e),
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
            tokens: Some(p.tokens.len()),
            unknown_tokens: Some(self.text.unknown_tokens(&p.tokens)),
            encoding: Some(doc.encoding),
            extractor: Some(doc.extractor),
            fields: doc.fields,
            index: None,
            model: self.identity.record_name.clone(),
            error: None,
        }
    }
}

/// What head `h` sees of one document.
fn document_outputs<'a>(
    text: &'a str,
    p: &'a Prepared,
    outs: &'a [WindowOutput],
    h: usize,
    options: &PipelineOptions,
) -> DocumentOutputs<'a> {
    DocumentOutputs {
        text,
        tokens: &p.tokens,
        windows: &p.windows,
        outputs: outs.iter().map(|o| o.heads[h].as_slice()).collect(),
        top_k: options.top_k,
        aggregation: options.aggregation,
        explain: options.explain,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ingest::{Failed, Source};
    use crate::text::WindowOptions;

    fn fixture(name: &str) -> Pipeline {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name);
        Pipeline::new(ModelBundle::load(&dir).unwrap(), Some(16)).unwrap()
    }

    fn document(id: &str, text: &str) -> Item {
        let source = Source { path: "in.jsonl".into(), line: Some(1) };
        Ok(Document {
            id: id.into(),
            source,
            text: text.into(),
            encoding: "UTF-8",
            extractor: "jsonl",
            fields: Default::default(),
        })
    }

    /// One chunk: records in input order, a document that could not be read as its error
    /// record, a long text in several windows, and the same record for a text whether it
    /// is encoded alone or among others.
    #[test]
    fn a_chunk_gives_one_record_per_item_in_order() {
        let pipeline = fixture("bert-seqcls");
        let options = PipelineOptions {
            windows: WindowOptions { stride: pipeline.text.stride(None).unwrap(), max_windows: 100, truncate: false },
            batch_tokens: NonZeroUsize::new(40).unwrap(),
            aggregation: Aggregation::First,
            top_k: Some(1),
            explain: None,
        };
        let long = "Der Bescheid des Finanzamts wird aufgehoben und die Sache zurückverwiesen. ".repeat(4);
        let failed = Err(Failed {
            id: "broken".into(),
            source: Source { path: "broken.pdf".into(), line: None },
            error: "not a PDF".into(),
        });
        let items = vec![document("short", "Die Klage ist begründet."), failed, document("long", &long)];
        let (records, stats) = pipeline.process(items, &options).unwrap();
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["short", "broken", "long"]);
        assert_eq!((stats.documents, stats.failed), (3, 1));
        assert_eq!(records[1].error.as_deref(), Some("not a PDF"));
        assert!(records[2].windows.unwrap() > 1, "a long text is read in several windows");
        let classification = records[0].classification.as_ref().unwrap();
        assert_eq!(classification.scores.len(), 1, "--top-k 1");
        assert_eq!(records[0].model, pipeline.identity.record_name);

        let (alone, _) = pipeline.process(vec![document("short", "Die Klage ist begründet.")], &options).unwrap();
        assert_eq!(alone[0], records[0], "a record does not depend on the chunk around it");
    }
}
