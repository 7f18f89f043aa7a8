//! Renders metrics.json for people: a terminal summary, report.md, and report.html — one
//! self-contained page (no network: inline SVG charts, tables that sort on a click).

use std::fmt::Write;

use serde_json::Value;

/// Gold and prediction per document, which `--compare` reads (gzip; reports before
/// 2026-12 have it plain as `documents.jsonl`).
pub const DOCUMENTS_FILE: &str = "documents.jsonl.gz";
const PLAIN_DOCUMENTS_FILE: &str = "documents.jsonl";
/// The per-document files as reports before 2026-12 wrote them, uncompressed.
pub const PLAIN_FILES: [&str; 2] = [PLAIN_DOCUMENTS_FILE, "predictions.jsonl"];
/// The records of a model run, as `classify` writes them (gzip).
pub const PREDICTIONS_FILE: &str = "predictions.jsonl.gz";

/// The per-document file of a report directory: compressed, or plain from older reports.
pub fn documents_file(dir: &std::path::Path) -> std::path::PathBuf {
    let plain = dir.join(PLAIN_DOCUMENTS_FILE);
    if !dir.join(DOCUMENTS_FILE).exists() && plain.exists() {
        plain
    } else {
        dir.join(DOCUMENTS_FILE)
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn f4(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.4}"),
        None => "–".into(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }
}

/// The headline numbers, for the terminal.
pub fn summary(m: &Value) -> String {
    let mut out = String::new();
    if let Some(c) = m.get("classification") {
        let _ = writeln!(
            out,
            "accuracy {}  macro-F1 {}  weighted-F1 {}  log loss {}  ECE {}",
            f4(&c["accuracy"]),
            f4(&c["macro_f1"]),
            f4(&c["weighted"]["f1"]),
            f4(&c["log_loss"]),
            f4(&c["calibration"]["ece"])
        );
    }
    if let Some(c) = m.get("multi_label") {
        let _ = writeln!(
            out,
            "micro-F1 {}  macro-F1 {}  subset accuracy {}",
            f4(&c["micro"]["f1"]),
            f4(&c["macro_f1"]),
            f4(&c["subset_accuracy"])
        );
    }
    if let Some(e) = m.get("entities") {
        for mode in ["default", "strict_iob2"] {
            let x = &e[mode];
            let _ = writeln!(
                out,
                "entities ({mode}): precision {}  recall {}  F1 {}",
                f4(&x["precision"]),
                f4(&x["recall"]),
                f4(&x["f1"])
            );
        }
    }
    out
}

/// A table as rows of cells: Markdown.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out =
        format!("| {} |\n|{}|\n", header.join(" | "), header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|").replace('\n', " ")).collect();
        out += &format!("| {} |\n", cells.join(" | "));
    }
    out
}

