//! `docclass review`: a queue of the documents whose labels would teach the model most,
//! for people to label in a spreadsheet.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use anyhow::{Context, Result};
use serde_json::json;

use super::Outcome;
use crate::cli::{ReviewArgs, ReviewStrategy};
use crate::fsutil::{refuse_existing, write_durably};
use crate::logging;
use crate::review::{candidates, choose, excerpt, read_texts, Strategy, COLUMNS};

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
    let (candidates, failed) =
        candidates(&args.results[0], args.results.get(1).map(|p| p.as_path()), strategy, args.head.as_deref())?;
    let considered = candidates.len();
    // The texts of the sources, read once per file when a candidate first needs one.
    let fields = args.fields.names();
    let mut texts: HashMap<(String, String), String> = HashMap::new();
    let mut read_paths: BTreeSet<String> = BTreeSet::new();
    let text_of = |c: &crate::review::Candidate| -> Result<String> {
        if read_paths.insert(c.source.path.clone()) {
            texts.extend(read_texts(&BTreeSet::from([c.source.path.clone()]), &fields)?);
        }
        texts.get(&(c.source.path.clone(), c.id.clone())).cloned().with_context(|| {
            format!(
                "{}: document {:?} not found there (the queue reads each text from its source again)",
                c.source.path, c.id
            )
        })
    };
    let (chosen, duplicates) = choose(candidates, args.budget, text_of)?;

    let mut out = Vec::from("\u{feff}".as_bytes());
    {
        let mut writer = csv::Writer::from_writer(&mut out);
        writer.write_record(COLUMNS)?;
        for (c, text) in &chosen {
            let (runner_up, runner_up_score) = match &c.runner_up {
                Some((label, score)) => (label.clone(), format!("{score:.4}")),
                None => (String::new(), String::new()),
            };
            writer.write_record([
                c.id.as_str(),
                &c.source.to_string(),
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
    let labels: BTreeSet<&str> = chosen.iter().map(|(c, _)| c.label.as_str()).collect();
    logging::info(
        "review",
        &format!(
            "{} of {considered} documents queued in {} ({} predicted labels); {duplicates} duplicates and {failed} error records left out",
            chosen.len(),
            args.out.display(),
            labels.len()
        ),
        json!({"queued": chosen.len(), "considered": considered, "duplicates": duplicates, "failed": failed}),
    );
    std::io::stderr().flush().ok();
    Ok(Outcome::Complete)
}
