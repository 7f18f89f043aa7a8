//! An archive at a glance (`docclass report`): results files of `classify` streamed
//! through counters whose size does not grow with the archive — documents per label
//! and per month, a confidence histogram, the most frequent entities per type, failures
//! by reason, and the least confident documents — rendered as one self-contained page.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::Path;

use anyhow::Result;

use crate::eval::html::{escape, html_table, page, strings, svg};
use crate::infer::runner::failure_reason;
use crate::ingest::Source;
use crate::output::dates::{Period, RecordDates};
use crate::output::results::{for_each_record, ResultRecord};
use crate::review::{evidence_marks, evidence_words, SourceTexts};

/// Confidence histogram bins over [0, 1].
const BINS: usize = 20;
/// Distinct names tracked per entity type; beyond, counts are approximate (SpaceSaving).
const NAMES_PER_TYPE: usize = 1000;
/// Names listed per entity type.
const TOP_NAMES: usize = 20;

/// The most frequent names of one entity type, counted with SpaceSaving: exact while
/// there are at most [`NAMES_PER_TYPE`] distinct names, else each count at most `error`
/// too high.
/// Names are counted by [`name_key`], so that `Bundesgerichtshof` and
/// `Bundesgerichtshofs` are one name, shown as first seen.
#[derive(Default)]
struct TopNames {
    /// Key → (count, possible excess).
    counts: HashMap<String, (u64, u64)>,
    /// (count, key), so that the least counted is found at once.
    by_count: std::collections::BTreeSet<(u64, String)>,
    /// Key → the name as first seen.
    shown: HashMap<String, String>,
}

/// A name without the genitive ending of its last word (`-s`, `-es` of words long enough
/// to have one), so that the inflected forms of one name count together.
fn name_key(name: &str) -> String {
    let (head, last) = match name.rsplit_once(' ') {
        Some((head, last)) => (Some(head), last),
        None => (None, name),
    };
    let letters = last.chars().count();
    let stem = if letters > 7 && last.ends_with("es") && !last.ends_with("ses") {
        &last[..last.len() - 2]
    } else if letters > 5 && last.ends_with('s') && !last.ends_with("ss") && last.chars().all(char::is_alphabetic) {
        &last[..last.len() - 1]
    } else {
        last
    };
    match head {
        Some(head) => format!("{head} {stem}"),
        None => stem.to_string(),
    }
}

impl TopNames {
    fn add(&mut self, name: &str) {
        let key = name_key(name);
        if let Some((count, _)) = self.counts.get_mut(&key) {
            self.by_count.remove(&(*count, key.clone()));
            *count += 1;
            self.by_count.insert((*count, key));
            return;
        }
        let name_shown = name.to_string();
        let name = key.as_str();
        let (count, excess) = if self.counts.len() < NAMES_PER_TYPE {
            (1, 0)
        } else {
            // Full: the least counted name makes room, and the new one inherits its count.
            let (smallest, name_out) = self.by_count.pop_first().expect("full");
            self.counts.remove(&name_out);
            self.shown.remove(&name_out);
            (smallest + 1, smallest)
        };
        self.counts.insert(name.to_string(), (count, excess));
        self.by_count.insert((count, name.to_string()));
        self.shown.insert(name.to_string(), name_shown);
    }