/// A titled table of a report, rendered both as Markdown and as HTML.
pub struct Section {
    pub title: String,
    /// A line of text above the table (Markdown's **bold** allowed).
    pub intro: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn scores_rows(per_class: &Value, name_key: Option<&str>) -> Vec<Vec<String>> {
    let row =
        |name: String, r: &Value| vec![name, f4(&r["precision"]), f4(&r["recall"]), f4(&r["f1"]), text(&r["support"])];
    match (per_class, name_key) {
        (Value::Array(items), Some(key)) => items.iter().map(|r| row(text(&r[key]), r)).collect(),
        (Value::Object(items), _) => items.iter().map(|(k, r)| row(k.clone(), r)).collect(),
        _ => Vec::new(),
    }
}

fn sections(m: &Value) -> Vec<Section> {
    let mut out = Vec::new();
    let prf_header = strings(&["class", "precision", "recall", "F1", "support"]);
    if let Some(c) = m.get("classification") {
        let averages = vec![
            vec![
                "macro".into(),
                f4(&c["macro_precision"]),
                f4(&c["macro_recall"]),
                f4(&c["macro_f1"]),
                text(&c["documents"]),
            ],
            vec![
                "micro".into(),
                f4(&c["micro"]["precision"]),
                f4(&c["micro"]["recall"]),
                f4(&c["micro"]["f1"]),
                text(&c["documents"]),
            ],
            vec![
                "weighted".into(),
                f4(&c["weighted"]["precision"]),
                f4(&c["weighted"]["recall"]),
                f4(&c["weighted"]["f1"]),
                text(&c["documents"]),
            ],
        ];
        out.push(Section {
            title: "Per class".into(),
            intro: format!(
                "{} documents: accuracy **{}**, macro-F1 **{}**, log loss {} (natural log).",
                text(&c["documents"]),
                f4(&c["accuracy"]),
                f4(&c["macro_f1"]),
                f4(&c["log_loss"])
            ),
            header: prf_header.clone(),
            rows: scores_rows(&c["per_class"], Some("label")).into_iter().chain(averages).collect(),
        });
        let cm = &c["confusion_matrix"];
        let labels: Vec<String> = cm["labels"].as_array().into_iter().flatten().map(text).collect();
        let header: Vec<String> =
            std::iter::once("gold \\ predicted".to_string()).chain(labels.iter().cloned()).collect();
        out.push(Section {
            title: "Confusion matrix".into(),
            intro: "Rows are gold labels, columns predicted labels.".into(),
            header,
            rows: cm["counts"]
                .as_array()
                .into_iter()
                .flatten()
                .zip(&labels)
                .map(|(row, label)| {
                    std::iter::once(label.clone()).chain(row.as_array().into_iter().flatten().map(text)).collect()
                })
                .collect(),
        });
        if let Some(cal) = c.get("calibration").filter(|v| !v.is_null()) {
            out.push(Section {
                title: "Calibration".into(),
                intro: format!(
                    "Expected calibration error **{}**, largest bin gap {} ({}).",
                    f4(&cal["ece"]),
                    f4(&cal["mce"]),
                    text(&cal["binning"])
                ),
                header: strings(&["bin", "documents", "mean confidence", "accuracy"]),
                rows: cal["bins"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        // An empty bin has no confidence or accuracy to show.
                        let empty = b["documents"].as_u64() == Some(0);
                        let value = |v: &Value| if empty { "–".to_string() } else { f4(v) };
                        vec![
                            format!("{:.1}–{:.1}", num(&b["lower"]), num(&b["upper"])),
                            text(&b["documents"]),
                            value(&b["confidence"]),
                            value(&b["accuracy"]),
                        ]
                    })
                    .collect(),
            });
        }
        if let Some(cov) = c.get("coverage").filter(|v| !v.is_null()) {
            let target = &cov["target"];
            let intro = if target.is_null() {
                format!("No confidence threshold reaches accuracy {}.", text(&cov["target_accuracy"]))
            } else {
                format!(
                    "Accuracy {} is reached by keeping documents with confidence ≥ **{}**: coverage {} ({} documents, accuracy {}); the rest go to a person.",
                    text(&cov["target_accuracy"]),
                    f4(&target["threshold"]),
                    f4(&target["coverage"]),
                    text(&target["documents"]),
                    f4(&target["accuracy"])
                )
            };
            out.push(Section {
                title: "Accuracy against coverage".into(),
                intro,
                header: strings(&["confidence ≥", "coverage", "documents", "accuracy"]),
                rows: cov["table"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| vec![text(&p["threshold"]), f4(&p["coverage"]), text(&p["documents"]), f4(&p["accuracy"])])
                    .collect(),
            });
        }
        out.push(Section {
            title: "Most confident mistakes".into(),
            intro: String::new(),
            header: strings(&["id", "gold", "predicted", "confidence", "text"]),
            rows: c["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    vec![
                        text(&e["id"]),
                        text(&e["gold"]),
                        text(&e["predicted"]),
                        f4(&e["confidence"]),
                        text(&e["context"]),
                    ]
                })
                .collect(),
        });
    }
    if let Some(c) = m.get("multi_label") {
        let averages = vec![
            vec![
                "micro".into(),
                f4(&c["micro"]["precision"]),
                f4(&c["micro"]["recall"]),
                f4(&c["micro"]["f1"]),
                String::new(),
            ],
            vec!["macro".into(), f4(&c["macro_precision"]), f4(&c["macro_recall"]), f4(&c["macro_f1"]), String::new()],
            vec![
                "weighted".into(),
                f4(&c["weighted"]["precision"]),
                f4(&c["weighted"]["recall"]),
                f4(&c["weighted"]["f1"]),
                String::new(),
            ],
        ];
        out.push(Section {
            title: "Per label (multi-label)".into(),
            intro: format!(
                "{} documents: subset accuracy **{}**, micro-F1 **{}**, macro-F1 **{}**, Hamming loss {}.",
                text(&c["documents"]),
                f4(&c["subset_accuracy"]),
                f4(&c["micro"]["f1"]),
                f4(&c["macro_f1"]),
                f4(&c["hamming_loss"])
            ),
            header: prf_header.clone(),
            rows: scores_rows(&c["per_label"], Some("label")).into_iter().chain(averages).collect(),
        });
    }
    if let Some(e) = m.get("entities") {
        for (mode, title) in [("strict_iob2", "strict IOB2"), ("default", "seqeval default (conlleval-like)")] {
            let x = &e[mode];
            out.push(Section {
                title: format!("Entities, {title}"),
                intro: format!(
                    "Micro precision {}, recall {}, F1 **{}** ({} gold entities, {} predicted).",
                    f4(&x["precision"]),
                    f4(&x["recall"]),
                    f4(&x["f1"]),
                    text(&x["support"]),
                    text(&x["predicted"])
                ),
                header: strings(&["type", "precision", "recall", "F1", "support"]),
                rows: scores_rows(&x["per_type"], None),
            });
        }
        let counts = &e["error_counts"];
        out.push(Section {
            title: "How gold entities were met (strict IOB2 spans)".into(),
            intro: "Exact: same type and words. Partial: same type, other boundaries. Wrong type: a prediction of another type over its words. Missed: no prediction touches it. Spurious: a prediction touching no gold entity.".into(),
            header: strings(&["exact", "partial", "wrong type", "missed", "spurious"]),
            rows: vec![["exact", "partial", "wrong_type", "missed", "spurious"].iter().map(|k| text(&counts[*k])).collect()],
        });
        let span = |s: &Value| {
            if s.is_null() {
                "–".to_string()
            } else {
                format!("{} [{}]", text(&s["text"]), text(&s["type"]))
            }
        };
        out.push(Section {
            title: "Error examples".into(),
            intro: String::new(),
            header: strings(&["kind", "id", "gold", "predicted", "context"]),
            rows: e["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    vec![text(&x["kind"]), text(&x["id"]), span(&x["gold"]), span(&x["predicted"]), text(&x["context"])]
                })
                .collect(),
        });
    }
    out
}

