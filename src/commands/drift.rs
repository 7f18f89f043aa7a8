//! `docclass drift`: an intake's results compared, period by period, with the training
//! profile of the heads that wrote them (or with earlier results).

use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use super::{model_dir, Outcome};
use crate::cli::{DriftArgs, PeriodArg};
use crate::drift::estimate::Calibration;
use crate::drift::{compare, render, thresholds, watched_heads, Counts, DriftReport, Intake, Reference, Watched};
use crate::fsutil::{refuse_existing, write_durably};
use crate::logging;
use crate::model::bundle::trained_head_specs;
use crate::output::dates::{Period, RecordDates};

pub fn run(args: DriftArgs) -> Result<Outcome> {
    logging::set_format(args.log_format);
    let started = Instant::now();
    let thresholds = thresholds(&args.thresholds)?;
    let (json_path, html_path) = (args.out.join("drift.json"), args.out.join("drift.html"));
    refuse_existing(&json_path, args.force)?;
    refuse_existing(&html_path, args.force)?;
    let dir = model_dir(args.model.model.clone());
    let specs = trained_head_specs(&dir).with_context(|| format!("reading the heads of {}", dir.display()))?;
    let (classifier, tagger) = watched_heads(&specs, args.head.as_deref());
    let mut notes = Vec::new();
    if let Some(name) = &args.head {
        if classifier.is_none() {
            anyhow::bail!("--head {name:?}: {} has no trained classification head of that name", dir.display());
        }
    }
    let classifier_profile = classifier.and_then(|c| Some((c.name.as_str(), c.profile.as_ref()?)));
    let tagger_profile = tagger.and_then(|t| Some((t.name.as_str(), t.profile.as_ref()?)));
    for head in [classifier, tagger].into_iter().flatten().filter(|h| h.profile.is_none()) {
        notes.push(format!(
            "{} was trained before heads kept a training profile: it is not compared with its training data (retrain it, or give --reference)",
            head.name
        ));
    }
    // Accuracy is estimated for a single-label trained classifier, calibrated by its
    // cross-validation where the head kept it.
    let estimated_labels = classifier.filter(|c| !c.multi_label).map(|c| c.labels.clone());
    let calibration = match classifier_profile.and_then(|(_, p)| p.out_of_fold.as_ref()) {
        Some(oof) => Calibration::from_out_of_fold(oof),
        None => Calibration::identity(),
    };
    let estimate_method = match (&estimated_labels, calibration.is_identity()) {
        (None, _) => {
            notes.push(match classifier {
                Some(c) => format!("{} is a multi-label head: accuracy is not estimated", c.name),
                None => format!("{} has no trained classification head: accuracy is not estimated", dir.display()),
            });
            "none".to_string()
        }
        (Some(_), false) => "confidence-based (CBPE), top scores calibrated by the head's out-of-fold predictions; 95% interval of the sampling error".into(),
        (Some(_), true) => "confidence-based (CBPE), the head's scores taken as calibrated (no out-of-fold predictions kept); 95% interval of the sampling error".into(),
    };
    let watch = Watched { head: args.head.clone(), review_below: args.review_below, estimated_labels, calibration };
    let period = match args.period {
        PeriodArg::Day => Period::Day,
        PeriodArg::Week => Period::Week,
        PeriodArg::Month => Period::Month,
    };

    let reference = if args.reference.is_empty() {
        Reference::from_profiles(classifier_profile, tagger_profile, args.review_below)
    } else {
        let mut earlier = Counts::default();
        for path in &args.reference {
            earlier.add_file(path, &watch)?;
        }
        let names: Vec<String> = args.reference.iter().map(|p| p.display().to_string()).collect();
        let description = format!("the results {} ({} documents)", names.join(", "), earlier.documents);
        Reference::from_counts(description, &earlier, watch.estimated_labels.as_deref())
    };
    if reference.description.is_empty() {
        notes.push("nothing to compare with: no training profile in the model's heads and no --reference".into());
    }

    let mut intake = Intake::new(period, RecordDates::new(args.date.date_field.clone()));
    for path in &args.results {
        intake.add_file(path, &watch)?;
    }
    if intake.undated > 0 {
        notes.push(format!(
            "{} records have no readable date in {} and count only in the total",
            intake.undated,
            intake.date_source()
        ));
    }
    let periods: Vec<_> =
        intake.periods.iter().map(|(name, counts)| compare(name, counts, &reference, &watch, &thresholds)).collect();
    let all = compare("all", &intake.all, &reference, &watch, &thresholds);
    let drifted: Vec<String> = periods.iter().filter(|p| !p.alerts.is_empty()).map(|p| p.period.clone()).collect();
    let report = DriftReport {
        results: intake.files.clone(),
        model: dir.display().to_string(),
        reference,
        period: format!("{:?}", args.period).to_lowercase(),
        dates: intake.date_source(),
        undated: intake.undated,
        thresholds,
        notes,
        estimate_method,
        all,
        periods,
        drifted,
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    write_durably(&json_path, (serde_json::to_string_pretty(&report)? + "\n").as_bytes())?;
    write_durably(&html_path, render::html(&report).as_bytes())?;
    for note in &report.notes {
        logging::warning("drift_note", note, json!({}));
    }
    for p in &report.periods {
        for alert in &p.alerts {
            logging::warning(
                "drift",
                &format!("{}: {}", p.period, alert.message),
                json!({"period": p.period, "check": alert.check, "value": alert.value, "threshold": alert.threshold}),
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    logging::info(
        "drift_report",
        &format!(
            "{} documents in {} periods, {} with drift; {} and {} ({seconds:.1} s)",
            report.all.documents,
            report.periods.len(),
            report.drifted.len(),
            json_path.display(),
            html_path.display()
        ),
        json!({"documents": report.all.documents, "periods": report.periods.len(), "drifted": report.drifted, "seconds": seconds}),
    );
    Ok(if args.fail_on_drift && !report.drifted.is_empty() { Outcome::Drifted } else { Outcome::Complete })
}
