//! A tagger's context layer: what turns each word's frozen encoder features into
//! emission scores that know the sentence and the word's characters. Per word, the
//! projected encoder features and a character CNN (max over windows of characters) feed
//! a bidirectional LSTM over the sentence; a linear layer maps its states to tag
//! scores. Training (`train::tagger`) and inference run this same candle code, so the
//! scores a head was selected on are the scores `classify` computes.

use std::collections::HashMap;
use std::ops::Range;

use candle_core::{DType, Device, Result, Tensor, D};

use crate::model::head_file::ContextSpec;
use crate::rng::Rng;

/// Character id of padding (around and after a word's characters).
const PAD: u32 = 0;
/// Character id of a character training never saw.
const UNKNOWN: u32 = 1;
/// Words a sentence is cut at in `classify`, where a document is one long text: the
/// LSTM ran over sentences in training.
const MAX_SEGMENT_WORDS: usize = 200;

/// Every weight of the layer with its shape, in a fixed order (training lays its
/// parameters out in it). `encoder_dim` is the width of the encoder features read.
pub fn weight_shapes(spec: &ContextSpec, encoder_dim: usize, tags: usize) -> Vec<(&'static str, Vec<usize>)> {
    let (d, h, f) = (spec.projection, spec.hidden, spec.char_filters);
    let vocabulary = spec.chars.chars().count() + 2;
    vec![
        ("context.projection", vec![d, encoder_dim]),
        ("context.projection_bias", vec![d]),
        ("context.char_table", vec![vocabulary, spec.char_dim]),
        ("context.char_filters", vec![spec.char_width * spec.char_dim, f]),
        ("context.char_bias", vec![f]),
        ("context.forward_input", vec![d + f, 4 * h]),
        ("context.forward_recurrent", vec![h, 4 * h]),
        ("context.forward_bias", vec![4 * h]),
        ("context.backward_input", vec![d + f, 4 * h]),
        ("context.backward_recurrent", vec![h, 4 * h]),
        ("context.backward_bias", vec![4 * h]),
        ("context.output", vec![2 * h, tags]),
        ("context.output_bias", vec![tags]),
    ]
}

/// Character slots per word: the word's characters and padding on both sides.
fn slots(spec: &ContextSpec) -> usize {
    spec.word_chars + 2 * (spec.char_width / 2)
}

/// Dropout while training: each value kept with probability `1 - rate`, scaled up.
pub struct Dropout {
    pub rate: f32,
    pub rng: Rng,
}

impl Dropout {
    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        let keep = 1.0 - self.rate;
        let mask: Vec<f32> =
            (0..x.elem_count()).map(|_| if self.rng.next_f32() < keep { 1.0 / keep } else { 0.0 }).collect();
        x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
    }
}

struct Lstm {
    input: Tensor,
    recurrent: Tensor,
    bias: Tensor,
}

impl Lstm {
    /// States `[B, T, h]` of sentences `[B, T, in]` whose padding comes after their words.
    fn run(&self, inputs: &Tensor, hidden: usize) -> Result<Tensor> {
        let (b, t, width) = inputs.dims3()?;
        // The input part of every gate at once, time-major so that each step is contiguous.
        let gates_in = inputs
            .reshape((b * t, width))?
            .matmul(&self.input)?
            .broadcast_add(&self.bias)?
            .reshape((b, t, 4 * hidden))?
            .transpose(0, 1)?
            .contiguous()?;
        let mut h = Tensor::zeros((b, hidden), DType::F32, inputs.device())?;
        let mut c = h.clone();
        let mut states = Vec::with_capacity(t);
        for step_in in time_steps(&gates_in)? {
            let gates = step_in.add(&h.matmul(&self.recurrent)?)?;
            let gated = candle_nn::ops::sigmoid(&gates)?;
            let (input_gate, forget_gate, output_gate) =
                (gated.narrow(1, 0, hidden)?, gated.narrow(1, hidden, hidden)?, gated.narrow(1, 3 * hidden, hidden)?);
            let candidate = gates.narrow(1, 2 * hidden, hidden)?.tanh()?;
            c = forget_gate.mul(&c)?.add(&input_gate.mul(&candidate)?)?;
            h = output_gate.mul(&c.tanh()?)?;
            states.push(h.clone());
        }
        Tensor::stack(&states, 1)
    }
}