/// The run's provenance lines, shared by both formats.
fn provenance(m: &Value) -> Vec<(String, String)> {
    let throughput = &m["throughput"];
    let speed = if throughput.is_null() {
        "scored from a results file (no model ran)".to_string()
    } else {
        format!("{} documents/s, {} tokens/s", text(&throughput["documents_per_s"]), text(&throughput["tokens_per_s"]))
    };
    vec![
        ("command".into(), text(&m["command"])),
        (
            "model".into(),
            format!(
                "{} ({}), sha256 {}",
                text(&m["model"]["name"]),
                text(&m["model"]["path"]),
                text(&m["model"]["sha256"])
            ),
        ),
        (
            "data".into(),
            format!(
                "{}, sha256 {}, {} documents",
                text(&m["data"]["path"]),
                text(&m["data"]["sha256"]),
                text(&m["data"]["documents"])
            ),
        ),
        (
            "predictions".into(),
            format!("{}, sha256 {}", text(&m["predictions"]["path"]), text(&m["predictions"]["sha256"])),
        ),
        ("time".into(), format!("{} s; {speed}", text(&m["seconds"]))),
        (
            "machine".into(),
            format!(
                "{} threads of {} cores, {}",
                text(&m["machine"]["threads"]),
                text(&m["machine"]["cores"]),
                text(&m["machine"]["cpu"])
            ),
        ),
        ("docclass".into(), format!("{} (metrics schema {})", text(&m["docclass_version"]), text(&m["schema"]))),
    ]
}

fn title(m: &Value) -> String {
    format!("Evaluation of {} on {}", text(&m["model"]["name"]), text(&m["data"]["path"]))
}

