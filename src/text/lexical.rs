//! Lexical features, hashed into a fixed number of buckets so that a head needs no
//! vocabulary file: word n-grams of a document (TF-IDF) for classification, and the
//! classic CRF word features (the word, its shape, prefixes, suffixes, neighbours) for
//! tagging. Court names, file-number patterns like `8 AZR` and `§` carry much of the
//! signal in legal text, and the encoder's subwords blur them.

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
/// digits, and every other visible character (`§`, `/`, `-`) on its own.
pub fn document_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            current.extend(c.to_lowercase());
            continue;
        }
        if !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
        if !c.is_whitespace() && !c.is_control() {
            tokens.push(c.to_string());
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// Which lexical features a document classifier reads, recorded in its `head.json`.
/// Heads written before character n-grams existed have none (word n-grams only, over
/// every bucket, every bucket counted); see [`LexicalScheme::WORDS_ONLY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LexicalScheme {
    /// Shortest and longest character n-grams taken inside each word padded with a
    /// space, as scikit-learn's `char_wb` analyzer takes them (but for words shorter
    /// than the longest n, see `term_counts`); `None`: none. They catch
    /// the parts of German compounds (`Aufenthalts|erlaubnis`) that words miss.
    pub char_ngrams: Option<(usize, usize)>,
    /// A term must occur in this many training documents to be a feature.
    pub min_df: usize,
}

impl LexicalScheme {
    /// Word uni- and bigrams only (the scheme of heads without a recorded one).
    pub const WORDS_ONLY: LexicalScheme = LexicalScheme { char_ngrams: None, min_df: 1 };
    /// What `docclass train` fits: word uni- and bigrams beside character 2- to 5-grams.
    pub const WORDS_AND_CHARS: LexicalScheme = LexicalScheme { char_ngrams: Some((2, 5)), min_df: 2 };

    /// Where the word block ends: with character n-grams, words take the first half of
    /// the buckets and character n-grams the second, so that each block is normalised
    /// on its own.
    fn word_buckets(&self, buckets: usize) -> usize {
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
        let word_buckets = self.word_buckets(buckets);
        let tokens = document_tokens(text);
        let mut ids: Vec<u32> = Vec::with_capacity(tokens.len() * 2);
        for (i, token) in tokens.iter().enumerate() {
            ids.push(bucket(&[b"w", token.as_bytes()], word_buckets));
            if let Some(next) = tokens.get(i + 1) {
                ids.push(bucket(&[b"b", token.as_bytes(), next.as_bytes()], word_buckets));
            }
        }
        if let Some((shortest, longest)) = self.char_ngrams {
            let char_buckets = buckets - word_buckets;
            let lower = text.to_lowercase();
            let mut padded: Vec<char> = Vec::new();
            let mut utf8 = String::new();
            for word in lower.split_whitespace() {
                padded.clear();
                padded.push(' ');
                padded.extend(word.chars());
                padded.push(' ');
                for n in shortest..=longest {
                    // A padded word no longer than n gives itself, once for each such n.
                    // (scikit-learn's char_wb counts it once and stops: for words of
                    // one to three letters docclass counts the whole word more often.)
                    let starts = if padded.len() <= n { 1 } else { padded.len() - n + 1 };
                    for start in 0..starts {
                        utf8.clear();
                        utf8.extend(&padded[start..(start + n).min(padded.len())]);
                        ids.push(word_buckets as u32 + bucket(&[b"c", utf8.as_bytes()], char_buckets));
                    }
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

fn affix(word: &str, n: usize, from_end: bool) -> String {
    let chars: Vec<char> = word.chars().collect();
    if from_end {
        chars[chars.len().saturating_sub(n)..].iter().collect()
    } else {
        chars[..n.min(chars.len())].iter().collect()
    }
}

/// Hashed CRF features of word `i` of a sentence, appended to `out`.
pub fn word_features(words: &[String], i: usize, buckets: usize, out: &mut Vec<u32>) {
    let lower = |j: isize| -> String {
        if j < 0 {
            "<s>".into()
        } else {
            words.get(j as usize).map_or_else(|| "</s>".into(), |w| w.to_lowercase())
        }
    };
    let shape_at = |j: isize| -> String {
        if j < 0 || j as usize >= words.len() {
            "<edge>".into()
        } else {
            shape(&words[j as usize])
        }
    };
    let i_signed = i as isize;
    let word = &words[i];
    let low = word.to_lowercase();
    let mut push = |parts: &[&[u8]]| out.push(bucket(parts, buckets));
    push(&[b"bias"]);
    push(&[b"w", word.as_bytes()]);
    push(&[b"lw", low.as_bytes()]);
    push(&[b"sh", shape(word).as_bytes()]);
    for n in 1..=4 {
        push(&[b"suf", &[n as u8], affix(&low, n, true).as_bytes()]);
    }
    for n in 1..=3 {
        push(&[b"pre", &[n as u8], affix(&low, n, false).as_bytes()]);
    }
    for offset in [-2isize, -1, 1, 2] {
        let tag = [b'n', (offset + 2) as u8];
        push(&[&tag, lower(i_signed + offset).as_bytes()]);
    }
    for offset in [-1isize, 1] {
        let tag = [b's', (offset + 2) as u8];
        push(&[&tag, shape_at(i_signed + offset).as_bytes()]);
    }
    push(&[b"bl", lower(i_signed - 1).as_bytes(), low.as_bytes()]);
    push(&[b"br", low.as_bytes(), lower(i_signed + 1).as_bytes()]);
    push(&[b"suf3n", affix(&lower(i_signed + 1), 3, true).as_bytes()]);
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
        let scheme = LexicalScheme { char_ngrams: Some((2, 3)), min_df: 1 };
        let counts = scheme.term_counts("AB c", 1 << 20);
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<f32>(), 11.0);
        assert_eq!(counts.iter().filter(|(b, _)| *b >= 1 << 19).map(|(_, n)| n).sum::<f32>(), 8.0);
    }

    #[test]
    fn rare_and_unseen_terms_are_no_features() {
        let scheme = LexicalScheme { char_ngrams: None, min_df: 2 };
        let docs: Vec<Vec<(u32, f32)>> = ["a b", "a c"].iter().map(|t| scheme.term_counts(t, 64)).collect();
        let idf = scheme.inverse_document_frequency(docs.iter().map(|d| &d[..]), 64);
        let row = scheme.tf_idf(&scheme.term_counts("a z", 64), &idf);
        assert_eq!(row, vec![(bucket(&[b"w", b"a"], 64), 1.0)]);
    }
}
