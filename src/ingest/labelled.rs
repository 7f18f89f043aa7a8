//! Labelled data for training and evaluation. Unlike `classify`, which reads on past a
//! bad document, training data must be right as a whole: the first problem stops the
//! run with the file, the line and what is wrong.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::decode_text;
use crate::decode::iob2::parse_tag;

/// A column given by its header name or by its 1-based position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Name(String),
    Position(usize),
}

impl std::str::FromStr for Column {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<usize>() {
            Ok(0) => Err("column positions start at 1".into()),
            Ok(n) => Ok(Column::Position(n)),
            Err(_) => Ok(Column::Name(s.to_string())),
        }
    }
}

/// How to read a file of labelled documents.
#[derive(Clone, Debug)]
pub struct DocumentColumns {
    pub text: Column,
    pub label: Column,
    /// The file has no header row (columns then go by position).
    pub no_header: bool,
    /// Splits a CSV/TSV label cell into several labels (multi-label data).
    pub label_separator: Option<String>,
}

impl Default for DocumentColumns {
    fn default() -> Self {
        Self {
            text: Column::Name("text".into()),
            label: Column::Name("label".into()),
            no_header: false,
            label_separator: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LabelledDocument {
    pub text: String,
    pub labels: Vec<String>,
    /// 1-based line in the file, for messages.
    pub line: usize,
    /// The `id` column or field where the data has one (as `classify` reads it).
    pub id: Option<String>,
}

impl LabelledDocument {
    /// The id `classify` gives the document: its `id` column or field, else `PATH:LINE`.
    pub fn id_in(&self, path: &Path) -> String {
        self.id.clone().unwrap_or_else(|| format!("{}:{}", path.display(), self.line))
    }
}

/// One sentence of a CoNLL file: words and their IOB2 tags.
#[derive(Clone, Debug, PartialEq)]
pub struct TaggedSentence {
    pub words: Vec<String>,
    pub tags: Vec<String>,
    /// 1-based line of the first word.
    pub line: usize,
}

impl TaggedSentence {
    /// The words joined by single spaces, which is how the encoder reads a sentence, and
    /// each word's character span in that text.
    pub fn text_and_spans(&self) -> (String, Vec<(usize, usize)>) {
        let mut text = String::new();
        let mut spans = Vec::with_capacity(self.words.len());
        let mut at = 0;
        for (i, word) in self.words.iter().enumerate() {
            if i > 0 {
                text.push(' ');
                at += 1;
            }
            let len = word.chars().count();
            spans.push((at, at + len));
            text.push_str(word);
            at += len;
        }
        (text, spans)
    }
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (text, _) = decode_text(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(text)
}

/// Documents and labels from TSV, CSV or JSONL (by extension).
/// The column or JSON field that names a document, as in `classify`.
const ID_FIELD: &str = "id";

pub fn read_documents(path: &Path, columns: &DocumentColumns) -> Result<Vec<LabelledDocument>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let text = read_text(path)?;
    let docs = match ext.as_str() {
        "jsonl" | "ndjson" => read_jsonl(path, &text, columns)?,
        "csv" => read_delimited(path, &text, b',', true, columns)?,
        "tsv" | "tab" | "txt" => read_delimited(path, &text, b'\t', false, columns)?,
        _ => bail!("{}: unsupported training data (give a .tsv, .csv or .jsonl file)", path.display()),
    };
    if docs.is_empty() {
        bail!("{}: no labelled documents in the file", path.display());
    }
    Ok(docs)
}

fn read_delimited(
    path: &Path,
    text: &str,
    delimiter: u8,
    quoting: bool,
    columns: &DocumentColumns,
) -> Result<Vec<LabelledDocument>> {
    let at = |line: u64| format!("{}:{line}", path.display());
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(quoting)
        .has_headers(!columns.no_header)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = if columns.no_header {
        Vec::new()
    } else {
        reader
            .headers()
            .with_context(|| at(1))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
            .collect()
    };
    let index = |column: &Column, what: &str| -> Result<usize> {
        match column {
            Column::Position(n) => Ok(n - 1),
            Column::Name(name) if columns.no_header => {
                bail!("{}: --no-header needs the {what} column by position, not {name:?}", path.display())
            }
            Column::Name(name) => header
                .iter()
                .position(|h| h == name)
                .with_context(|| format!("{}: no {what} column {name:?} in the header row {header:?}", path.display())),
        }
    };
    let text_index = index(&columns.text, "text")?;
    let label_index = index(&columns.label, "label")?;
    let id_index = header.iter().position(|h| h == ID_FIELD);
    let mut docs = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            anyhow::anyhow!("{}: malformed row: {e}", at(line))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let needed = text_index.max(label_index) + 1;
        if record.len() < needed {
            bail!("{}: the row has {} fields; the text and label columns need {needed}", at(line), record.len());
        }
        let labels = split_labels(&record[label_index], columns.label_separator.as_deref());
        let doc_text = record[text_index].to_string();
        check_document(&doc_text, &labels).map_err(|e| anyhow::anyhow!("{}: {e}", at(line)))?;
        let id = id_index.and_then(|i| record.get(i)).map(str::trim).filter(|id| !id.is_empty()).map(String::from);
        docs.push(LabelledDocument { text: doc_text, labels, line: line as usize, id });
    }
    Ok(docs)
}

fn split_labels(cell: &str, separator: Option<&str>) -> Vec<String> {
    match separator {
        Some(sep) => cell.split(sep).map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
        None => vec![cell.trim().to_string()].into_iter().filter(|l| !l.is_empty()).collect(),
    }
}

fn check_document(text: &str, labels: &[String]) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("empty text".into());
    }
    if labels.is_empty() {
        return Err("no label".into());
    }
    Ok(())
}

