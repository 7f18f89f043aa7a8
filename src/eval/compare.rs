//! `docclass eval --compare A B`: two reports of the same gold data side by side, with
//! per-metric deltas (B − A), McNemar's exact test on the documents one system gets
//! right and the other wrong, and paired bootstrap intervals of the headline metrics.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::classification::{classification_metrics, multi_label_metrics, prf};
use super::html::{escape, html_table, inline, md_table, page, strings as owned, svg, Section};
use super::metrics::{
    ComparedReport, Comparison, LabelLine, MetricDelta, MetricsFile, SpanLine, TaskMetrics, COMPARISON_SCHEMA,
};
use super::render::{documents_file, f4};
use super::stats::{mcnemar, paired_bootstrap, BootstrapInterval, McNemar};
use crate::fsutil::read_text;

/// What was scored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ReportKind {
    Classification,
    MultiLabel,
    Entities,
}

impl ReportKind {
    fn of(metrics: &TaskMetrics) -> Self {
        match metrics {
            TaskMetrics::Classification(_) => ReportKind::Classification,
            TaskMetrics::MultiLabel(_) => ReportKind::MultiLabel,
            TaskMetrics::Entities(_) => ReportKind::Entities,
        }
    }
}

/// The documents of one report: label lists, or entity spans.
enum Documents {
    Labels(Vec<LabelLine>),
    Spans(Vec<SpanLine>),
}

impl Documents {
    fn ids(&self) -> Vec<&str> {
        match self {
            Documents::Labels(d) => d.iter().map(|d| d.id.as_str()).collect(),
            Documents::Spans(d) => d.iter().map(|d| d.id.as_str()).collect(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Documents::Labels(d) => d.len(),
            Documents::Spans(d) => d.len(),
        }
    }

    /// Whether document `i` has the same gold answer in both.
    fn same_gold(&self, other: &Documents, i: usize) -> bool {
        match (self, other) {
            (Documents::Labels(a), Documents::Labels(b)) => a[i].gold == b[i].gold,
            (Documents::Spans(a), Documents::Spans(b)) => a[i].gold == b[i].gold,
            _ => false,
        }
    }
}

struct Side {
    metrics: MetricsFile,
    documents: Documents,
}

fn read_lines<T: DeserializeOwned>(path: &Path, text: &str) -> Result<Vec<T>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}: not a document line", path.display(), i + 1))
        })
        .collect()
}

fn read_side(dir: &Path) -> Result<Side> {
    let metrics_path = dir.join("metrics.json");
    let metrics: MetricsFile = serde_json::from_str(
        &std::fs::read_to_string(&metrics_path).with_context(|| format!("{}: cannot read", metrics_path.display()))?,
    )
    .with_context(|| format!("{}: not a metrics file of this docclass", metrics_path.display()))?;
    let documents_path = documents_file(dir);
    let text =
        read_text(&documents_path).context("reports of docclass before metrics schema 2 lack the per-document file")?;
    let documents = match metrics.task {
        TaskMetrics::Entities(_) => Documents::Spans(read_lines(&documents_path, &text)?),
        _ => Documents::Labels(read_lines(&documents_path, &text)?),
    };
    Ok(Side { metrics, documents })
}

/// How a comparison runs: bootstrap resamples, their seed, and where the report goes.
pub struct CompareOptions {
    pub bootstrap: usize,
    pub seed: u64,
    pub report: std::path::PathBuf,
}

/// `3 documents, such as "doc5"`, or `none`, for a message.
fn only_in(this: &BTreeSet<&str>, other: &BTreeSet<&str>) -> String {
    let mut only = this.difference(other);
    match only.next() {
        None => "none".to_string(),
        Some(first) => {
            let count = 1 + only.count();
            let documents = if count == 1 { "document" } else { "documents" };
            format!("{count} {documents}, such as {first:?}")
        }
    }
}

