//! Readers per format. `.jsonl`/`.ndjson`: one JSON object per line. `.csv`/`.tsv`: one
//! row per document under a header row (TSV without quoting, as pre-tokenised corpora
//! are written). `.txt`/`.md`, `.html`, `.pdf`, `.docx`, `.odt`, `.rtf`: one document per
//! file (see [`super::extract`]). `.eml`: the mail, and each attachment in one of these
//! formats as a document `MAIL#N:NAME` (attached mails in turn). Any other extension gives an error record, so
//! that no file of an archive is silently passed over.
//!
//! Longer than most files (~500 lines): the row readers (JSONL, CSV, TSV) and the
//! per-file formats share one lazy reader, its limits and its one error-record path.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use super::encoding::decode_text;
use super::extract::{email, extract, guarded, non_empty, Extracted, Kind};
use super::{Document, Failed, Item, Source};

/// Which JSON fields / CSV columns hold the text and the id.
#[derive(Clone, Debug)]
pub struct FieldNames {
    pub text: String,
    pub id: String,
    /// Further fields each record keeps (such as a date), where a row has them.
    pub keep: Vec<String>,
}

impl Default for FieldNames {
    fn default() -> Self {
        Self { text: "text".into(), id: "id".into(), keep: Vec::new() }
    }
}

/// Files with one document per line or row, read as a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowFormat {
    Jsonl,
    Csv,
    Tsv,
}

fn row_format_of(path: &Path) -> Option<RowFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "ndjson" => Some(RowFormat::Jsonl),
        "csv" => Some(RowFormat::Csv),
        "tsv" | "tab" => Some(RowFormat::Tsv),
        _ => None,
    }
}

const SUPPORTED: &str = ".txt, .md, .html, .pdf, .docx, .odt, .rtf, .eml, .jsonl, .csv, .tsv";

/// Bounds on reading one file.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Larger files (and JSONL lines) are error records.
    pub document_bytes: u64,
    /// Time to extract one file's text (PDF, Office, HTML, RTF, e-mail).
    pub extract_time: Duration,
}

/// All documents of all input files, read lazily in input order.
pub struct DocumentReader {
    files: super::InputFiles,
    current: Option<Box<dyn Iterator<Item = Item> + Send>>,
    fields: FieldNames,
    limits: ReadLimits,
}

impl DocumentReader {
    pub fn new(files: super::InputFiles, fields: FieldNames, limits: ReadLimits) -> Self {
        Self { files, current: None, fields, limits }
    }

    fn open(&self, path: PathBuf) -> Box<dyn Iterator<Item = Item> + Send> {
        let display = path.display().to_string();
        let fail = |error: String| -> Box<dyn Iterator<Item = Item> + Send> {
            let source = Source { path: display.clone(), line: None };
            Box::new(std::iter::once(Err(Failed { id: display.clone(), source, error })))
        };
        let row_format = row_format_of(&path);
        let kind = Kind::of(&display);
        if row_format.is_none() && kind.is_none() {
            return fail(format!("unsupported file type (docclass reads {SUPPORTED})"));
        }
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) => return fail(format!("cannot open: {e}")),
        };
        let Some(format) = row_format else {
            let kind = kind.expect("checked above");
            return Box::new(read_file(file, display, kind, self.limits).into_iter());
        };
        match format {
            RowFormat::Jsonl => Box::new(JsonlReader {
                lines: BufReader::new(file),
                path: display,
                line: 0,
                fields: self.fields.clone(),
                max_line_bytes: self.limits.document_bytes,
                stopped: false,
            }),
            RowFormat::Csv | RowFormat::Tsv => {
                match CsvReader::new(file, &display, format == RowFormat::Tsv, &self.fields) {
                    Ok(reader) => Box::new(reader),
                    Err(e) => fail(e),
                }
            }
        }
    }
}

/// What [`DocumentReader::next_wanted`] gives.
#[derive(Debug)]
pub enum Next {
    Item(Item),
    /// A file of one document, whose id (the path) the caller does not want: not read.
    Skipped(String),
}

