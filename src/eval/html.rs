//! What the reports of `eval` and `eval --compare` share: tables as Markdown and HTML, a
//! self-contained HTML page (inline style, a table-sorting script, no network), and small
//! SVG charts drawn by hand.

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

pub fn figure(caption: &str, svg: &str) -> String {
    format!("<figure><figcaption>{}</figcaption>{svg}</figure>\n", escape(caption))
}

/// Small SVG charts, drawn by hand: no script or network needed to show them.
pub mod svg {
    use super::escape;

    const BLUE: &str = "#2b6cb0";

    /// About how wide a text is at the charts' 11 px font (sized generously, so that a
    /// label is never cut off at the edge).
    fn text_width(text: &str) -> f64 {
        text.chars().count() as f64 * 6.6
    }

    /// Labels longer than this are shortened with `…` (the whole one in the tooltip).
    const LONGEST_LABEL: usize = 60;

    fn shortened(label: &str) -> String {
        if label.chars().count() <= LONGEST_LABEL {
            label.to_string()
        } else {
            label.chars().take(LONGEST_LABEL - 1).chain(['…']).collect()
        }
    }

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
        let (bar_width, row) = (240.0, 20.0);
        let label_width = bars.iter().map(|(l, _)| text_width(&shortened(l))).fold(40.0, f64::max) + 10.0;
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
                label_width - 6.0, y + 13.0, escape(&shortened(label)), y + 2.0, row - 5.0, escape(label), show(*value), label_width + w + 4.0, y + 13.0, show(*value)
            );
        }
        out + "</svg>"
    }

    /// A matrix of counts, shaded by each row's share.
    pub fn heatmap(labels: &[String], counts: &[Vec<f64>]) -> String {
        let cell = 34.0;
        let longest = labels.iter().map(|l| text_width(l)).fold(0.0, f64::max);
        // Row labels need the longest label's width on the left; column labels, rotated
        // by 45°, need about 0.71 of it above and reach as far to the right of their
        // column.
        let margin = (longest + 12.0).max(80.0);
        let width = margin + cell * labels.len() as f64 + longest * 0.71 + 10.0;
        let height = margin + cell * labels.len() as f64 + 10.0;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\">"
        );
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

    /// Bars left (B lower) or right (B higher) of zero, coloured by which system is better.
    pub fn delta_chart(deltas: &[(String, f64, Option<&str>)]) -> String {
        let max = deltas.iter().map(|d| d.1.abs()).fold(1e-9, f64::max);
        let (label_width, half, row) = (170.0, 140.0, 20.0);
        let zero = label_width + half;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\">",
            zero + half + 70.0,
            row * deltas.len() as f64 + 10.0
        );
        for (i, (name, d, better)) in deltas.iter().enumerate() {
            let color = match better {
                Some("B") => "#2b6cb0",
                Some(_) => "#c53030",
                None => "#888",
            };
            let y = 5.0 + row * i as f64;
            let w = d.abs() / max * half;
            let x = if *d < 0.0 { zero - w } else { zero };
            out += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{x:.1}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{d:+.4}</text>",
                label_width - 6.0, y + 13.0, escape(name), y + 2.0, row - 5.0, color, zero + half + 4.0, y + 13.0);
        }
        out += &format!(
            "<line x1=\"{zero}\" y1=\"0\" x2=\"{zero}\" y2=\"{}\" stroke=\"#555\"/>",
            row * deltas.len() as f64 + 10.0
        );
        out + "</svg>"
    }
}

#[cfg(test)]
mod tests {
    use super::svg;

    /// The numbers of attribute `name` in an SVG, in order.
    fn attribute(svg: &str, name: &str) -> Vec<f64> {
        svg.split(&format!(" {name}=\"")).skip(1).map(|rest| rest.split('"').next().unwrap().parse().unwrap()).collect()
    }

    #[test]
    fn bar_labels_fit_left_of_their_bars() {
        let long = "Kemper in von Mangoldt / Klein / Starck GG 7. Aufl. Art. 9 Rn. 91";
        let chart = svg::count_chart(&[(long.to_string(), 3.0), ("BGB".to_string(), 1.0)]);
        // Each label ends (text-anchor end) at x and needs about 6.6 px a character.
        let label_x = attribute(&chart, "x")[0];
        assert!(label_x >= 59.0 * 6.6, "{label_x}: the long label is cut at the left edge");
        assert!(chart.contains(&format!("<title>{long}: 3</title>")), "the whole label in the tooltip");
        assert!(
            chart.contains(">Kemper in von Mangoldt / Klein / Starck GG 7. Aufl. Art. 9 …<"),
            "shortened to 60 characters"
        );
    }

    #[test]
    fn the_last_rotated_column_header_fits_in_the_matrix() {
        let labels: Vec<String> = ["bag", "bverwg", "Verwaltungsrecht"].map(String::from).to_vec();
        let counts = vec![vec![1.0; 3]; 3];
        let chart = svg::heatmap(&labels, &counts);
        let width = attribute(&chart, "width")[0];
        // The last column's centre plus its header, rotated by 45°.
        let margin = (16.0 * 6.6 + 12.0f64).max(80.0);
        let last_centre = margin + 34.0 * 2.5;
        assert!(width >= last_centre + 16.0 * 6.6 * 0.7, "{width}");
    }
}