pub fn run(a_dir: &Path, b_dir: &Path, args: &CompareOptions) -> Result<()> {
    let (a, b) = (read_side(a_dir)?, read_side(b_dir)?);
    let task = ReportKind::of(&a.metrics.task);
    if ReportKind::of(&b.metrics.task) != task {
        bail!("{} and {} score different tasks", a_dir.display(), b_dir.display());
    }
    // The same documents with the same gold answers, in the same order.
    let (a_ids, b_ids) = (a.documents.ids(), b.documents.ids());
    if a_ids != b_ids {
        let (sa, sb): (BTreeSet<&str>, BTreeSet<&str>) =
            (a_ids.iter().copied().collect(), b_ids.iter().copied().collect());
        if sa == sb {
            bail!("the reports cover the same documents in another order: they were scored on different gold files");
        }
        bail!(
            "the reports do not cover the same documents: only in A ({}): {}; only in B ({}): {}",
            a_dir.display(),
            only_in(&sa, &sb),
            b_dir.display(),
            only_in(&sb, &sa)
        );
    }
    if let Some(i) = (0..a.documents.len()).find(|&i| !a.documents.same_gold(&b.documents, i)) {
        bail!(
            "document {:?} has different gold labels in the two reports: they were scored on different gold data",
            a_ids[i]
        );
    }
    if a.metrics.data.sha256 != b.metrics.data.sha256 {
        crate::logging::warning(
            "gold_files_differ",
            "the reports' gold files have different SHA-256; they are compared only because every document and gold label agrees",
            json!({}),
        );
    }

    let metrics: Vec<MetricDelta> = a
        .metrics
        .task
        .headline()
        .into_iter()
        .zip(b.metrics.task.headline())
        .map(|(x, y)| {
            let delta = x.value.zip(y.value).map(|(x, y)| y - x);
            let better = delta.filter(|d| *d != 0.0).map(|d| if (d > 0.0) == x.higher_is_better { "B" } else { "A" });
            MetricDelta { metric: x.name.to_string(), a: x.value, b: y.value, delta, better: better.map(String::from) }
        })
        .collect();
    let significance = significance(task, &a.documents, &b.documents, args.bootstrap, args.seed);
    let compared = |dir: &Path, side: &Side| ComparedReport {
        report: dir.display().to_string(),
        model: side.metrics.model.clone(),
        data: side.metrics.data.clone(),
    };
    let comparison = Comparison {
        schema: COMPARISON_SCHEMA.to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        docclass_version: env!("CARGO_PKG_VERSION").to_string(),
        a: compared(a_dir, &a),
        b: compared(b_dir, &b),
        documents: a.documents.len(),
        metrics,
        mcnemar: significance.mcnemar,
        bootstrap: significance.headline,
        per_class_bootstrap: significance.per_class,
    };
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
fn significance(task: ReportKind, a: &Documents, b: &Documents, resamples: usize, seed: u64) -> Significance {
    match (a, b) {
        (Documents::Labels(a), Documents::Labels(b)) => {
            label_significance([a, b], task == ReportKind::Classification, resamples, seed)
        }
        (Documents::Spans(a), Documents::Spans(b)) => span_significance([a, b], resamples, seed),
        _ => unreachable!("both reports score the same task"),
    }
}

/// Gold and predicted sets (labels or spans) are equal.
fn same_set<T: Ord>(gold: &[T], predicted: &[T]) -> bool {
    gold.iter().collect::<BTreeSet<_>>() == predicted.iter().collect::<BTreeSet<_>>()
}

fn label_significance(sides: [&[LabelLine]; 2], single_label: bool, resamples: usize, seed: u64) -> Significance {
    let n = sides[0].len();
    let right = |docs: &[LabelLine]| -> Vec<bool> { docs.iter().map(|d| same_set(&d.gold, &d.predicted)).collect() };
    let test = mcnemar(&right(sides[0]), &right(sides[1]));
    let labels: Vec<String> = sides
        .iter()
        .flat_map(|docs| docs.iter())
        .flat_map(|d| d.gold.iter().chain(&d.predicted).cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index =
        |ls: &[String]| -> Vec<usize> { ls.iter().map(|l| labels.binary_search(l).expect("collected")).collect() };
    let coded: Vec<Vec<(Vec<usize>, Vec<usize>)>> =
        sides.iter().map(|docs| docs.iter().map(|d| (index(&d.gold), index(&d.predicted))).collect()).collect();
    let pick = |system: usize, docs: &[usize]| -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
        docs.iter().map(|&i| coded[system][i].clone()).unzip()
    };
    let (headline, per_class) = if single_label {
        let first = |v: Vec<Vec<usize>>| -> Vec<usize> { v.into_iter().map(|x| x[0]).collect() };
        let accuracy = |system: usize, docs: &[usize]| {
            docs.iter().filter(|&&i| coded[system][i].0 == coded[system][i].1).count() as f64 / docs.len().max(1) as f64
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
    };
    Significance { mcnemar: test, headline, per_class }
}

fn span_significance(sides: [&[SpanLine]; 2], resamples: usize, seed: u64) -> Significance {
    let n = sides[0].len();
    let right = |docs: &[SpanLine]| -> Vec<bool> { docs.iter().map(|d| same_set(&d.gold, &d.predicted)).collect() };
    let test = mcnemar(&right(sides[0]), &right(sides[1]));
    let types: Vec<String> = sides
        .iter()
        .flat_map(|docs| docs.iter())
        .flat_map(|d| d.gold.iter().chain(&d.predicted).map(|span| span.0.clone()))
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
                    let at = |span: &(String, usize, usize)| types.binary_search(&span.0).expect("collected");
                    for span in &d.gold {
                        by_type[at(span)].2 += 1;
                    }
                    for span in &d.predicted {
                        by_type[at(span)].1 += 1;
                        by_type[at(span)].0 += usize::from(d.gold.contains(span));
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
    Significance {
        mcnemar: test,
        headline: vec![paired_bootstrap("strict IOB2 F1", n, resamples, seed, f1(None))],
        per_class: (0..types.len()).map(|t| paired_bootstrap(&types[t], n, resamples, seed, f1(Some(t)))).collect(),
    }
}

/// A p-value to four significant digits.
fn p_value(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.4}")
    } else {
        format!("{p:.3e}")
    }
}

fn signed(value: Option<f64>) -> String {
    value.map_or("–".into(), |x| format!("{x:+.4}"))
}

fn interval_rows(intervals: &[BootstrapInterval]) -> Vec<Vec<String>> {
    intervals
        .iter()
        .map(|r| {
            vec![
                r.metric.clone(),
                f4(r.a),
                f4(r.b),
                signed(Some(r.delta)),
                format!("[{}, {}]", signed(Some(r.low)), signed(Some(r.high))),
                if r.significant { "yes".into() } else { "no".into() },
            ]
        })
        .collect()
}

fn tables(c: &Comparison, task: ReportKind) -> Vec<Section> {
    let unit = if task == ReportKind::Entities {
        "sentences whose entities are all right"
    } else {
        "documents classified right"
    };
    let m: &McNemar = &c.mcnemar;
    let verdict = if m.p_value < 0.05 {
        "a real difference at the 5% level"
    } else {
        "no significant difference at the 5% level"
    };
    let resampling = c
        .bootstrap
        .first()
        .map_or_else(|| "no".to_string(), |b| format!("{} resamples of the documents (seed {})", b.resamples, b.seed));
    let mut sections = vec![
        Section {
            title: "Metrics".into(),
            intro: format!("{} documents; delta is B − A.", c.documents),
            header: owned(&["metric", "A", "B", "delta", "better"]),
            rows: c
                .metrics
                .iter()
                .map(|r| {
                    vec![r.metric.clone(), f4(r.a), f4(r.b), signed(r.delta), r.better.clone().unwrap_or("–".into())]
                })
                .collect(),
        },
        Section {
            title: "McNemar's test".into(),
            intro: format!(
                "Exact two-sided binomial test on the {unit} by one system only: p = {}, {verdict}.",
                p_value(m.p_value)
            ),
            header: owned(&["only A right", "only B right", "p-value"]),
            rows: vec![vec![m.only_a_right.to_string(), m.only_b_right.to_string(), p_value(m.p_value)]],
        },
        Section {
            title: "Paired bootstrap".into(),
            intro: format!(
                "95% percentile intervals of B − A over {resampling}; significant where the interval excludes 0."
            ),
            header: owned(&["metric", "A", "B", "delta", "95% interval", "significant"]),
            rows: interval_rows(&c.bootstrap),
        },
    ];
    if !c.per_class_bootstrap.is_empty() {
        let (what, column) = if task == ReportKind::Entities {
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
            rows: interval_rows(&c.per_class_bootstrap),
        });
    }
    sections
}

