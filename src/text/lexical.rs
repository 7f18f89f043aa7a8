//! Lexical features, hashed into a fixed number of buckets so that a head needs no
//! vocabulary file: word n-grams of a document (TF-IDF) for classification, and the
//! pieces the tagger's word features (`word_features`) are made of. Court names,
//! file-number patterns like `8 AZR` and `§` carry much of the signal in legal text,
//! and the encoder's subwords blur them.

/// FNV-1a: stable across machines and Rust versions (unlike `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The bucket of a feature made of `parts` (a kind tag first, then values).
pub fn bucket(parts: &[&[u8]], buckets: usize) -> u32 {
    (fnv1a(parts) % buckets as u64) as u32
}

/// Lower-cased word tokens of a document for n-gram counting: runs of letters and
/// digits, and every other visible character (`§`, `/`, `-`) on its own; each with the
/// characters `start..end` of `text` it was read from.
pub fn document_tokens(text: &str) -> Vec<(String, usize, usize)> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    let mut chars = 0;
    for (i, c) in text.chars().enumerate() {
        chars = i + 1;
        if c.is_alphanumeric() {
            if current.is_empty() {
                start = i;
            }
            current.extend(c.to_lowercase());
            continue;
        }
        if !current.is_empty() {
            tokens.push((std::mem::take(&mut current), start, i));
        }
        if !c.is_whitespace() && !c.is_control() {
            tokens.push((c.to_string(), i, i + 1));
        }
    }
    if !current.is_empty() {
        tokens.push((current, start, chars));
    }
    tokens
}

/// The words of `text` (split at whitespace) with the character offset each starts at.
fn words_with_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    let mut rest = text;
    std::iter::from_fn(move || {
        let skipped = rest.find(|c: char| !c.is_whitespace())?;
        offset += rest[..skipped].chars().count();
        rest = &rest[skipped..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        let start = offset;
        offset += word.chars().count();
        rest = tail;
        Some((start, word))
    })
}

/// Which lexical features a document classifier reads, recorded in its `head.json`.
/// Heads written before character n-grams existed have none (word n-grams only, over
/// every bucket, every bucket counted); see [`LexicalScheme::WORDS_ONLY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LexicalScheme {
    /// Shortest and longest character n-grams taken inside each word padded with a
    /// space, as scikit-learn's `char_wb` analyzer takes them; `None`: none. They catch
    /// the parts of German compounds (`Aufenthalts|erlaubnis`) that words miss.
    pub char_ngrams: Option<(usize, usize)>,
    /// A term must occur in this many training documents to be a feature.
    pub min_df: usize,
    /// A padded word no longer than n counts once, at the first such n, as
    /// scikit-learn counts it. Heads written before December 2026 (absent: false) count
    /// it once for each such n, and keep doing so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub short_words_once: bool,
}

impl LexicalScheme {
    /// Word uni- and bigrams only (the scheme of heads without a recorded one).
    pub const WORDS_ONLY: LexicalScheme = LexicalScheme { char_ngrams: None, min_df: 1, short_words_once: false };
    /// What `docclass train` fits: word uni- and bigrams beside character 2- to 5-grams.
    pub const WORDS_AND_CHARS: LexicalScheme =
        LexicalScheme { char_ngrams: Some((2, 5)), min_df: 2, short_words_once: true };

    /// Where the word block ends: with character n-grams, words take the first half of
    /// the buckets and character n-grams the second, so that each block is normalised
    /// on its own.
    pub fn word_buckets(&self, buckets: usize) -> usize {
        if self.char_ngrams.is_some() {
            buckets / 2
        } else {
            buckets
        }
    }

    fn blocks(&self) -> usize {
        1 + usize::from(self.char_ngrams.is_some())
    }

    /// Counts of the document's terms, by bucket, sorted by bucket.
    pub fn term_counts(&self, text: &str, buckets: usize) -> Vec<(u32, f32)> {
        let mut ids: Vec<u32> = Vec::new();
        self.visit_terms(text, buckets, |bucket, _, _| ids.push(bucket));
        ids.sort_unstable();
        let mut counts: Vec<(u32, f32)> = Vec::new();
        for id in ids {
            match counts.last_mut() {
                Some((last, n)) if *last == id => *n += 1.0,
                _ => counts.push((id, 1.0)),
            }
        }
        counts
    }

