//! `docclass eval --compare A B`: two reports of the same gold data side by side, with
//! per-metric deltas (B − A), McNemar's exact test on the documents one system gets
//! right and the other wrong, and paired bootstrap intervals of the headline metrics.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::classification::{classification_metrics, multi_label_metrics, prf};
use super::report::documents_file;
use super::report::{escape, html_table, inline, md_table, page, strings as owned, Section};
use super::stats::{mcnemar, paired_bootstrap, BootstrapInterval, McNemar};
use crate::fsutil::read_text;

/// What was scored, with the paths of the metrics each side reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Task {
    Classification,
    MultiLabel,
    Entities,
}

impl Task {
    fn of(metrics: &Value, path: &Path) -> Result<Self> {
        Ok(if metrics.get("classification").is_some() {
            Task::Classification
        } else if metrics.get("multi_label").is_some() {
            Task::MultiLabel
        } else if metrics.get("entities").is_some() {
            Task::Entities
        } else {
            bail!("{}: no classification or entity metrics", path.display())
        })
    }

    /// The metrics put side by side: name, JSON pointer into metrics.json, and whether
    /// higher is better.
    fn headline(self) -> &'static [(&'static str, &'static str, bool)] {
        match self {
            Task::Classification => &[
                ("accuracy", "/classification/accuracy", true),
                ("macro-F1", "/classification/macro_f1", true),
                ("macro precision", "/classification/macro_precision", true),
                ("macro recall", "/classification/macro_recall", true),
                ("weighted F1", "/classification/weighted/f1", true),
                ("log loss", "/classification/log_loss", false),
                ("ECE", "/classification/calibration/ece", false),
                ("coverage at target accuracy", "/classification/coverage/target/coverage", true),
            ],
            Task::MultiLabel => &[
                ("subset accuracy", "/multi_label/subset_accuracy", true),
                ("micro-F1", "/multi_label/micro/f1", true),
                ("macro-F1", "/multi_label/macro_f1", true),
                ("Hamming loss", "/multi_label/hamming_loss", false),
            ],
            Task::Entities => &[
                ("strict IOB2 F1", "/entities/strict_iob2/f1", true),
                ("strict IOB2 precision", "/entities/strict_iob2/precision", true),
                ("strict IOB2 recall", "/entities/strict_iob2/recall", true),
                ("default-mode F1", "/entities/default/f1", true),
                ("exact", "/entities/error_counts/exact", true),
                ("partial", "/entities/error_counts/partial", false),
                ("wrong type", "/entities/error_counts/wrong_type", false),
                ("missed", "/entities/error_counts/missed", false),
                ("spurious", "/entities/error_counts/spurious", false),
            ],
        }
    }
}

struct Side {
    metrics: Value,
    documents: Vec<Value>,
}

fn read_side(dir: &Path) -> Result<Side> {
    let metrics_path = dir.join("metrics.json");
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(&metrics_path).with_context(|| format!("{}: cannot read", metrics_path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", metrics_path.display()))?;
    let documents_path = documents_file(dir);
    let text =
        read_text(&documents_path).context("reports of docclass before metrics schema 2 lack the per-document file")?;
    let documents = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}: malformed JSON", documents_path.display(), i + 1))
        })
        .collect::<Result<Vec<Value>>>()?;
    Ok(Side { metrics, documents })
}

/// How a comparison runs: bootstrap resamples, their seed, and where the report goes.
pub struct CompareOptions {
    pub bootstrap: usize,
    pub seed: u64,
    pub report: std::path::PathBuf,
}