pub fn markdown(m: &Value) -> String {
    let mut out = format!("# {}\n\n", title(m));
    for (k, v) in provenance(m) {
        out += &format!("- {k}: {}\n", if k == "command" { format!("`{v}`") } else { v });
    }
    for w in m["warnings"].as_array().into_iter().flatten() {
        out += &format!("- **warning**: {}\n", text(w));
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

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Markdown's **bold** as HTML, the rest escaped.
pub fn inline(s: &str) -> String {
    escape(s)
        .split("**")
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { format!("<b>{part}</b>") } else { part.to_string() })
        .collect()
}

pub fn html_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table class=\"sortable\"><thead><tr>");
    for h in header {
        out += &format!("<th title=\"sort\">{}</th>", escape(h));
    }
    out += "</tr></thead><tbody>";
    for row in rows {
        out += "<tr>";
        for cell in row {
            out += &format!("<td>{}</td>", escape(cell));
        }
        out += "</tr>";
    }
    out + "</tbody></table>\n"
}

pub fn html(m: &Value) -> String {
    let mut body = format!("<h1>{}</h1>\n<dl>", escape(&title(m)));
    for (k, v) in provenance(m) {
        body += &format!("<dt>{}</dt><dd>{}</dd>", escape(&k), escape(&v));
    }
    body += "</dl>\n";
    for w in m["warnings"].as_array().into_iter().flatten() {
        body += &format!("<p class=\"warning\">warning: {}</p>\n", escape(&text(w)));
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

/// A whole HTML page around `body`, with the style and the table-sorting script.
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1b1b1b; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }} dt {{ font-weight: 600; }} dd {{ margin: 0; word-break: break-all; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }} th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f0f0f0; cursor: pointer; user-select: none; }} th.asc::after {{ content: " ▲"; }} th.desc::after {{ content: " ▼"; }}
td {{ max-width: 40em; }} .warning {{ color: #a40000; font-weight: 600; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1.5em; }} figure {{ margin: 0; }} figcaption {{ font-weight: 600; margin-bottom: 0.3em; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #1b1b1b; }}
</style></head>
<body>
{}
<script>
// Click a column header to sort its table by that column (numbers numerically).
document.querySelectorAll("table.sortable th").forEach(function (th, _) {{
  th.addEventListener("click", function () {{
    var table = th.closest("table"), body = table.tBodies[0];
    var column = Array.prototype.indexOf.call(th.parentNode.children, th);
    var ascending = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function (h) {{ h.classList.remove("asc", "desc"); }});
    th.classList.add(ascending ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {{
      var x = a.cells[column].textContent, y = b.cells[column].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return ascending ? order : -order;
    }});
    rows.forEach(function (r) {{ body.appendChild(r); }});
  }});
}});
document.body.setAttribute("data-report-ready", "yes");
</script>
</body></html>
"#,
        escape(title),
        body
    )
}