    /// Calls `visit(bucket, start, end)` for every term of the document, with the
    /// characters `start..end` of `text` it was read from: word uni- and bigrams, then
    /// character n-grams (whose padding spaces lie outside the range).
    pub fn visit_terms(&self, text: &str, buckets: usize, mut visit: impl FnMut(u32, usize, usize)) {
        let word_buckets = self.word_buckets(buckets);
        let tokens = document_tokens(text);
        for (i, (token, start, end)) in tokens.iter().enumerate() {
            visit(bucket(&[b"w", token.as_bytes()], word_buckets), *start, *end);
            if let Some((next, _, next_end)) = tokens.get(i + 1) {
                visit(bucket(&[b"b", token.as_bytes(), next.as_bytes()], word_buckets), *start, *next_end);
            }
        }
        let Some((shortest, longest)) = self.char_ngrams else { return };
        let char_buckets = buckets - word_buckets;
        let mut padded: Vec<char> = Vec::new();
        // The character of `text` each lower-cased character comes from (a few characters
        // lower-case to two).
        let mut origin: Vec<usize> = Vec::new();
        let mut utf8 = String::new();
        for (word_start, word) in words_with_offsets(text) {
            padded.clear();
            origin.clear();
            padded.push(' ');
            origin.push(usize::MAX);
            // The whole word lower-cased at once, as `str::to_lowercase` treats a final Σ.
            let lower_word = word.to_lowercase();
            let mut lower = lower_word.chars();
            for (k, c) in word.chars().enumerate() {
                for _ in 0..c.to_lowercase().count() {
                    padded.push(lower.next().expect("a word lower-cases character by character"));
                    origin.push(word_start + k);
                }
            }
            padded.push(' ');
            origin.push(usize::MAX);
            let last = padded.len() - 2;
            for n in shortest..=longest {
                // A padded word no longer than n gives itself (once, or once per such n).
                let whole = padded.len() <= n;
                let starts = if whole { 1 } else { padded.len() - n + 1 };
                for start in 0..starts {
                    let end = (start + n).min(padded.len());
                    utf8.clear();
                    utf8.extend(&padded[start..end]);
                    // The characters of the word inside the n-gram, without the pads.
                    let (first, final_char) = (start.max(1), (end - 1).min(last));
                    visit(
                        word_buckets as u32 + bucket(&[b"c", utf8.as_bytes()], char_buckets),
                        origin[first],
                        origin[final_char] + 1,
                    );
                }
                if whole && self.short_words_once {
                    break;
                }
            }
        }
    }

    /// TF-IDF with sublinear term frequency (1 + ln tf), as scikit-learn's
    /// `TfidfVectorizer(sublinear_tf=True)` computes it, each block L2-normalised and
    /// scaled by 1/√blocks so that the whole row has unit length. Terms whose IDF is 0
    /// (below the minimum document frequency, or never seen in training) are no features.
    pub fn tf_idf(&self, counts: &[(u32, f32)], idf: &[f32]) -> Vec<(u32, f32)> {
        let word_buckets = self.word_buckets(idf.len()) as u32;
        let mut weighted: Vec<(u32, f32)> = counts
            .iter()
            .filter(|&&(b, _)| idf[b as usize] > 0.0)
            .map(|&(b, n)| (b, (1.0 + n.ln()) * idf[b as usize]))
            .collect();
        let split = weighted.partition_point(|&(b, _)| b < word_buckets);
        let scale = 1.0 / (self.blocks() as f32).sqrt();
        let (words, chars) = weighted.split_at_mut(split);
        for block in [words, chars] {
            let norm = block.iter().map(|(_, w)| w * w).sum::<f32>().sqrt().max(1e-12);
            // Divided first: a head of one block gets exactly w / norm, as before blocks existed.
            block.iter_mut().for_each(|(_, w)| *w = *w / norm * scale);
        }
        weighted
    }

    /// Smoothed inverse document frequency per bucket, ln((1 + n) / (1 + df)) + 1, and 0
    /// for buckets in fewer than `min_df` documents.
    pub fn inverse_document_frequency<'a>(
        &self,
        documents: impl Iterator<Item = &'a [(u32, f32)]>,
        buckets: usize,
    ) -> Vec<f32> {
        let mut df = vec![0u32; buckets];
        let mut n = 0u32;
        for counts in documents {
            n += 1;
            for &(b, _) in counts {
                df[b as usize] += 1;
            }
        }
        let min_df = self.min_df.max(1) as u32;
        df.iter().map(|&d| if d < min_df { 0.0 } else { ((1.0 + n as f32) / (1.0 + d as f32)).ln() + 1.0 }).collect()
    }
}

/// A word's shape: upper → `X`, lower → `x`, digit → `d`, others kept; runs collapsed
/// to two (`Bundesgericht` → `Xxx`… → `Xxx`, `418/15` → `dd/dd`).
pub fn shape(word: &str) -> String {
    let mut out = String::new();
    let mut last = None;
    let mut run = 0;
    for c in word.chars() {
        let s = if c.is_uppercase() {
            'X'
        } else if c.is_lowercase() {
            'x'
        } else if c.is_ascii_digit() {
            'd'
        } else {
            c
        };
        if Some(s) == last {
            run += 1;
        } else {
            run = 1;
            last = Some(s);
        }
        if run <= 2 {
            out.push(s);
        }
    }
    out
}

