//! A Unigram model (SentencePiece's, as `tokenizers` runs it) in a few flat arrays.
//!
//! `tokenizers`' own Unigram keeps its vocabulary in a trie of one hash map per node:
//! for e5's 250,002 pieces, 782,760 nodes and about 300 MB, more than the rest of the
//! pipeline together. Here the pieces are one byte buffer in id order, and the trie is
//! flat: each node's children lie side by side, found by their byte in a short
//! contiguous run (about 15 MB in all for e5, at the crate's speed). Everything else is
//! `tokenizers`' own: normalizer, pre-tokenizer, post-processor and offsets stay the
//! crate's, which calls this model through its `Model` trait. The search and the Viterbi
//! pass follow `tokenizers::models::unigram::Unigram` step by step (tie-breaking,
//! unknown-character penalty, fusing of unknown runs, byte fallback), so that ids and
//! offsets are the same; a test holds them to the crate's on every shared dataset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokenizers::models::TrainerWrapper;
use tokenizers::{Model, Token};

/// The score below the lowest piece's that an unknown character gets (the crate's).
const UNKNOWN_PENALTY: f64 = 10.0;

#[derive(Clone, Debug)]
pub struct CompactUnigram {
    /// Every piece's bytes, in id order.
    bytes: Vec<u8>,
    /// Piece `id` is `bytes[starts[id]..starts[id + 1]]`.
    starts: Vec<u32>,
    scores: Vec<f64>,
    trie: FlatTrie,
    min_score: f64,
    unk_id: Option<u32>,
    byte_fallback: bool,
}

/// A byte trie in flat arrays. Node 0 is the root; the children of node `n` are nodes
/// `first_child[n]..first_child[n] + child_count[n]`, in byte order, and `byte[c]` is
/// the byte that leads to child `c`. `piece[n]` is the id of the piece spelled by the
/// path to `n` (of pieces spelled alike, the last id: the one `tokenizers` maps the
/// spelling to), or [`NO_PIECE`].
#[derive(Clone, Debug, Default)]
struct FlatTrie {
    first_child: Vec<u32>,
    child_count: Vec<u16>,
    byte: Vec<u8>,
    piece: Vec<u32>,
}

const NO_PIECE: u32 = u32::MAX;

impl FlatTrie {
    /// The trie of `pieces` (indexed by id), built breadth first so that each node's
    /// children are contiguous.
    fn build(pieces: &[&[u8]]) -> Self {
        let mut order: Vec<u32> = (0..pieces.len() as u32).collect();
        // Stable: pieces spelled alike stay in id order, so the last one wins below.
        order.sort_by(|&a, &b| pieces[a as usize].cmp(pieces[b as usize]));
        let mut trie = FlatTrie { first_child: vec![0], child_count: vec![0], byte: vec![0], piece: vec![NO_PIECE] };
        // Each queued node with its depth and the range of `order` below it.
        let mut queue = std::collections::VecDeque::from([(0usize, 0usize, 0usize, order.len())]);
        while let Some((node, depth, mut low, high)) = queue.pop_front() {
            while low < high && pieces[order[low] as usize].len() == depth {
                trie.piece[node] = order[low];
                low += 1;
            }
            trie.first_child[node] = trie.byte.len() as u32;
            while low < high {
                let byte = pieces[order[low] as usize][depth];
                let end = low + order[low..high].partition_point(|&id| pieces[id as usize][depth] == byte);
                let child = trie.byte.len();
                trie.first_child.push(0);
                trie.child_count.push(0);
                trie.byte.push(byte);
                trie.piece.push(NO_PIECE);
                trie.child_count[node] += 1;
                queue.push_back((child, depth + 1, low, end));
                low = end;
            }
        }
        trie
    }

    fn child(&self, node: usize, byte: u8) -> Option<usize> {
        let first = self.first_child[node] as usize;
        let bytes = &self.byte[first..first + self.child_count[node] as usize];
        bytes.binary_search(&byte).ok().map(|i| first + i)
    }

    /// The id of the piece spelled `text`.
    fn find(&self, text: &[u8]) -> Option<u32> {
        let mut node = 0;
        for &byte in text {
            node = self.child(node, byte)?;
        }
        Some(self.piece[node]).filter(|&id| id != NO_PIECE)
    }

