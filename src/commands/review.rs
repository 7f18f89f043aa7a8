//! `docclass review`: a queue of the documents whose labels would teach the model most,
//! for people to label in a spreadsheet.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use super::Outcome;
use crate::cli::{ReviewArgs, ReviewStrategy};
use crate::fsutil::{refuse_existing, relative_to_file_of, write_durably};
use crate::ingest::Source;
use crate::logging;
use crate::output::csv_row;
use crate::review::{candidates, choose, excerpt, Candidates, SourceTexts, Strategy, COLUMNS, DISAGREEMENT_COLUMNS};

/// Characters of text in a queue row's excerpt.
const EXCERPT_CHARS: usize = 300;

pub fn run(args: ReviewArgs) -> Result<Outcome> {
    logging::set_format(args.log_format);
    refuse_existing(&args.out, args.force)?;
    let strategy = match args.strategy {
        ReviewStrategy::Margin => Strategy::Margin,
        ReviewStrategy::Entropy => Strategy::Entropy,
        ReviewStrategy::Disagreement => Strategy::Disagreement,
    };
    let Candidates { best_first, failed, labels: allowed } =
        candidates(&args.results[0], args.results.get(1).map(|p| p.as_path()), strategy, args.head.as_deref())?;
    let considered = best_first.len();
    // The texts of the sources, read once per file when a candidate first needs one.
    let fields = args.fields.names();
    let mut texts = SourceTexts::default();
    let mut read_paths: BTreeSet<String> = BTreeSet::new();
    let text_of = |c: &crate::review::Candidate| -> Result<String> {
        if read_paths.insert(c.source.path.clone()) {
            texts.read(&BTreeSet::from([c.source.path.clone()]), &fields)?;
        }
        texts.get(&c.source, &c.id).map(str::to_string).with_context(|| {
            format!(
                "{}: document {:?} not found there (the queue reads each text from its source again)",
                c.source.path, c.id
            )
        })
    };
    let (chosen, duplicates) = choose(best_first, args.budget, text_of)?;

    let mut out = Vec::from("\u{feff}".as_bytes());
    {
        let mut writer = csv::Writer::from_writer(&mut out);
        writer.write_record(if strategy == Strategy::Disagreement { DISAGREEMENT_COLUMNS } else { COLUMNS })?;
        for (c, text) in &chosen {
            let (runner_up, runner_up_score) = match &c.runner_up {
                Some((label, score)) => (label.clone(), format!("{score:.4}")),
                None => (String::new(), String::new()),
            };
            // Named from the queue's folder, as results name theirs, so that `train
            // --review` finds the source from any working directory.
            let source =
                Source { path: relative_to_file_of(&args.out, Path::new(&c.source.path)), line: c.source.line };
            writer.write_record([
                c.id.as_str(),
                &source.to_string(),
                &c.label,
                &format!("{:.4}", c.score),
                &runner_up,
                &runner_up_score,
                &excerpt(text, &c.marks, EXCERPT_CHARS),
                "",
            ])?;
        }
        writer.flush()?;
    }
    write_durably(&args.out, &out)?;
    // The labels a reviewer may give, beside the queue (a CSV file has one sheet).
    let labels_file = allowed_labels_path(&args.out);
    let mut listing = Vec::from("\u{feff}label\n".as_bytes());
    for label in &allowed {
        listing.extend(csv_row([label])?);
    }
    write_durably(&labels_file, &listing)?;
    let labels: BTreeSet<&str> = chosen.iter().map(|(c, _)| c.label.as_str()).collect();
    logging::info(
        "review",
        &format!(
            "{} of {considered} documents queued in {} ({} predicted labels; the {} allowed gold labels in {}); {duplicates} duplicates and {failed} error records left out",
            chosen.len(),
            args.out.display(),
            labels.len(),
            allowed.len(),
            labels_file.display()
        ),
        json!({"queued": chosen.len(), "considered": considered, "duplicates": duplicates, "failed": failed}),
    );
    std::io::stderr().flush().ok();
    Ok(Outcome::Complete)
}

/// `queue.csv` → `queue.labels.csv`.
fn allowed_labels_path(queue: &Path) -> PathBuf {
    let stem = queue.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    queue.with_file_name(format!("{stem}.labels.csv"))
}