pub(crate) fn affix(word: &str, n: usize, from_end: bool) -> String {
    let chars: Vec<char> = word.chars().collect();
    if from_end {
        chars[chars.len().saturating_sub(n)..].iter().collect()
    } else {
        chars[..n.min(chars.len())].iter().collect()
    }
}

/// Splits raw text into words as the LER corpus is tokenized: whitespace, then leading
/// and trailing punctuation split off character by character. A trailing period stays
/// on the word for ordinals (`27.`), Roman numerals (`II.`) and the abbreviations the
/// head learned (`Abs.`, `vgl.`). Returns character spans.
pub fn split_words(text: &str, abbreviations: &std::collections::HashSet<String>) -> Vec<(usize, usize)> {
    const LEADING: &[char] = &['(', '[', '{', '„', '"', '“', '‚', '\'', '»', '«', '<'];
    const TRAILING: &[char] =
        &[')', ']', '}', ',', ';', ':', '!', '?', '"', '“', '”', '\'', '‘', '’', '«', '»', '>', '.'];
    let chars: Vec<char> = text.chars().collect();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        let (mut a, mut b) = (start, i);
        while a < b && LEADING.contains(&chars[a]) {
            spans.push((a, a + 1));
            a += 1;
        }
        let mut trailing = Vec::new();
        while b > a && TRAILING.contains(&chars[b - 1]) {
            if chars[b - 1] == '.' && b - a > 1 {
                let candidate: String = chars[a..b].iter().collect();
                let stem = &candidate[..candidate.len() - 1];
                let ordinal = stem.chars().all(|c| c.is_ascii_digit());
                let roman = stem.chars().all(|c| "IVXLC".contains(c));
                if ordinal || roman || abbreviations.contains(&candidate) {
                    break;
                }
            }
            trailing.push((b - 1, b));
            b -= 1;
        }
        if a < b {
            spans.push((a, b));
        }
        spans.extend(trailing.into_iter().rev());
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_collapse_runs() {
        assert_eq!(shape("Bundesarbeitsgericht"), "Xxx");
        assert_eq!(shape("418/15"), "dd/dd");
        assert_eq!(shape("BVerwG"), "XXxxX");
    }

    #[test]
    fn words_split_like_the_ler_corpus() {
        let abbreviations = ["Abs.".to_string(), "vgl.".to_string()].into_iter().collect();
        let text = "(vgl. § 1 Abs. 2 BGB). Am 27. Mai „Haus“.";
        let words: Vec<String> = split_words(text, &abbreviations)
            .into_iter()
            .map(|(a, b)| text.chars().skip(a).take(b - a).collect())
            .collect();
        assert_eq!(
            words,
            vec!["(", "vgl.", "§", "1", "Abs.", "2", "BGB", ")", ".", "Am", "27.", "Mai", "„", "Haus", "“", "."]
        );
    }

    #[test]
    fn tf_idf_rows_have_unit_length_with_each_block_normalised() {
        for scheme in [LexicalScheme::WORDS_ONLY, LexicalScheme::WORDS_AND_CHARS] {
            let counts = scheme.term_counts("Das Gericht und das Gericht", 1 << 10);
            let idf = vec![1.5f32; 1 << 10];
            let row = scheme.tf_idf(&counts, &idf);
            let norm: f32 = row.iter().map(|(_, w)| w * w).sum();
            assert!((norm - 1.0).abs() < 1e-5);
            let words: f32 =
                row.iter().filter(|(b, _)| *b < scheme.word_buckets(1 << 10) as u32).map(|(_, w)| w * w).sum();
            assert!((words - 1.0 / scheme.blocks() as f32).abs() < 1e-5, "{words}");
        }
    }

    #[test]
    fn character_ngrams_are_taken_inside_padded_words_as_scikit_learn_does() {
        // char_wb (2, 3) of "ab c": " a", "ab", "b ", " ab", "ab ", " c", "c ", " c " → 8
        // n-grams; words "ab", "c" and the bigram → 3.
        let scheme = LexicalScheme { char_ngrams: Some((2, 3)), min_df: 1, short_words_once: true };
        let counts = scheme.term_counts("AB c", 1 << 20);
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<f32>(), 11.0);
        assert_eq!(counts.iter().filter(|(b, _)| *b >= 1 << 19).map(|(_, n)| n).sum::<f32>(), 8.0);
    }

    /// scikit-learn's `TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5))` counts a
    /// short word once, at the first n as long as the padded word: " a " → " a", "a ",
    /// " a "; " ab " → " a", "ab", "b ", " ab", "ab ", " ab ". Older heads counted the
    /// whole padded word again for each longer n.
    #[test]
    fn short_words_count_once_as_scikit_learn_counts_them() {
        let chars = |scheme: LexicalScheme, text: &str| -> f32 {
            scheme.term_counts(text, 1 << 20).iter().filter(|(b, _)| *b >= 1 << 19).map(|(_, n)| n).sum()
        };
        let now = LexicalScheme::WORDS_AND_CHARS;
        let before = LexicalScheme { short_words_once: false, ..now };
        assert_eq!(chars(now, "a"), 3.0);
        assert_eq!(chars(now, "ab"), 6.0);
        assert_eq!(chars(before, "a"), 2.0 + 3.0);
        assert_eq!(chars(before, "ab"), 3.0 + 2.0 + 2.0);
        // Longer words are counted as before: "abcd" padded has 6 characters.
        assert_eq!(chars(now, "abcd"), chars(before, "abcd"));
    }

    #[test]
    fn rare_and_unseen_terms_are_no_features() {
        let scheme = LexicalScheme { char_ngrams: None, min_df: 2, short_words_once: true };
        let docs: Vec<Vec<(u32, f32)>> = ["a b", "a c"].iter().map(|t| scheme.term_counts(t, 64)).collect();
        let idf = scheme.inverse_document_frequency(docs.iter().map(|d| &d[..]), 64);
        let row = scheme.tf_idf(&scheme.term_counts("a z", 64), &idf);
        assert_eq!(row, vec![(bucket(&[b"w", b"a"], 64), 1.0)]);
    }

    /// The bucket counts of the implementation before terms carried their offsets.
    fn counts_before_offsets(scheme: &LexicalScheme, text: &str, buckets: usize) -> Vec<(u32, f32)> {
        let word_buckets = scheme.word_buckets(buckets);
        let tokens: Vec<String> = document_tokens(text).into_iter().map(|(t, _, _)| t).collect();
        let mut ids = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            ids.push(bucket(&[b"w", token.as_bytes()], word_buckets));
            if let Some(next) = tokens.get(i + 1) {
                ids.push(bucket(&[b"b", token.as_bytes(), next.as_bytes()], word_buckets));
            }
        }
        let (shortest, longest) = scheme.char_ngrams.unwrap();
        for word in text.to_lowercase().split_whitespace() {
            let padded: Vec<char> = std::iter::once(' ').chain(word.chars()).chain([' ']).collect();
            for n in shortest..=longest {
                let starts = if padded.len() <= n { 1 } else { padded.len() - n + 1 };
                for start in 0..starts {
                    let gram: String = padded[start..(start + n).min(padded.len())].iter().collect();
                    ids.push(word_buckets as u32 + bucket(&[b"c", gram.as_bytes()], buckets - word_buckets));
                }
                if padded.len() <= n && scheme.short_words_once {
                    break;
                }
            }
        }
        ids.sort_unstable();
        let mut counts: Vec<(u32, f32)> = Vec::new();
        for id in ids {
            match counts.last_mut() {
                Some((last, n)) if *last == id => *n += 1.0,
                _ => counts.push((id, 1.0)),
            }
        }
        counts
    }

    #[test]
    fn every_term_knows_the_characters_it_was_read_from() {
        let text = "Der ΟΔΟΣ-Bescheid\tvom 3.\u{a0}Mai: İstanbul §\u{200b}60 AufenthG, STRAẞE  a";
        let chars: Vec<char> = text.chars().collect();
        let scheme = LexicalScheme::WORDS_AND_CHARS;
        assert_eq!(scheme.term_counts(text, 1 << 12), counts_before_offsets(&scheme, text, 1 << 12));
        let mut terms = 0;
        scheme.visit_terms(text, 1 << 12, |_, start, end| {
            assert!(start < end && end <= chars.len(), "{start}..{end}");
            let slice: String = chars[start..end].iter().collect();
            assert!(!slice.starts_with(char::is_whitespace) && !slice.ends_with(char::is_whitespace), "{slice:?}");
            terms += 1;
        });
        assert!(terms > 100);
        // Character n-grams of "İs" cover the one character İ, which lower-cases to two.
        let mut spans = Vec::new();
        LexicalScheme { char_ngrams: Some((2, 2)), min_df: 1, short_words_once: true }.visit_terms(
            "İs",
            64,
            |_, s, e| spans.push((s, e)),
        );
        assert!(spans.contains(&(0, 1)) && spans.contains(&(0, 2)), "{spans:?}");
    }
}
