//! `docclass merge PART... --out FILE`: the outputs of `classify --shard K/N` (JSONL or
//! CSV) joined into the output a single run gives. Each part is in input order and every
//! record carries its position in the whole input (`index`), so the parts are merged
//! record by record, as written, without reading a whole part into memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::Outcome;
use crate::cli::MergeArgs;
use crate::fsutil::{absolute, refuse_existing, relative_to_file_of, resolve_from_file_of, sidecar};
use crate::logging;
use crate::output::{csv_row, OutputFormat, CSV_HEADER};

/// A part's records, read one at a time.
enum Rows {
    Jsonl {
        lines: std::io::Lines<BufReader<File>>,
        line: u64,
    },
    /// The header is read and checked; `index` and `path` are those columns.
    Csv {
        rows: csv::Reader<BufReader<File>>,
        index: usize,
        path: usize,
    },
    /// An empty part (a shard with no documents).
    Empty,
}

struct Part {
    name: String,
    rows: Rows,
    last_index: Option<u64>,
    /// A part in another folder than the merged output: its records name their sources
    /// relative to its own folder, and are rewritten to name them from the output's.
    rebase: Option<Rebase>,
}

struct Rebase {
    part: PathBuf,
    out: PathBuf,
}

impl Rebase {
    fn for_part(part: &Path, out: &Path) -> Option<Self> {
        let folder = |p: &Path| absolute(p).parent().map(Path::to_path_buf);
        (folder(part) != folder(out)).then(|| Self { part: part.to_path_buf(), out: out.to_path_buf() })
    }

    fn path(&self, recorded: &str) -> String {
        relative_to_file_of(&self.out, Path::new(&resolve_from_file_of(&self.part, recorded)))
    }
}

impl Part {
    /// Opens a part; its first byte tells JSONL (`{`) from CSV (the output's header).
    fn open(path: &Path, out: &Path) -> Result<Self> {
        let name = display(path);
        let file = File::open(path).with_context(|| format!("{name}: cannot read"))?;
        let mut reader = BufReader::new(file);
        let first = reader.fill_buf().with_context(|| format!("{name}: cannot read"))?.first().copied();
        let rows = match first {
            None => Rows::Empty,
            Some(b'{') => Rows::Jsonl { lines: reader.lines(), line: 0 },
            Some(_) => {
                let mut rows = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
                let header = rows.byte_headers().with_context(|| format!("{name}:1: cannot read"))?;
                if !header.iter().eq(CSV_HEADER.iter().map(|c| c.as_bytes())) {
                    bail!(
                        "{name}:1: neither JSONL nor the CSV header of `docclass classify` ({})",
                        CSV_HEADER.join(",")
                    );
                }
                let column = |name| CSV_HEADER.iter().position(|&c| c == name).expect("a column of the output");
                Rows::Csv { rows, index: column("index"), path: column("path") }
            }
        };
        Ok(Self { name, rows, last_index: None, rebase: Rebase::for_part(path, out) })
    }

    fn format(&self) -> Option<OutputFormat> {
        match self.rows {
            Rows::Jsonl { .. } => Some(OutputFormat::Jsonl),
            Rows::Csv { .. } => Some(OutputFormat::Csv),
            Rows::Empty => None,
        }
    }

