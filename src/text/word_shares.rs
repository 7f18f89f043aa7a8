//! Values given to character ranges of a text (what a lexical feature contributes at
//! each place it was read), spread onto the words whose characters the ranges cover, so
//! that evidence reads as words: `Antragstellerin +0.41`, not the n-grams `agste`,
//! `ragst`, `gstel`. Nothing is lost on the way: every value ends on a word or, where a
//! range covers no word character, in [`WordShares::unplaced`].

use super::lexical::document_tokens;

/// A text's words (runs of letters and digits, and every other visible character on
/// its own, as the lexical features read them) with the values spread onto them, in
/// `lanes` independent lanes (one per label being explained).
pub struct WordShares {
    /// Lower-cased word, and its characters `start..end` in the text.
    words: Vec<(String, usize, usize)>,
    chars: Vec<char>,
    /// The word each character belongs to (`NONE` for whitespace and controls).
    word_of_char: Vec<u32>,
    /// `lanes` values per word.
    values: Vec<f64>,
    lanes: usize,
    unplaced: Vec<f64>,
}

const NONE: u32 = u32::MAX;

/// A word form's total: every occurrence of the same lower-cased word summed.
#[derive(Clone, Debug, PartialEq)]
pub struct WordTotal {
    /// The word as the text first writes it.
    pub text: String,
    /// Each occurrence that received a share, as characters `start..end`, ascending.
    pub occurrences: Vec<(usize, usize)>,
    /// One value per lane.
    pub values: Vec<f64>,
    /// A word a reader learns from: not punctuation and not a stop word.
    pub readable: bool,
}

impl WordShares {
    pub fn new(text: &str, lanes: usize) -> Self {
        let words = document_tokens(text);
        let chars: Vec<char> = text.chars().collect();
        let mut word_of_char = vec![NONE; chars.len()];
        for (w, &(_, start, end)) in words.iter().enumerate() {
            word_of_char[start..end].fill(w as u32);
        }
        let values = vec![0.0; words.len() * lanes];
        Self { words, chars, word_of_char, values, lanes, unplaced: vec![0.0; lanes] }
    }

    /// Spreads `values` (one per lane) given to characters `start..end` over the words
    /// there, each in proportion to how many of its characters the range covers.
    pub fn add(&mut self, start: usize, end: usize, values: &[f64]) {
        let end = end.min(self.word_of_char.len());
        let covered: Vec<u32> = self.word_of_char[start.min(end)..end].iter().copied().filter(|&w| w != NONE).collect();
        if covered.is_empty() {
            self.unplaced.iter_mut().zip(values).for_each(|(u, v)| *u += v);
            return;
        }
        let share = 1.0 / covered.len() as f64;
        for w in covered {
            let row = &mut self.values[w as usize * self.lanes..(w as usize + 1) * self.lanes];
            row.iter_mut().zip(values).for_each(|(r, v)| *r += v * share);
        }
    }

    /// Values that fell on no word (ranges of whitespace only), per lane.
    pub fn unplaced(&self) -> &[f64] {
        &self.unplaced
    }

    /// Every word form that received a share, in order of first occurrence.
    pub fn totals(&self) -> Vec<WordTotal> {
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut totals: Vec<WordTotal> = Vec::new();
        for (w, (lower, start, end)) in self.words.iter().enumerate() {
            let row = &self.values[w * self.lanes..(w + 1) * self.lanes];
            if row.iter().all(|&v| v == 0.0) {
                continue;
            }
            let slot = *index.entry(lower.as_str()).or_insert_with(|| {
                totals.push(WordTotal {
                    text: self.chars[*start..*end].iter().collect(),
                    occurrences: Vec::new(),
                    values: vec![0.0; self.lanes],
                    readable: is_readable(lower),
                });
                totals.len() - 1
            });
            let total = &mut totals[slot];
            total.occurrences.push((*start, *end));
            total.values.iter_mut().zip(row).for_each(|(t, v)| *t += v);
        }
        totals
    }
}

/// A word worth showing a reader: it has a letter or digit and is no stop word.
fn is_readable(lower: &str) -> bool {
    lower.chars().any(char::is_alphanumeric) && !GERMAN_STOP_WORDS.contains(&lower)
}

/// Function words that say nothing about a document's subject: articles, pronouns,
/// prepositions, conjunctions, auxiliaries (sorted, so that a reader finds a word).
const GERMAN_STOP_WORDS: &[&str] = &[
    "aber", "als", "also", "am", "an", "auch", "auf", "aufgrund", "aus", "bei", "beim", "bereits", "bin", "bis",
    "bist", "da", "damit", "dann", "das", "dass", "daß", "dem", "den", "denn", "der", "des", "die", "dies", "diese",
    "diesem", "diesen", "dieser", "dieses", "doch", "du", "durch", "ein", "eine", "einem", "einen", "einer", "eines",
    "er", "es", "für", "habe", "haben", "hat", "hatte", "hier", "hätte", "ich", "ihm", "ihn", "ihr", "ihre", "im",
    "in", "ins", "ist", "ja", "jedoch", "kann", "kein", "keine", "man", "mit", "nach", "nicht", "noch", "nur", "ob",
    "oder", "ohne", "sei", "seien", "sein", "seine", "sich", "sie", "sind", "so", "soll", "sondern", "sowie", "um",
    "und", "uns", "unter", "vom", "von", "vor", "war", "waren", "was", "weil", "wenn", "werde", "werden", "wie", "wir",
    "wird", "worden", "wurde", "wurden", "wäre", "zu", "zum", "zur", "zwar", "über",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_readers_of_the_list() {
        assert!(GERMAN_STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn fragments_of_a_word_add_up_on_the_word() {
        let text = "Die Antragstellerin, die Antragstellerin.";
        let mut shares = WordShares::new(text, 2);
        // Two n-grams inside the first "Antragstellerin", one across its end and the comma.
        shares.add(6, 11, &[0.2, 0.1]);
        shares.add(8, 13, &[0.2, 0.0]);
        shares.add(16, 20, &[0.4, 0.0]); // "rin," : 3 letters of the word, then the comma
        shares.add(3, 4, &[0.5, 0.5]); // a space only
        let totals = shares.totals();
        let word = totals.iter().find(|t| t.text == "Antragstellerin").unwrap();
        assert!((word.values[0] - (0.2 + 0.2 + 0.4 * 0.75)).abs() < 1e-12, "{word:?}");
        assert_eq!(word.occurrences, vec![(4, 19)], "only the occurrence that received a share");
        assert!(word.readable);
        let comma = totals.iter().find(|t| t.text == ",").unwrap();
        assert!((comma.values[0] - 0.1).abs() < 1e-12 && !comma.readable);
        assert_eq!(shares.unplaced(), &[0.5, 0.5]);
        let sum: f64 = totals.iter().map(|t| t.values[0]).sum::<f64>() + shares.unplaced()[0];
        assert!((sum - 1.3).abs() < 1e-12, "nothing is lost: {sum}");
    }
}
