//! Lines predictions up with gold data. Predictions are records as `classify` writes
//! them (one JSON object per line with an `id`), from docclass or any other system;
//! gold is labelled data as `train` reads it. Every gold document needs exactly one
//! prediction: missing ids, duplicates, failed documents, word counts that differ and
//! malformed records are errors that name the file and line; predictions for documents
//! the gold data lacks and labels the gold data never uses are counted as warnings.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::decode::iob2::{self, parse_tag};
use crate::ingest::labelled::{LabelledDocument, TaggedSentence};

/// Gold data: labelled documents, or tagged sentences (id `PATH:LINE` of the first word).
pub enum Gold {
    Documents { path: PathBuf, documents: Vec<LabelledDocument> },
    Sentences { path: PathBuf, sentences: Vec<TaggedSentence> },
}

impl Gold {
    pub fn path(&self) -> &Path {
        match self {
            Gold::Documents { path, .. } | Gold::Sentences { path, .. } => path,
        }
    }

    pub fn ids(&self) -> Vec<String> {
        match self {
            Gold::Documents { path, documents } => documents.iter().map(|d| d.id_in(path)).collect(),
            Gold::Sentences { path, sentences } => {
                sentences.iter().map(|s| format!("{}:{}", path.display(), s.line)).collect()
            }
        }
    }

    /// The line of each document whose id is its position (`PATH:LINE`, no id column).
    fn positional_lines(&self) -> Vec<Option<usize>> {
        match self {
            Gold::Documents { documents, .. } => documents.iter().map(|d| d.id.is_none().then_some(d.line)).collect(),
            Gold::Sentences { sentences, .. } => sentences.iter().map(|s| Some(s.line)).collect(),
        }
    }
}

/// One line of a predictions file.
pub struct Prediction {
    pub line: usize,
    pub id: String,
    pub record: serde_json::Map<String, Value>,
}

/// The records of a predictions file's text (`path` names it in messages).
pub fn parse_predictions(path: &Path, text: &str) -> Result<Vec<Prediction>> {
    let mut predictions = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).with_context(|| format!("{}: malformed JSON", at()))?;
        let Value::Object(record) = value else { bail!("{}: not a JSON object", at()) };
        let id = match record.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => bail!("{}: the record has no \"id\"", at()),
        };
        predictions.push(Prediction { line: i + 1, id, record });
    }
    if predictions.is_empty() {
        bail!("{}: no predictions in the file", path.display());
    }
    Ok(predictions)
}

pub struct ClassificationCase {
    pub id: String,
    pub text: String,
    pub gold: Vec<String>,
    pub predicted: Vec<String>,
    /// The predicted label's probability, where the record gives it.
    pub confidence: Option<f64>,
    /// Every label's probability, where the record gives them all.
    pub probabilities: Option<BTreeMap<String, f64>>,
}

pub struct TaggingCase {
    pub id: String,
    pub words: Vec<String>,
    pub gold: Vec<String>,
    pub predicted: Vec<String>,
}

pub enum Cases {
    Classification { cases: Vec<ClassificationCase>, multi_label: bool },
    Tagging { cases: Vec<TaggingCase> },
}

pub struct Aligned {
    pub cases: Cases,
    /// What did not line up but was counted rather than refused.
    pub warnings: Vec<String>,
}