fn charts(m: &Value) -> String {
    let mut figures = Vec::new();
    if let Some(c) = m.get("classification") {
        let bars: Vec<(String, f64)> =
            c["per_class"].as_array().into_iter().flatten().map(|r| (text(&r["label"]), num(&r["f1"]))).collect();
        figures.push(figure("F1 per class", &svg::bar_chart(&bars)));
        let cm = &c["confusion_matrix"];
        let labels: Vec<String> = cm["labels"].as_array().into_iter().flatten().map(text).collect();
        let counts: Vec<Vec<f64>> = cm["counts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r.as_array().into_iter().flatten().map(num).collect())
            .collect();
        figures.push(figure("Confusion matrix (rows gold, columns predicted)", &svg::heatmap(&labels, &counts)));
        if let Some(cal) = c.get("calibration").filter(|v| !v.is_null()) {
            let bins: Vec<(f64, f64, f64, f64)> = cal["bins"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| num(&b["documents"]) > 0.0)
                .map(|b| (num(&b["lower"]), num(&b["upper"]), num(&b["accuracy"]), num(&b["confidence"])))
                .collect();
            figures.push(figure(&format!("Reliability diagram (ECE {})", f4(&cal["ece"])), &svg::reliability(&bins)));
        }
        if let Some(cov) = c.get("coverage").filter(|v| !v.is_null()) {
            let points: Vec<(f64, f64)> = cov["curve"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| (num(&p["coverage"]), num(&p["accuracy"])))
                .collect();
            let target = cov["target"].as_object().map(|t| (num(&t["coverage"]), num(&t["accuracy"])));
            figures.push(figure(
                "Accuracy against coverage",
                &svg::coverage_curve(&points, num(&cov["target_accuracy"]), target),
            ));
        }
    }
    if let Some(c) = m.get("multi_label") {
        let bars: Vec<(String, f64)> =
            c["per_label"].as_array().into_iter().flatten().map(|r| (text(&r["label"]), num(&r["f1"]))).collect();
        figures.push(figure("F1 per label", &svg::bar_chart(&bars)));
    }
    if let Some(e) = m.get("entities") {
        let bars: Vec<(String, f64)> = e["strict_iob2"]["per_type"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, r)| (k.clone(), num(&r["f1"])))
            .collect();
        figures.push(figure("F1 per type (strict IOB2)", &svg::bar_chart(&bars)));
        let counts = &e["error_counts"];
        let kinds: Vec<(String, f64)> = ["exact", "partial", "wrong_type", "missed", "spurious"]
            .iter()
            .map(|k| (k.replace('_', " "), num(&counts[*k])))
            .collect();
        figures.push(figure("Gold entities by outcome, and spurious predictions", &svg::count_chart(&kinds)));
    }
    format!("<div class=\"charts\">{}</div>\n", figures.concat())
}

fn figure(caption: &str, svg: &str) -> String {
    format!("<figure><figcaption>{}</figcaption>{svg}</figure>\n", escape(caption))
}

/// Small SVG charts, drawn by hand: no script or network needed to show them.
pub mod svg {
    use super::escape;

    const BLUE: &str = "#2b6cb0";

    /// Horizontal bars of values in [0, 1], labelled with their value.
    pub fn bar_chart(bars: &[(String, f64)]) -> String {
        scaled_bars(bars, 1.0, |v| format!("{v:.3}"))
    }

    /// Horizontal bars of counts.
    pub fn count_chart(bars: &[(String, f64)]) -> String {
        let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
        scaled_bars(bars, max, |v| format!("{v:.0}"))
    }