impl DocumentReader {
    /// The next document, like `next`, except that a file holding exactly one document
    /// (all formats but rows and e-mail) whose id `wanted` refuses is not opened at all:
    /// other shards' PDFs and the documents a resumed run has done cost no extraction.
    pub fn next_wanted(&mut self, wanted: impl Fn(&str) -> bool) -> Option<Next> {
        loop {
            if let Some(current) = &mut self.current {
                if let Some(item) = current.next() {
                    return Some(Next::Item(item));
                }
                self.current = None;
            }
            match self.files.next()? {
                Ok(path) => {
                    let id = path.display().to_string();
                    let single_document =
                        row_format_of(&path).is_none() && Kind::of(&id).is_some_and(|k| k != Kind::Eml);
                    if single_document && !wanted(&id) {
                        return Some(Next::Skipped(id));
                    }
                    self.current = Some(self.open(path));
                }
                Err(failed) => return Some(Next::Item(Err(failed))),
            }
        }
    }
}

impl Iterator for DocumentReader {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        match self.next_wanted(|_| true)? {
            Next::Item(item) => Some(item),
            Next::Skipped(_) => unreachable!("every document is wanted"),
        }
    }
}

/// The document(s) of a file that holds one (or, for e-mail, one and its attachments).
fn read_file(file: File, path: String, kind: Kind, limits: ReadLimits) -> Vec<Item> {
    let max_bytes = limits.document_bytes;
    let mut bytes = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    let read = file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes);
    let error = match read {
        Err(e) => format!("cannot read: {e}"),
        Ok(_) if bytes.len() as u64 > max_bytes => {
            format!("document larger than {max_bytes} bytes (raise --max-document-bytes)")
        }
        Ok(_) => return read_bytes(bytes, path, kind, limits),
    };
    vec![Err(Failed { id: path.clone(), source: Source { path, line: None }, error })]
}

/// The document(s) in the bytes of a file named `name` (already within the size
/// limit). Parsers other than plain text's run under the time limit, on a thread of
/// their own, with panics caught: a broken file is an error record, never a crash.
pub fn read_bytes(bytes: Vec<u8>, name: String, kind: Kind, limits: ReadLimits) -> Vec<Item> {
    let max_bytes = limits.document_bytes;
    if kind == Kind::Text {
        return documents_of(&bytes, name, kind, max_bytes);
    }
    let fail = |error: String| {
        vec![Err(Failed { id: name.clone(), source: Source { path: name.clone(), line: None }, error })]
    };
    let owned_name = name.clone();
    let read = move || guarded("document", || Ok(documents_of(&bytes, owned_name, kind, max_bytes)));
    within(limits.extract_time, read).and_then(|items| items).unwrap_or_else(fail)
}

/// Runs `parse` on a thread of its own and waits for it at most `limit`. A parser still
/// running then (a malformed file it loops on) is left behind, since a thread cannot be
/// stopped; it ends with the process, and the run goes on without it.
fn within<T: Send + 'static>(limit: Duration, parse: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("docclass-reader".into())
        // The parsers recurse; the main thread they ran on before has 8 MiB.
        .stack_size(16 << 20)
        .spawn(move || sender.send(parse()).ok())
        .map_err(|e| format!("cannot start a reader thread: {e}"))?;
    match receiver.recv_timeout(limit) {
        Ok(result) => Ok(result),
        Err(RecvTimeoutError::Timeout) => Err(format!(
            "reading took longer than {} s (raise --max-extract-seconds): a malformed file?",
            limit.as_secs_f64()
        )),
        Err(RecvTimeoutError::Disconnected) => Err("the reader stopped on this file (malformed file?)".into()),
    }
}

/// The document(s) in the bytes of a file of `kind`.
fn documents_of(bytes: &[u8], path: String, kind: Kind, max_bytes: u64) -> Vec<Item> {
    let source = Source { path: path.clone(), line: None };
    let fail = |id: String, error: String| Err(Failed { id, source: source.clone(), error });
    let document = |id: String, e: Extracted| {
        Ok(Document {
            id,
            source: source.clone(),
            text: e.text,
            encoding: e.encoding,
            extractor: e.extractor,
            fields: BTreeMap::new(),
        })
    };
    if kind != Kind::Eml {
        return vec![
            extract(kind, bytes, max_bytes).map_or_else(|e| fail(path.clone(), e), |e| document(path.clone(), e))
        ];
    }
    let mut items = Vec::new();
    mail_documents(bytes, path, 0, max_bytes, &mut |id, extracted| {
        items.push(match extracted {
            Ok(e) => document(id, e),
            Err(e) => fail(id, e),
        })
    });
    items
}

