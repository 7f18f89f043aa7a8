//! `docclass merge PART... --out FILE`: the outputs of `classify --shard K/N` joined into
//! the output a single run gives. Each part is in input order and every record carries
//! its position in the whole input (`index`), so the parts are merged line by line, as
//! written, without reading a whole part into memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::Outcome;
use crate::cli::MergeArgs;
use crate::intake::sidecar;
use crate::logging;
use crate::output::refuse_existing;

/// A part's lines with their positions, read one at a time.
struct Part {
    name: String,
    lines: std::io::Lines<BufReader<File>>,
    line: usize,
    last_index: Option<u64>,
}

impl Part {
    /// The next record's index and its line as written.
    fn next(&mut self) -> Result<Option<(u64, String)>> {
        loop {
            let Some(line) = self.lines.next() else { return Ok(None) };
            self.line += 1;
            let at = format!("{}:{}", self.name, self.line);
            let line = line.with_context(|| format!("{at}: cannot read"))?;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value =
                serde_json::from_str(&line).with_context(|| format!("{at}: malformed JSON"))?;
            let Some(index) = value.get("index").and_then(serde_json::Value::as_u64) else {
                bail!("{at}: the record has no \"index\": merge reads the JSONL output of `docclass classify`");
            };
            if self.last_index.is_some_and(|last| index <= last) {
                bail!("{at}: index {index} after {}: the part is not in input order", self.last_index.unwrap_or(0));
            }
            self.last_index = Some(index);
            return Ok(Some((index, line)));
        }
    }
}

pub fn run(args: MergeArgs) -> Result<Outcome> {
    refuse_existing(&args.out, args.force)?;
    let mut parts = Vec::new();
    for path in &args.parts {
        let file = File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
        parts.push(Part {
            name: path.display().to_string(),
            lines: BufReader::new(file).lines(),
            line: 0,
            last_index: None,
        });
    }
    let partial = sidecar(&args.out, "partial");
    let mut out =
        BufWriter::new(File::create(&partial).with_context(|| format!("{}: cannot create", partial.display()))?);
    // The smallest index of all parts' next records comes next.
    let mut heads: BinaryHeap<Reverse<(u64, usize, String)>> = BinaryHeap::new();
    for (p, part) in parts.iter_mut().enumerate() {
        if let Some((index, line)) = part.next()? {
            heads.push(Reverse((index, p, line)));
        }
    }
    let (mut records, mut gaps, mut previous): (u64, u64, Option<(u64, usize)>) = (0, 0, None);
    while let Some(Reverse((index, p, line))) = heads.pop() {
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
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        records += 1;
        if let Some((index, line)) = parts[p].next()? {
            heads.push(Reverse((index, p, line)));
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
