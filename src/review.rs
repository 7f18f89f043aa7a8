//! A review queue: the documents of a results file whose labels would teach a model most,
//! for people to label in a spreadsheet (`docclass review`), and their labels read back
//! for training (`docclass train --review`). The queue names each document by its id and
//! source; both sides read its text from there again, so that the spreadsheet only has
//! to carry the `gold` column people fill in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::ingest::{walk_inputs, DocumentReader, FieldNames, Next, ReadLimits, Source};
use crate::output::results::{for_each_record, Classified, ResultRecord};

/// How candidates are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Smallest gap between the two best scores first.
    Margin,
    /// Highest entropy of the scores first.
    Entropy,
    /// Documents two results files label differently, those both are surest of first.
    Disagreement,
}

/// A document that could go into the queue.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: String,
    pub source: Source,
    pub label: String,
    pub score: f32,
    /// The second-best label (margin, entropy) or the other results file's label
    /// (disagreement), with its score.
    pub runner_up: Option<(String, f32)>,
    /// Lower comes first.
    priority: f64,
    /// Character ranges of the terms that spoke most for the label (`--explain`).
    pub marks: Vec<(usize, usize)>,
}

/// The classified records of a results file by the classification of `head`, and the
/// number of error records left out.
fn read_classified(path: &Path, head: Option<&str>) -> Result<(Vec<(ResultRecord, Classified)>, usize)> {
    let mut records = Vec::new();
    let mut failed = 0;
    for_each_record(path, |line, record| {
        if record.error.is_some() {
            failed += 1;
            return Ok(());
        }
        let Some(classified) = record.classification(head).cloned() else {
            bail!(
                "{}:{line}: record {:?} has no classification{}",
                path.display(),
                record.id,
                head.map_or(String::new(), |h| format!(
                    " of head {h:?} under `heads` (the first head's results are the record's own label: leave out --head)"
                ))
            );
        };
        records.push((record, classified));
        Ok(())
    })?;
    Ok((records, failed))
}

/// A word of a record's evidence: its text, its part in setting the label apart from
/// the runner-up (in the label's logit where there is none), and its occurrences.
pub struct EvidenceWord {
    pub text: String,
    pub strength: f32,
    pub occurrences: Vec<(usize, usize)>,
}

