//! Renders a [`MetricsFile`] for people: a terminal summary, report.md, and report.html —
//! one self-contained page (no network: inline SVG charts, tables that sort on a click).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::classification::{Average, ClassScores};
use super::entities::{ErrorCounts, TypeScores};
use super::html::{escape, figure, html_table, inline, md_table, page, strings, svg, Section};
use super::metrics::{MetricsFile, SingleLabelReport, SpanText, TaskMetrics};

/// Gold and prediction per document, which `--compare` reads (gzip; reports before
/// 2026-12 have it plain as `documents.jsonl`).
pub const DOCUMENTS_FILE: &str = "documents.jsonl.gz";
const PLAIN_DOCUMENTS_FILE: &str = "documents.jsonl";
/// The per-document files as reports before 2026-12 wrote them, uncompressed.
pub const PLAIN_FILES: [&str; 2] = [PLAIN_DOCUMENTS_FILE, "predictions.jsonl"];
/// The records of a model run, as `classify` writes them (gzip).
pub const PREDICTIONS_FILE: &str = "predictions.jsonl.gz";

/// The per-document file of a report directory: compressed, or plain from older reports.
pub fn documents_file(dir: &Path) -> PathBuf {
    let plain = dir.join(PLAIN_DOCUMENTS_FILE);
    if !dir.join(DOCUMENTS_FILE).exists() && plain.exists() {
        plain
    } else {
        dir.join(DOCUMENTS_FILE)
    }
}

/// Four decimals, or "–" where there is no value.
pub fn f4(value: impl Into<Option<f64>>) -> String {
    match value.into() {
        Some(x) if x.is_finite() => format!("{x:.4}"),
        _ => "–".into(),
    }
}

/// A number as metrics.json writes it (`0.5`, `1.0`).
fn plain(x: f64) -> String {
    serde_json::to_string(&x).expect("a number serializes")
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("–").to_string()
}

/// The headline numbers, for the terminal.
pub fn summary(m: &MetricsFile) -> String {
    let mut out = String::new();
    match &m.task {
        TaskMetrics::Classification(c) => {
            let _ = writeln!(
                out,
                "accuracy {}  macro-F1 {}  weighted-F1 {}  log loss {}  ECE {}",
                f4(c.metrics.accuracy),
                f4(c.metrics.macro_f1),
                f4(c.metrics.weighted.f1),
                f4(c.log_loss),
                f4(c.calibration.as_ref().map(|c| c.ece))
            );
        }
        TaskMetrics::MultiLabel(c) => {
            let _ = writeln!(
                out,
                "micro-F1 {}  macro-F1 {}  subset accuracy {}",
                f4(c.micro.f1),
                f4(c.macro_f1),
                f4(c.subset_accuracy)
            );
        }
        TaskMetrics::Entities(e) => {
            for (mode, x) in [("default", &e.default), ("strict_iob2", &e.strict_iob2)] {
                let _ = writeln!(
                    out,
                    "entities ({mode}): precision {}  recall {}  F1 {}",
                    f4(x.precision),
                    f4(x.recall),
                    f4(x.f1)
                );
            }
        }
    }
    out
}

fn class_rows(per_class: &[ClassScores]) -> Vec<Vec<String>> {
    per_class
        .iter()
        .map(|r| vec![r.label.clone(), f4(r.precision), f4(r.recall), f4(r.f1), r.support.to_string()])
        .collect()
}

fn average_row(name: &str, average: &Average, support: String) -> Vec<String> {
    vec![name.into(), f4(average.precision), f4(average.recall), f4(average.f1), support]
}

fn type_rows<'a>(per_type: impl IntoIterator<Item = (&'a String, &'a TypeScores)>) -> Vec<Vec<String>> {
    per_type
        .into_iter()
        .map(|(kind, r)| vec![kind.clone(), f4(r.precision), f4(r.recall), f4(r.f1), r.support.to_string()])
        .collect()
}

