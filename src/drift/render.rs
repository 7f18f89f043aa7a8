//! `drift.html`: the drift report as one self-contained page (no script or network
//! needed to read it).

use super::{DriftReport, PeriodReport, THRESHOLDS};
use crate::eval::html::{escape, figure, html_table, page, strings, svg};

fn share(value: f64) -> String {
    format!("{:.1}%", 100.0 * value)
}

fn optional(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.filter(|v| v.is_finite()).map_or_else(|| "–".to_string(), show)
}

fn estimate_cells(p: &PeriodReport) -> [String; 2] {
    match &p.estimate {
        Some(e) => [
            format!("{:.3} [{:.3}, {:.3}]", e.accuracy, e.accuracy_low, e.accuracy_high),
            format!("{:.3} [{:.3}, {:.3}]", e.macro_f1, e.macro_f1_low, e.macro_f1_high),
        ],
        None => ["–".into(), "–".into()],
    }
}

fn period_row(p: &PeriodReport) -> Vec<String> {
    let [accuracy, macro_f1] = estimate_cells(p);
    vec![
        p.period.clone(),
        p.documents.to_string(),
        share(p.inputs.failed_share),
        accuracy,
        macro_f1,
        optional(p.labels.as_ref().map(|l| l.p_value), |v| format!("{v:.1e}")),
        optional(p.labels.as_ref().map(|l| l.psi), |v| format!("{v:.3}")),
        optional(p.confidence.as_ref().map(|c| c.ks_distance), |v| format!("{v:.3}")),
        optional(p.confidence.as_ref().map(|c| c.below_review_share), share),
        optional(p.inputs.tokens_psi, |v| format!("{v:.3}")),
        optional(p.inputs.unknown_share, |v| format!("{:.2}%", 100.0 * v)),
        if p.alerts.is_empty() {
            "–".into()
        } else {
            p.alerts.iter().map(|a| a.check.as_str()).collect::<Vec<_>>().join(", ")
        },
    ]
}

pub fn html(report: &DriftReport) -> String {
    let r = &report.reference;
    let mut body = format!("<h1>Drift of {} documents</h1>\n", report.all.documents);
    if report.drifted.is_empty() {
        body += "<p>No period crossed a threshold.</p>\n";
    } else {
        body += &format!(
            "<p class=\"warning\">{} of {} periods crossed a threshold: {}.</p>\n",
            report.drifted.len(),
            report.periods.len(),
            escape(&report.drifted.join(", "))
        );
    }
    body += "<dl>";
    for (key, value) in [
        ("results", report.results.join(", ")),
        ("model", report.model.clone()),
        ("compared with", r.description.clone()),
        (
            "periods",
            format!(
                "{} ({} by {}; {} records undated)",
                report.periods.len(),
                report.period,
                report.dates,
                report.undated
            ),
        ),
        ("estimate", report.estimate_method.clone()),
        (
            "reference accuracy / macro-F1",
            format!(
                "{} / {}",
                optional(r.accuracy, |v| format!("{v:.3}")),
                optional(r.macro_f1, |v| format!("{v:.3}"))
            ),
        ),
    ] {
        body += &format!("<dt>{}</dt><dd>{}</dd>", escape(key), escape(&value));
    }
    body += "</dl>\n";
    for note in &report.notes {
        body += &format!("<p class=\"warning\">{}</p>\n", escape(note));
    }

    // Charts: estimated accuracy and documents per period.
    let mut charts = String::new();
    let estimated: Vec<(String, f64)> =
        report.periods.iter().filter_map(|p| Some((p.period.clone(), p.estimate.as_ref()?.accuracy))).collect();
    if !estimated.is_empty() {
        charts += &figure("Estimated accuracy per period", &svg::bar_chart(&estimated));
    }
    let documents: Vec<(String, f64)> = report.periods.iter().map(|p| (p.period.clone(), p.documents as f64)).collect();
    if !documents.is_empty() {
        charts += &figure("Documents per period", &svg::count_chart(&documents));
    }
    if let Some(l) = &report.all.labels {
        let bars: Vec<(String, f64)> = l
            .labels
            .iter()
            .map(|s| (format!("{} (reference {})", s.label, share(s.reference_share)), s.share))
            .collect();
        charts += &figure("Label shares, all periods", &svg::bar_chart(&bars));
    }
    if !charts.is_empty() {
        body += &format!("<div class=\"charts\">{charts}</div>\n");
    }

    let header = strings(&[
        "period",
        "documents",
        "failed",
        "est. accuracy [95%]",
        "est. macro-F1 [95%]",
        "labels χ² p",
        "labels PSI",
        "scores KS",
        "below review",
        "tokens PSI",
        "unknown tokens",
        "alerts",
    ]);
    let mut rows: Vec<Vec<String>> = report.periods.iter().map(period_row).collect();
    rows.push(period_row(&report.all));
    body += "<h2>Periods</h2>\n";
    body += &html_table(&header, &rows);

    let alerts: Vec<Vec<String>> = report
        .periods
        .iter()
        .flat_map(|p| p.alerts.iter().map(move |a| vec![p.period.clone(), a.check.clone(), a.message.clone()]))
        .collect();
    if !alerts.is_empty() {
        body += "<h2>Alerts</h2>\n";
        body += &html_table(&strings(&["period", "check", "what"]), &alerts);
    }

    if let Some(l) = &report.all.labels {
        body += "<h2>Label shares, all periods</h2>\n";
        let rows: Vec<Vec<String>> = l
            .labels
            .iter()
            .map(|s| vec![s.label.clone(), share(s.reference_share), share(s.share), format!("{:.3}", s.psi)])
            .collect();
        body += &html_table(&strings(&["label", "reference", "intake", "PSI term"]), &rows);
    }
    if !report.all.inputs.tokens.is_empty() {
        body += "<h2>Document length in tokens, all periods</h2>\n";
        let rows: Vec<Vec<String>> = (report.all.inputs.tokens.iter())
            .map(|b| vec![b.bin.clone(), optional(b.reference_share, share), share(b.share)])
            .collect();
        body += &html_table(&strings(&["tokens", "reference", "intake"]), &rows);
    }
    if !report.all.entities.is_empty() {
        body += "<h2>Entities, all periods</h2>\n";
        let rows: Vec<Vec<String>> = (report.all.entities.iter())
            .map(|e| {
                vec![e.kind.clone(), optional(e.reference, |v| format!("{v:.2}")), format!("{:.2}", e.per_1000_tokens)]
            })
            .collect();
        body += &html_table(&strings(&["type", "reference", "intake"]), &rows);
    }
    let inputs = &report.all.inputs;
    if !inputs.failures.is_empty() || !inputs.extractors.is_empty() {
        body += "<h2>Readers and failures, all periods</h2>\n";
        let mut rows: Vec<Vec<String>> =
            inputs.extractors.iter().map(|(k, n)| vec!["read by".into(), k.clone(), n.to_string()]).collect();
        rows.extend(inputs.failures.iter().map(|(k, n)| vec!["failed".into(), k.clone(), n.to_string()]));
        body += &html_table(&strings(&["", "reader or reason", "documents"]), &rows);
    }
    body += "<h2>Thresholds</h2>\n";
    let rows: Vec<Vec<String>> = THRESHOLDS
        .iter()
        .map(|(name, default, meaning)| {
            vec![name.to_string(), format!("{}", report.thresholds[*name]), format!("{default}"), meaning.to_string()]
        })
        .collect();
    body += &html_table(&strings(&["name", "in force", "default", "meaning"]), &rows);
    page("docclass drift", &body)
}