pub fn run(a_dir: &Path, b_dir: &Path, args: &CompareOptions) -> Result<()> {
    let (a, b) = (read_side(a_dir)?, read_side(b_dir)?);
    let task = Task::of(&a.metrics, a_dir)?;
    if Task::of(&b.metrics, b_dir)? != task {
        bail!("{} and {} score different tasks", a_dir.display(), b_dir.display());
    }
    // The same documents with the same gold answers, in the same order.
    let ids =
        |s: &Side| -> Vec<String> { s.documents.iter().map(|d| d["id"].as_str().unwrap_or("").to_string()).collect() };
    let (a_ids, b_ids) = (ids(&a), ids(&b));
    if a_ids != b_ids {
        let (sa, sb): (BTreeSet<&String>, BTreeSet<&String>) = (a_ids.iter().collect(), b_ids.iter().collect());
        bail!(
            "the reports do not cover the same documents: {} only in A (e.g. {:?}), {} only in B (e.g. {:?})",
            sa.difference(&sb).count(),
            sa.difference(&sb).next(),
            sb.difference(&sa).count(),
            sb.difference(&sa).next()
        );
    }
    if let Some(i) = (0..a.documents.len()).find(|&i| a.documents[i]["gold"] != b.documents[i]["gold"]) {
        bail!(
            "document {:?} has different gold labels in the two reports: they were scored on different gold data",
            a_ids[i]
        );
    }
    if a.metrics["data"]["sha256"] != b.metrics["data"]["sha256"] {
        crate::logging::warning(
            "gold_files_differ",
            "the reports' gold files have different SHA-256; they are compared only because every document and gold label agrees",
            json!({}),
        );
    }

    let metrics: Vec<Value> = task
        .headline()
        .iter()
        .map(|&(name, pointer, higher_is_better)| {
            let (x, y) = (
                a.metrics.pointer(pointer).and_then(Value::as_f64),
                b.metrics.pointer(pointer).and_then(Value::as_f64),
            );
            let delta = x.zip(y).map(|(x, y)| y - x);
            let better = delta.filter(|d| *d != 0.0).map(|d| if (d > 0.0) == higher_is_better { "B" } else { "A" });
            json!({"metric": name, "a": x, "b": y, "delta": delta, "better": better})
        })
        .collect();
    let significance = significance(task, &a.documents, &b.documents, args.bootstrap, args.seed);
    let comparison = json!({
        "schema": "docclass-compare/1",
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "docclass_version": env!("CARGO_PKG_VERSION"),
        "a": {"report": a_dir.display().to_string(), "model": a.metrics["model"], "data": a.metrics["data"]},
        "b": {"report": b_dir.display().to_string(), "model": b.metrics["model"], "data": b.metrics["data"]},
        "documents": a.documents.len(),
        "metrics": metrics,
        "mcnemar": significance.mcnemar,
        "bootstrap": significance.headline,
        "per_class_bootstrap": significance.per_class,
    });
    std::fs::create_dir_all(&args.report).with_context(|| format!("creating {}", args.report.display()))?;
    let write = |name: &str, content: String| crate::fsutil::write_durably(&args.report.join(name), content.as_bytes());
    write("comparison.json", serde_json::to_string_pretty(&comparison)? + "\n")?;
    let (markdown, html) = render(&comparison, task);
    write("report.md", markdown)?;
    write("report.html", html)?;
    print!("{}", render_summary(&comparison));
    Ok(())
}

/// What [`significance`] finds.
struct Significance {
    mcnemar: McNemar,
    /// Paired bootstrap intervals of the headline metrics.
    headline: Vec<BootstrapInterval>,
    /// Of each label's F1 (classification), or each entity type's strict F1.
    per_class: Vec<BootstrapInterval>,
}

