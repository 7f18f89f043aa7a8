//! The hashed features a tagger's CRF reads per word: the classic CRF word features
//! (the word, its shape, prefixes, suffixes, neighbours) and, for heads trained with
//! them, how brackets pair up in the sentence.

use super::lexical::{affix, bucket, shape};

/// Which CRF word features a tagger reads. Heads keep the set they were trained with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordFeatureSet {
    /// The word, its shape, prefixes, suffixes and neighbours.
    #[default]
    Base,
    /// Also how brackets pair up: whether a bracket closes one opened in the sentence,
    /// how far back, and what stood before it; and each word's bracket depth. An entity
    /// often ends at a bracket whose partner it holds ("Urteil vom … ( 2 StR 61/12 )").
    Brackets,
}

impl WordFeatureSet {
    pub fn is_base(&self) -> bool {
        *self == WordFeatureSet::Base
    }
}

/// Brackets farther apart than this many words are not paired.
const MAX_BRACKET_SPAN: usize = 64;

/// How a word takes part in the sentence's brackets.
#[derive(Clone, Copy, Default)]
struct BracketRole {
    /// For a bracket: the word it pairs with.
    partner: Option<usize>,
    /// Whether the word is a bracket at all.
    bracket: Option<Side>,
    /// How many paired brackets enclose the word.
    depth: u8,
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Open,
    Close,
}

fn bracket_side(word: &str) -> Option<(Side, char)> {
    match word {
        "(" => Some((Side::Open, ')')),
        "[" => Some((Side::Open, ']')),
        "<" => Some((Side::Open, '>')),
        "{" => Some((Side::Open, '}')),
        ")" => Some((Side::Close, ')')),
        "]" => Some((Side::Close, ']')),
        ">" => Some((Side::Close, '>')),
        "}" => Some((Side::Close, '}')),
        _ => None,
    }
}

/// A bracket pair's width in words, in a few classes.
fn span_class(words: usize) -> u8 {
    match words {
        0..=3 => words as u8,
        4..=5 => 4,
        6..=9 => 5,
        _ => 6,
    }
}

/// The hashed CRF features of a sentence's words: what needs the whole sentence (bracket
/// pairs) is worked out once, then each word's features are read by [`WordFeatures::of`].
pub struct WordFeatures<'a> {
    words: &'a [String],
    set: WordFeatureSet,
    brackets: Vec<BracketRole>,
}

impl<'a> WordFeatures<'a> {
    pub fn new(words: &'a [String], set: WordFeatureSet) -> Self {
        let mut brackets = Vec::new();
        if set == WordFeatureSet::Brackets {
            brackets = vec![BracketRole::default(); words.len()];
            let mut open: Vec<(usize, char)> = Vec::new();
            for (i, word) in words.iter().enumerate() {
                let Some((side, closer)) = bracket_side(word) else { continue };
                brackets[i].bracket = Some(side);
                match side {
                    Side::Open => open.push((i, closer)),
                    Side::Close => {
                        if let Some(&(j, expected)) = open.last() {
                            if expected == closer {
                                open.pop();
                                if i - j <= MAX_BRACKET_SPAN {
                                    brackets[i].partner = Some(j);
                                    brackets[j].partner = Some(i);
                                    brackets[j + 1..i].iter_mut().for_each(|b| b.depth = b.depth.saturating_add(1));
                                }
                            }
                        }
                    }
                }
            }
        }
        Self { words, set, brackets }
    }

    /// The features of word `i`, hashed into `buckets`, appended to `out`.
    pub fn of(&self, i: usize, buckets: usize, out: &mut Vec<u32>) {
        let words = self.words;
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
        if self.set == WordFeatureSet::Brackets {
            let role = self.brackets[i];
            push(&[b"depth", &[role.depth.min(2)]]);
            match (role.bracket, role.partner) {
                (Some(Side::Open), Some(close)) => {
                    push(&[b"open", &[span_class(close - i)]]);
                    // What follows the pair: a comma, a period, the sentence's end, a word.
                    push(&[b"open_next", lower(close as isize + 1).as_bytes()]);
                }
                (Some(Side::Close), Some(open)) => {
                    push(&[b"close", &[span_class(i - open)]]);
                    // What stood before the pair decides whether it belongs to an entity.
                    push(&[b"close_before", lower(open as isize - 1).as_bytes()]);
                    push(&[b"close_before_shape", shape_at(open as isize - 1).as_bytes()]);
                    push(&[b"close_first", shape_at(open as isize + 1).as_bytes()]);
                }
                (Some(Side::Open), None) => push(&[b"open_unpaired"]),
                (Some(Side::Close), None) => push(&[b"close_unpaired"]),
                (None, _) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(String::from).collect()
    }

    #[test]
    fn brackets_pair_within_the_sentence_and_add_to_the_base_features() {
        let sentence = words("Urteil vom 3. Mai ( 2 StR 61/12 [ juris ] ) ) und ( offen");
        let features = WordFeatures::new(&sentence, WordFeatureSet::Brackets);
        let roles: Vec<(Option<usize>, u8)> = features.brackets.iter().map(|b| (b.partner, b.depth)).collect();
        assert_eq!(roles[4], (Some(11), 0), "( pairs with the ) after the inner pair");
        assert_eq!((roles[8], roles[10]), ((Some(10), 1), (Some(8), 1)));
        assert_eq!(roles[9], (None, 2), "juris lies inside both pairs");
        assert_eq!(roles[12], (None, 0), "a ) with nothing open is unpaired");
        assert_eq!(roles[14], (None, 0), "a ( that never closes is unpaired");
        // The base features of every word are those a base head reads; brackets only add.
        let base = WordFeatures::new(&sentence, WordFeatureSet::Base);
        for i in 0..sentence.len() {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            base.of(i, 1 << 20, &mut a);
            features.of(i, 1 << 20, &mut b);
            assert_eq!(&b[..a.len()], &a[..], "word {i}");
            assert!(b.len() > a.len());
        }
        // What stood before the pair is a feature of its closing bracket.
        let other = words("vgl. ( 2 StR 61/12 )");
        let closing = |sentence: &[String]| {
            let mut out = Vec::new();
            WordFeatures::new(sentence, WordFeatureSet::Brackets).of(sentence.len() - 1, 1 << 20, &mut out);
            out
        };
        let before = words("Urteil ( 2 StR 61/12 )");
        assert_ne!(closing(&other), closing(&before));
    }

    #[test]
    fn brackets_too_far_apart_are_not_paired() {
        let mut sentence = vec!["(".to_string()];
        sentence.extend((0..MAX_BRACKET_SPAN).map(|i| format!("w{i}")));
        sentence.push(")".into());
        let features = WordFeatures::new(&sentence, WordFeatureSet::Brackets);
        assert!(features.brackets.iter().all(|b| b.partner.is_none() && b.depth == 0));
        sentence.remove(1);
        let features = WordFeatures::new(&sentence, WordFeatureSet::Brackets);
        assert_eq!(features.brackets[0].partner, Some(MAX_BRACKET_SPAN));
    }
}
