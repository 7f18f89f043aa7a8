//! `docclass report`: an overview page of an archive's results.

use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use super::Outcome;
use crate::cli::ReportArgs;
use crate::fsutil::{refuse_existing, write_durably};
use crate::ingest::labelled::read_label_names;
use crate::logging;
use crate::overview::{Overview, OverviewOptions};

pub fn run(args: ReportArgs) -> Result<Outcome> {
    logging::set_format(args.log_format);
    refuse_existing(&args.out, args.force)?;
    let started = Instant::now();
    let mut overview = Overview::new(OverviewOptions {
        head: args.head.clone(),
        review_below: args.review_below,
        sample: args.sample,
        label_names: args.label_names.as_deref().map(read_label_names).transpose()?.unwrap_or_default(),
        date_field: args.date.date_field.clone(),
    });
    for results in &args.results {
        overview.add_file(results)?;
    }
    // Only the sampled documents' texts are read again, for their excerpts.
    let fields = args.fields.names();
    let texts = crate::review::read_texts(&overview.sample_sources(), &fields)?;
    let unreadable = overview.samples_without_text(&texts);
    if unreadable > 0 {
        logging::warning(
            "sources_unreadable",
            &format!(
                "{unreadable} of the {} sampled documents cannot be read again from their sources (moved or deleted?): the page shows them without text",
                overview.sample_size()
            ),
            json!({"unreadable": unreadable}),
        );
    }
    write_durably(&args.out, overview.html(&texts).as_bytes())?;
    let seconds = started.elapsed().as_secs_f64();
    logging::info(
        "report",
        &format!("overview of {} in {} ({seconds:.1} s)", overview.summary(), args.out.display()),
        json!({"seconds": seconds, "out": args.out.display().to_string()}),
    );
    Ok(Outcome::Complete)
}