fn read_jsonl(path: &Path, text: &str, columns: &DocumentColumns) -> Result<Vec<LabelledDocument>> {
    let name = |column: &Column, what: &str| -> Result<String> {
        match column {
            Column::Name(n) => Ok(n.clone()),
            Column::Position(_) => bail!("{}: JSONL fields go by name; give the {what} field's name", path.display()),
        }
    };
    let text_field = name(&columns.text, "text")?;
    let label_field = name(&columns.label, "label")?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{at}: malformed JSON: {e}"))?;
        let doc_text = match value.get(&text_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => bail!("{at}: no string field {text_field:?}"),
        };
        let labels = match value.get(&label_field) {
            Some(serde_json::Value::String(s)) => split_labels(s, columns.label_separator.as_deref()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|l| l.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .with_context(|| format!("{at}: the labels in {label_field:?} must be strings"))?,
            _ => bail!("{at}: no field {label_field:?} with a label or a list of labels"),
        };
        check_document(&doc_text, &labels).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        let id = match value.get(ID_FIELD) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        docs.push(LabelledDocument { text: doc_text, labels, line: i + 1, id });
    }
    Ok(docs)
}

/// A tag map (`FINE<TAB>COARSE` per line) applied to the types of IOB2 tags.
pub fn read_tag_map(path: &Path) -> Result<BTreeMap<String, String>> {
    Ok(read_pairs(path, "FINE<TAB>COARSE", "the tag map")?.into_iter().collect())
}

/// A label names file: `LABEL<TAB>NAME` per line, the name people read (`bag` →
/// `Arbeitsrecht (BAG)`); `#` comments and a `label<TAB>name` header are skipped.
pub fn read_label_names(path: &Path) -> Result<BTreeMap<String, String>> {
    let pairs = read_pairs(path, "LABEL<TAB>NAME", "the label names file")?;
    Ok(pairs.into_iter().filter(|(label, name)| !(label == "label" && name == "name")).collect())
}

/// Tab-separated pairs, one per line; blank lines and `#` comments skipped.
fn read_pairs(path: &Path, shape: &str, what: &str) -> Result<Vec<(String, String)>> {
    let text = read_text(path)?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('\t') else {
            bail!("{}:{}: expected {shape}", path.display(), i + 1);
        };
        pairs.push((key.trim().to_string(), value.trim().to_string()));
    }
    if pairs.is_empty() {
        bail!("{}: {what} is empty", path.display());
    }
    Ok(pairs)
}