/// Forwarded mails inside mails are read this many levels deep.
const MAX_MAIL_DEPTH: usize = 8;

/// The mail is one document; each attachment in a format docclass reads is one more,
/// named MAIL#N:NAME, and an attached mail (forwarded) is read as a mail in turn
/// (MAIL#N:NAME#M:NAME for its attachments). Other attachments (images, archives) are
/// not text: passed over.
fn mail_documents(
    bytes: &[u8],
    id: String,
    depth: usize,
    max_bytes: u64,
    found: &mut dyn FnMut(String, Result<Extracted, String>),
) {
    let (mail, attachments) = match email(bytes) {
        Ok(parts) => parts,
        Err(e) => return found(id, Err(e)),
    };
    found(id.clone(), non_empty(Extracted { text: mail, encoding: "UTF-8", extractor: "eml" }));
    for (n, attachment) in attachments.into_iter().enumerate() {
        let child = format!("{id}#{}:{}", n + 1, attachment.name);
        let kind = Kind::of(&attachment.name);
        if attachment.is_message || kind == Some(Kind::Eml) {
            if depth + 1 < MAX_MAIL_DEPTH {
                mail_documents(&attachment.bytes, child, depth + 1, max_bytes, found);
            } else {
                found(child, Err(format!("an e-mail attached inside {MAX_MAIL_DEPTH} levels of e-mails: not read")));
            }
        } else if let Some(kind) = kind {
            found(child, extract(kind, &attachment.bytes, max_bytes));
        }
    }
}

struct JsonlReader {
    lines: BufReader<File>,
    path: String,
    line: u64,
    fields: FieldNames,
    max_line_bytes: u64,
    /// Set after an I/O error, which would otherwise repeat on every call.
    stopped: bool,
}

impl JsonlReader {
    /// Reads the next line up to the limit; a longer line is skipped to its end.
    fn read_line(&mut self) -> std::io::Result<Option<(Vec<u8>, bool)>> {
        let mut buf = Vec::new();
        let n = (&mut self.lines).take(self.max_line_bytes.saturating_add(1)).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        let too_long = buf.len() as u64 > self.max_line_bytes && buf.last() != Some(&b'\n');
        if too_long {
            buf.clear();
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = (&mut self.lines).take(1 << 20).read_until(b'\n', &mut rest)?;
                if n == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        Ok(Some((buf, too_long)))
    }

    fn parse(&self, bytes: &[u8]) -> Result<Document, String> {
        let (text, encoding) = match std::str::from_utf8(bytes) {
            Ok(text) => (text.to_owned(), "UTF-8"),
            // JSON is UTF-8 by definition; a line in a legacy encoding is still read.
            Err(_) => decode_text(bytes).map_err(|e| e.to_string())?,
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("malformed JSON: {e}"))?;
        let object = value.as_object().ok_or("the line is not a JSON object")?;
        let doc_text = match object.get(&self.fields.text) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(format!("field {:?} is not a string", self.fields.text)),
            None => return Err(format!("no field {:?} (set --text-field)", self.fields.text)),
        };
        if doc_text.trim().is_empty() {
            return Err("empty document (no text)".into());
        }
        let source = Source { path: self.path.clone(), line: Some(self.line) };
        let id = match object.get(&self.fields.id) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => source.to_string(),
        };
        // Strings as they are, numbers and other values as JSON text.
        let fields = (self.fields.keep.iter())
            .filter_map(|name| match object.get(name)? {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some((name.clone(), s.clone())),
                other => Some((name.clone(), other.to_string())),
            })
            .collect();
        Ok(Document { id, source, text: doc_text, encoding, extractor: "jsonl", fields })
    }
}

