//! Aligned cases → every metric of the report, the error examples, and one line per
//! document (gold and prediction) that `eval --compare` reads.

use std::collections::BTreeSet;

use super::alignment::{Cases, ClassificationCase, TaggingCase};
use super::classification::{calibration, classification_metrics, coverage, log_loss, multi_label_metrics};
use super::entities::{entity_errors, entity_metrics, ErrorKind};
use super::metrics::{
    ClassificationError, DocumentLine, EntityErrorExample, EntityReport, LabelLine, SingleLabelReport, SpanLine,
    SpanText, TaskMetrics,
};
use crate::decode::iob2::{spans, SpanMode, TagSpan};

pub struct ScoringOptions {
    pub target_accuracy: f64,
    /// Error examples per kind.
    pub examples: usize,
}

pub struct Scored {
    /// The task's section of metrics.json.
    pub metrics: TaskMetrics,
    /// One JSON line per document for `--compare`.
    pub documents: Vec<String>,
}

fn lines<T: serde::Serialize>(documents: &[T]) -> Vec<String> {
    documents.iter().map(|d| serde_json::to_string(d).expect("documents serialize")).collect()
}

pub fn score(cases: &Cases, options: &ScoringOptions) -> Scored {
    match cases {
        Cases::Classification { cases, multi_label: false } => score_single_label(cases, options),
        Cases::Classification { cases, multi_label: true } => score_multi_label(cases),
        Cases::Tagging { cases } => score_tagging(cases, options),
    }
}

fn score_single_label(cases: &[ClassificationCase], options: &ScoringOptions) -> Scored {
    let labels = sorted_labels(cases);
    let index = |l: &String| labels.binary_search(l).expect("collected above");
    let gold: Vec<usize> = cases.iter().map(|c| index(&c.gold[0])).collect();
    let predicted: Vec<usize> = cases.iter().map(|c| index(&c.predicted[0])).collect();
    let metrics = classification_metrics(&labels, &gold, &predicted);
    let correct: Vec<bool> = gold.iter().zip(&predicted).map(|(g, p)| g == p).collect();

    // Log loss needs the gold label's probability in every record; a label missing from
    // a complete list of scores has probability 0.
    let scored = labels_scored(cases);
    let gold_probabilities: Option<Vec<f64>> = cases
        .iter()
        .map(|c| {
            let p = c.probabilities.as_ref().filter(|p| p.len() >= scored)?;
            Some(p.get(&c.gold[0]).copied().unwrap_or(0.0))
        })
        .collect();
    let log_loss = gold_probabilities.map(|p| log_loss(&p));
    let confidence: Option<Vec<f64>> = cases.iter().map(|c| c.confidence).collect();
    let (calibration, coverage) = match &confidence {
        Some(conf) => (Some(calibration(conf, &correct)), Some(coverage(conf, &correct, options.target_accuracy))),
        None => (None, None),
    };
    let mut mistakes: Vec<usize> = (0..cases.len()).filter(|&i| !correct[i]).collect();
    let confidence_of = |i: usize| confidence.as_ref().map_or(0.0, |c| c[i]);
    mistakes.sort_by(|&a, &b| confidence_of(b).total_cmp(&confidence_of(a)));
    let errors = mistakes
        .iter()
        .take(options.examples)
        .map(|&i| {
            let c = &cases[i];
            ClassificationError {
                id: c.id.clone(),
                gold: c.gold[0].clone(),
                predicted: c.predicted[0].clone(),
                confidence: c.confidence,
                context: snippet(&c.text, 240),
            }
        })
        .collect();
    let report = SingleLabelReport { metrics, log_loss, calibration, coverage, errors };
    Scored { metrics: TaskMetrics::Classification(report), documents: label_lines(cases, true) }
}

/// The documents' lines for `--compare`; single-label lines carry the confidence.
fn label_lines(cases: &[ClassificationCase], with_confidence: bool) -> Vec<String> {
    let documents: Vec<LabelLine> = cases
        .iter()
        .map(|c| DocumentLine {
            id: c.id.clone(),
            gold: c.gold.clone(),
            predicted: c.predicted.clone(),
            confidence: with_confidence.then_some(c.confidence),
        })
        .collect();
    lines(&documents)
}