    /// The top names, most frequent first (ties by name), with count and possible excess.
    fn top(&self, n: usize) -> Vec<(&str, u64, u64)> {
        let mut all: Vec<(&str, u64, u64)> = self
            .counts
            .iter()
            .map(|(k, &(c, e))| (self.shown.get(k).map_or(k.as_str(), String::as_str), c, e))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}

/// A least-confident document kept for the sample, ordered by score, then input order.
struct Sample {
    /// The score's bits (non-negative floats order as their bits), so the heap can hold it.
    score_bits: u32,
    /// Input order, for ties.
    order: u64,
    id: String,
    source: Source,
    label: String,
    /// The second-best label and its score.
    runner_up: Option<(String, f32)>,
    marks: Vec<(usize, usize)>,
    /// The words that set the label apart (`--explain`), strongest first.
    evidence: Vec<(String, f32)>,
}

/// Evidence words shown per sampled document.
const EVIDENCE_WORDS: usize = 6;
/// Failed documents listed by name.
const FAILED_LISTED: usize = 100;

impl Sample {
    fn key(&self) -> (u32, u64) {
        (self.score_bits, self.order)
    }
}

impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Sample {}

impl PartialOrd for Sample {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sample {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// What `report` needs to know.
pub struct OverviewOptions {
    /// The classification head to report (default: the record's own label).
    pub head: Option<String>,
    /// Documents below this confidence would go to a person.
    pub review_below: f32,
    /// How many of the least confident documents to show.
    pub sample: usize,
    /// The names people read for labels (`train --label-names`).
    pub label_names: BTreeMap<String, String>,
    /// The kept input field with each record's date (default: the source file's
    /// modification time).
    pub date_field: Option<String>,
}

/// The counters, fed one record at a time.
pub struct Overview {
    options: OverviewOptions,
    files: Vec<String>,
    documents: u64,
    failed: u64,
    failures: BTreeMap<String, u64>,
    /// The first failed documents: id, source, error.
    failed_listed: Vec<(String, String, String)>,
    by_label: BTreeMap<String, u64>,
    /// `YYYY-MM` → label → documents.
    by_month: BTreeMap<String, BTreeMap<String, u64>>,
    undated: u64,
    histogram: [u64; BINS],
    below: u64,
    entities: BTreeMap<String, TopNames>,
    least_confident: BinaryHeap<Sample>,
    dates: RecordDates,
}

impl Overview {
    pub fn new(options: OverviewOptions) -> Self {
        Self {
            files: Vec::new(),
            documents: 0,
            failed: 0,
            failures: BTreeMap::new(),
            failed_listed: Vec::new(),
            by_label: BTreeMap::new(),
            by_month: BTreeMap::new(),
            undated: 0,
            histogram: [0; BINS],
            below: 0,
            entities: BTreeMap::new(),
            least_confident: BinaryHeap::new(),
            dates: RecordDates::new(options.date_field.clone()),
            options,
        }
    }

    /// Streams the records of one results file (plain or gzip) into the counters.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        self.files.push(path.display().to_string());
        for_each_record(path, |line, record| self.add(record, path, line))
    }

    fn add(&mut self, record: ResultRecord, results: &Path, line: usize) -> Result<()> {
        let order = self.documents;
        self.documents += 1;
        if let Some(error) = &record.error {
            self.failed += 1;
            *self.failures.entry(failure_reason(error)).or_default() += 1;
            if self.failed_listed.len() < FAILED_LISTED {
                self.failed_listed.push((record.id.clone(), record.source.to_string(), error.clone()));
            }
            return Ok(());
        }
        if let Some(c) = record.classification(self.options.head.as_deref()) {
            *self.by_label.entry(c.label.clone()).or_default() += 1;
            match self.dates.day_of(&record).map(|day| Period::Month.name(day)) {
                Some(month) => *self.by_month.entry(month).or_default().entry(c.label.clone()).or_default() += 1,
                None => self.undated += 1,
            }
            let score = c.score.clamp(0.0, 1.0);
            self.histogram[((score * BINS as f32) as usize).min(BINS - 1)] += 1;
            if score < self.options.review_below {
                self.below += 1;
            }
            // Only a document that enters the sample is copied and its evidence read.
            if self.would_keep((score.to_bits(), order)) {
                let words = evidence_words(c.evidence.as_ref());
                self.keep(Sample {
                    score_bits: score.to_bits(),
                    order,
                    id: record.id.clone(),
                    source: record.source.clone(),
                    label: c.label.clone(),
                    runner_up: c.scores.iter().find(|s| s.label != c.label).map(|s| (s.label.clone(), s.score)),
                    marks: evidence_marks(&words),
                    evidence: words.into_iter().take(EVIDENCE_WORDS).map(|w| (w.text, w.strength)).collect(),
                });
            }
        } else if self.options.head.is_some() || record.entities.is_none() {
            // A tagger's records have entities and no label; anything else lacks what
            // the page reports.
            anyhow::bail!(
                "{}:{line}: record {:?} has no classification{}",
                results.display(),
                record.id,
                self.options.head.as_ref().map_or(String::new(), |h| format!(" of head {h:?}"))
            );
        }
        // Each name counts once per document that mentions it.
        let mut named: BTreeMap<(&str, String), String> = BTreeMap::new();
        for entity in record.entities.iter().flatten() {
            let name = entity.text.split_whitespace().collect::<Vec<_>>().join(" ");
            named.entry((entity.label.as_str(), name_key(&name))).or_insert(name);
        }
        for ((label, _), name) in named {
            self.entities.entry(label.to_string()).or_default().add(&name);
        }
        Ok(())
    }