fn render(c: &Comparison, task: ReportKind) -> (String, String) {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "–".to_string());
    let side =
        |s: &ComparedReport| format!("{} (model {}, sha256 {})", s.report, dash(&s.model.name), dash(&s.model.sha256));
    let title = "Comparison of two evaluations";
    let mut md = format!(
        "# {title}\n\n- A: {}\n- B: {}\n- data: {}\n- command: `{}`\n",
        side(&c.a),
        side(&c.b),
        c.a.data.path,
        c.command
    );
    let mut html = format!(
        "<h1>{title}</h1><dl><dt>A</dt><dd>{}</dd><dt>B</dt><dd>{}</dd><dt>data</dt><dd>{}</dd><dt>command</dt><dd>{}</dd></dl>\n",
        escape(&side(&c.a)),
        escape(&side(&c.b)),
        escape(&c.a.data.path),
        escape(&c.command)
    );
    let deltas: Vec<(String, f64, Option<&str>)> = c
        .metrics
        .iter()
        .filter_map(|r| Some((r.metric.clone(), r.delta?, r.better.as_deref())))
        .filter(|(name, _, _)| {
            task != ReportKind::Entities || name.contains("F1") || name.contains("precision") || name.contains("recall")
        })
        .collect();
    html += &format!(
        "<figure><figcaption>Delta B − A (blue: B better, red: A better)</figcaption>{}</figure>\n",
        svg::delta_chart(&deltas)
    );
    for s in tables(c, task) {
        md += &format!("\n## {}\n\n{}\n\n{}", s.title, s.intro, md_table(&s.header, &s.rows));
        html += &format!("<h2>{}</h2><p>{}</p>{}", escape(&s.title), inline(&s.intro), html_table(&s.header, &s.rows));
    }
    (md, page(title, &html))
}
fn render_summary(c: &Comparison) -> String {
    let mut out = String::new();
    for r in &c.bootstrap {
        out += &format!(
            "{}: A {} B {} delta {} 95% [{}, {}]{}\n",
            r.metric,
            f4(r.a),
            f4(r.b),
            signed(Some(r.delta)),
            signed(Some(r.low)),
            signed(Some(r.high)),
            if r.significant { " (significant)" } else { "" }
        );
    }
    out += &format!("McNemar p = {}\n", p_value(c.mcnemar.p_value));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn messages_name_documents_not_internal_values() {
        let a: BTreeSet<&str> = ["doc1", "doc2", "doc5"].into();
        let b: BTreeSet<&str> = ["doc1"].into();
        assert_eq!(super::only_in(&a, &b), "2 documents, such as \"doc2\"");
        assert_eq!(super::only_in(&b, &a), "none");
        assert_eq!(super::only_in(&["x", "y"].into(), &["y"].into()), "1 document, such as \"x\"");
    }
}
