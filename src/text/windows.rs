//! A document is tokenized once, without special tokens; windows of the model's maximum
//! length then cut its content tokens, overlapping by `stride` tokens, and each window is
//! framed by the special tokens (and the model's input prefix, such as e5's `query:`).
//!
//! Offsets are counted in Unicode scalar values (Rust `char`s, Python `str` indices)
//! of the original text, so `text.chars().skip(start).take(end - start)` is the span.

use std::ops::Range;

use anyhow::{anyhow, bail, Result};

use super::tokenizer::Tokenizer;

/// The content tokens of one document.
#[derive(Clone, Debug, Default)]
pub struct DocTokens {
    pub ids: Vec<u32>,
    /// Character offsets `(start, end)` into the original text.
    pub offsets: Vec<(usize, usize)>,
    /// The word each token belongs to, as the tokenizer's pre-tokenizer splits words.
    pub word_ids: Vec<Option<u32>>,
}

impl DocTokens {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct WindowOptions {
    /// Tokens shared by two neighbouring windows.
    pub stride: usize,
    /// A document needing more windows than this is refused (an error record).
    pub max_windows: usize,
    /// Keep only the first window of each document (truncation, as most Python
    /// pipelines do by default).
    pub truncate: bool,
}

/// One window: a range of a document's content tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub content: Range<usize>,
}

/// Tokenizer plus the frame that every window gets.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    /// `[CLS]`/`<s>`, then the input prefix's tokens.
    leading: Vec<u32>,
    /// `[SEP]`/`</s>`.
    trailing: Vec<u32>,
    /// Content tokens that fit in one window.
    capacity: usize,
    /// The unknown token's id and the byte-fallback tokens' (`<0x41>`), sorted: tokens
    /// that say the text has characters the vocabulary lacks.
    unknown_ids: Vec<u32>,
}

impl TextEncoder {
    /// `max_len` is the model's longest sequence, special tokens included.
    pub fn new(mut tokenizer: Tokenizer, input_prefix: &str, max_len: usize) -> Result<Self> {
        // Fine-tuned checkpoints often ship a tokenizer.json with truncation or padding
        // switched on; windows are cut here instead.
        tokenizer.with_truncation(None).map_err(|e| anyhow!("tokenizer: {e}"))?;
        tokenizer.with_padding(None);
        let (leading_special, trailing) = special_frame(&tokenizer)?;
        let mut leading = leading_special;
        let prefix = input_prefix.trim_end();
        if !prefix.is_empty() {
            let encoding = tokenizer.encode(prefix, false).map_err(|e| anyhow!("tokenizing the input prefix: {e}"))?;
            leading.extend_from_slice(encoding.get_ids());
        }
        let frame = leading.len() + trailing.len();
        if max_len <= frame + 1 {
            bail!("windows of {max_len} tokens leave no room for text after {frame} special and prefix tokens");
        }
        let unknown_ids = unknown_ids(&tokenizer);
        Ok(Self { tokenizer, leading, trailing, capacity: max_len - frame, unknown_ids })
    }

    /// Content tokens that fit in one window.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Tokens before the content of every window.
    pub fn leading_len(&self) -> usize {
        self.leading.len()
    }

    /// Tokens after the content of every window.
    pub fn trailing_len(&self) -> usize {
        self.trailing.len()
    }

    pub fn tokenize(&self, text: &str) -> Result<DocTokens> {
        let encoding = self.tokenizer.encode_char_offsets(text, false).map_err(|e| anyhow!("tokenizer: {e}"))?;
        Ok(DocTokens {
            ids: encoding.get_ids().to_vec(),
            offsets: encoding.get_offsets().to_vec(),
            word_ids: encoding.get_word_ids().to_vec(),
        })
    }

    /// How many of `tokens` are the unknown token or a byte fallback.
    pub fn unknown_tokens(&self, tokens: &DocTokens) -> usize {
        tokens.ids.iter().filter(|id| self.unknown_ids.binary_search(id).is_ok()).count()
    }