    /// The next record's index and its bytes as written (line end included).
    fn next(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let (at, index, bytes) = match &mut self.rows {
            Rows::Empty => return Ok(None),
            Rows::Jsonl { lines, line } => loop {
                let Some(text) = lines.next() else { return Ok(None) };
                *line += 1;
                let at = format!("{}:{line}", self.name);
                let text = text.with_context(|| format!("{at}: cannot read"))?;
                if text.trim().is_empty() {
                    continue;
                }
                let mut value: serde_json::Value =
                    serde_json::from_str(&text).with_context(|| format!("{at}: malformed JSON"))?;
                let index = value.get("index").and_then(serde_json::Value::as_u64);
                let recorded = value.pointer("/source/path").and_then(serde_json::Value::as_str).map(str::to_string);
                let text = match (&self.rebase, recorded) {
                    (Some(rebase), Some(recorded)) => {
                        value["source"]["path"] = rebase.path(&recorded).into();
                        serde_json::to_string(&value)?
                    }
                    _ => text,
                };
                break (at, index, (text + "\n").into_bytes());
            },
            Rows::Csv { rows, index, path: path_column } => {
                let mut record = csv::ByteRecord::new();
                let more = rows.read_byte_record(&mut record);
                let at = format!("{}:{}", self.name, record.position().map_or(0, |p| p.line()));
                if !more.with_context(|| format!("{at}: malformed CSV"))? {
                    return Ok(None);
                }
                let value = record.get(*index).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                if let Some(rebase) = &self.rebase {
                    let fields: Vec<Vec<u8>> = record
                        .iter()
                        .enumerate()
                        .map(|(i, field)| match (i, std::str::from_utf8(field)) {
                            (i, Ok(path)) if i == *path_column && !path.is_empty() => rebase.path(path).into_bytes(),
                            _ => field.to_vec(),
                        })
                        .collect();
                    record = csv::ByteRecord::from(fields);
                }
                (at, value, csv_row(&record)?)
            }
        };
        let Some(index) = index else {
            bail!("{at}: the record has no \"index\": merge reads the output of `docclass classify`");
        };
        if self.last_index.is_some_and(|last| index <= last) {
            bail!("{at}: index {index} after {}: the part is not in input order", self.last_index.unwrap_or(0));
        }
        self.last_index = Some(index);
        Ok(Some((index, bytes)))
    }
}

pub fn run(args: MergeArgs) -> Result<Outcome> {
    refuse_existing(&args.out, args.force)?;
    let mut parts: Vec<Part> = args.parts.iter().map(|p| Part::open(p, &args.out)).collect::<Result<_>>()?;
    let formats: Vec<(OutputFormat, &str)> =
        parts.iter().filter_map(|p| Some((p.format()?, p.name.as_str()))).collect();
    if let Some(((a, a_name), (b, b_name))) = formats.first().zip(formats.iter().find(|(f, _)| *f != formats[0].0)) {
        bail!("{a_name} is {} and {b_name} is {}: merge joins parts of one format", a.name(), b.name());
    }
    let csv = formats.first().is_some_and(|(f, _)| *f == OutputFormat::Csv);
    let partial = sidecar(&args.out, "partial");
    let mut out =
        BufWriter::new(File::create(&partial).with_context(|| format!("{}: cannot create", partial.display()))?);
    // The smallest index of all parts' next records comes next.
    let mut heads: BinaryHeap<Reverse<(u64, usize, Vec<u8>)>> = BinaryHeap::new();
    for (p, part) in parts.iter_mut().enumerate() {
        if let Some((index, bytes)) = part.next()? {
            heads.push(Reverse((index, p, bytes)));
        }
    }
    let (mut records, mut gaps, mut previous): (u64, u64, Option<(u64, usize)>) = (0, 0, None);
    if csv && !heads.is_empty() {
        out.write_all(&csv_row(CSV_HEADER)?)?;
    }
    while let Some(Reverse((index, p, bytes))) = heads.pop() {
        if let Some((last, last_part)) = previous {
            if index == last {
                bail!(
                    "index {index} is in {} and in {}: the same shard given twice?",
                    parts[last_part].name,
                    parts[p].name
                );
            }
            gaps += index - last - 1;
        } else {
            gaps += index;
        }
        previous = Some((index, p));
        out.write_all(&bytes)?;
        records += 1;
        if let Some((index, bytes)) = parts[p].next()? {
            heads.push(Reverse((index, p, bytes)));
        }
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&partial, &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    if gaps > 0 {
        logging::warning(
            "merge_gaps",
            &format!("{gaps} input positions have no record: documents skipped as unchanged (--state), or a shard's output is missing"),
            json!({"missing_positions": gaps}),
        );
    }
    logging::info(
        "merged",
        &format!("{records} records from {} parts in {}", parts.len(), display(&args.out)),
        json!({"records": records, "parts": parts.len()}),
    );
    Ok(Outcome::Complete)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
