//! Entity-level metrics over IOB2 tag sequences, as seqeval computes them: a predicted
//! entity counts only if type, start and end all match a gold one. Two ways to read
//! spans from tags: seqeval's default (conlleval-like: an `I-X` after `O` or another
//! type starts an entity) and strict IOB2 (an entity is `B-X` followed by `I-X`s; a
//! stray `I-X` is no entity).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::classification::prf;
use crate::decode::iob2::{spans, SpanMode, TagSpan};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityMetrics {
    pub mode: SpanMode,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
    pub predicted: usize,
    pub per_type: BTreeMap<String, TypeScores>,
}

/// Micro-averaged and per-type scores over sentences of gold and predicted tags.
pub fn entity_metrics(gold: &[Vec<String>], predicted: &[Vec<String>], mode: SpanMode) -> EntityMetrics {
    assert_eq!(gold.len(), predicted.len(), "one predicted sequence per gold sequence");
    // type → (true positives, predicted, gold)
    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (g, p) in gold.iter().zip(predicted) {
        let gold_spans = spans(g, mode);
        let predicted_spans = spans(p, mode);
        for s in &gold_spans {
            counts.entry(s.kind.clone()).or_default().2 += 1;
        }
        for s in &predicted_spans {
            let entry = counts.entry(s.kind.clone()).or_default();
            entry.1 += 1;
            if gold_spans.contains(s) {
                entry.0 += 1;
            }
        }
    }
    let total = counts.values().fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    let (precision, recall, f1) = prf(total.0, total.1, total.2);
    let per_type = counts
        .into_iter()
        .map(|(kind, (tp, p, g))| {
            let (precision, recall, f1) = prf(tp, p, g);
            (kind, TypeScores { precision, recall, f1, support: g })
        })
        .collect();
    EntityMetrics { mode, precision, recall, f1, support: total.2, predicted: total.1, per_type }
}

/// How the gold and predicted entities of a data set relate (strict IOB2 spans). Each
/// gold entity is one of: `exact` (a prediction with its type and boundaries),
/// `wrong_type` (a prediction of another type over its words), `partial` (a prediction
/// of its type with other boundaries) or `missed` (no prediction touches it); a
/// prediction that touches no gold entity is `spurious`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub exact: usize,
    pub partial: usize,
    pub wrong_type: usize,
    pub missed: usize,
    pub spurious: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Partial,
    WrongType,
    Missed,
    Spurious,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [ErrorKind::Partial, ErrorKind::WrongType, ErrorKind::Missed, ErrorKind::Spurious];
}

/// One error of a sentence, for the report's examples.
#[derive(Clone, Debug, PartialEq)]
pub struct EntityError {
    pub kind: ErrorKind,
    pub sentence: usize,
    pub gold: Option<TagSpan>,
    pub predicted: Option<TagSpan>,
}

fn overlaps(a: &TagSpan, b: &TagSpan) -> bool {
    a.start < b.end && b.start < a.end
}

/// Classifies every entity of every sentence; returns the counts and the errors in
/// sentence order.
pub fn entity_errors(gold: &[Vec<String>], predicted: &[Vec<String>]) -> (ErrorCounts, Vec<EntityError>) {
    let mut counts = ErrorCounts::default();
    let mut errors = Vec::new();
    for (sentence, (g, p)) in gold.iter().zip(predicted).enumerate() {
        let gold_spans = spans(g, SpanMode::StrictIob2);
        let predicted_spans = spans(p, SpanMode::StrictIob2);
        for gs in &gold_spans {
            if predicted_spans.contains(gs) {
                counts.exact += 1;
                continue;
            }
            let touching: Vec<&TagSpan> = predicted_spans.iter().filter(|ps| overlaps(gs, ps)).collect();
            let (kind, prediction) = if let Some(ps) = touching.iter().find(|ps| ps.kind == gs.kind) {
                counts.partial += 1;
                (ErrorKind::Partial, Some(*ps))
            } else if let Some(ps) = touching.first() {
                counts.wrong_type += 1;
                (ErrorKind::WrongType, Some(*ps))
            } else {
                counts.missed += 1;
                (ErrorKind::Missed, None)
            };
            errors.push(EntityError { kind, sentence, gold: Some(gs.clone()), predicted: prediction.cloned() });
        }
        for ps in predicted_spans.iter().filter(|ps| !gold_spans.iter().any(|gs| overlaps(gs, ps))) {
            counts.spurious += 1;
            errors.push(EntityError { kind: ErrorKind::Spurious, sentence, gold: None, predicted: Some(ps.clone()) });
        }
    }
    (counts, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn micro_scores_count_exact_matches() {
        let gold = vec![tags("B-PER I-PER O B-LOC")];
        let predicted = vec![tags("B-PER O O B-LOC")];
        let m = entity_metrics(&gold, &predicted, SpanMode::StrictIob2);
        assert_eq!((m.precision, m.recall, m.support, m.predicted), (0.5, 0.5, 2, 2));
        assert_eq!(m.per_type["LOC"].f1, 1.0);
        assert_eq!(m.per_type["PER"].f1, 0.0);
    }

    #[test]
    fn errors_are_sorted_into_their_kinds() {
        let gold = vec![tags("B-PER I-PER O B-LOC O B-ORG O O"), tags("B-NRM")];
        let predicted = vec![tags("B-PER O O B-ORG O B-ORG O B-RS"), tags("O")];
        let (counts, errors) = entity_errors(&gold, &predicted);
        let expected = ErrorCounts { exact: 1, partial: 1, wrong_type: 1, missed: 1, spurious: 1 };
        assert_eq!(counts, expected);
        let kinds: Vec<ErrorKind> = errors.iter().map(|e| e.kind).collect();
        use ErrorKind::*;
        assert_eq!(kinds, vec![Partial, WrongType, Spurious, Missed]);
        assert_eq!(errors[3].sentence, 1);
    }
}