    /// Calls `found(length, id)` for every piece that `text` starts with, shortest first
    /// (the order of the crate's trie search; an empty piece is never found).
    fn prefixes(&self, text: &[u8], mut found: impl FnMut(usize, u32)) {
        let mut node = 0;
        for (depth, &byte) in text.iter().enumerate() {
            let Some(child) = self.child(node, byte) else { return };
            node = child;
            if self.piece[node] != NO_PIECE {
                found(depth + 1, self.piece[node]);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnigramError {
    #[error("the Unigram vocabulary is empty")]
    EmptyVocabulary,
    #[error("the Unigram unk_id {0} is not in the vocabulary")]
    UnknownIdOutside(usize),
    #[error("the Unigram vocabulary has more pieces or bytes than 32-bit offsets hold")]
    TooLarge,
    #[error("an unknown character, and the Unigram model has no unk_id")]
    MissingUnkId,
    #[error("the compact Unigram model is for reading only; save the tokenizer.json it was read from")]
    NotSaved,
}

impl CompactUnigram {
    pub fn new(vocab: Vec<(String, f64)>, unk_id: Option<usize>, byte_fallback: bool) -> Result<Self, UnigramError> {
        if let Some(unk) = unk_id {
            if vocab.is_empty() {
                return Err(UnigramError::EmptyVocabulary);
            }
            if unk >= vocab.len() {
                return Err(UnigramError::UnknownIdOutside(unk));
            }
        }
        let total: usize = vocab.iter().map(|(p, _)| p.len()).sum();
        if vocab.len() >= u32::MAX as usize || total >= u32::MAX as usize {
            return Err(UnigramError::TooLarge);
        }
        let mut model = Self {
            bytes: Vec::with_capacity(total),
            starts: Vec::with_capacity(vocab.len() + 1),
            scores: Vec::with_capacity(vocab.len()),
            trie: FlatTrie::default(),
            min_score: f64::INFINITY,
            unk_id: unk_id.map(|u| u as u32),
            byte_fallback,
        };
        model.starts.push(0);
        for (piece, score) in vocab {
            model.bytes.extend_from_slice(piece.as_bytes());
            model.starts.push(model.bytes.len() as u32);
            model.scores.push(score);
            if score < model.min_score {
                model.min_score = score;
            }
        }
        let pieces: Vec<&[u8]> = (0..model.len() as u32).map(|id| model.piece(id)).collect();
        model.trie = FlatTrie::build(&pieces);
        model.trie.first_child.shrink_to_fit();
        model.trie.child_count.shrink_to_fit();
        model.trie.byte.shrink_to_fit();
        model.trie.piece.shrink_to_fit();
        Ok(model)
    }

    fn piece(&self, id: u32) -> &[u8] {
        &self.bytes[self.starts[id as usize] as usize..self.starts[id as usize + 1] as usize]
    }

    fn len(&self) -> usize {
        self.scores.len()
    }

    /// The id a spelling maps to.
    fn lookup(&self, piece: &[u8]) -> Option<u32> {
        self.trie.find(piece)
    }

    /// The best segmentation of `sentence` as byte ranges, each with the id that the
    /// Viterbi pass chose (the unknown id for runs of unknown characters, fused).
    fn segment(&self, sentence: &str) -> Result<Vec<(usize, usize, u32)>, UnigramError> {
        #[derive(Clone, Copy)]
        struct BestPath {
            id: u32,
            score: f64,
            starts_at: Option<usize>,
        }
        let size = sentence.len();
        let bytes = sentence.as_bytes();
        let unknown_score = self.min_score - UNKNOWN_PENALTY;
        let mut best = vec![BestPath { id: 0, score: 0.0, starts_at: None }; size + 1];
        let mut start = 0;
        while start < size {
            let score_here = best[start].score;
            let char_len = sentence[start..].chars().next().expect("a character").len_utf8();
            let mut has_single_char = false;
            self.trie.prefixes(&bytes[start..], |length, id| {
                let target = &mut best[start + length];
                let candidate = self.scores[id as usize] + score_here;
                if target.starts_at.is_none() || candidate > target.score {
                    *target = BestPath { id, score: candidate, starts_at: Some(start) };
                }
                has_single_char |= length == char_len;
            });
            if !has_single_char {
                let target = &mut best[start + char_len];
                let candidate = unknown_score + score_here;
                if target.starts_at.is_none() || candidate > target.score {
                    let id = self.unk_id.ok_or(UnigramError::MissingUnkId)?;
                    *target = BestPath { id, score: candidate, starts_at: Some(start) };
                }
            }
            start += char_len;
        }
        // Back from the end; neighbouring unknown pieces become one.
        let mut pieces = Vec::new();
        let mut end = size;
        while end > 0 {
            let node = best[end];
            let begin = node.starts_at.expect("every position is reached");
            match pieces.last_mut() {
                Some((last_begin, _, last_id)) if Some(node.id) == self.unk_id && Some(*last_id) == self.unk_id => {
                    *last_begin = begin;
                }
                _ => pieces.push((begin, end, node.id)),
            }
            end = begin;
        }
        pieces.reverse();
        Ok(pieces)
    }
}

impl Model for CompactUnigram {
    type Trainer = TrainerWrapper;

    fn tokenize(&self, sentence: &str) -> tokenizers::Result<Vec<Token>> {
        let mut tokens = Vec::new();
        for (start, end, chosen) in self.segment(sentence)? {
            let piece = &sentence[start..end];
            // As the crate does: every piece is looked up by its spelling (a fused run of
            // unknown characters may spell a known piece).
            let id = if Some(chosen) == self.unk_id { self.lookup(piece.as_bytes()) } else { Some(chosen) };
            let id = match id {
                Some(id) => id,
                None => {
                    if self.byte_fallback {
                        let bytes: Option<Vec<Token>> = piece
                            .bytes()
                            .map(|b| {
                                let name = format!("<0x{b:02X}>");
                                self.lookup(name.as_bytes()).map(|id| Token::new(id, name, (start, end)))
                            })
                            .collect();
                        if let Some(bytes) = bytes {
                            tokens.extend(bytes);
                            continue;
                        }
                    }
                    self.unk_id.ok_or(UnigramError::MissingUnkId)?
                }
            };
            tokens.push(Token::new(id, piece.to_string(), (start, end)));
        }
        Ok(tokens)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.lookup(token.as_bytes())
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        ((id as usize) < self.len()).then(|| String::from_utf8_lossy(self.piece(id)).into_owned())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        // In id order, so that of pieces spelled alike the last id stays, as in the crate.
        (0..self.len() as u32).map(|id| (String::from_utf8_lossy(self.piece(id)).into_owned(), id)).collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.len()
    }

    fn save(&self, _folder: &Path, _prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        Err(Box::new(UnigramError::NotSaved))
    }

    fn get_trainer(&self) -> TrainerWrapper {
        TrainerWrapper::UnigramTrainer(Default::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(pieces: &[(&str, f64)], unk: Option<usize>) -> CompactUnigram {
        CompactUnigram::new(pieces.iter().map(|(p, s)| (p.to_string(), *s)).collect(), unk, false).unwrap()
    }

    fn spelled(model: &CompactUnigram, text: &str) -> Vec<String> {
        model.tokenize(text).unwrap().into_iter().map(|t| t.value).collect()
    }

    /// The crate's own documentation example, and its unknown-run fusing.
    #[test]
    fn segments_as_the_crate_documents() {
        let m = model(
            &[
                ("<unk>", 0.0),
                ("a", 0.0),
                ("b", 0.0),
                ("c", 0.0),
                ("d", 0.0),
                ("cd", 1.0),
                ("ab", 2.0),
                ("abc", 5.0),
                ("abcd", 10.0),
            ],
            Some(0),
        );
        assert_eq!(spelled(&m, "abcdacdxx"), ["abcd", "a", "cd", "xx"]);
        let tokens = m.tokenize("abcdacdxx").unwrap();
        assert_eq!(tokens.last().unwrap().id, 0);
        assert_eq!(tokens.last().unwrap().offsets, (7, 9));
        assert!(m.tokenize("").unwrap().is_empty());
    }

    #[test]
    fn prefixes_come_shortest_first_and_skip_the_empty_piece() {
        let m = model(&[("", 0.0), ("ab", 0.0), ("a", 0.0), ("abc", 0.0), ("b", 0.0), ("abd", 0.0)], None);
        let mut found = Vec::new();
        m.trie.prefixes(b"abcx", |len, id| found.push((len, id)));
        assert_eq!(found, [(1, 2), (2, 1), (3, 3)]);
        assert_eq!(m.token_to_id("abd"), Some(5));
        assert_eq!(m.token_to_id("abx"), None);
        assert!(matches!(m.segment("z"), Err(UnigramError::MissingUnkId)));
    }

    #[test]
    fn pieces_spelled_alike_map_to_the_last_id() {
        let m = model(&[("<unk>", 0.0), ("x", -1.0), ("x", -2.0)], Some(0));
        assert_eq!(m.token_to_id("x"), Some(2));
        assert_eq!(m.tokenize("x").unwrap()[0].id, 2);
    }
}