impl Iterator for JsonlReader {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if self.stopped {
                return None;
            }
            self.line += 1;
            let source = Source { path: self.path.clone(), line: Some(self.line) };
            let failed = |error: String| Some(Err(Failed { id: source.to_string(), source: source.clone(), error }));
            let (bytes, too_long) = match self.read_line() {
                Ok(Some(line)) => line,
                Ok(None) => return None,
                Err(e) => {
                    self.stopped = true;
                    return failed(format!("cannot read: {e}"));
                }
            };
            if too_long {
                return failed(format!("line longer than {} bytes (raise --max-document-bytes)", self.max_line_bytes));
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(self.parse(&bytes).map_err(|error| Failed { id: source.to_string(), source, error }));
        }
    }
}

struct CsvReader {
    records: csv::Reader<File>,
    path: String,
    columns: usize,
    text_column: usize,
    id_column: Option<usize>,
    /// The kept fields' names and columns.
    kept_columns: Vec<(String, usize)>,
    extractor: &'static str,
    /// Set after an I/O error, which would otherwise repeat on every call.
    stopped: bool,
}

impl CsvReader {
    fn new(file: File, path: &str, tab_separated: bool, fields: &FieldNames) -> Result<Self, String> {
        let mut builder = csv::ReaderBuilder::new();
        builder.flexible(true).has_headers(true);
        if tab_separated {
            builder.delimiter(b'\t').quoting(false);
        }
        let mut records = builder.from_reader(file);
        let headers = records.byte_headers().map_err(|e| format!("cannot read the header row: {e}"))?.clone();
        // Spreadsheet programs often start a CSV file with a UTF-8 byte order mark.
        let names: Vec<String> = headers
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim_start_matches('\u{feff}').trim().to_string())
            .collect();
        let text_column = names
            .iter()
            .position(|n| *n == fields.text)
            .ok_or_else(|| format!("no column {:?} in the header row {:?} (set --text-field)", fields.text, names))?;
        let id_column = names.iter().position(|n| *n == fields.id);
        let kept_columns = (fields.keep.iter())
            .filter_map(|name| Some((name.clone(), names.iter().position(|n| n == name)?)))
            .collect();
        let extractor = if tab_separated { "tsv" } else { "csv" };
        Ok(Self {
            records,
            path: path.to_string(),
            columns: names.len(),
            text_column,
            id_column,
            kept_columns,
            extractor,
            stopped: false,
        })
    }
}