/// Sentences of a CoNLL file: one `WORD TAG` per line (space or tab; the word is the
/// first field and the tag the last), a blank line between sentences, CRLF or LF.
/// `-DOCSTART-` lines are skipped. Tags must be IOB2; `tag_map` renames their types.
pub fn read_conll(path: &Path, tag_map: Option<&BTreeMap<String, String>>) -> Result<Vec<TaggedSentence>> {
    let text = read_text(path)?;
    let mut sentences = Vec::new();
    let mut current = TaggedSentence { words: Vec::new(), tags: Vec::new(), line: 0 };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let at = || format!("{}:{}", path.display(), i + 1);
        if line.trim().is_empty() {
            if !current.words.is_empty() {
                sentences.push(std::mem::replace(
                    &mut current,
                    TaggedSentence { words: Vec::new(), tags: Vec::new(), line: 0 },
                ));
            }
            continue;
        }
        if line.starts_with("-DOCSTART-") {
            continue;
        }
        let fields: Vec<&str> = line.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
        if fields.len() < 2 {
            bail!("{}: expected a word and a tag, found {line:?}", at());
        }
        let (word, tag) = (fields[0], fields[fields.len() - 1]);
        let Some((prefix, kind)) = parse_tag(tag) else {
            bail!("{}: {tag:?} is not an IOB2 tag (O, B-TYPE or I-TYPE)", at());
        };
        let tag = match (prefix, tag_map) {
            ('O', _) => "O".to_string(),
            (_, Some(map)) => match map.get(kind) {
                Some(coarse) => format!("{prefix}-{coarse}"),
                None => bail!("{}: the tag type {kind:?} is not in the tag map", at()),
            },
            (_, None) => tag.to_string(),
        };
        if current.words.is_empty() {
            current.line = i + 1;
        }
        current.words.push(word.to_string());
        current.tags.push(tag);
    }
    if !current.words.is_empty() {
        sentences.push(current);
    }
    if sentences.is_empty() {
        bail!("{}: no sentences in the file", path.display());
    }
    Ok(sentences)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn conll_with_crlf_and_tag_map() {
        let (_d, path) = write("a.conll", "Das O\r\nBGB B-GS\r\n\r\nin O\r\nBerlin B-ST\r\n");
        let map: BTreeMap<String, String> =
            [("GS", "NRM"), ("ST", "LOC")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let sentences = read_conll(&path, Some(&map)).unwrap();
        assert_eq!(sentences.len(), 2);
        assert_eq!(sentences[0].tags, vec!["O", "B-NRM"]);
        assert_eq!(sentences[1].line, 4);
        assert_eq!(sentences[1].text_and_spans(), ("in Berlin".to_string(), vec![(0, 2), (3, 9)]));
    }

    #[test]
    fn conll_errors_name_the_line() {
        let (_d, path) = write("a.conll", "Das O\nBGB X-GS\n");
        let err = read_conll(&path, None).unwrap_err().to_string();
        assert!(err.ends_with("a.conll:2: \"X-GS\" is not an IOB2 tag (O, B-TYPE or I-TYPE)"), "{err}");
        let (_d, path) = write("b.conll", "Das\n");
        assert!(read_conll(&path, None).unwrap_err().to_string().contains("b.conll:1: expected a word and a tag"));
        let (_d, path) = write("c.conll", "-DOCSTART- O\r\n\r\n");
        assert!(read_conll(&path, None).unwrap_err().to_string().contains("no sentences"));
        let (_d, path) = write("d.conll", "\r\n\r\n");
        assert!(read_conll(&path, None).unwrap_err().to_string().contains("d.conll: empty document"));
    }

    #[test]
    fn documents_from_tsv_without_header_and_jsonl_lists() {
        let (_d, path) = write("g.tsv", "ein Text\tOTHER\tOTHER\nnoch einer\tOFFENSE\tINSULT\n");
        let columns = DocumentColumns {
            text: Column::Position(1),
            label: Column::Position(2),
            no_header: true,
            label_separator: None,
        };
        let docs = read_documents(&path, &columns).unwrap();
        assert_eq!(docs[1].labels, vec!["OFFENSE"]);
        assert_eq!(docs[1].line, 2);
        let (_d, path) = write("m.jsonl", "{\"text\": \"a\", \"label\": [\"x\", \"y\"]}\n\n{\"text\": \"b\"}\n");
        let err = read_documents(&path, &DocumentColumns::default()).unwrap_err().to_string();
        assert!(err.contains("m.jsonl:3: no field \"label\""), "{err}");
        let (_d, path) = write("e.tsv", "label\ttext\nbag\t \n");
        let err = read_documents(&path, &DocumentColumns::default()).unwrap_err().to_string();
        assert!(err.contains("e.tsv:2: empty text"), "{err}");
    }
}