/// The rows `x[0]`, `x[1]`, … of a time-major tensor, split in halves recursively:
/// the gradient of a slice is written at the size of what it was cut from, so cutting
/// one step at a time from the whole would cost the square of the steps.
fn time_steps(x: &Tensor) -> Result<Vec<Tensor>> {
    let t = x.dim(0)?;
    if t <= 1 {
        return (0..t).map(|i| x.get(i)).collect();
    }
    let half = t / 2;
    let mut steps = time_steps(&x.narrow(0, 0, half)?)?;
    steps.extend(time_steps(&x.narrow(0, half, t - half)?)?);
    Ok(steps)
}

/// The context layer's weights as tensors (training's are variables).
pub struct ContextLayer {
    pub spec: ContextSpec,
    vocabulary: HashMap<char, u32>,
    projection: Tensor,
    projection_bias: Tensor,
    char_table: Tensor,
    char_filters: Tensor,
    char_bias: Tensor,
    forward: Lstm,
    backward: Lstm,
    output: Tensor,
    output_bias: Tensor,
}

impl ContextLayer {
    /// The layer from its weights, named as [`weight_shapes`] says.
    pub fn new(spec: ContextSpec, mut weights: HashMap<&str, Tensor>) -> anyhow::Result<Self> {
        let mut take =
            |name: &str| weights.remove(name).ok_or_else(|| anyhow::anyhow!("context weight {name} is missing"));
        let vocabulary = spec.chars.chars().zip(2u32..).collect();
        Ok(Self {
            projection: take("context.projection")?,
            projection_bias: take("context.projection_bias")?,
            char_table: take("context.char_table")?,
            char_filters: take("context.char_filters")?,
            char_bias: take("context.char_bias")?,
            forward: Lstm {
                input: take("context.forward_input")?,
                recurrent: take("context.forward_recurrent")?,
                bias: take("context.forward_bias")?,
            },
            backward: Lstm {
                input: take("context.backward_input")?,
                recurrent: take("context.backward_recurrent")?,
                bias: take("context.backward_bias")?,
            },
            output: take("context.output")?,
            output_bias: take("context.output_bias")?,
            spec,
            vocabulary,
        })
    }

    /// The projection `[d, encoder_dim]`: linear, so that the mean of a word's tokens'
    /// projections is the projection of the word's mean features.
    pub fn projection(&self) -> &Tensor {
        &self.projection
    }

    /// Projected features `[.., d]` of encoder features `[.., encoder_dim]`, bias included.
    pub fn project(&self, features: &Tensor) -> Result<Tensor> {
        features.broadcast_matmul(&self.projection.t()?)?.broadcast_add(&self.projection_bias)
    }

    /// Adds the projection's bias to rows `[n, d]` that hold only `projection · x`.
    pub fn add_projection_bias(&self, rows: &Tensor) -> Result<Tensor> {
        rows.broadcast_add(&self.projection_bias)
    }

    /// Character ids `[B·T, slots]` of sentences padded to `t` words.
    pub fn sentence_char_ids(&self, sentences: &[&[String]], t: usize, device: &Device) -> Result<Tensor> {
        let words = sentences.iter().flat_map(|s| (0..t).map(move |i| s.get(i).map_or("", String::as_str)));
        self.char_ids(words, device)
    }