/// McNemar on per-document correctness and paired bootstrap intervals of the headline
/// metrics and of each label's (entity type's) F1.
fn significance(task: Task, a: &[Value], b: &[Value], resamples: usize, seed: u64) -> Significance {
    let n = a.len();
    let sides = [a, b];
    let right = |docs: &[Value]| -> Vec<bool> { docs.iter().map(|d| same_set(&d["gold"], &d["predicted"])).collect() };
    let test = mcnemar(&right(a), &right(b));
    let (headline, per_class) = match task {
        Task::Classification | Task::MultiLabel => {
            let labels: Vec<String> = a
                .iter()
                .chain(b)
                .flat_map(|d| strings(&d["gold"]).into_iter().chain(strings(&d["predicted"])))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let index = |v: &Value| -> Vec<usize> {
                strings(v).iter().map(|l| labels.binary_search(l).expect("collected")).collect()
            };
            let coded: Vec<Vec<(Vec<usize>, Vec<usize>)>> = sides
                .iter()
                .map(|docs| docs.iter().map(|d| (index(&d["gold"]), index(&d["predicted"]))).collect())
                .collect();
            let pick = |system: usize, docs: &[usize]| -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
                docs.iter().map(|&i| coded[system][i].clone()).unzip()
            };
            if task == Task::Classification {
                let first = |v: Vec<Vec<usize>>| -> Vec<usize> { v.into_iter().map(|x| x[0]).collect() };
                let accuracy = |system: usize, docs: &[usize]| {
                    docs.iter().filter(|&&i| coded[system][i].0 == coded[system][i].1).count() as f64
                        / docs.len().max(1) as f64
                };
                let metrics = |system: usize, docs: &[usize]| {
                    let (gold, predicted) = pick(system, docs);
                    classification_metrics(&labels, &first(gold), &first(predicted))
                };
                let class_f1 = |l: usize| move |system: usize, docs: &[usize]| metrics(system, docs).per_class[l].f1;
                (
                    vec![
                        paired_bootstrap("accuracy", n, resamples, seed, accuracy),
                        paired_bootstrap("macro-F1", n, resamples, seed, |s, d| metrics(s, d).macro_f1),
                    ],
                    (0..labels.len()).map(|l| paired_bootstrap(&labels[l], n, resamples, seed, class_f1(l))).collect(),
                )
            } else {
                let metrics = |system: usize, docs: &[usize]| {
                    let (gold, predicted) = pick(system, docs);
                    multi_label_metrics(&labels, &gold, &predicted)
                };
                let label_f1 = |l: usize| move |system: usize, docs: &[usize]| metrics(system, docs).per_label[l].f1;
                (
                    vec![paired_bootstrap("micro-F1", n, resamples, seed, |s, d| metrics(s, d).micro.f1)],
                    (0..labels.len()).map(|l| paired_bootstrap(&labels[l], n, resamples, seed, label_f1(l))).collect(),
                )
            }
        }
        Task::Entities => {
            // Spans are [type, start, end].
            let type_of = |span: &Value| span[0].as_str().unwrap_or("").to_string();
            let types: Vec<String> = sides
                .iter()
                .flat_map(|docs| docs.iter())
                .flat_map(|d| d["gold"].as_array().into_iter().chain(d["predicted"].as_array()).flatten())
                .map(type_of)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // Per sentence and entity type: (true positives, predicted, gold) entities.
            let counts: Vec<Vec<Vec<(usize, usize, usize)>>> = sides
                .iter()
                .map(|docs| {
                    docs.iter()
                        .map(|d| {
                            let mut by_type = vec![(0, 0, 0); types.len()];
                            let gold = d["gold"].as_array().cloned().unwrap_or_default();
                            let at = |span: &Value| types.binary_search(&type_of(span)).expect("collected");
                            for span in &gold {
                                by_type[at(span)].2 += 1;
                            }
                            for span in d["predicted"].as_array().into_iter().flatten() {
                                by_type[at(span)].1 += 1;
                                by_type[at(span)].0 += usize::from(gold.contains(span));
                            }
                            by_type
                        })
                        .collect()
                })
                .collect();
            // F1 over the entities of `only` one type, or of all.
            let f1 = |only: Option<usize>| {
                let counts = &counts;
                move |system: usize, docs: &[usize]| {
                    let (mut tp, mut p, mut g) = (0, 0, 0);
                    for &i in docs {
                        for (t, c) in counts[system][i].iter().enumerate() {
                            if only.is_none_or(|o| o == t) {
                                (tp, p, g) = (tp + c.0, p + c.1, g + c.2);
                            }
                        }
                    }
                    prf(tp, p, g).2
                }
            };
            (
                vec![paired_bootstrap("strict IOB2 F1", n, resamples, seed, f1(None))],
                (0..types.len()).map(|t| paired_bootstrap(&types[t], n, resamples, seed, f1(Some(t)))).collect(),
            )
        }
    };
    Significance { mcnemar: test, headline, per_class }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().map(|x| x.as_str().unwrap_or("").to_string()).collect()
}

/// Gold and predicted sets (labels or spans) are equal.
fn same_set(gold: &Value, predicted: &Value) -> bool {
    let set = |v: &Value| -> BTreeSet<String> { v.as_array().into_iter().flatten().map(Value::to_string).collect() };
    set(gold) == set(predicted)
}

/// A p-value to four significant digits.
fn p_value(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.4}")
    } else {
        format!("{p:.3e}")
    }
}

fn fmt(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.4}"))
}

fn signed(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:+.4}"))
}

