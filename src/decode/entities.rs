//! Token tags to entity spans, following transformers' `TokenClassificationPipeline`
//! (`aggregate_words`, `group_entities`) so that results match what data scientists
//! see in Python:
//! - `simple`: each token gets its best tag; neighbouring tokens with the same tag type
//!   are grouped, where a `B-` tag starts a new entity.
//! - `first`, `average`, `max`: tokens are first joined into words (the tag of the word's
//!   first token, of the tag scores averaged over its tokens, or of its most confident
//!   token), then words are grouped as above. A word never ends up split between two entities.
//!
//! An `I-` tag that follows `O` or another type opens a new entity (as transformers does);
//! an entity's score is the mean of its tokens' or words' scores.

use serde::{Deserialize, Serialize};

use super::iob2::lenient_split;
use super::scores::argmax;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Aggregation {
    Simple,
    First,
    Average,
    Max,
}

/// One content token: its tag probabilities, character span and word.
#[derive(Clone, Copy, Debug)]
pub struct TokenScores<'a> {
    pub probs: &'a [f32],
    pub start: usize,
    pub end: usize,
    pub word: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub text: String,
    pub label: String,
    /// Character (Unicode scalar value) offsets into the original text, end exclusive.
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

/// A tagged unit (token or word) before grouping.
struct Tagged {
    tag: usize,
    score: f32,
    start: usize,
    end: usize,
}

/// Entity spans in text order, with `text` cut from `text` by character offsets.
pub fn decode_entities(text: &str, tokens: &[TokenScores], labels: &[String], strategy: Aggregation) -> Vec<Entity> {
    let units: Vec<Tagged> = match strategy {
        Aggregation::Simple => tokens.iter().map(|t| tag_of(t.probs, t.start, t.end)).collect(),
        _ => words(tokens).into_iter().map(|word| aggregate_word(word, strategy)).collect(),
    };
    let spans = group(&units, labels);
    with_text(text, spans)
}

fn tag_of(probs: &[f32], start: usize, end: usize) -> Tagged {
    let tag = argmax(probs);
    Tagged { tag, score: probs[tag], start, end }
}

/// Tokens grouped into words: a token continues the previous word when both carry the
/// same word id from the tokenizer.
fn words<'t, 'a>(tokens: &'t [TokenScores<'a>]) -> Vec<&'t [TokenScores<'a>]> {
    let mut words = Vec::new();
    let mut start = 0;
    for i in 1..=tokens.len() {
        let continues = i < tokens.len() && tokens[i].word.is_some() && tokens[i].word == tokens[i - 1].word;
        if !continues {
            words.push(&tokens[start..i]);
            start = i;
        }
    }
    words
}

fn aggregate_word(word: &[TokenScores], strategy: Aggregation) -> Tagged {
    let (start, end) = (word[0].start, word[word.len() - 1].end);
    match strategy {
        Aggregation::First | Aggregation::Simple => tag_of(word[0].probs, start, end),
        Aggregation::Max => {
            let mut best = &word[0];
            for token in &word[1..] {
                let token_max = token.probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let best_max = best.probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if token_max > best_max {
                    best = token;
                }
            }
            tag_of(best.probs, start, end)
        }
        Aggregation::Average => {
            let mut mean = vec![0.0f32; word[0].probs.len()];
            for token in word {
                for (m, &p) in mean.iter_mut().zip(token.probs) {
                    *m += p;
                }
            }
            mean.iter_mut().for_each(|m| *m /= word.len() as f32);
            tag_of(&mean, start, end)
        }
    }
}

struct ScoredSpan {
    label: String,
    start: usize,
    end: usize,
    score: f32,
}

/// transformers' `group_entities`, then dropping the `O` groups.
fn group(units: &[Tagged], labels: &[String]) -> Vec<ScoredSpan> {
    let mut spans = Vec::new();
    let mut current: Vec<&Tagged> = Vec::new();
    let mut flush = |current: &mut Vec<&Tagged>| {
        if let Some(first) = current.first() {
            let (_, kind) = lenient_split(&labels[first.tag]);
            if kind != "O" {
                let score = current.iter().map(|u| u.score).sum::<f32>() / current.len() as f32;
                spans.push(ScoredSpan {
                    label: kind.to_string(),
                    start: first.start,
                    end: current[current.len() - 1].end,
                    score,
                });
            }
        }
        current.clear();
    };
    for unit in units {
        if let Some(last) = current.last() {
            let (begins, kind) = lenient_split(&labels[unit.tag]);
            let (_, last_kind) = lenient_split(&labels[last.tag]);
            if kind != last_kind || begins {
                flush(&mut current);
            }
        }
        current.push(unit);
    }
    flush(&mut current);
    spans
}