    /// Character ids `[words, slots]` of `words`, one row each.
    fn char_ids<'a>(&self, words: impl Iterator<Item = &'a str>, device: &Device) -> Result<Tensor> {
        let slots = slots(&self.spec);
        let side = self.spec.char_width / 2;
        let n = self.spec.word_chars;
        let mut ids = Vec::new();
        for word in words {
            let row = ids.len();
            ids.resize(row + slots, PAD);
            let chars: Vec<char> = word.chars().collect();
            // A long word's beginning and ending: German compounds carry their kind at the end.
            let kept: Vec<char> = if chars.len() <= n {
                chars
            } else {
                chars[..n / 2].iter().chain(&chars[chars.len() - (n - n / 2)..]).copied().collect()
            };
            for (slot, c) in ids[row + side..].iter_mut().zip(kept) {
                *slot = self.vocabulary.get(&c).copied().unwrap_or(UNKNOWN);
            }
        }
        let words = ids.len() / slots;
        Tensor::from_vec(ids, (words, slots), device)
    }

    /// A word's character features `[words, filters]`: the maximum of each filter over
    /// the word's windows of characters.
    fn char_features(&self, char_ids: &Tensor) -> Result<Tensor> {
        let (n, slots) = char_ids.dims2()?;
        let (c, w) = (self.spec.char_dim, self.spec.char_width);
        let embedded = self.char_table.index_select(&char_ids.flatten_all()?, 0)?.reshape((n, slots, c))?;
        let positions = slots - w + 1;
        let windows: Vec<Tensor> = (0..w).map(|o| embedded.narrow(1, o, positions)).collect::<Result<_>>()?;
        let windows = Tensor::cat(&windows, 2)?.reshape((n * positions, w * c))?;
        let filtered = windows.matmul(&self.char_filters)?.broadcast_add(&self.char_bias)?.tanh()?;
        filtered.reshape((n, positions, self.spec.char_filters))?.max(1)
    }

    /// Emission scores `[B, T, tags]` of `B` sentences padded to `T` words: `inputs`
    /// `[B, T, d]` are the words' projected features, `char_ids` `[B·T, slots]` their
    /// characters, `lengths` the sentences' word counts. Scores at padding are
    /// meaningless; the words' scores do not depend on it.
    pub fn emissions(
        &self,
        inputs: &Tensor,
        char_ids: &Tensor,
        lengths: &[usize],
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let (b, t, _) = inputs.dims3()?;
        let chars = self.char_features(char_ids)?.reshape((b, t, self.spec.char_filters))?;
        let mut x = Tensor::cat(&[inputs, &chars], 2)?;
        if let Some(dropout) = dropout.as_deref_mut() {
            x = dropout.apply(&x)?;
        }
        let h = self.spec.hidden;
        let forward = self.forward.run(&x, h)?;
        // The backward LSTM reads each sentence reversed; the reversal is its own inverse.
        let reversal = reversal_index(lengths, t, x.device())?;
        let reversed = x.reshape((b * t, ()))?.index_select(&reversal, 0)?.reshape((b, t, ()))?;
        let backward =
            self.backward.run(&reversed, h)?.reshape((b * t, h))?.index_select(&reversal, 0)?.reshape((b, t, h))?;
        let mut states = Tensor::cat(&[&forward, &backward], D::Minus1)?;
        if let Some(dropout) = dropout {
            states = dropout.apply(&states)?;
        }
        states.reshape((b * t, 2 * h))?.matmul(&self.output)?.broadcast_add(&self.output_bias)?.reshape((b, t, ()))
    }
}

/// Row `b·T + t` holds `b·T + len_b − 1 − t` within sentence `b`, itself at padding.
fn reversal_index(lengths: &[usize], t: usize, device: &Device) -> Result<Tensor> {
    let mut index = Vec::with_capacity(lengths.len() * t);
    for (b, &len) in lengths.iter().enumerate() {
        index.extend((0..t).map(|i| (b * t + if i < len { len - 1 - i } else { i }) as u32));
    }
    Tensor::from_vec(index, lengths.len() * t, device)
}

/// The rows of each sentence in a padded `[B, T, width]` output, without the padding.
pub fn unpadded(padded: &Tensor, lengths: &[usize]) -> Result<Vec<Vec<f32>>> {
    let (_, t, width) = padded.dims3()?;
    let all: Vec<f32> = padded.flatten_all()?.to_vec1()?;
    Ok(lengths.iter().enumerate().map(|(b, &n)| all[b * t * width..(b * t + n) * width].to_vec()).collect())
}