impl Iterator for CsvReader {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.stopped {
            return None;
        }
        let mut record = csv::ByteRecord::new();
        let result = self.records.read_byte_record(&mut record);
        let line = record.position().map_or_else(|| self.records.position().line(), |p| p.line());
        let source = Source { path: self.path.clone(), line: Some(line) };
        let default_id = source.to_string();
        let fail = |error: String| Some(Err(Failed { id: default_id.clone(), source: source.clone(), error }));
        match result {
            Ok(false) => None,
            Err(e) => {
                self.stopped = e.is_io_error();
                fail(format!("malformed row: {e}"))
            }
            Ok(true) if record.len() != self.columns => {
                fail(format!("row has {} fields, the header has {}", record.len(), self.columns))
            }
            Ok(true) => {
                let (text, encoding) = match decode_text(&record[self.text_column]) {
                    Ok(decoded) => decoded,
                    Err(e) => return fail(e.to_string()),
                };
                let id = match self.id_column {
                    Some(c) => String::from_utf8_lossy(&record[c]).into_owned(),
                    None => default_id.clone(),
                };
                let fields = (self.kept_columns.iter())
                    .map(|(name, c)| (name.clone(), String::from_utf8_lossy(&record[*c]).trim().to_string()))
                    .filter(|(_, value)| !value.is_empty())
                    .collect();
                Some(Ok(Document { id, source, text, encoding, extractor: self.extractor, fields }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::walk_inputs;

    /// The reader over `dir` after its listing is read: the first file is returned.
    fn reader_past_first(dir: &Path) -> DocumentReader {
        let limits = ReadLimits { document_bytes: 1 << 20, extract_time: Duration::from_secs(60) };
        let mut reader = DocumentReader::new(walk_inputs(&[dir.to_path_buf()]).unwrap(), FieldNames::default(), limits);
        let Some(Next::Item(Ok(first))) = reader.next_wanted(|_| true) else { panic!("a.txt is readable") };
        assert!(first.id.ends_with("a.txt"));
        reader
    }

    #[test]
    fn forwarded_mails_are_read_to_a_depth_limit() {
        let mut mail = b"Subject: Antrag 0\r\n\r\nText der ersten Mail.\r\n".to_vec();
        for level in 1..=MAX_MAIL_DEPTH {
            let mut outer = format!(
                "Subject: WG {level}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B{level}\"\r\n\r\n\
                 --B{level}\r\nContent-Type: text/plain\r\n\r\nWeitergeleitet {level}.\r\n--B{level}\r\n\
                 Content-Type: message/rfc822\r\n\r\n"
            )
            .into_bytes();
            outer.extend_from_slice(&mail);
            outer.extend_from_slice(format!("\r\n--B{level}--\r\n").as_bytes());
            mail = outer;
        }
        let items = documents_of(&mail, "m.eml".into(), Kind::Eml, 1 << 20);
        assert_eq!(items.len(), MAX_MAIL_DEPTH + 1, "every level a document, the innermost an error");
        let ids: Vec<&str> =
            items.iter().map(|i| i.as_ref().map_or_else(|f| f.id.as_str(), |d| d.id.as_str())).collect();
        assert_eq!(ids[1], "m.eml#1:attachment-1.eml");
        assert_eq!(ids[2], "m.eml#1:attachment-1.eml#1:attachment-1.eml");
        assert!(items[..MAX_MAIL_DEPTH].iter().all(Result::is_ok));
        let innermost = items[MAX_MAIL_DEPTH].as_ref().unwrap_err();
        assert!(innermost.error.contains("levels of e-mails"), "{}", innermost.error);
    }

    #[test]
    fn a_parser_that_runs_past_the_time_limit_is_left_behind() {
        let started = std::time::Instant::now();
        let slow = within(Duration::from_millis(50), || std::thread::sleep(Duration::from_secs(10)));
        let error = slow.expect_err("10 s of work against a limit of 50 ms");
        assert!(error.starts_with("reading took longer than 0.05 s"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5), "the wait ends at the limit, not with the parser");
        assert_eq!(within(Duration::from_secs(10), || 42), Ok(42));
    }

    #[test]
    fn unwanted_one_document_files_are_not_opened_and_row_files_are() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "Erstes Schreiben").unwrap();
        std::fs::write(dir.path().join("b.txt"), "Zweites Schreiben").unwrap();
        std::fs::write(dir.path().join("c.jsonl"), "{\"text\": \"eins\"}\n{\"text\": \"zwei\"}\n").unwrap();
        let not_b = |id: &str| !id.ends_with("b.txt");

        // b.txt disappears after the folder was listed: opening it would fail.
        let mut reader = reader_past_first(dir.path());
        std::fs::remove_file(dir.path().join("b.txt")).unwrap();
        match reader.next_wanted(not_b) {
            Some(Next::Skipped(id)) => assert!(id.ends_with("b.txt")),
            other => panic!("b.txt should be skipped unread, got {other:?}"),
        }
        // Rows are documents of their own: their file is read whatever `wanted` says.
        for _ in 0..2 {
            assert!(matches!(reader.next_wanted(|_| false), Some(Next::Item(Ok(_)))));
        }
        assert!(reader.next_wanted(|_| true).is_none());

        // Wanted, the same missing file is an error record: the skip above did not read it.
        std::fs::write(dir.path().join("b.txt"), "Zweites Schreiben").unwrap();
        let mut reader = reader_past_first(dir.path());
        std::fs::remove_file(dir.path().join("b.txt")).unwrap();
        match reader.next_wanted(|_| true) {
            Some(Next::Item(Err(failed))) => assert!(failed.error.starts_with("cannot open"), "{}", failed.error),
            other => panic!("a missing wanted file is an error record, got {other:?}"),
        }
    }

    #[test]
    fn the_largest_size_limit_means_no_limit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "Ein Schreiben").unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "{\"text\": \"eine Zeile\"}\n").unwrap();
        let limits = ReadLimits { document_bytes: u64::MAX, extract_time: Duration::from_secs(60) };
        let reader =
            DocumentReader::new(walk_inputs(&[dir.path().to_path_buf()]).unwrap(), FieldNames::default(), limits);
        let texts: Vec<String> = reader.map(|item| item.expect("read").text).collect();
        assert_eq!(texts, vec!["Ein Schreiben", "eine Zeile"]);
    }
}