/// Cuts each span's text (spans in text order) and trims whitespace at its edges,
/// which SentencePiece tokens can carry.
fn with_text(text: &str, spans: Vec<ScoredSpan>) -> Vec<Entity> {
    let mut cursor = CharCursor { text, chars: 0, bytes: 0 };
    let mut out = Vec::with_capacity(spans.len());
    for span in spans {
        let from = cursor.byte_offset(span.start);
        let to = cursor.byte_offset(span.end);
        let raw = &text[from..to];
        let inner = raw.trim();
        if inner.is_empty() {
            continue;
        }
        let leading_chars = raw[..raw.len() - raw.trim_start().len()].chars().count();
        let start = span.start + leading_chars;
        let end = start + inner.chars().count();
        out.push(Entity { text: inner.to_string(), label: span.label, start, end, score: span.score });
    }
    out
}

/// Character offset to byte offset, walking forward through the text once for
/// offsets that come in increasing order.
struct CharCursor<'a> {
    text: &'a str,
    chars: usize,
    bytes: usize,
}

impl CharCursor<'_> {
    fn byte_offset(&mut self, char_offset: usize) -> usize {
        if char_offset < self.chars {
            self.chars = 0;
            self.bytes = 0;
        }
        while self.chars < char_offset {
            let Some(c) = self.text[self.bytes..].chars().next() else { break };
            self.bytes += c.len_utf8();
            self.chars += 1;
        }
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"].map(String::from).to_vec()
    }

    fn one_hot(tag: usize, p: f32) -> Vec<f32> {
        let mut v = vec![(1.0 - p) / 4.0; 5];
        v[tag] = p;
        v
    }

    #[test]
    fn simple_groups_b_i_and_splits_on_b() {
        let text = "Anna Berg traf Carl in Köln";
        let probs =
            [one_hot(1, 0.9), one_hot(2, 0.8), one_hot(0, 0.9), one_hot(1, 0.7), one_hot(0, 0.9), one_hot(3, 0.6)];
        let spans = [(0, 4), (5, 9), (10, 14), (15, 19), (20, 22), (23, 27)];
        let tokens: Vec<TokenScores> = probs
            .iter()
            .zip(spans)
            .enumerate()
            .map(|(i, (p, (s, e)))| TokenScores { probs: p, start: s, end: e, word: Some(i as u32) })
            .collect();
        let entities = decode_entities(text, &tokens, &labels(), Aggregation::Simple);
        let found: Vec<(&str, &str)> = entities.iter().map(|e| (e.text.as_str(), e.label.as_str())).collect();
        assert_eq!(found, vec![("Anna Berg", "PER"), ("Carl", "PER"), ("Köln", "LOC")]);
        assert!((entities[0].score - 0.85).abs() < 1e-6);
        assert_eq!((entities[2].start, entities[2].end), (23, 27));
    }

    #[test]
    fn i_without_b_opens_an_entity_and_b_splits() {
        let text = "x y z";
        let probs = [one_hot(0, 0.9), one_hot(2, 0.9), one_hot(1, 0.9)];
        let tokens: Vec<TokenScores> = probs
            .iter()
            .enumerate()
            .map(|(i, p)| TokenScores { probs: p, start: 2 * i, end: 2 * i + 1, word: Some(i as u32) })
            .collect();
        let entities = decode_entities(text, &tokens, &labels(), Aggregation::Simple);
        assert_eq!(entities.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(), vec!["y", "z"]);
    }

    #[test]
    fn word_strategies_differ_on_subwords() {
        // One word "Müllerstraße" in three tokens: LOC, PER (confident), PER.
        let text = "Müllerstraße";
        let probs = [one_hot(3, 0.5), one_hot(2, 0.95), one_hot(2, 0.6)];
        let spans = [(0, 3), (3, 6), (6, 12)];
        let tokens: Vec<TokenScores> = probs
            .iter()
            .zip(spans)
            .map(|(p, (s, e))| TokenScores { probs: p, start: s, end: e, word: Some(0) })
            .collect();
        let label_of =
            |s| decode_entities(text, &tokens, &labels(), s).iter().map(|e| e.label.clone()).collect::<Vec<_>>();
        assert_eq!(label_of(Aggregation::First), vec!["LOC"]);
        assert_eq!(label_of(Aggregation::Max), vec!["PER"]);
        assert_eq!(label_of(Aggregation::Average), vec!["PER"]);
        // Simple: LOC, then I-PER opens a PER entity inside the word.
        assert_eq!(label_of(Aggregation::Simple), vec!["LOC", "PER"]);
    }

    #[test]
    fn offsets_count_characters_and_trim_spaces() {
        let text = "Straße § 3 😀 Köln";
        let probs = [one_hot(3, 0.9)];
        // A span that starts on the space before "Köln" (as a bare "▁" token can).
        let tokens = [TokenScores { probs: &probs[0], start: 12, end: 17, word: Some(0) }];
        let entities = decode_entities(text, &tokens, &labels(), Aggregation::First);
        assert_eq!(entities[0].text, "Köln");
        assert_eq!((entities[0].start, entities[0].end), (13, 17));
        let sliced: String = text.chars().skip(13).take(4).collect();
        assert_eq!(sliced, "Köln");
    }
}
