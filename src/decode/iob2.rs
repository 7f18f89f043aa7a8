//! IOB2 tags, in one place: parsing them, reading entity spans from tag sequences, the
//! transitions a tagger may make, and repairing sequences that break the scheme. A tag
//! is `O`, `B-TYPE` (an entity begins) or `I-TYPE` (it goes on).

use serde::{Deserialize, Serialize};

/// Splits an IOB2 tag into its prefix (`B`, `I` or `O`) and type; `None` for anything
/// else (`B-` without a type, `X-Y`, `PER`).
pub fn parse_tag(tag: &str) -> Option<(char, &str)> {
    if tag == "O" {
        return Some(('O', ""));
    }
    let (prefix, kind) = tag.split_once('-')?;
    match prefix {
        "B" | "I" if !kind.is_empty() => Some((prefix.chars().next()?, kind)),
        _ => None,
    }
}

/// The entity type of a tag (`None` for `O` and for anything that is not IOB2).
pub fn entity_type(tag: &str) -> Option<&str> {
    parse_tag(tag).filter(|(prefix, _)| *prefix != 'O').map(|(_, kind)| kind)
}

/// The entity types of a tag set, in the order of their `B-` tags.
pub fn entity_types(tags: &[String]) -> Vec<String> {
    tags.iter().filter_map(|t| t.strip_prefix("B-")).map(String::from).collect()
}

/// transformers' `get_tag`, for checkpoints whose labels need not be IOB2: `B-X` → (begins,
/// X), `I-X` → (continues, X), anything else → (continues, itself).
pub fn lenient_split(label: &str) -> (bool, &str) {
    if let Some(kind) = label.strip_prefix("B-") {
        (true, kind)
    } else if let Some(kind) = label.strip_prefix("I-") {
        (false, kind)
    } else {
        (false, label)
    }
}

/// How spans are read from tags: seqeval's default (conlleval-like: an `I-X` after `O` or
/// another type starts an entity) or strict IOB2 (an entity is `B-X` followed by `I-X`s;
/// a stray `I-X` is no entity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanMode {
    Default,
    StrictIob2,
}

/// An entity: type and word range `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TagSpan {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

pub fn spans(tags: &[String], mode: SpanMode) -> Vec<TagSpan> {
    let mut out = Vec::new();
    let mut open: Option<TagSpan> = None;
    for (i, tag) in tags.iter().enumerate() {
        let (prefix, kind) = match tag.split_once('-') {
            Some((p, k)) if p == "B" || p == "I" => (p, k),
            _ => ("O", ""),
        };
        let continues = prefix == "I" && open.as_ref().is_some_and(|s| s.kind == kind);
        if continues {
            open.as_mut().expect("checked").end = i + 1;
            continue;
        }
        out.extend(open.take());
        let starts = prefix == "B" || (prefix == "I" && mode == SpanMode::Default);
        if starts {
            open = Some(TagSpan { kind: kind.to_string(), start: i, end: i + 1 });
        }
    }
    out.extend(open);
    out
}

/// Which tag may follow which: `I-X` only after `B-X` or `I-X`, and never first. Returns
/// `allowed[from * k + to]` and `allowed_start[tag]` for the `k` tags.
pub fn allowed_transitions(tags: &[String]) -> (Vec<bool>, Vec<bool>) {
    let k = tags.len();
    let mut allowed = vec![true; k * k];
    let mut allowed_start = vec![true; k];
    for (to, tag) in tags.iter().enumerate() {
        if let Some(kind) = tag.strip_prefix("I-") {
            allowed_start[to] = false;
            for (from, prev) in tags.iter().enumerate() {
                allowed[from * k + to] = prev.split_once('-').is_some_and(|(_, k)| k == kind);
            }
        }
    }
    (allowed, allowed_start)
}

/// Turns every `I-X` that does not follow `B-X`/`I-X` into `B-X` (`tag_ids` index
/// `tags`, which hold a `B-` tag for every type); returns how many.
pub fn repair(tag_ids: &mut [usize], tags: &[String]) -> usize {
    let mut repaired = 0;
    for i in 0..tag_ids.len() {
        let Some(kind) = tags[tag_ids[i]].strip_prefix("I-") else { continue };
        let follows = i > 0 && tags[tag_ids[i - 1]].split_once('-').is_some_and(|(_, k)| k == kind);
        if !follows {
            let begin = format!("B-{kind}");
            tag_ids[i] = tags.iter().position(|t| *t == begin).expect("B- exists for every type");
            repaired += 1;
        }
    }
    repaired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn default_mode_starts_entities_at_stray_inside_tags_strict_mode_does_not() {
        let t = tags("I-PER I-PER O B-LOC I-ORG");
        let default: Vec<_> = spans(&t, SpanMode::Default).into_iter().map(|s| (s.kind, s.start, s.end)).collect();
        assert_eq!(default, vec![("PER".into(), 0, 2), ("LOC".into(), 3, 4), ("ORG".into(), 4, 5)]);
        let strict: Vec<_> = spans(&t, SpanMode::StrictIob2).into_iter().map(|s| (s.kind, s.start, s.end)).collect();
        assert_eq!(strict, vec![("LOC".into(), 3, 4)]);
    }

    #[test]
    fn tags_parse_only_as_iob2() {
        assert_eq!(parse_tag("O"), Some(('O', "")));
        assert_eq!(parse_tag("B-PER"), Some(('B', "PER")));
        assert_eq!(parse_tag("I-LOC-X"), Some(('I', "LOC-X")));
        for bad in ["B-", "PER", "X-PER", ""] {
            assert_eq!(parse_tag(bad), None, "{bad:?}");
        }
        assert_eq!(entity_type("I-ORG"), Some("ORG"));
        assert_eq!(entity_type("O"), None);
    }

    #[test]
    fn inside_tags_follow_only_their_own_type_and_repairs_restore_that() {
        let t = tags("O B-PER I-PER B-LOC I-LOC");
        let (allowed, start) = allowed_transitions(&t);
        assert_eq!(start, vec![true, true, false, true, false]);
        let may_follow = |from: usize, to: usize| allowed[from * t.len() + to];
        // I-PER (2) after B-PER (1) or I-PER, not after B-LOC (3) or O (0).
        assert!(may_follow(1, 2) && may_follow(2, 2) && !may_follow(3, 2) && !may_follow(0, 2));
        let mut ids = vec![2, 2, 0, 1, 4];
        assert_eq!(repair(&mut ids, &t), 2);
        assert_eq!(ids, vec![1, 2, 0, 1, 3]);
    }
}