    /// The overlap of neighbouring windows: `requested`, or a quarter of a window.
    pub fn stride(&self, requested: Option<usize>) -> Result<usize> {
        match requested {
            None => Ok(self.capacity / 4),
            Some(stride) if stride < self.capacity => Ok(stride),
            Some(stride) => bail!(
                "a stride of {stride} tokens is not less than the {} text tokens a window holds: give a smaller --stride",
                self.capacity
            ),
        }
    }

    /// Windows covering all `n` content tokens, each overlapping the previous one by
    /// `stride` tokens.
    pub fn windows(&self, n: usize, options: &WindowOptions) -> Result<Vec<Window>> {
        let step = self.capacity - options.stride.min(self.capacity - 1);
        let mut windows = Vec::new();
        let mut start = 0;
        loop {
            let end = (start + self.capacity).min(n);
            windows.push(Window { content: start..end });
            if end >= n || options.truncate {
                break;
            }
            if windows.len() >= options.max_windows {
                bail!(
                    "document too long: more than {} windows of {} tokens (raise --max-windows)",
                    options.max_windows,
                    self.capacity
                );
            }
            start += step;
        }
        Ok(windows)
    }

    /// The model input of a window: frame and content token ids.
    pub fn window_ids(&self, tokens: &DocTokens, window: &Window) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.leading.len() + window.content.len() + self.trailing.len());
        ids.extend_from_slice(&self.leading);
        ids.extend_from_slice(&tokens.ids[window.content.clone()]);
        ids.extend_from_slice(&self.trailing);
        ids
    }
}

/// The special tokens the tokenizer's post-processor puts before and after a single text.
/// The ids of the unknown token (as the usual vocabularies spell it) and of the byte
/// fallback pieces, where the vocabulary has them.
fn unknown_ids(tokenizer: &Tokenizer) -> Vec<u32> {
    let bytes = (0..=255u8).map(|b| format!("<0x{b:02X}>"));
    let names = ["<unk>", "[UNK]", "<UNK>"].into_iter().map(String::from).chain(bytes);
    let mut ids: Vec<u32> = names.filter_map(|name| tokenizer.token_to_id(&name)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn special_frame(tokenizer: &Tokenizer) -> Result<(Vec<u32>, Vec<u32>)> {
    let encoding = tokenizer.encode("a", true).map_err(|e| anyhow!("tokenizer: {e}"))?;
    let mask = encoding.get_special_tokens_mask();
    let ids = encoding.get_ids();
    let first = mask.iter().position(|&m| m == 0).ok_or_else(|| anyhow!("tokenizer produced no token for a text"))?;
    let last = mask.iter().rposition(|&m| m == 0).unwrap_or(first);
    Ok((ids[..first].to_vec(), ids[last + 1..].to_vec()))
}

/// For each content token, the window whose prediction it takes: the window in which it
/// lies farthest from an edge (the earlier window on ties), so that every token is read
/// with as much context as the windows give.
pub fn token_owners(windows: &[Window], n: usize) -> Vec<(usize, usize)> {
    // (window index, distance to the nearest edge)
    let mut owners: Vec<(usize, usize)> = vec![(0, 0); n];
    let mut seen = vec![false; n];
    for (w, window) in windows.iter().enumerate() {
        for j in window.content.clone() {
            let centrality = (j - window.content.start).min(window.content.end - 1 - j);
            if !seen[j] || centrality > owners[j].1 {
                owners[j] = (w, centrality);
                seen[j] = true;
            }
        }
    }
    owners
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
    fn owners_prefer_the_window_where_a_token_is_central() {
        let windows = vec![Window { content: 0..6 }, Window { content: 4..10 }];
        let owners = token_owners(&windows, 10);
        let by_window: Vec<usize> = owners.iter().map(|o| o.0).collect();
        // Token 4: distance 1 in window 0, 0 in window 1; token 5: 0 vs 1.
        assert_eq!(by_window, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    }

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