fn tables(c: &Value, task: Task) -> Vec<Section> {
    let unit =
        if task == Task::Entities { "sentences whose entities are all right" } else { "documents classified right" };
    let m = &c["mcnemar"];
    let verdict = |p: f64| {
        if p < 0.05 {
            "a real difference at the 5% level"
        } else {
            "no significant difference at the 5% level"
        }
    };
    let p = m["p_value"].as_f64().unwrap_or(1.0);
    let interval_rows = |intervals: &Value| -> Vec<Vec<String>> {
        intervals
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                vec![
                    r["metric"].as_str().unwrap_or("").into(),
                    fmt(&r["a"]),
                    fmt(&r["b"]),
                    signed(&r["delta"]),
                    format!("[{}, {}]", signed(&r["low"]), signed(&r["high"])),
                    if r["significant"].as_bool() == Some(true) { "yes".into() } else { "no".into() },
                ]
            })
            .collect()
    };
    let mut sections = vec![
        Section {
            title: "Metrics".into(),
            intro: format!("{} documents; delta is B − A.", c["documents"]),
            header: owned(&["metric", "A", "B", "delta", "better"]),
            rows: c["metrics"].as_array().into_iter().flatten().map(|r| vec![r["metric"].as_str().unwrap_or("").into(), fmt(&r["a"]), fmt(&r["b"]), signed(&r["delta"]), r["better"].as_str().unwrap_or("–").into()]).collect(),
        },
        Section {
            title: "McNemar's test".into(),
            intro: format!("Exact two-sided binomial test on the {unit} by one system only: p = {}, {}.", p_value(p), verdict(p)),
            header: owned(&["only A right", "only B right", "p-value"]),
            rows: vec![vec![m["only_a_right"].to_string(), m["only_b_right"].to_string(), p_value(p)]],
        },
        Section {
            title: "Paired bootstrap".into(),
            intro: format!("95% percentile intervals of B − A over {} resamples of the documents (seed {}); significant where the interval excludes 0.",
                c["bootstrap"][0]["resamples"], c["bootstrap"][0]["seed"]),
            header: owned(&["metric", "A", "B", "delta", "95% interval", "significant"]),
            rows: interval_rows(&c["bootstrap"]),
        },
    ];
    if c["per_class_bootstrap"].as_array().is_some_and(|a| !a.is_empty()) {
        let (what, column) = if task == Task::Entities {
            ("Strict F1 of each entity type", "type")
        } else {
            ("F1 of each label", "label")
        };
        sections.push(Section {
            title: "Per class".into(),
            intro: format!(
                "{what}, with paired bootstrap intervals of B − A from the same resamples. With many of them, expect \
                 about one in twenty to look significant by chance."
            ),
            header: owned(&[column, "A", "B", "delta", "95% interval", "significant"]),
            rows: interval_rows(&c["per_class_bootstrap"]),
        });
    }
    sections
}

fn render(c: &Value, task: Task) -> (String, String) {
    let text = |v: &Value| v.as_str().map_or_else(|| "–".to_string(), str::to_string);
    let side = |s: &Value| {
        format!("{} (model {}, sha256 {})", text(&s["report"]), text(&s["model"]["name"]), text(&s["model"]["sha256"]))
    };
    let title = "Comparison of two evaluations";
    let mut md = format!(
        "# {title}\n\n- A: {}\n- B: {}\n- data: {}\n- command: `{}`\n",
        side(&c["a"]),
        side(&c["b"]),
        text(&c["a"]["data"]["path"]),
        c["command"].as_str().unwrap_or("")
    );
    let mut html = format!("<h1>{title}</h1><dl><dt>A</dt><dd>{}</dd><dt>B</dt><dd>{}</dd><dt>data</dt><dd>{}</dd><dt>command</dt><dd>{}</dd></dl>\n",
        escape(&side(&c["a"])), escape(&side(&c["b"])), escape(&text(&c["a"]["data"]["path"])), escape(c["command"].as_str().unwrap_or("")));
    let deltas: Vec<(String, f64, Option<&str>)> = c["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r["metric"].as_str()?.to_string(), r["delta"].as_f64()?, r["better"].as_str())))
        .filter(|(name, _, _)| {
            task != Task::Entities || name.contains("F1") || name.contains("precision") || name.contains("recall")
        })
        .collect();
    html += &format!(
        "<figure><figcaption>Delta B − A (blue: B better, red: A better)</figcaption>{}</figure>\n",
        delta_chart(&deltas)
    );
    for s in tables(c, task) {
        md += &format!("\n## {}\n\n{}\n\n{}", s.title, s.intro, md_table(&s.header, &s.rows));
        html += &format!("<h2>{}</h2><p>{}</p>{}", escape(&s.title), inline(&s.intro), html_table(&s.header, &s.rows));
    }
    (md, page(title, &html))
}

/// Bars left (B lower) or right (B higher) of zero, coloured by which system is better.
fn delta_chart(deltas: &[(String, f64, Option<&str>)]) -> String {
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

fn render_summary(c: &Value) -> String {
    let mut out = String::new();
    for r in c["bootstrap"].as_array().into_iter().flatten() {
        out += &format!(
            "{}: A {} B {} delta {} 95% [{}, {}]{}\n",
            r["metric"].as_str().unwrap_or(""),
            fmt(&r["a"]),
            fmt(&r["b"]),
            signed(&r["delta"]),
            signed(&r["low"]),
            signed(&r["high"]),
            if r["significant"].as_bool() == Some(true) { " (significant)" } else { "" }
        );
    }
    out += &format!("McNemar p = {}\n", p_value(c["mcnemar"]["p_value"].as_f64().unwrap_or(1.0)));
    out
}
