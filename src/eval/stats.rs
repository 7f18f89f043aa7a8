//! Whether two systems' difference on the same documents is real: McNemar's exact test
//! on the documents one gets right and the other wrong, and paired bootstrap
//! confidence intervals of a metric's difference.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Documents A gets right and B wrong, and the reverse.
    pub only_a_right: usize,
    pub only_b_right: usize,
    /// Two-sided p-value of the exact binomial test on the discordant documents.
    pub p_value: f64,
}

pub fn mcnemar(a_right: &[bool], b_right: &[bool]) -> McNemar {
    let only_a_right = a_right.iter().zip(b_right).filter(|(a, b)| **a && !**b).count();
    let only_b_right = a_right.iter().zip(b_right).filter(|(a, b)| !**a && **b).count();
    let n = only_a_right + only_b_right;
    let smaller = only_a_right.min(only_b_right);
    // P(X ≤ smaller) for X ~ Binomial(n, 1/2), summed in log space so large n is exact enough.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut tail = 0.0f64;
    for i in 0..=smaller {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    McNemar { only_a_right, only_b_right, p_value: if n == 0 { 1.0 } else { (2.0 * tail).min(1.0) } }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapInterval {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    /// B − A on all documents, and the 95% percentile interval over the resamples.
    pub delta: f64,
    pub low: f64,
    pub high: f64,
    pub resamples: usize,
    pub seed: u64,
    /// The interval excludes 0.
    pub significant: bool,
}

/// Resamples the documents (the same draw for both systems) `resamples` times and
/// computes `metric(system, documents)` for each system: A is system 0, B system 1.
pub fn paired_bootstrap(
    name: &str,
    documents: usize,
    resamples: usize,
    seed: u64,
    metric: impl Fn(usize, &[usize]) -> f64,
) -> BootstrapInterval {
    let all: Vec<usize> = (0..documents).collect();
    let (a, b) = (metric(0, &all), metric(1, &all));
    let mut rng = Rng::new(seed);
    let mut deltas: Vec<f64> = (0..resamples)
        .map(|_| {
            let sample: Vec<usize> = (0..documents).map(|_| rng.below(documents.max(1))).collect();
            metric(1, &sample) - metric(0, &sample)
        })
        .collect();
    deltas.sort_by(f64::total_cmp);
    let quantile = |q: f64| -> f64 {
        if deltas.is_empty() {
            return b - a;
        }
        let at = (q * (deltas.len() - 1) as f64).round() as usize;
        deltas[at]
    };
    let (low, high) = (quantile(0.025), quantile(0.975));
    BootstrapInterval {
        metric: name.to_string(),
        a,
        b,
        delta: b - a,
        low,
        high,
        resamples,
        seed,
        significant: low > 0.0 || high < 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_the_binomial_test() {
        // scipy.stats.binomtest(1, 10, 0.5).pvalue = 0.021484375
        let a = [true; 10];
        let mut b = [false; 10];
        b[0] = true;
        let mut a2 = a.to_vec();
        a2.push(false);
        let mut b2 = b.to_vec();
        b2.push(true);
        let m = mcnemar(&a2, &b2);
        assert_eq!((m.only_a_right, m.only_b_right), (9, 1));
        assert!((m.p_value - 0.021484375).abs() < 1e-12, "{}", m.p_value);
        assert_eq!(mcnemar(&[true, false], &[true, false]).p_value, 1.0);
    }

    #[test]
    fn bootstrap_separates_a_clear_difference_and_not_a_tie() {
        let a: Vec<bool> = (0..200).map(|i| i % 2 == 0).collect();
        let b: Vec<bool> = (0..200).map(|i| i % 10 != 0).collect();
        let accuracy = |system: usize, docs: &[usize]| {
            let right = if system == 0 { &a } else { &b };
            docs.iter().filter(|&&d| right[d]).count() as f64 / docs.len() as f64
        };
        let clear = paired_bootstrap("accuracy", 200, 500, 7, accuracy);
        assert!(
            (clear.delta - 0.4).abs() < 1e-12 && clear.significant && clear.low > 0.25 && clear.high < 0.55,
            "{clear:?}"
        );
        let same = paired_bootstrap("accuracy", 200, 500, 7, |_, docs: &[usize]| accuracy(0, docs));
        assert!(!same.significant && same.low == 0.0 && same.high == 0.0);
    }
}