/// Every gold and predicted label, sorted, as scikit-learn orders them.
fn sorted_labels(cases: &[ClassificationCase]) -> Vec<String> {
    cases.iter().flat_map(|c| c.gold.iter().chain(&c.predicted).cloned()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// How many labels the predictions score in all: a record with fewer (`--top-k`) does
/// not give every probability.
fn labels_scored(cases: &[ClassificationCase]) -> usize {
    cases.iter().flat_map(|c| c.probabilities.iter().flat_map(|p| p.keys())).collect::<BTreeSet<_>>().len()
}

fn score_multi_label(cases: &[ClassificationCase]) -> Scored {
    let labels = sorted_labels(cases);
    let indices =
        |ls: &[String]| -> Vec<usize> { ls.iter().map(|l| labels.binary_search(l).expect("collected")).collect() };
    let gold: Vec<Vec<usize>> = cases.iter().map(|c| indices(&c.gold)).collect();
    let predicted: Vec<Vec<usize>> = cases.iter().map(|c| indices(&c.predicted)).collect();
    let metrics = multi_label_metrics(&labels, &gold, &predicted);
    Scored { metrics: TaskMetrics::MultiLabel(metrics), documents: label_lines(cases, false) }
}

fn score_tagging(cases: &[TaggingCase], options: &ScoringOptions) -> Scored {
    let gold: Vec<Vec<String>> = cases.iter().map(|c| c.gold.clone()).collect();
    let predicted: Vec<Vec<String>> = cases.iter().map(|c| c.predicted.clone()).collect();
    let (error_counts, errors) = entity_errors(&gold, &predicted);
    let mut examples = Vec::new();
    for kind in ErrorKind::ALL {
        for e in errors.iter().filter(|e| e.kind == kind).take(options.examples) {
            let case = &cases[e.sentence];
            let describe = |s: &Option<TagSpan>| {
                s.as_ref().map(|s| SpanText {
                    kind: s.kind.clone(),
                    text: case.words[s.start..s.end].join(" "),
                    words: (s.start, s.end),
                })
            };
            let marked = e.gold.as_ref().or(e.predicted.as_ref()).expect("an error has a span");
            examples.push(EntityErrorExample {
                kind,
                id: case.id.clone(),
                gold: describe(&e.gold),
                predicted: describe(&e.predicted),
                context: context(&case.words, marked, 8),
            });
        }
    }
    let span_list = |tags: &[String]| -> Vec<(String, usize, usize)> {
        spans(tags, SpanMode::StrictIob2).into_iter().map(|s| (s.kind, s.start, s.end)).collect()
    };
    let documents: Vec<SpanLine> = cases
        .iter()
        .map(|c| DocumentLine {
            id: c.id.clone(),
            gold: span_list(&c.gold),
            predicted: span_list(&c.predicted),
            confidence: None,
        })
        .collect();
    let report = EntityReport {
        default: entity_metrics(&gold, &predicted, SpanMode::Default),
        strict_iob2: entity_metrics(&gold, &predicted, SpanMode::StrictIob2),
        error_counts,
        errors: examples,
    };
    Scored { metrics: TaskMetrics::Entities(report), documents: lines(&documents) }
}

/// The first `chars` characters of a text on one line.
fn snippet(text: &str, chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

/// Up to `around` words either side of the span, the span in ⟦ ⟧.
fn context(words: &[String], span: &TagSpan, around: usize) -> String {
    let from = span.start.saturating_sub(around);
    let to = (span.end + around).min(words.len());
    let mut out = Vec::new();
    if from > 0 {
        out.push("…".to_string());
    }
    out.extend(words[from..span.start].iter().cloned());
    out.push(format!("⟦{}⟧", words[span.start..span.end].join(" ")));
    out.extend(words[span.end..to].iter().cloned());
    if to < words.len() {
        out.push("…".to_string());
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn case(id: &str, gold: &str, predicted: &str, confidence: f64) -> ClassificationCase {
        let other = if predicted == "a" { "b" } else { "a" };
        ClassificationCase {
            id: id.into(),
            text: format!("text of {id}"),
            gold: vec![gold.into()],
            predicted: vec![predicted.into()],
            confidence: Some(confidence),
            probabilities: Some(BTreeMap::from([(predicted.into(), confidence), (other.into(), 1.0 - confidence)])),
        }
    }

    #[test]
    fn single_label_cases_give_the_metrics_the_errors_and_one_line_per_document() {
        let cases = vec![
            case("1", "a", "a", 0.9),
            case("2", "a", "b", 0.8),
            case("3", "b", "b", 0.7),
            case("4", "b", "b", 0.6),
        ];
        let options = ScoringOptions { target_accuracy: 0.99, examples: 10 };
        let scored = score(&Cases::Classification { cases, multi_label: false }, &options);
        let TaskMetrics::Classification(report) = &scored.metrics else { panic!("a single-label report") };
        assert_eq!((report.metrics.documents, report.metrics.accuracy), (4, 0.75));
        // a: precision 1, recall 1/2, F1 2/3; b: precision 2/3, recall 1, F1 4/5.
        assert!((report.metrics.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        assert_eq!(report.errors.len(), 1);
        assert_eq!((report.errors[0].id.as_str(), report.errors[0].predicted.as_str()), ("2", "b"));
        // The log loss takes the gold label's probability: 0.9, 0.2, 0.7, 0.6.
        let expected = -(0.9f64.ln() + 0.2f64.ln() + 0.7f64.ln() + 0.6f64.ln()) / 4.0;
        assert!((report.log_loss.unwrap() - expected).abs() < 1e-9);
        assert_eq!(scored.documents.len(), 4);
    }

    #[test]
    fn tagging_cases_are_scored_by_strict_spans() {
        let tags = |t: &str| t.split(' ').map(String::from).collect::<Vec<_>>();
        let cases = vec![
            TaggingCase {
                id: "s1".into(),
                words: tags("Das BAG in Erfurt"),
                gold: tags("O B-ORG O B-LOC"),
                predicted: tags("O B-ORG O O"),
            },
            TaggingCase {
                id: "s2".into(),
                words: tags("§ 15 AufenthG"),
                gold: tags("B-NRM I-NRM I-NRM"),
                predicted: tags("B-NRM I-NRM I-NRM"),
            },
        ];
        let options = ScoringOptions { target_accuracy: 0.99, examples: 10 };
        let scored = score(&Cases::Tagging { cases }, &options);
        let TaskMetrics::Entities(report) = &scored.metrics else { panic!("an entity report") };
        let strict = &report.strict_iob2;
        assert_eq!((strict.support, strict.predicted), (3, 2));
        assert!((strict.precision - 1.0).abs() < 1e-12 && (strict.recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(strict.per_type["LOC"].f1, 0.0);
        assert_eq!(scored.documents.len(), 2);
    }
}