    /// Whether a document with this (score bits, input order) belongs to the sample of
    /// the least confident.
    fn would_keep(&self, key: (u32, u64)) -> bool {
        self.options.sample > 0
            && (self.least_confident.len() < self.options.sample
                || self.least_confident.peek().is_some_and(|top| key < top.key()))
    }

    /// Adds a sample [`Self::would_keep`] took, making room if the sample is full.
    fn keep(&mut self, sample: Sample) {
        // A max-heap of the kept: its top is the most confident of them, replaced first.
        if self.least_confident.len() == self.options.sample {
            self.least_confident.pop();
        }
        self.least_confident.push(sample);
    }

    /// What the months are months of.
    fn months_title(&self) -> String {
        match self.dates.field() {
            Some(field) => format!("month (field {field})"),
            None => "month (file modification)".to_string(),
        }
    }

    /// The page. `texts` gives the text of a sampled document by (path, id), where it can
    /// still be read.
    pub fn html(&self, texts: &SourceTexts) -> String {
        let classified: u64 = self.by_label.values().sum();
        let share =
            |n: u64, of: u64| if of == 0 { "–".to_string() } else { format!("{:.1}%", 100.0 * n as f64 / of as f64) };
        let mut body = format!("<h1>Overview of {} documents</h1>\n<dl>", self.documents);
        let months: Vec<&String> = self.by_month.keys().collect();
        let months_title = &self.months_title();
        for (key, value) in [
            ("results", self.files.join(", ")),
            ("documents", self.documents.to_string()),
            ("classified", classified.to_string()),
            ("failed", format!("{} ({})", self.failed, share(self.failed, self.documents))),
            (
                "below the review threshold",
                format!(
                    "{} ({}) with confidence < {}",
                    self.below,
                    share(self.below, classified),
                    self.options.review_below
                ),
            ),
            (
                months_title,
                match (months.first(), months.last()) {
                    (Some(first), Some(last)) => format!("{first} to {last}; {} documents undated", self.undated),
                    _ => "none".to_string(),
                },
            ),
        ] {
            body += &format!("<dt>{}</dt><dd>{}</dd>", escape(key), escape(&value));
        }
        body += "</dl>\n";

        let mut labels: Vec<(&String, &u64)> = self.by_label.iter().collect();
        labels.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        body += "<h2>Documents per label</h2>\n";
        body += &html_table(
            &strings(&["label", "documents", "share"]),
            &labels.iter().map(|(l, &n)| vec![self.shown(l), n.to_string(), share(n, classified)]).collect::<Vec<_>>(),
        );

        if !self.by_month.is_empty() {
            let per_month: Vec<(String, f64)> =
                self.by_month.iter().map(|(m, ls)| (m.clone(), ls.values().sum::<u64>() as f64)).collect();
            body += &section(&format!("Documents per {months_title}"), &svg::count_chart(&per_month));
            let rows: Vec<Vec<String>> = self
                .by_month
                .iter()
                .flat_map(|(m, ls)| ls.iter().map(move |(l, n)| vec![m.clone(), self.shown(l), n.to_string()]))
                .collect();
            body += &html_table(&strings(&["month", "label", "documents"]), &rows);
        }

        let bins: Vec<(String, f64)> = self
            .histogram
            .iter()
            .enumerate()
            .map(|(i, &n)| (format!("{:.2}–{:.2}", i as f64 / BINS as f64, (i + 1) as f64 / BINS as f64), n as f64))
            .collect();
        body += &section(
            &format!("Confidence ({} below {})", share(self.below, classified), self.options.review_below),
            &svg::count_chart(&bins),
        );

        for (kind, names) in &self.entities {
            let rows: Vec<Vec<String>> = names
                .top(TOP_NAMES)
                .iter()
                .map(|(name, count, excess)| {
                    let count = if *excess > 0 { format!("{}–{count}", count - excess) } else { count.to_string() };
                    vec![name.to_string(), count]
                })
                .collect();
            body += &format!("<h2>Most frequent {} entities</h2>\n", escape(kind));
            if let Some(meaning) = entity_type_meaning(kind) {
                body += &format!("<p>{}</p>\n", escape(meaning));
            }
            body += "<p>Documents that name each; inflected forms of a name (Bundesgerichtshof, Bundesgerichtshofs) count as one.</p>\n";
            body += &html_table(&strings(&["name", "documents"]), &rows);
        }

        if !self.failures.is_empty() {
            body += "<h2>Failed documents, by reason</h2>\n";
            let rows: Vec<Vec<String>> = self.failures.iter().map(|(r, n)| vec![r.clone(), n.to_string()]).collect();
            body += &html_table(&strings(&["reason", "documents"]), &rows);
            body += &format!(
                "<h2>Failed documents</h2>\n<p>{}</p>\n",
                if self.failed as usize > self.failed_listed.len() {
                    format!(
                        "The first {} of {}, each with its file and the reason.",
                        self.failed_listed.len(),
                        self.failed
                    )
                } else {
                    "Each with its file and the reason.".to_string()
                }
            );
            let rows: Vec<Vec<String>> = self
                .failed_listed
                .iter()
                .map(|(id, source, error)| vec![id.clone(), source.clone(), error.clone()])
                .collect();
            body += &html_table(&strings(&["id", "source", "error"]), &rows);
        }

        if !self.least_confident.is_empty() {
            body += "<h2>Least confident documents</h2>\n<p>Where classify ran with <code>--explain</code>, \
                     the words that set the label apart from the runner-up are listed with their part in that \
                     (green for the label, red for the runner-up) and marked in the text.</p>\n";
            body += EVIDENCE_STYLE;
            body += "<table class=\"sortable\"><thead><tr>";
            for h in ["score", "label", "runner-up", "id", "source", "evidence", "text"] {
                body += &format!("<th title=\"sort\">{h}</th>");
            }
            body += "</tr></thead><tbody>";
            for s in self.least_confident_sorted() {
                let text = texts.get(&s.source, &s.id);
                let excerpt = text.map_or_else(
                    || "(the source can no longer be read)".to_string(),
                    |t| crate::review::excerpt(t, &s.marks, 300),
                );
                let marked = escape(&excerpt).replace('⟦', "<mark>").replace('⟧', "</mark>");
                let runner_up =
                    s.runner_up.as_ref().map_or(String::new(), |(l, score)| format!("{} {score:.4}", self.shown(l)));
                body += &format!(
                    "<tr><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{marked}</td></tr>",
                    f32::from_bits(s.score_bits),
                    escape(&self.shown(&s.label)),
                    escape(&runner_up),
                    escape(&s.id),
                    escape(&s.source.to_string()),
                    signed_bars(&s.evidence),
                );
            }
            body += "</tbody></table>\n";
        }
        page(&format!("Overview of {} documents", self.documents), &body)
    }