/// Gold and predictions, one case per gold document in gold order. `head` picks the
/// result under `heads.NAME` where records have it (else the top-level result).
pub fn align(gold: &Gold, predictions: &[Prediction], predictions_path: &Path, head: Option<&str>) -> Result<Aligned> {
    let at = |p: &Prediction| format!("{}:{}", predictions_path.display(), p.line);
    let mut by_id: HashMap<&str, &Prediction> = HashMap::new();
    for p in predictions {
        if let Some(first) = by_id.insert(&p.id, p) {
            bail!("{}: id {:?} appears a second time (first at line {})", at(p), p.id, first.line);
        }
    }
    // A positional id `PATH:LINE` also matches when the path is spelled otherwise
    // (`./data.tsv`, an absolute path): by the file it names and the line.
    let by_location: HashMap<(PathBuf, usize), &Prediction> =
        predictions.iter().filter_map(|p| Some((location(&p.id)?, p))).collect();
    let gold_file = gold.path().canonicalize().ok();
    let lookup = |id: &str, line: Option<usize>| -> Option<&Prediction> {
        by_id.get(id).copied().or_else(|| by_location.get(&(gold_file.clone()?, line?)).copied())
    };
    let ids = gold.ids();
    let lines = gold.positional_lines();
    let mut seen = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        if !seen.insert(id) {
            bail!("{}: gold id {id:?} appears twice (document {})", gold.path().display(), i + 1);
        }
    }
    let matched: Vec<Option<&Prediction>> = ids.iter().zip(&lines).map(|(id, &line)| lookup(id, line)).collect();
    let missing: Vec<&String> = ids.iter().zip(&matched).filter(|(_, p)| p.is_none()).map(|(id, _)| id).collect();
    if !missing.is_empty() {
        bail!(
            "{}: {} of {} gold documents have no prediction (first: {:?}); prediction ids look like {:?}",
            predictions_path.display(),
            missing.len(),
            ids.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            predictions.first().map(|p| &p.id)
        );
    }
    let matched: Vec<&Prediction> = matched.into_iter().map(|p| p.expect("none missing")).collect();
    let failed: Vec<String> = ids
        .iter()
        .zip(&matched)
        .filter_map(|(id, p)| p.record.get("error").and_then(Value::as_str).map(|e| format!("{} ({}): {e}", id, at(p))))
        .collect();
    if !failed.is_empty() {
        bail!("{} gold documents failed in the predictions, e.g. {}", failed.len(), failed[0]);
    }
    let mut warnings = Vec::new();
    let extra = predictions.len() - ids.len();
    if extra > 0 {
        warnings.push(format!("{extra} predictions are for documents the gold data does not have; they are ignored"));
    }
    let cases = match gold {
        Gold::Documents { documents, .. } => {
            let mut cases = Vec::with_capacity(documents.len());
            for ((doc, id), p) in documents.iter().zip(&ids).zip(&matched) {
                let result = classification_of(p, head).with_context(|| at(p))?;
                cases.push(ClassificationCase {
                    id: id.clone(),
                    text: doc.text.clone(),
                    gold: doc.labels.clone(),
                    predicted: result.labels,
                    confidence: result.confidence,
                    probabilities: result.probabilities,
                });
            }
            let multi_label = cases.iter().any(|c| c.gold.len() != 1 || c.predicted.len() != 1)
                || predictions.iter().any(|p| classification_object(p, head).is_some_and(|o| o.contains_key("labels")));
            label_warnings(&cases, multi_label, &mut warnings);
            Cases::Classification { cases, multi_label }
        }
        Gold::Sentences { sentences, .. } => {
            let mut cases = Vec::with_capacity(sentences.len());
            for ((sentence, id), p) in sentences.iter().zip(&ids).zip(&matched) {
                let tags = tags_of(p, sentence, &mut warnings).with_context(|| format!("{} (id {id:?})", at(p)))?;
                cases.push(TaggingCase {
                    id: id.clone(),
                    words: sentence.words.clone(),
                    gold: sentence.tags.clone(),
                    predicted: tags,
                });
            }
            type_warnings(&cases, &mut warnings);
            Cases::Tagging { cases }
        }
    };
    Ok(Aligned { cases, warnings })
}

/// The file and line a positional id `PATH:LINE` names, where the file exists.
fn location(id: &str) -> Option<(PathBuf, usize)> {
    let (path, line) = id.rsplit_once(':')?;
    Some((Path::new(path).canonicalize().ok()?, line.parse().ok()?))
}

struct PredictedClasses {
    labels: Vec<String>,
    confidence: Option<f64>,
    probabilities: Option<BTreeMap<String, f64>>,
}

fn classification_object<'p>(p: &'p Prediction, head: Option<&str>) -> Option<&'p serde_json::Map<String, Value>> {
    match head.and_then(|h| p.record.get("heads")?.get(h)?.as_object()) {
        Some(object) => Some(object),
        None => Some(&p.record),
    }
}

