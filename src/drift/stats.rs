//! The tests drift is judged by: Pearson's chi-square test of homogeneity on counts,
//! the two-sample Kolmogorov–Smirnov test on binned values, and the population
//! stability index.

/// Shares below this are taken as this in logarithms (a label unseen on one side).
const SHARE_FLOOR: f64 = 1e-4;

/// Chi-square test that two samples of counts over the same categories come from one
/// distribution (a 2 × K contingency table). Categories empty on both sides are left
/// out. Returns (statistic, degrees of freedom, p-value).
pub fn chi_square_homogeneity(reference: &[f64], observed: &[f64]) -> (f64, usize, f64) {
    let (n_ref, n_obs) = (reference.iter().sum::<f64>(), observed.iter().sum::<f64>());
    let total = n_ref + n_obs;
    if n_ref <= 0.0 || n_obs <= 0.0 {
        return (0.0, 0, 1.0);
    }
    let mut statistic = 0.0;
    let mut categories = 0usize;
    for (&r, &o) in reference.iter().zip(observed) {
        let column = r + o;
        if column <= 0.0 {
            continue;
        }
        categories += 1;
        let (expected_r, expected_o) = (n_ref * column / total, n_obs * column / total);
        statistic += (r - expected_r).powi(2) / expected_r + (o - expected_o).powi(2) / expected_o;
    }
    let df = categories.saturating_sub(1);
    let p = if df == 0 { 1.0 } else { upper_regularized_gamma(df as f64 / 2.0, statistic / 2.0) };
    (statistic, df, p)
}

/// Population stability index of `actual` against `expected` shares, per category
/// (their sum is the index): `(a − e) · ln(a / e)`.
pub fn psi_terms(expected: &[f64], actual: &[f64]) -> Vec<f64> {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(SHARE_FLOOR), a.max(SHARE_FLOOR));
            (a - e) * (a / e).ln()
        })
        .collect()
}

/// Two-sample Kolmogorov–Smirnov test on values counted in the same bins: the largest
/// distance between the two cumulative shares at a bin edge, and its asymptotic
/// p-value. Binning can only make the distance smaller than on the raw values.
pub fn kolmogorov_smirnov(reference: &[u64], observed: &[u64]) -> (f64, f64) {
    let (n, m) = (reference.iter().sum::<u64>() as f64, observed.iter().sum::<u64>() as f64);
    if n == 0.0 || m == 0.0 {
        return (0.0, 1.0);
    }
    let (mut cum_r, mut cum_o, mut distance) = (0.0, 0.0, 0.0f64);
    for (&r, &o) in reference.iter().zip(observed) {
        cum_r += r as f64 / n;
        cum_o += o as f64 / m;
        distance = distance.max((cum_r - cum_o).abs());
    }
    let effective = (n * m / (n + m)).sqrt();
    (distance, kolmogorov_survival((effective + 0.12 + 0.11 / effective) * distance))
}

/// P(K > λ) for the Kolmogorov distribution.
fn kolmogorov_survival(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for j in 1..=100 {
        let term = 2.0 * (-1f64).powi(j - 1) * (-2.0 * f64::from(j * j) * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-12 {
            break;
        }
    }
    sum.clamp(0.0, 1.0)
}

/// Q(a, x) = Γ(a, x) / Γ(a): the chi-square survival function is Q(df/2, x/2).
pub fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // The series of P(a, x).
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * ln_prefix.exp()).clamp(0.0, 1.0)
    } else {
        // Lentz's continued fraction of Q(a, x).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let step = d * c;
            h *= step;
            if (step - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (ln_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let series = COEFFICIENTS[1..].iter().enumerate().fold(COEFFICIENTS[0], |s, (i, c)| s + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn chi_square_survival_matches_known_values() {
        // chi2.sf(x, df) in closed form (even df: a Poisson tail; df 1 and 3: erfc)
        for (x, df, expected) in [
            (3.841_458_820_694_124, 1.0, 0.05),
            (10.0, 6.0, 0.124_652_019_483_081_36),
            (0.5, 3.0, 0.918_891_411_654_676),
            (40.0, 6.0, 4.555_149_505_589_213e-7),
            (100.0, 10.0, 5.449_701_982_920_53e-17),
        ] {
            let p = upper_regularized_gamma(df / 2.0, x / 2.0);
            assert!(close(p, expected, expected * 1e-6), "chi2.sf({x}, {df}) = {p}, not {expected}");
        }
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-12));
        assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-12));
    }

    #[test]
    fn homogeneous_counts_pass_and_a_shift_does_not() {
        let reference = [700.0, 200.0, 100.0];
        let (statistic, df, p) = chi_square_homogeneity(&reference, &[70.0, 20.0, 10.0]);
        assert_eq!((statistic, df, p), (0.0, 2, 1.0));
        let (_, _, p) = chi_square_homogeneity(&reference, &[600.0, 300.0, 100.0]);
        assert!(p < 1e-6, "{p}");
        // A category empty on both sides is no degree of freedom.
        assert_eq!(chi_square_homogeneity(&[5.0, 0.0, 5.0], &[5.0, 0.0, 5.0]).1, 1);
    }

    #[test]
    fn ks_distance_and_p_value() {
        let same = kolmogorov_smirnov(&[10, 20, 30, 40], &[1, 2, 3, 4]);
        assert!(close(same.0, 0.0, 1e-12) && close(same.1, 1.0, 1e-12));
        let (distance, p) = kolmogorov_smirnov(&[500, 500, 0, 0], &[0, 0, 500, 500]);
        assert!(close(distance, 1.0, 1e-12) && p < 1e-12);
        // scipy.special.kolmogorov(1.0) = 0.26999967167735456
        assert!(close(kolmogorov_survival(1.0), 0.269_999_671_677_354_56, 1e-9));
    }

    #[test]
    fn psi_is_zero_for_equal_shares_and_grows_with_the_shift() {
        let base = [0.5, 0.3, 0.2];
        assert_eq!(psi_terms(&base, &base).iter().sum::<f64>(), 0.0);
        let small: f64 = psi_terms(&base, &[0.45, 0.33, 0.22]).iter().sum();
        let large: f64 = psi_terms(&base, &[0.2, 0.3, 0.5]).iter().sum();
        assert!(0.0 < small && small < 0.02 && large > 0.5, "{small} {large}");
    }
}