/// Where `classify` cuts a document's words into the sentences the LSTM runs over: after
/// a word that is `.`, `!` or `?`, and after [`MAX_SEGMENT_WORDS`] words at the latest.
pub fn segments(words: &[String]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, word) in words.iter().enumerate() {
        if matches!(word.as_str(), "." | "!" | "?") || i + 1 - start == MAX_SEGMENT_WORDS {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < words.len() {
        out.push(start..words.len());
    }
    out
}

/// Rows `[n, width]` of `segments` packed into `[B, T, width]`, zero after each
/// segment's end; returns the tensor and each segment's length.
pub fn pad_segments(
    rows: &[f32],
    width: usize,
    segments: &[Range<usize>],
    device: &Device,
) -> Result<(Tensor, Vec<usize>)> {
    let t = segments.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut packed = vec![0.0f32; segments.len() * t * width];
    for (b, segment) in segments.iter().enumerate() {
        let from = &rows[segment.start * width..segment.end * width];
        packed[b * t * width..b * t * width + from.len()].copy_from_slice(from);
    }
    let lengths = segments.iter().map(|s| s.len()).collect();
    Ok((Tensor::from_vec(packed, (segments.len(), t, width), device)?, lengths))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn small_spec() -> ContextSpec {
        ContextSpec {
            projection: 6,
            hidden: 5,
            char_dim: 4,
            char_filters: 3,
            char_width: 3,
            word_chars: 6,
            chars: "abcdeg.".into(),
        }
    }

    /// Every weight uniform in ±0.5 from `seed`.
    pub(crate) fn random_weights(
        spec: &ContextSpec,
        encoder_dim: usize,
        tags: usize,
        seed: u64,
    ) -> HashMap<&'static str, Vec<f32>> {
        let mut rng = Rng::new(seed);
        weight_shapes(spec, encoder_dim, tags)
            .into_iter()
            .map(|(name, shape)| (name, (0..shape.iter().product()).map(|_| rng.next_f32() - 0.5).collect()))
            .collect()
    }

    fn random_layer(spec: &ContextSpec, encoder_dim: usize, tags: usize) -> ContextLayer {
        let shapes: HashMap<_, _> = weight_shapes(spec, encoder_dim, tags).into_iter().collect();
        let weights = random_weights(spec, encoder_dim, tags, 5)
            .into_iter()
            .map(|(name, values)| (name, Tensor::from_vec(values, shapes[name].clone(), &Device::Cpu).unwrap()))
            .collect();
        ContextLayer::new(spec.clone(), weights).unwrap()
    }

    /// A sentence's scores are the same alone and padded in a batch beside a longer one:
    /// both LSTM directions start at its words, never at padding.
    #[test]
    fn a_sentences_scores_do_not_depend_on_its_batch() {
        let (dim, k) = (7, 3);
        let layer = random_layer(&small_spec(), dim, k);
        let sentences: [Vec<String>; 2] = [
            ["ab", "cde", "."].map(String::from).to_vec(),
            ["gab", "Zzz", "abcdefgabc", "a", "b"].map(String::from).to_vec(),
        ];
        let mut rng = Rng::new(9);
        let features: Vec<Vec<f32>> =
            sentences.iter().map(|s| (0..s.len() * dim).map(|_| rng.next_f32()).collect()).collect();
        let run = |which: &[usize]| -> Vec<Vec<f32>> {
            let t = which.iter().map(|&i| sentences[i].len()).max().unwrap();
            let mut x = vec![0.0f32; which.len() * t * dim];
            for (b, &i) in which.iter().enumerate() {
                x[b * t * dim..b * t * dim + features[i].len()].copy_from_slice(&features[i]);
            }
            let inputs = layer.project(&Tensor::from_vec(x, (which.len(), t, dim), &Device::Cpu).unwrap()).unwrap();
            let chosen: Vec<&[String]> = which.iter().map(|&i| &sentences[i][..]).collect();
            let chars = layer.sentence_char_ids(&chosen, t, &Device::Cpu).unwrap();
            let lengths: Vec<usize> = chosen.iter().map(|s| s.len()).collect();
            unpadded(&layer.emissions(&inputs, &chars, &lengths, None).unwrap(), &lengths).unwrap()
        };
        let together = run(&[0, 1]);
        for (i, batched) in together.iter().enumerate() {
            let alone = run(&[i]).remove(0);
            for (a, b) in alone.iter().zip(batched) {
                assert!((a - b).abs() < 1e-5, "sentence {i}: {alone:?} vs {batched:?}");
            }
        }
    }

    #[test]
    fn long_words_keep_their_beginning_and_end_and_unknown_characters_have_their_id() {
        let layer = random_layer(&small_spec(), 2, 2);
        // 6 characters per word plus one slot of padding on each side.
        let ids = layer.char_ids(["abcdegab", "aZ"].into_iter(), &Device::Cpu).unwrap().to_vec2::<u32>().unwrap();
        // Ids after padding and unknown, in the order of `chars`: a=2 b=3 c=4 d=5 e=6 g=7.
        assert_eq!(ids[0], vec![PAD, 2, 3, 4, 7, 2, 3, PAD]);
        assert_eq!(ids[1], vec![PAD, 2, UNKNOWN, PAD, PAD, PAD, PAD, PAD]);
    }

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(String::from).collect()
    }

    #[test]
    fn documents_are_cut_after_sentence_ends() {
        let w = words("Das Gericht entschied . Die Klage ist abgewiesen ! Ende");
        assert_eq!(segments(&w), vec![0..4, 4..9, 9..10]);
        assert_eq!(segments(&[]), Vec::<Range<usize>>::new());
        let long: Vec<String> = (0..450).map(|i| format!("w{i}")).collect();
        assert_eq!(segments(&long), vec![0..200, 200..400, 400..450]);
    }

    #[test]
    fn reversal_reverses_each_sentence_and_keeps_padding() {
        let index = reversal_index(&[3, 1], 4, &Device::Cpu).unwrap().to_vec1::<u32>().unwrap();
        assert_eq!(index, vec![2, 1, 0, 3, 4, 5, 6, 7]);
    }
}