    fn scaled_bars(bars: &[(String, f64)], max: f64, show: impl Fn(f64) -> String) -> String {
        let (label_width, bar_width, row) = (110.0, 240.0, 20.0);
        let height = row * bars.len() as f64 + 10.0;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\">",
            label_width + bar_width + 60.0
        );
        for (i, (label, value)) in bars.iter().enumerate() {
            let y = 5.0 + i as f64 * row;
            let w = if value.is_finite() { (value / max).clamp(0.0, 1.0) * bar_width } else { 0.0 };
            out += &format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{label_width}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{BLUE}\"><title>{}: {}</title></rect><text x=\"{}\" y=\"{}\">{}</text>",
                label_width - 6.0, y + 13.0, escape(label), y + 2.0, row - 5.0, escape(label), show(*value), label_width + w + 4.0, y + 13.0, show(*value)
            );
        }
        out + "</svg>"
    }

    /// A matrix of counts, shaded by each row's share.
    pub fn heatmap(labels: &[String], counts: &[Vec<f64>]) -> String {
        let (cell, margin) = (34.0, 80.0);
        let size = margin + cell * labels.len() as f64 + 10.0;
        let mut out =
            format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" role=\"img\">");
        for (i, label) in labels.iter().enumerate() {
            let at = margin + cell * i as f64 + cell / 2.0;
            out += &format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                margin - 6.0,
                at + 4.0,
                escape(label)
            );
            out += &format!(
                "<text transform=\"translate({at},{}) rotate(-45)\" text-anchor=\"start\">{}</text>",
                margin - 6.0,
                escape(label)
            );
        }
        for (g, row) in counts.iter().enumerate() {
            let total: f64 = row.iter().sum::<f64>().max(1.0);
            for (p, &count) in row.iter().enumerate() {
                let share = count / total;
                let (x, y) = (margin + cell * p as f64, margin + cell * g as f64);
                let fill =
                    if g == p { format!("rgba(43,108,176,{share:.3})") } else { format!("rgba(197,48,48,{share:.3})") };
                let ink = if share > 0.55 { "#fff" } else { "#1b1b1b" };
                out += &format!(
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\" stroke=\"#ddd\"><title>gold {} → predicted {}: {count}</title></rect><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"fill:{ink}\">{count}</text>",
                    escape(&labels[g]), escape(&labels[p]), x + cell / 2.0, y + cell / 2.0 + 4.0
                );
            }
        }
        out + "</svg>"
    }

    /// Axes of a square plot of x in [0, 1] and y in [y_min, 1]: (svg start, x to
    /// pixels, y to pixels).
    fn unit_plot(x_label: &str, y_label: &str, y_min: f64) -> (String, impl Fn(f64) -> f64, impl Fn(f64) -> f64) {
        let (left, top, side) = (45.0, 10.0, 260.0);
        let px = move |x: f64| left + x * side;
        let py = move |y: f64| top + (1.0 - (y - y_min) / (1.0 - y_min)) * side;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\">",
            left + side + 20.0,
            top + side + 40.0
        );
        out += &format!(
            "<rect x=\"{left}\" y=\"{top}\" width=\"{side}\" height=\"{side}\" fill=\"none\" stroke=\"#999\"/>"
        );
        for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
            out +=
                &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{tick}</text>", px(tick), top + side + 14.0);
            let y_tick = y_min + tick * (1.0 - y_min);
            out += &format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                left - 4.0,
                py(y_tick) + 4.0,
                (y_tick * 1000.0).round() / 1000.0
            );
        }
        out += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(0.5),
            top + side + 32.0,
            escape(x_label)
        );
        out += &format!(
            "<text transform=\"translate(12,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            py(0.5),
            escape(y_label)
        );
        (out, px, py)
    }

    /// Accuracy per confidence bin (bars) against the diagonal of perfect calibration.
    /// `bins`: (lower, upper, accuracy, mean confidence) of the non-empty bins.
    pub fn reliability(bins: &[(f64, f64, f64, f64)]) -> String {
        let (mut out, px, py) = unit_plot("confidence (top-1 probability)", "accuracy", 0.0);
        for &(lower, upper, accuracy, confidence) in bins {
            out += &format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{BLUE}\" fill-opacity=\"0.75\" stroke=\"#fff\"><title>{lower:.1}–{upper:.1}: accuracy {accuracy:.3}, confidence {confidence:.3}</title></rect>",
                px(lower), py(accuracy), px(upper) - px(lower), py(0.0) - py(accuracy)
            );
            out +=
                &format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#c53030\"/>", px(confidence), py(accuracy));
        }
        out += &format!("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#555\" stroke-dasharray=\"4 3\"><title>perfect calibration</title></line>", px(0.0), py(0.0), px(1.0), py(1.0));
        out + "</svg>"
    }

    /// Accuracy of the documents kept against the share kept, with the target accuracy.
    pub fn coverage_curve(points: &[(f64, f64)], target_accuracy: f64, target: Option<(f64, f64)>) -> String {
        // The interesting part is near the top: the axis starts a little below the lowest accuracy.
        let lowest = points.iter().map(|p| p.1).chain([target_accuracy]).filter(|y| y.is_finite()).fold(1.0, f64::min);
        let y_min = ((lowest - 0.02) * 20.0).floor().max(0.0) / 20.0;
        let (mut out, px, py) = unit_plot("coverage (share of documents kept)", "accuracy of kept documents", y_min);
        let path: Vec<String> = points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        out += &format!("<polyline points=\"{}\" fill=\"none\" stroke=\"{BLUE}\" stroke-width=\"2\"/>", path.join(" "));
        if target_accuracy.is_finite() {
            out += &format!(
                "<line x1=\"{}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#c53030\" stroke-dasharray=\"4 3\"><title>target accuracy {target_accuracy}</title></line>",
                px(0.0), py(target_accuracy), px(1.0), py(target_accuracy)
            );
        }
        if let Some((x, y)) = target {
            out += &format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#c53030\"><title>coverage {x:.3} at accuracy {y:.3}</title></circle>", px(x), py(y));
        }
        out + "</svg>"
    }
}