    /// A label with the name people read for it, where one is known.
    fn shown(&self, label: &str) -> String {
        match self.options.label_names.get(label) {
            Some(name) if name != label => format!("{label} ({name})"),
            _ => label.to_string(),
        }
    }

    /// The sample, least confident first.
    fn least_confident_sorted(&self) -> Vec<&Sample> {
        let mut all: Vec<&Sample> = self.least_confident.iter().collect();
        all.sort();
        all
    }

    /// A line for the log: documents, labels, failures.
    pub fn summary(&self) -> String {
        format!("{} documents ({} labels, {} failed)", self.documents, self.by_label.len(), self.failed)
    }

    pub fn sample_size(&self) -> usize {
        self.least_confident.len()
    }

    /// How many sampled documents have no text in `texts` (their sources are gone or
    /// moved): the page shows them without an excerpt.
    pub fn samples_without_text(&self, texts: &SourceTexts) -> usize {
        self.least_confident.iter().filter(|s| texts.get(&s.source, &s.id).is_none()).count()
    }

    /// The sampled documents' sources, whose texts the page shows.
    pub fn sample_sources(&self) -> std::collections::BTreeSet<String> {
        self.least_confident.iter().map(|s| s.source.path.clone()).collect()
    }
}

/// The look of [`signed_bars`]: word, bar around a middle line, value.
const EVIDENCE_STYLE: &str = "<style>
.evidence { min-width: 16em; } .evidence-row { display: grid; grid-template-columns: 9em 6em 3.2em; gap: 0.4em; align-items: center; font-size: 12px; }
.evidence-word { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; text-align: right; } .evidence-value { font-variant-numeric: tabular-nums; }
.evidence-track { position: relative; height: 0.8em; background: linear-gradient(to right, transparent calc(50% - 0.5px), #999 calc(50% - 0.5px), #999 calc(50% + 0.5px), transparent calc(50% + 0.5px)); }
</style>
";

/// Words with bars left (against) or right (for) of a middle line, as inline HTML.
fn signed_bars(words: &[(String, f32)]) -> String {
    let max = words.iter().map(|(_, v)| v.abs()).fold(1e-9, f32::max);
    let mut out = String::from("<div class=\"evidence\">");
    for (word, value) in words {
        let width = (value.abs() / max * 50.0).max(1.0);
        let (side, color) = if *value >= 0.0 { ("left:50%", "#2f855a") } else { ("right:50%", "#c53030") };
        out += &format!(
            "<div class=\"evidence-row\" title=\"{0} {value:+.3}\"><span class=\"evidence-word\">{0}</span><span class=\"evidence-track\"><span style=\"position:absolute;{side};width:{width:.0}%;height:100%;background:{color}\"></span></span><span class=\"evidence-value\">{value:+.2}</span></div>",
            escape(word)
        );
    }
    out + "</div>"
}

/// What the entity types of the shipped taggers and of common German NER data mean.
fn entity_type_meaning(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "PER" => "PER: persons (judges, lawyers, parties).",
        "LOC" => "LOC: places (countries, cities, streets, landscapes).",
        "ORG" => "ORG: organisations (courts, institutions, companies, brands).",
        "NRM" => "NRM: legal norms (laws, ordinances, EU norms, such as § 15 AufenthG).",
        "REG" => "REG: case-by-case regulations (contracts, regulations of a single case).",
        "RS" => "RS: court decisions cited (file numbers, such as 1 C 10.17).",
        "LIT" => "LIT: legal literature cited (commentaries, journals).",
        "MISC" | "OTH" => "Other names (events, works, nationalities).",
        "GRT" => "GRT: courts.",
        "GS" => "GS: laws.",
        "VO" => "VO: ordinances.",
        "EUN" => "EUN: European legal norms.",
        "VS" => "VS: regulations.",
        "VT" => "VT: contracts.",
        "RR" => "RR: judges.",
        "AN" => "AN: lawyers.",
        "INN" => "INN: institutions.",
        "UN" => "UN: companies.",
        "MRK" => "MRK: brands.",
        "LD" => "LD: countries.",
        "ST" => "ST: cities.",
        "STR" => "STR: streets.",
        "LDS" => "LDS: landscapes.",
        _ => return None,
    })
}

fn section(title: &str, chart: &str) -> String {
    format!("<h2>{}</h2>\n<div class=\"charts\"><figure>{chart}</figure></div>\n", escape(title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_names_are_exact_until_full_then_bounded() {
        let mut names = TopNames::default();
        for _ in 0..5 {
            names.add("BGB");
        }
        names.add("StGB");
        assert_eq!(names.top(2), vec![("BGB", 5, 0), ("StGB", 1, 0)]);
        for i in 0..3 * NAMES_PER_TYPE {
            names.add(&format!("name {i}"));
        }
        assert_eq!(names.counts.len(), NAMES_PER_TYPE);
        assert_eq!(names.top(1)[0].0, "BGB", "a frequent name survives a flood of rare ones");
    }
}