/// The word contributions of a record's `evidence`, strongest first (as written).
pub fn evidence_words(evidence: Option<&serde_json::Value>) -> Vec<EvidenceWord> {
    let Some(evidence) = evidence else { return Vec::new() };
    evidence["contributions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["source"] == "word")
        .filter_map(|c| {
            let strength = c["versus"].as_f64().or_else(|| c["value"].as_f64())? as f32;
            let occurrences = c["occurrences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| Some((o["start"].as_u64()? as usize, o["end"].as_u64()? as usize)))
                .collect();
            Some(EvidenceWord { text: c["text"].as_str()?.to_string(), strength, occurrences })
        })
        .collect()
}

/// Where the text should be marked for a reader: the occurrences of the words that
/// spoke for the label.
pub fn evidence_marks(words: &[EvidenceWord]) -> Vec<(usize, usize)> {
    words.iter().filter(|w| w.strength > 0.0).flat_map(|w| w.occurrences.iter().copied()).collect()
}

/// Candidates from one results file (margin, entropy) or two (disagreement: the ids
/// both label, differently), best first.
pub fn candidates(results: &Path, other: Option<&Path>, strategy: Strategy, head: Option<&str>) -> Result<Candidates> {
    let (records, mut failed) = read_classified(results, head)?;
    let others: Option<HashMap<String, Classified>> = match other {
        Some(path) => {
            let (records, other_failed) = read_classified(path, head)?;
            failed += other_failed;
            Some(records.into_iter().map(|(r, c)| (r.id, c)).collect())
        }
        None => None,
    };
    match (strategy, &others) {
        (Strategy::Disagreement, None) => bail!("--strategy disagreement needs a second results file"),
        (Strategy::Margin | Strategy::Entropy, Some(_)) => {
            bail!("a second results file is for --strategy disagreement; margin and entropy read one")
        }
        _ => {}
    }
    let labels: BTreeSet<String> =
        records.iter().flat_map(|(_, c)| c.scores.iter().map(|s| s.label.clone()).chain([c.label.clone()])).collect();
    let fewest_scores = records.iter().map(|(_, c)| c.scores.len()).min().unwrap_or(labels.len());
    match strategy {
        Strategy::Entropy if fewest_scores < labels.len() => bail!(
            "{}: --strategy entropy needs every label's score, but records hold {fewest_scores} of {} labels: run classify without --top-k (or use --strategy margin with --top-k 2 or more)",
            results.display(),
            labels.len()
        ),
        Strategy::Margin if fewest_scores < 2.min(labels.len()) => bail!(
            "{}: --strategy margin needs the two best scores, but records hold {fewest_scores}: run classify with --top-k 2 or more, or without --top-k",
            results.display()
        ),
        _ => {}
    }
    let mut out = Vec::new();
    for (record, c) in records {
        let second = c.scores.iter().find(|s| s.label != c.label);
        let (runner_up, priority) = match (strategy, &others) {
            (Strategy::Disagreement, Some(others)) => {
                let Some(o) = others.get(&record.id).filter(|o| o.label != c.label) else { continue };
                (Some((o.label.clone(), o.score)), -f64::from(c.score + o.score))
            }
            (Strategy::Entropy, _) => {
                let entropy: f64 =
                    c.scores.iter().map(|s| f64::from(s.score)).filter(|&p| p > 0.0).map(|p| -p * p.ln()).sum();
                (second.map(|s| (s.label.clone(), s.score)), -entropy)
            }
            _ => (second.map(|s| (s.label.clone(), s.score)), f64::from(c.score - second.map_or(0.0, |s| s.score))),
        };
        out.push(Candidate {
            marks: evidence_marks(&evidence_words(c.evidence.as_ref())),
            id: record.id,
            source: record.source,
            label: c.label,
            score: c.score,
            runner_up,
            priority,
        });
    }
    // Ties by input order, so the queue is the same on every run.
    out.sort_by(|a, b| a.priority.total_cmp(&b.priority));
    Ok(Candidates { best_first: out, failed, labels })
}

/// What a results file offers a queue.
pub struct Candidates {
    pub best_first: Vec<Candidate>,
    /// Error records left out.
    pub failed: usize,
    /// Every label the records name: the labels a reviewer may give.
    pub labels: BTreeSet<String>,
}

/// Word 3-gram shingles of a text, for near-duplicate checks.
fn shingles(text: &str) -> BTreeSet<u64> {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    words
        .windows(3.min(words.len()).max(1))
        .map(|w| {
            let digest = Sha256::digest(w.join(" ").as_bytes());
            u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
        })
        .collect()
}

/// Share of shingles two texts have in common (Jaccard).
fn overlap(a: &BTreeSet<u64>, b: &BTreeSet<u64>) -> f64 {
    let common = a.intersection(b).count();
    let union = a.len() + b.len() - common;
    if union == 0 {
        1.0
    } else {
        common as f64 / union as f64
    }
}

/// Texts sharing this much of their word 3-grams count as the same document.
pub const NEAR_DUPLICATE: f64 = 0.8;

/// Up to `budget` candidates, spread over the predicted labels (each label in turn takes
/// its next best), without exact or near duplicates of one already taken, most
/// uncertain first. `text_of` gives a candidate's text. Returns the chosen with their
/// texts, and the duplicates skipped.
pub fn choose(
    candidates: Vec<Candidate>,
    budget: usize,
    mut text_of: impl FnMut(&Candidate) -> Result<String>,
) -> Result<(Vec<(Candidate, String)>, usize)> {
    // Labels in the order of their best candidate, each with its candidates best first.
    let mut by_label: Vec<(String, std::collections::VecDeque<Candidate>)> = Vec::new();
    for c in candidates {
        match by_label.iter_mut().find(|(label, _)| *label == c.label) {
            Some((_, queue)) => queue.push_back(c),
            None => by_label.push((c.label.clone(), [c].into())),
        }
    }
    let mut chosen: Vec<(Candidate, String)> = Vec::new();
    let mut seen_hashes = BTreeSet::new();
    let mut seen_shingles: Vec<BTreeSet<u64>> = Vec::new();
    let mut duplicates = 0;
    while chosen.len() < budget && by_label.iter().any(|(_, q)| !q.is_empty()) {
        for (_, queue) in by_label.iter_mut() {
            if chosen.len() >= budget {
                break;
            }
            while let Some(c) = queue.pop_front() {
                let text = text_of(&c)?;
                let hash = Sha256::digest(text.as_bytes());
                let own = shingles(&text);
                if !seen_hashes.insert(hash) || seen_shingles.iter().any(|s| overlap(s, &own) >= NEAR_DUPLICATE) {
                    duplicates += 1;
                    continue;
                }
                seen_shingles.push(own);
                chosen.push((c, text));
                break;
            }
        }
    }
    // The spread decides which documents; the rows go most uncertain first, so that a
    // reviewer who stops early has done the most useful ones.
    chosen.sort_by(|a, b| a.0.priority.total_cmp(&b.0.priority));
    Ok((chosen, duplicates))
}

/// About `width` characters of `text` on one line around its first mark, every mark in
/// the excerpt put in ⟦ ⟧.
pub fn excerpt(text: &str, marks: &[(usize, usize)], width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut marks: Vec<(usize, usize)> = marks.iter().copied().filter(|&(s, e)| s < e && e <= chars.len()).collect();
    marks.sort_unstable();
    let from = marks.first().map_or(0, |&(s, _)| s.saturating_sub(width / 4));
    let to = (from + width).min(chars.len());
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut i = from;
    let mut next = marks.iter().filter(|&&(s, _)| s >= from).peekable();
    while i < to {
        match next.peek() {
            Some(&&(s, e)) if s == i => {
                let end = e.min(to);
                out.push('⟦');
                out.extend(&chars[s..end]);
                out.push('⟧');
                i = end;
                next.next();
                while next.peek().is_some_and(|&&(s, _)| s < i) {
                    next.next();
                }
            }
            _ => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    if to < chars.len() {
        out.push('…');
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The columns of a queue by one results file; people fill `gold`.
pub const COLUMNS: [&str; 8] = ["id", "source", "label", "score", "runner_up", "runner_up_score", "excerpt", "gold"];
/// The columns of a disagreement queue: what each results file says.
pub const DISAGREEMENT_COLUMNS: [&str; 8] =
    ["id", "source", "label_a", "score_a", "label_b", "score_b", "excerpt", "gold"];

/// A labelled row of a queue, read back.
pub struct Reviewed {
    pub id: String,
    /// The source file, as it can be opened from here, and the line (JSONL, CSV/TSV).
    pub source: Source,
    pub gold: String,
    /// The row's line in the queue file.
    pub line: usize,
}

/// The rows of a filled-in queue that have a `gold` label, and how many have none.
pub fn read_queue(path: &Path) -> Result<(Vec<Reviewed>, usize)> {
    // Spreadsheets save in UTF-8 with a BOM, or in Windows-1252 (Excel's "CSV"): decoded
    // as inputs are.
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (text, _) = crate::ingest::decode_text(&bytes).with_context(|| format!("{}: not a queue", path.display()))?;
    // Spreadsheets save CSV with `,` or, in German locales, `;`.
    let first = text.lines().next().unwrap_or("");
    let delimiter = if first.matches(';').count() > first.matches(',').count() { b';' } else { b',' };
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(text.as_bytes());
    let header = reader.headers().with_context(|| format!("{}: no header row", path.display()))?.clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| format!("{}: no {name:?} column; is this a queue of docclass review?", path.display()))
    };
    let (id, source, gold) = (column("id")?, column("source")?, column("gold")?);
    let mut rows = Vec::new();
    let mut unlabelled = 0;
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        let cell = |k: usize| row.get(k).unwrap_or("").trim().to_string();
        if cell(gold).is_empty() {
            unlabelled += 1;
            continue;
        }
        let source = cell(source);
        // `path:line` for rows of JSONL/CSV inputs; the path alone otherwise.
        let (path_part, line) = match source.rsplit_once(':') {
            Some((p, line)) if line.chars().all(|c| c.is_ascii_digit()) && !line.is_empty() => {
                (p.to_string(), line.parse().ok())
            }
            _ => (source.clone(), None),
        };
        let source = Source { path: crate::fsutil::resolve_from_file_of(path, &path_part), line };
        rows.push(Reviewed { id: cell(id), source, gold: cell(gold), line: i + 2 });
    }
    Ok((rows, unlabelled))
}

/// The labels a reviewer may write in `gold`, matched as people type them: case and
/// spaces do not matter (`BVERFG`, ` bverfg ` are `bverfg`), and a label's display name
/// from a label names file counts as the label (`Arbeitsrecht (BAG)` is `bag`).
pub struct GoldLabels {
    by_key: HashMap<String, String>,
}

impl GoldLabels {
    pub fn new<'a>(labels: impl IntoIterator<Item = &'a String>, display_names: &BTreeMap<String, String>) -> Self {
        let mut by_key = HashMap::new();
        for label in labels {
            by_key.insert(gold_key(label), label.clone());
            if let Some(name) = display_names.get(label) {
                by_key.entry(gold_key(name)).or_insert_with(|| label.clone());
            }
        }
        Self { by_key }
    }

    /// The training label `gold` names, if any.
    pub fn resolve(&self, gold: &str) -> Option<&str> {
        self.by_key.get(&gold_key(gold)).map(String::as_str)
    }

    /// The labels, sorted, for messages.
    pub fn listing(&self) -> String {
        let labels: BTreeSet<&str> = self.by_key.values().map(String::as_str).collect();
        labels.into_iter().collect::<Vec<_>>().join(", ")
    }
}

fn gold_key(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// A place in a source: its path, and the line for JSONL and CSV/TSV inputs.
type Place = (String, Option<u64>);

/// Texts of documents read again from their sources, found by a record's source and id.
#[derive(Default)]
pub struct SourceTexts {
    texts: Vec<String>,
    /// (path, id) → index into `texts`.
    by_id: HashMap<(String, String), usize>,
    /// (id, index into `texts`) of every document read at a place.
    by_place: HashMap<Place, Vec<(String, usize)>>,
}

impl SourceTexts {
    /// The text of the document `id` from `source`. A document without an id of its
    /// own is named after the path classify was given (`letters.tsv:18`, `mail.eml#1:a.pdf`),
    /// which differs from the path it is read from now: such a document is found by its
    /// place in the file instead.
    pub fn get(&self, source: &Source, id: &str) -> Option<&str> {
        if let Some(&i) = self.by_id.get(&(source.path.clone(), id.to_string())) {
            return Some(&self.texts[i]);
        }
        let derived = |candidate: &str| candidate.starts_with(source.path.as_str());
        // A mail's attachments share its place: they differ after the first `#`.
        let attachment = |id: &str| id.find('#').map(|i| id[i..].to_string());
        let here = self.by_place.get(&(source.path.clone(), source.line))?;
        here.iter()
            .filter(|(candidate, _)| derived(candidate))
            .find(|(candidate, _)| attachment(candidate) == attachment(id))
            .map(|&(_, i)| self.texts[i].as_str())
    }

    fn insert(&mut self, source: Source, id: String, text: String) {
        let i = self.texts.len();
        self.texts.push(text);
        self.by_place.entry((source.path.clone(), source.line)).or_default().push((id.clone(), i));
        self.by_id.insert((source.path, id), i);
    }
}

impl SourceTexts {
    /// Adds the documents of `paths`, read as `classify` reads them. A source that is gone
    /// has no text to give (callers say what that means for them).
    pub fn read(&mut self, paths: &BTreeSet<String>, fields: &FieldNames) -> Result<()> {
        let inputs: Vec<std::path::PathBuf> =
            paths.iter().map(std::path::PathBuf::from).filter(|p| p.exists()).collect();
        if inputs.is_empty() {
            return Ok(());
        }
        // Documents `classify` read are read again whatever limits it ran with.
        let limits = ReadLimits { document_bytes: u64::MAX, extract_time: std::time::Duration::from_secs(600) };
        let mut reader = DocumentReader::new(walk_inputs(&inputs)?, fields.clone(), limits);
        while let Some(next) = reader.next_wanted(|_| true) {
            if let Next::Item(Ok(document)) = next {
                self.insert(document.source, document.id, document.text);
            }
        }
        Ok(())
    }
}

/// The texts of the documents in `paths`, read as `classify` reads them.
pub fn read_texts(paths: &BTreeSet<String>, fields: &FieldNames) -> Result<SourceTexts> {
    let mut texts = SourceTexts::default();
    texts.read(paths, fields)?;
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_mark_the_evidence_on_one_line() {
        let text = "Der Bescheid\nvom Finanzamt über die Einkommensteuer.";
        let finanzamt = (17, 26);
        assert_eq!(&text.chars().skip(17).take(9).collect::<String>(), "Finanzamt");
        assert_eq!(excerpt(text, &[finanzamt], 100), "Der Bescheid vom ⟦Finanzamt⟧ über die Einkommensteuer.");
        // Overlapping marks become one; a narrow excerpt starts shortly before the first.
        let narrow = excerpt(text, &[finanzamt, (20, 30)], 16);
        assert_eq!(narrow, "…vom ⟦Finanzamt⟧ üb…");
    }

    #[test]
    fn gold_labels_match_as_people_type_them() {
        let labels: Vec<String> = ["bag", "bverfg"].map(String::from).to_vec();
        let names = BTreeMap::from([("bag".to_string(), "Arbeitsrecht (BAG)".to_string())]);
        let gold = GoldLabels::new(&labels, &names);
        assert_eq!(gold.resolve("BVERFG"), Some("bverfg"));
        assert_eq!(gold.resolve("  bverfg "), Some("bverfg"));
        assert_eq!(gold.resolve("arbeitsrecht  (bag)"), Some("bag"));
        assert_eq!(gold.resolve("Patentrecht"), None);
        assert_eq!(gold.listing(), "bag, bverfg");
    }

    #[test]
    fn queues_saved_in_windows_1252_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("queue.csv");
        // "Bußgeld" in Windows-1252, `;`-separated as German Excel saves it.
        let mut bytes = b"id;source;label;excerpt;gold\ndoc1;in.tsv:2;bag;Bu".to_vec();
        bytes.extend([0xDF]);
        bytes.extend(b"geld;bfh\ndoc2;in.tsv:3;bag;x;\n");
        std::fs::write(&queue, bytes).unwrap();
        let (rows, unlabelled) = read_queue(&queue).unwrap();
        assert_eq!((rows.len(), unlabelled), (1, 1));
        assert_eq!((rows[0].id.as_str(), rows[0].gold.as_str(), rows[0].line), ("doc1", "bfh", 2));
        assert_eq!(rows[0].source.path, dir.path().join("in.tsv").display().to_string(), "found beside the queue");
        assert_eq!(rows[0].source.line, Some(2));
    }

    #[test]
    fn near_duplicates_share_most_word_triples() {
        let a = shingles("Der Antrag auf Aufenthaltserlaubnis wird abgelehnt weil die Unterlagen fehlen");
        let b = shingles("Der Antrag auf Aufenthaltserlaubnis wird abgelehnt weil die Unterlagen fehlen .");
        let c = shingles("Die Klage gegen den Bescheid des Finanzamts hat keinen Erfolg");
        assert!(overlap(&a, &b) >= NEAR_DUPLICATE);
        assert!(overlap(&a, &c) < 0.1);
    }
}
