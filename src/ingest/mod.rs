//! Inputs to documents: walking files and folders in a stable order, reading each format,
//! decoding text. A document that cannot be read becomes a [`Failed`] item that names
//! the file (and line or row) and the reason; reading goes on.

pub mod encoding;
pub mod extract;
pub mod formats;
pub mod labelled;
pub mod walk;

use serde::{Deserialize, Serialize};

pub use encoding::{decode_text, DecodeError};
pub use formats::{read_bytes, DocumentReader, FieldNames, Next, ReadLimits};
pub use walk::{walk_inputs, InputFiles};

/// Where a document came from: a file, and the line (JSONL) or line of the row (CSV/TSV).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.path),
            None => write!(f, "{}", self.path),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Document {
    pub id: String,
    pub source: Source,
    pub text: String,
    /// The encoding the bytes were decoded from, such as `UTF-8` or `windows-1252`.
    pub encoding: &'static str,
    /// Which reader or extractor gave the text: `text`, `jsonl`, `csv`, `tsv`, `pdf`,
    /// `docx`, `odt`, `html`, `rtf`, `eml`.
    pub extractor: &'static str,
    /// Input fields the record keeps (`--date-field`), by name: a JSON line's or a CSV
    /// row's, where it has them.
    pub fields: std::collections::BTreeMap<String, String>,
}

/// A document that could not be read.
#[derive(Clone, Debug)]
pub struct Failed {
    pub id: String,
    pub source: Source,
    pub error: String,
}

pub type Item = Result<Document, Failed>;