/// Error counts in their report order, with their names.
fn error_counts(counts: &ErrorCounts) -> [(&'static str, usize); 5] {
    [
        ("exact", counts.exact),
        ("partial", counts.partial),
        ("wrong type", counts.wrong_type),
        ("missed", counts.missed),
        ("spurious", counts.spurious),
    ]
}

fn classification_sections(c: &SingleLabelReport, out: &mut Vec<Section>) {
    let m = &c.metrics;
    let documents = m.documents.to_string();
    let macro_average = Average { precision: m.macro_precision, recall: m.macro_recall, f1: m.macro_f1 };
    let averages = vec![
        average_row("macro", &macro_average, documents.clone()),
        average_row("micro", &m.micro, documents.clone()),
        average_row("weighted", &m.weighted, documents.clone()),
    ];
    out.push(Section {
        title: "Per class".into(),
        intro: format!(
            "{documents} documents: accuracy **{}**, macro-F1 **{}**, log loss {} (natural log).",
            f4(m.accuracy),
            f4(m.macro_f1),
            f4(c.log_loss)
        ),
        header: strings(&["class", "precision", "recall", "F1", "support"]),
        rows: class_rows(&m.per_class).into_iter().chain(averages).collect(),
    });
    let cm = &m.confusion_matrix;
    out.push(Section {
        title: "Confusion matrix".into(),
        intro: "Rows are gold labels, columns predicted labels.".into(),
        header: std::iter::once("gold \\ predicted".to_string()).chain(cm.labels.iter().cloned()).collect(),
        rows: cm
            .counts
            .iter()
            .zip(&cm.labels)
            .map(|(row, label)| std::iter::once(label.clone()).chain(row.iter().map(usize::to_string)).collect())
            .collect(),
    });
    if let Some(cal) = &c.calibration {
        out.push(Section {
            title: "Calibration".into(),
            intro: format!(
                "Expected calibration error **{}**, largest bin gap {} ({}).",
                f4(cal.ece),
                f4(cal.mce),
                cal.binning
            ),
            header: strings(&["bin", "documents", "mean confidence", "accuracy"]),
            rows: cal
                .bins
                .iter()
                .map(|b| {
                    // An empty bin has no confidence or accuracy to show.
                    let value = |v: f64| if b.documents == 0 { "–".to_string() } else { f4(v) };
                    vec![
                        format!("{:.1}–{:.1}", b.lower, b.upper),
                        b.documents.to_string(),
                        value(b.confidence),
                        value(b.accuracy),
                    ]
                })
                .collect(),
        });
    }
    if let Some(cov) = &c.coverage {
        let intro = match &cov.target {
            None => format!("No confidence threshold reaches accuracy {}.", plain(cov.target_accuracy)),
            Some(target) => format!(
                "Accuracy {} is reached by keeping documents with confidence ≥ **{}**: coverage {} ({} documents, accuracy {}); the rest go to a person.",
                plain(cov.target_accuracy),
                f4(target.threshold),
                f4(target.coverage),
                target.documents,
                f4(target.accuracy)
            ),
        };
        out.push(Section {
            title: "Accuracy against coverage".into(),
            intro,
            header: strings(&["confidence ≥", "coverage", "documents", "accuracy"]),
            rows: cov
                .table
                .iter()
                .map(|p| vec![plain(p.threshold), f4(p.coverage), p.documents.to_string(), f4(p.accuracy)])
                .collect(),
        });
    }
    out.push(Section {
        title: "Most confident mistakes".into(),
        intro: String::new(),
        header: strings(&["id", "gold", "predicted", "confidence", "text"]),
        rows: c
            .errors
            .iter()
            .map(|e| vec![e.id.clone(), e.gold.clone(), e.predicted.clone(), f4(e.confidence), e.context.clone()])
            .collect(),
    });
}

fn sections(m: &MetricsFile) -> Vec<Section> {
    let mut out = Vec::new();
    match &m.task {
        TaskMetrics::Classification(c) => classification_sections(c, &mut out),
        TaskMetrics::MultiLabel(c) => {
            let macro_average = Average { precision: c.macro_precision, recall: c.macro_recall, f1: c.macro_f1 };
            let averages = vec![
                average_row("micro", &c.micro, String::new()),
                average_row("macro", &macro_average, String::new()),
                average_row("weighted", &c.weighted, String::new()),
            ];
            out.push(Section {
                title: "Per label (multi-label)".into(),
                intro: format!(
                    "{} documents: subset accuracy **{}**, micro-F1 **{}**, macro-F1 **{}**, Hamming loss {}.",
                    c.documents,
                    f4(c.subset_accuracy),
                    f4(c.micro.f1),
                    f4(c.macro_f1),
                    f4(c.hamming_loss)
                ),
                header: strings(&["class", "precision", "recall", "F1", "support"]),
                rows: class_rows(&c.per_label).into_iter().chain(averages).collect(),
            });
        }
        TaskMetrics::Entities(e) => {
            for (x, title) in [(&e.strict_iob2, "strict IOB2"), (&e.default, "seqeval default (conlleval-like)")] {
                out.push(Section {
                    title: format!("Entities, {title}"),
                    intro: format!(
                        "Micro precision {}, recall {}, F1 **{}** ({} gold entities, {} predicted).",
                        f4(x.precision),
                        f4(x.recall),
                        f4(x.f1),
                        x.support,
                        x.predicted
                    ),
                    header: strings(&["type", "precision", "recall", "F1", "support"]),
                    rows: type_rows(&x.per_type),
                });
            }
            let counts = error_counts(&e.error_counts);
            out.push(Section {
                title: "How gold entities were met (strict IOB2 spans)".into(),
                intro: "Exact: same type and words. Partial: same type, other boundaries. Wrong type: a prediction of another type over its words. Missed: no prediction touches it. Spurious: a prediction touching no gold entity.".into(),
                header: counts.iter().map(|(name, _)| name.to_string()).collect(),
                rows: vec![counts.iter().map(|(_, n)| n.to_string()).collect()],
            });
            let span = |s: &Option<SpanText>| match s {
                Some(s) => format!("{} [{}]", s.text, s.kind),
                None => "–".to_string(),
            };
            out.push(Section {
                title: "Error examples".into(),
                intro: String::new(),
                header: strings(&["kind", "id", "gold", "predicted", "context"]),
                rows: e
                    .errors
                    .iter()
                    .map(|x| {
                        let kind = serde_json::to_value(x.kind).ok().and_then(|v| v.as_str().map(String::from));
                        vec![
                            or_dash(kind.as_deref()),
                            x.id.clone(),
                            span(&x.gold),
                            span(&x.predicted),
                            x.context.clone(),
                        ]
                    })
                    .collect(),
            });
        }
    }
    out
}

/// The run's provenance lines, shared by both formats.
fn provenance(m: &MetricsFile) -> Vec<(String, String)> {
    let speed = match &m.throughput {
        None => "scored from a results file (no model ran)".to_string(),
        Some(t) => format!("{} documents/s, {} tokens/s", plain(t.documents_per_s), t.tokens_per_s),
    };
    vec![
        ("command".into(), m.command.clone()),
        (
            "model".into(),
            format!(
                "{} ({}), sha256 {}{}",
                or_dash(m.model.name.as_deref()),
                or_dash(m.model.path.as_deref()),
                or_dash(m.model.sha256.as_deref()),
                m.model.precision.map(|p| format!(", encoder at {p}")).unwrap_or_default()
            ),
        ),
        ("data".into(), format!("{}, sha256 {}, {} documents", m.data.path, m.data.sha256, m.data.documents)),
        ("predictions".into(), format!("{}, sha256 {}", m.predictions.path, m.predictions.sha256)),
        ("time".into(), format!("{} s; {speed}", plain(m.seconds))),
        (
            "machine".into(),
            format!(
                "{} threads of {} cores, {}",
                m.machine.threads,
                m.machine.cores,
                or_dash(m.machine.cpu.as_deref())
            ),
        ),
        ("docclass".into(), format!("{} (metrics schema {})", m.docclass_version, m.schema)),
    ]
}

fn title(m: &MetricsFile) -> String {
    format!("Evaluation of {} on {}", or_dash(m.model.name.as_deref()), m.data.path)
}

pub fn markdown(m: &MetricsFile) -> String {
    let mut out = format!("# {}\n\n", title(m));
    for (k, v) in provenance(m) {
        out += &format!("- {k}: {}\n", if k == "command" { format!("`{v}`") } else { v });
    }
    for w in &m.warnings {
        out += &format!("- **warning**: {w}\n");
    }
    for s in sections(m) {
        out += &format!("\n## {}\n\n", s.title);
        if !s.intro.is_empty() {
            out += &format!("{}\n\n", s.intro);
        }
        if !s.rows.is_empty() {
            out += &md_table(&s.header, &s.rows);
        }
    }
    out
}

pub fn html(m: &MetricsFile) -> String {
    let mut body = format!("<h1>{}</h1>\n<dl>", escape(&title(m)));
    for (k, v) in provenance(m) {
        body += &format!("<dt>{}</dt><dd>{}</dd>", escape(&k), escape(&v));
    }
    body += "</dl>\n";
    for w in &m.warnings {
        body += &format!("<p class=\"warning\">warning: {}</p>\n", escape(w));
    }
    body += &charts(m);
    for s in sections(m) {
        body += &format!("<h2>{}</h2>\n", escape(&s.title));
        if !s.intro.is_empty() {
            body += &format!("<p>{}</p>\n", inline(&s.intro));
        }
        if !s.rows.is_empty() {
            body += &html_table(&s.header, &s.rows);
        }
    }
    page(&title(m), &body)
}

fn charts(m: &MetricsFile) -> String {
    let mut figures = Vec::new();
    match &m.task {
        TaskMetrics::Classification(c) => {
            let bars: Vec<(String, f64)> = c.metrics.per_class.iter().map(|r| (r.label.clone(), r.f1)).collect();
            figures.push(figure("F1 per class", &svg::bar_chart(&bars)));
            let cm = &c.metrics.confusion_matrix;
            let counts: Vec<Vec<f64>> = cm.counts.iter().map(|r| r.iter().map(|&n| n as f64).collect()).collect();
            figures.push(figure("Confusion matrix (rows gold, columns predicted)", &svg::heatmap(&cm.labels, &counts)));
            if let Some(cal) = &c.calibration {
                let bins: Vec<(f64, f64, f64, f64)> = cal
                    .bins
                    .iter()
                    .filter(|b| b.documents > 0)
                    .map(|b| (b.lower, b.upper, b.accuracy, b.confidence))
                    .collect();
                figures.push(figure(&format!("Reliability diagram (ECE {})", f4(cal.ece)), &svg::reliability(&bins)));
            }
            if let Some(cov) = &c.coverage {
                let points: Vec<(f64, f64)> = cov.curve.iter().map(|p| (p.coverage, p.accuracy)).collect();
                let target = cov.target.as_ref().map(|t| (t.coverage, t.accuracy));
                figures.push(figure(
                    "Accuracy against coverage",
                    &svg::coverage_curve(&points, cov.target_accuracy, target),
                ));
            }
        }
        TaskMetrics::MultiLabel(c) => {
            let bars: Vec<(String, f64)> = c.per_label.iter().map(|r| (r.label.clone(), r.f1)).collect();
            figures.push(figure("F1 per label", &svg::bar_chart(&bars)));
        }
        TaskMetrics::Entities(e) => {
            let bars: Vec<(String, f64)> = e.strict_iob2.per_type.iter().map(|(k, r)| (k.clone(), r.f1)).collect();
            figures.push(figure("F1 per type (strict IOB2)", &svg::bar_chart(&bars)));
            let kinds: Vec<(String, f64)> =
                error_counts(&e.error_counts).iter().map(|(name, n)| (name.to_string(), *n as f64)).collect();
            figures.push(figure("Gold entities by outcome, and spurious predictions", &svg::count_chart(&kinds)));
        }
    }
    format!("<div class=\"charts\">{}</div>\n", figures.concat())
}