fn classification_of(p: &Prediction, head: Option<&str>) -> Result<PredictedClasses> {
    let object = classification_object(p, head).expect("always an object");
    let labels = match (object.get("labels"), object.get("label")) {
        (Some(Value::Array(items)), _) => items
            .iter()
            .map(|l| l.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .context("\"labels\" must be a list of strings")?,
        (_, Some(Value::String(label))) => vec![label.clone()],
        _ => bail!("the record has no \"label\" (or \"labels\" list) to score"),
    };
    let mut probabilities = BTreeMap::new();
    for entry in object.get("scores").and_then(Value::as_array).into_iter().flatten() {
        let (Some(label), Some(score)) =
            (entry.get("label").and_then(Value::as_str), entry.get("score").and_then(Value::as_f64))
        else {
            bail!("\"scores\" entries need a \"label\" and a numeric \"score\"");
        };
        if !(0.0..=1.0).contains(&score) {
            bail!("score {score} of {label:?} is not a probability");
        }
        probabilities.insert(label.to_string(), score);
    }
    let confidence = object
        .get("score")
        .and_then(Value::as_f64)
        .or_else(|| labels.first().and_then(|l| probabilities.get(l)).copied());
    Ok(PredictedClasses { labels, confidence, probabilities: (!probabilities.is_empty()).then_some(probabilities) })
}

/// The predicted IOB2 tags of one sentence: from `tags` (one per gold word) or from
/// `entities` (character offsets into the sentence's words joined by single spaces).
fn tags_of(p: &Prediction, sentence: &TaggedSentence, warnings: &mut Vec<String>) -> Result<Vec<String>> {
    let words = sentence.words.len();
    if let Some(tags) = p.record.get("tags") {
        let tags: Vec<String> = tags
            .as_array()
            .and_then(|t| t.iter().map(|x| x.as_str().map(String::from)).collect())
            .context("\"tags\" must be a list of strings")?;
        if tags.len() != words {
            bail!("{} predicted tags for {words} gold words", tags.len());
        }
        if let Some(bad) = tags.iter().find(|t| parse_tag(t).is_none()) {
            bail!("tag {bad:?} is not IOB2 (O, B-TYPE or I-TYPE)");
        }
        return Ok(tags);
    }
    let Some(entities) = p.record.get("entities") else {
        bail!("the record has neither \"tags\" nor \"entities\"");
    };
    let (_, spans) = sentence.text_and_spans();
    let mut tags = vec!["O".to_string(); words];
    let mut off_boundary = 0;
    for entity in entities.as_array().context("\"entities\" must be a list")? {
        let field = |name: &str| entity.get(name).and_then(Value::as_u64).map(|v| v as usize);
        let (Some(start), Some(end), Some(kind)) =
            (field("start"), field("end"), entity.get("label").and_then(Value::as_str))
        else {
            bail!("entities need \"label\", \"start\" and \"end\"");
        };
        let inside: Vec<usize> = (0..words).filter(|&w| spans[w].0 < end && start < spans[w].1).collect();
        let aligned =
            inside.first().is_some_and(|&w| spans[w].0 == start) && inside.last().is_some_and(|&w| spans[w].1 == end);
        off_boundary += usize::from(!aligned);
        for (n, &w) in inside.iter().enumerate() {
            tags[w] = format!("{}-{kind}", if n == 0 { "B" } else { "I" });
        }
    }
    if off_boundary > 0 {
        warnings.push(format!(
            "{}: {off_boundary} predicted entities do not start and end at word boundaries; they were widened to the words they touch",
            p.id
        ));
    }
    Ok(tags)
}

fn label_warnings(cases: &[ClassificationCase], multi_label: bool, warnings: &mut Vec<String>) {
    let gold: BTreeSet<&str> = cases.iter().flat_map(|c| c.gold.iter().map(String::as_str)).collect();
    let unknown: BTreeMap<&str, usize> = cases
        .iter()
        .flat_map(|c| &c.predicted)
        .filter(|l| !gold.contains(l.as_str()))
        .fold(BTreeMap::new(), |mut m, l| {
            *m.entry(l.as_str()).or_default() += 1;
            m
        });
    if !unknown.is_empty() {
        warnings.push(format!("predicted labels that no gold document has (counted as errors): {unknown:?}"));
    }
    // Only single-label scores have calibration and coverage.
    let unscored = cases.iter().filter(|c| c.confidence.is_none() || c.probabilities.is_none()).count();
    if unscored > 0 && !multi_label {
        warnings.push(format!(
            "{unscored} predictions lack a \"score\" or \"scores\": log loss, calibration and coverage need them for every document and are left out"
        ));
    }
    let scored: BTreeSet<&str> =
        cases.iter().flat_map(|c| c.probabilities.iter().flat_map(|p| p.keys().map(String::as_str))).collect();
    let unpredictable: Vec<&str> =
        gold.iter().filter(|g| !scored.is_empty() && !scored.contains(*g)).copied().collect();
    if !unpredictable.is_empty() {
        warnings.push(format!(
            "gold labels the predictions never score (the model cannot predict them): {unpredictable:?}"
        ));
    }
}

fn type_warnings(cases: &[TaggingCase], warnings: &mut Vec<String>) {
    let kinds = |tags: &mut dyn Iterator<Item = &String>| -> BTreeSet<String> {
        tags.filter_map(|t| iob2::entity_type(t).map(String::from)).collect()
    };
    let gold = kinds(&mut cases.iter().flat_map(|c| &c.gold));
    let predicted = kinds(&mut cases.iter().flat_map(|c| &c.predicted));
    let unknown: Vec<&String> = predicted.difference(&gold).collect();
    if !unknown.is_empty() {
        warnings.push(format!("predicted entity types that the gold data lacks (all spurious): {unknown:?}"));
    }
}
