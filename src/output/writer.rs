//! Writers. Output goes to `.NAME.partial` beside the target, which is renamed over it
//! only when the run completes, so an existing file is never left half-replaced; `-`
//! writes to stdout. A killed run's partial file is taken up again from the length its
//! checkpoint recorded (see `unattended::checkpoint`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::record::Record;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

impl OutputFormat {
    /// The format a file name suggests: `.csv` is CSV, anything else JSONL.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => OutputFormat::Csv,
            _ => OutputFormat::Jsonl,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "JSONL",
            OutputFormat::Csv => "CSV",
        }
    }
}

pub trait RecordWriter {
    fn write(&mut self, record: &Record) -> Result<()>;
    /// How a record names a source file: relative to the output file's folder, so that
    /// `report`, `review` and `train --review` find it from any working directory and
    /// after output and inputs moved together; absolute on stdout.
    fn recorded_path(&self, path: &str) -> String;
    /// Flushes and syncs what is written; returns the partial file's length (0 for stdout).
    fn sync(&mut self) -> Result<u64>;
    /// Flushes and puts the output in place.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Where the bytes go: stdout, or a temporary file renamed into place at the end.
enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    File { out: BufWriter<File>, partial: PathBuf, target: PathBuf },
}

impl Sink {
    /// `resume_at`: keep the first bytes of an interrupted run's partial file.
    fn open(target: &Path, force: bool, resume_at: u64) -> Result<Self> {
        if target == Path::new("-") {
            return Ok(Sink::Stdout(BufWriter::new(std::io::stdout())));
        }
        crate::fsutil::refuse_existing(target, force)?;
        target.file_name().with_context(|| format!("{}: not a file name", target.display()))?;
        let partial = crate::fsutil::sidecar(target, "partial");
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create folder", parent.display()))?;
        }
        let file = crate::fsutil::open_cut_back(&partial, resume_at)?;
        Ok(Sink::File { out: BufWriter::new(file), partial, target: target.to_path_buf() })
    }

    fn sync(&mut self) -> Result<u64> {
        match self {
            Sink::Stdout(out) => out.flush().context("writing to stdout").map(|()| 0),
            Sink::File { out, partial, .. } => {
                out.flush().with_context(|| format!("{}: write failed", partial.display()))?;
                let file = out.get_ref();
                file.sync_data().with_context(|| format!("{}: sync failed", partial.display()))?;
                Ok(file.metadata()?.len())
            }
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(out) => out,
            Sink::File { out, .. } => out,
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Stdout(mut out) => out.flush().context("writing to stdout"),
            Sink::File { out, partial, target } => {
                let file = out
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| format!("{}: write failed", partial.display()))?;
                file.sync_all().with_context(|| format!("{}: sync failed", partial.display()))?;
                std::fs::rename(&partial, &target)
                    .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
                crate::fsutil::sync_parent(&target);
                Ok(())
            }
        }
    }

    fn recorded_path(&self, path: &str) -> String {
        match self {
            Sink::Stdout(_) => crate::fsutil::absolute(Path::new(path)).display().to_string(),
            Sink::File { target, .. } => crate::fsutil::relative_to_file_of(target, Path::new(path)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Sink::Stdout(_) => "stdout".into(),
            Sink::File { partial, .. } => partial.display().to_string(),
        }
    }
}

struct JsonlWriter {
    sink: Sink,
}

impl RecordWriter for JsonlWriter {
    fn write(&mut self, record: &Record) -> Result<()> {
        let description = self.sink.describe();
        let out = self.sink.writer();
        serde_json::to_writer(&mut *out, record).with_context(|| format!("writing {description}"))?;
        out.write_all(b"\n").with_context(|| format!("writing {description}"))
    }

    fn recorded_path(&self, path: &str) -> String {
        self.sink.recorded_path(path)
    }

    fn sync(&mut self) -> Result<u64> {
        self.sink.sync()
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.sink.finish()
    }
}

/// CSV: one row per document; `scores` and `entities` are JSON in their cells.
struct CsvWriter {
    sink: Sink,
    header_written: bool,
}

/// The columns of the CSV output, in order.
pub const CSV_HEADER: [&str; 13] = [
    "id",
    "path",
    "line",
    "label",
    "score",
    "scores",
    "entities",
    "windows",
    "encoding",
    "extractor",
    "index",
    "model",
    "error",
];

impl RecordWriter for CsvWriter {
    fn write(&mut self, r: &Record) -> Result<()> {
        let description = self.sink.describe();
        if !self.header_written {
            let header = csv_row(CSV_HEADER)?;
            self.sink.writer().write_all(&header).with_context(|| format!("writing {description}"))?;
            self.header_written = true;
        }
        let bytes = csv_row([
            r.id.clone(),
            r.source.path.clone(),
            r.source.line.map(|l| l.to_string()).unwrap_or_default(),
            r.classification.as_ref().map(|c| c.label.clone()).unwrap_or_default(),
            r.classification.as_ref().map(|c| c.score.to_string()).unwrap_or_default(),
            r.classification.as_ref().map(|c| to_json(&c.scores)).unwrap_or_default(),
            r.entities.as_ref().map(to_json).unwrap_or_default(),
            r.windows.map(|w| w.to_string()).unwrap_or_default(),
            r.encoding.unwrap_or_default().to_string(),
            r.extractor.unwrap_or_default().to_string(),
            r.index.map(|i| i.to_string()).unwrap_or_default(),
            r.model.clone(),
            r.error.clone().unwrap_or_default(),
        ])?;
        self.sink.writer().write_all(&bytes).with_context(|| format!("writing {description}"))
    }

    fn recorded_path(&self, path: &str) -> String {
        self.sink.recorded_path(path)
    }

    fn sync(&mut self) -> Result<u64> {
        self.sink.sync()
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.sink.finish()
    }
}

/// One CSV row as the output writes it (quoted where needed, `\n` at the end); `merge`
/// writes the rows it reads back the same way.
pub fn csv_row<I, T>(fields: I) -> Result<Vec<u8>>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut row = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    row.write_record(fields)?;
    row.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialise to JSON")
}

/// A writer for `target`; `resume_at` > 0 goes on after that many bytes of an
/// interrupted run's partial file.
pub fn open_writer(target: &Path, format: OutputFormat, force: bool, resume_at: u64) -> Result<Box<dyn RecordWriter>> {
    let sink = Sink::open(target, force, resume_at)?;
    Ok(match format {
        OutputFormat::Jsonl => Box::new(JsonlWriter { sink }),
        OutputFormat::Csv => Box::new(CsvWriter { sink, header_written: resume_at > 0 }),
    })
}
