//! One period's counts compared with the reference: the tests, the shares, and the
//! alerts where a threshold is crossed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::estimate::Estimate;
use super::{entity_rates, stats, Counts, Reference, Watched};
use crate::model::profile::Histogram;

/// Label-share drift of a period.
#[derive(Clone, Debug, Serialize)]
pub struct LabelDrift {
    pub chi_square: f64,
    pub degrees_of_freedom: usize,
    pub p_value: f64,
    pub psi: f64,
    pub largest_share_change: f64,
    pub labels: Vec<LabelShare>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LabelShare {
    pub label: String,
    pub reference_share: f64,
    pub share: f64,
    pub psi: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfidenceDrift {
    pub ks_distance: f64,
    pub p_value: f64,
    pub mean: f64,
    pub below_review_share: f64,
    pub reference_below_review_share: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InputDrift {
    pub tokens_psi: Option<f64>,
    /// Shares of documents per token-count bin, beside the reference's.
    pub tokens: Vec<BinShare>,
    pub windows_psi: Option<f64>,
    pub mean_windows: Option<f64>,
    pub unknown_share: Option<f64>,
    pub reference_unknown_share: Option<f64>,
    pub failed_share: f64,
    pub reference_failed_share: f64,
    pub failures: BTreeMap<String, u64>,
    pub extractors: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BinShare {
    pub bin: String,
    pub share: f64,
    pub reference_share: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EntityRate {
    pub kind: String,
    pub per_document: f64,
    pub per_1000_tokens: f64,
    pub reference: Option<f64>,
}

/// A threshold a period crossed.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub check: String,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
}

/// One period compared with the reference.
#[derive(Clone, Debug, Serialize)]
pub struct PeriodReport {
    pub period: String,
    pub documents: u64,
    pub classified: u64,
    pub failed: u64,
    pub estimate: Option<Estimate>,
    pub labels: Option<LabelDrift>,
    pub confidence: Option<ConfidenceDrift>,
    pub inputs: InputDrift,
    pub entities: Vec<EntityRate>,
    pub alerts: Vec<Alert>,
}

/// Compares one period's counts with the reference.
pub fn compare(
    period: &str,
    counts: &Counts,
    reference: &Reference,
    watch: &Watched,
    thresholds: &BTreeMap<String, f64>,
) -> PeriodReport {
    let threshold = |name: &str| thresholds[name];
    let classified = counts.classified();
    let estimate = watch.estimated_labels.as_ref().and_then(|labels| counts.estimate.estimate(labels));

    let labels = (classified > 0 && !reference.labels.is_empty()).then(|| {
        let names: Vec<&String> =
            reference.labels.keys().chain(counts.labels.keys()).collect::<BTreeSet<_>>().into_iter().collect();
        let count = |map: &BTreeMap<String, u64>, l: &String| map.get(l).copied().unwrap_or(0) as f64;
        let reference_counts: Vec<f64> = names.iter().map(|l| count(&reference.labels, l)).collect();
        let observed: Vec<f64> = names.iter().map(|l| count(&counts.labels, l)).collect();
        let (chi_square, degrees_of_freedom, p_value) = stats::chi_square_homogeneity(&reference_counts, &observed);
        let share = |v: &[f64]| -> Vec<f64> {
            let total: f64 = v.iter().sum::<f64>().max(1.0);
            v.iter().map(|x| x / total).collect()
        };
        let (expected, actual) = (share(&reference_counts), share(&observed));
        let psi = stats::psi_terms(&expected, &actual);
        let labels: Vec<LabelShare> = names
            .iter()
            .enumerate()
            .map(|(i, l)| LabelShare {
                label: l.to_string(),
                reference_share: expected[i],
                share: actual[i],
                psi: psi[i],
            })
            .collect();
        let largest_share_change = labels.iter().map(|l| (l.share - l.reference_share).abs()).fold(0.0, f64::max);
        LabelDrift { chi_square, degrees_of_freedom, p_value, psi: psi.iter().sum(), largest_share_change, labels }
    });

    let confidence = (classified > 0).then(|| {
        let (ks_distance, p_value) = match &reference.confidence {
            Some(r) => stats::kolmogorov_smirnov(r, &counts.confidence),
            None => (f64::NAN, f64::NAN),
        };
        ConfidenceDrift {
            ks_distance,
            p_value,
            mean: counts.confidence_sum / classified as f64,
            below_review_share: counts.below_review as f64 / classified as f64,
            reference_below_review_share: reference.below_review_share,
        }
    });

    let histogram_psi = |reference: Option<&Histogram>, observed: &Histogram| {
        let reference = reference.filter(|r| r.total() > 0 && observed.total() > 0)?;
        Some(stats::psi_terms(&reference.shares(), &observed.shares()).iter().sum::<f64>())
    };
    let reference_token_shares = reference.tokens.as_ref().map(Histogram::shares);
    let tokens = (counts.tokens.bin_names().into_iter())
        .zip(counts.tokens.shares())
        .enumerate()
        .map(|(i, (bin, share))| BinShare {
            bin,
            share,
            reference_share: reference_token_shares.as_ref().map(|r| r[i]),
        })
        .collect();
    let windows_total = counts.windows.total();
    let inputs = InputDrift {
        tokens_psi: histogram_psi(reference.tokens.as_ref(), &counts.tokens),
        tokens: if counts.tokens.total() > 0 { tokens } else { Vec::new() },
        windows_psi: histogram_psi(reference.windows.as_ref(), &counts.windows),
        mean_windows: (windows_total > 0).then(|| counts.window_sum as f64 / windows_total as f64),
        unknown_share: (counts.token_sum > 0).then(|| counts.unknown_sum as f64 / counts.token_sum as f64),
        reference_unknown_share: reference.unknown_share,
        failed_share: counts.failed as f64 / counts.documents.max(1) as f64,
        reference_failed_share: reference.failed_share,
        failures: counts.failures.clone(),
        extractors: counts.extractors.clone(),
    };

    let rates = entity_rates(counts);
    let tagged_documents = counts.entity_documents;
    let kinds: BTreeSet<&String> = rates.keys().chain(reference.entities_per_1000_tokens.keys()).collect();
    let entities = if counts.entity_tokens == 0 {
        Vec::new()
    } else {
        kinds
            .into_iter()
            .map(|k| EntityRate {
                kind: k.clone(),
                per_document: counts.entities.get(k).copied().unwrap_or(0) as f64 / tagged_documents.max(1) as f64,
                per_1000_tokens: rates.get(k).copied().unwrap_or(0.0),
                reference: reference.entities_per_1000_tokens.get(k).copied(),
            })
            .collect()
    };

    let mut alerts = Vec::new();
    if counts.documents as f64 >= threshold("min_documents") {
        // A check raises its alert when its value crosses the threshold of its name.
        let mut alert = |check: &str, value: f64, message: String| {
            alerts.push(Alert { check: check.into(), value, threshold: threshold(check), message })
        };
        if let Some(l) = &labels {
            if l.p_value < threshold("label_p") && l.largest_share_change >= threshold("label_share") {
                let moved = l
                    .labels
                    .iter()
                    .max_by(|a, b| (a.share - a.reference_share).abs().total_cmp(&(b.share - b.reference_share).abs()));
                let detail = moved.map_or(String::new(), |m| {
                    format!(": {} {:.1}% → {:.1}%", m.label, 100.0 * m.reference_share, 100.0 * m.share)
                });
                let message = format!("label shares moved (chi-square p = {:.1e}){detail}", l.p_value);
                alert("label_share", l.largest_share_change, message);
            }
        }
        if let Some(c) = &confidence {
            if c.p_value < threshold("confidence_p") && c.ks_distance >= threshold("confidence_ks") {
                let message = format!(
                    "top scores are distributed differently (KS distance {:.3}, p = {:.1e}); mean {:.3}",
                    c.ks_distance, c.p_value, c.mean
                );
                alert("confidence_ks", c.ks_distance, message);
            }
        }
        if let Some(e) = &estimate {
            let drops = [
                ("accuracy_drop", "accuracy", reference.accuracy, (e.accuracy, e.accuracy_low, e.accuracy_high)),
                ("macro_f1_drop", "macro-F1", reference.macro_f1, (e.macro_f1, e.macro_f1_low, e.macro_f1_high)),
            ];
            for (check, metric, reference, (value, low, high)) in drops {
                if let Some(reference) = reference.filter(|r| r - value > threshold(check)) {
                    let message =
                        format!("estimated {metric} {value:.3} [{low:.3}, {high:.3}], reference {reference:.3}");
                    alert(check, reference - value, message);
                }
            }
        }
        if let Some(psi) = inputs.tokens_psi.filter(|&psi| psi > threshold("tokens_psi")) {
            alert("tokens_psi", psi, format!("document length in tokens changed (PSI {psi:.2})"));
        }
        if let (Some(u), Some(r)) = (inputs.unknown_share, inputs.reference_unknown_share) {
            if u - r > threshold("unknown_share") {
                let message = format!(
                    "{:.2}% of the tokens are unknown or byte fallbacks, {:.2}% in the reference: broken encoding or a new script?",
                    100.0 * u,
                    100.0 * r
                );
                alert("unknown_share", u - r, message);
            }
        }
        let failed_rise = inputs.failed_share - inputs.reference_failed_share;
        if failed_rise > threshold("failed_share") {
            alert("failed_share", failed_rise, format!("{:.1}% of the documents failed", 100.0 * inputs.failed_share));
        }
    }
    PeriodReport {
        period: period.to_string(),
        documents: counts.documents,
        classified,
        failed: counts.failed,
        estimate,
        labels,
        confidence,
        inputs,
        entities,
        alerts,
    }
}
