//! Pure statistics on bucketed samples.
//!
//! Every function here takes histogram buckets — `(value, count)` pairs sorted
//! by value with positive counts — so it costs O(buckets), never O(samples),
//! and a one-million-request run is judged as fast as a thousand-request one.
//! Nothing here does I/O or reads the clock.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// One histogram bucket: a representative value and how many samples fell in it.
pub type Bucket = (f64, u64);

/// Standard normal quantile (inverse CDF), `p` in (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    std_normal().inverse_cdf(p.clamp(1e-300, 1.0 - 1e-16))
}

/// Standard normal survival function `P(Z > z)`.
pub fn normal_sf(z: f64) -> f64 {
    std_normal().sf(z)
}

fn std_normal() -> Normal {
    // Mean 0, sd 1 is always a valid normal distribution.
    Normal::standard()
}

/// Total count of a bucket list.
pub fn total(b: &[Bucket]) -> u64 {
    b.iter().map(|&(_, c)| c).sum()
}

/// Sorts and merges equal values so the other functions may assume a clean list.
pub fn normalize(mut b: Vec<Bucket>) -> Vec<Bucket> {
    b.retain(|&(v, c)| c > 0 && v.is_finite());
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut out: Vec<Bucket> = Vec::with_capacity(b.len());
    for (v, c) in b {
        match out.last_mut() {
            Some(last) if last.0 == v => last.1 += c,
            _ => out.push((v, c)),
        }
    }
    out
}

/// Expands raw samples into buckets (tests and small inputs).
pub fn buckets_of(samples: &[f64]) -> Vec<Bucket> {
    normalize(samples.iter().map(|&v| (v, 1)).collect())
}

/// The value at 1-based rank `rank` (clamped into 1..=n).
pub fn value_at_rank(b: &[Bucket], rank: u64) -> Option<f64> {
    let n = total(b);
    if n == 0 {
        return None;
    }
    let rank = rank.clamp(1, n);
    let mut seen = 0;
    for &(v, c) in b {
        seen += c;
        if seen >= rank {
            return Some(v);
        }
    }
    b.last().map(|&(v, _)| v)
}

/// The `q` quantile (0..=1), as the value at rank ⌈q·n⌉ (HdrHistogram's definition).
pub fn quantile(b: &[Bucket], q: f64) -> Option<f64> {
    let n = total(b);
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as u64;
    value_at_rank(b, rank.max(1))
}

/// Mean and (sample) variance of `f(value)`.
pub fn mean_var_by(b: &[Bucket], f: impl Fn(f64) -> f64) -> (f64, f64, u64) {
    let n = total(b);
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let mean = b.iter().map(|&(v, c)| f(v) * c as f64).sum::<f64>() / n as f64;
    let ss = b
        .iter()
        .map(|&(v, c)| {
            let d = f(v) - mean;
            d * d * c as f64
        })
        .sum::<f64>();
    let var = if n > 1 { ss / (n - 1) as f64 } else { 0.0 };
    (mean, var, n)
}

/// Result of a two-sided Mann-Whitney U test of `x` against `y`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U statistic of `x` (scipy's `mannwhitneyu(x, y).statistic`).
    pub u_x: f64,
    pub n_x: u64,
    pub n_y: u64,
    /// Normal approximation with tie correction and continuity correction.
    pub z: f64,
    /// Two-sided p-value (scipy `method="asymptotic"`, `use_continuity=True`).
    pub p_value: f64,
    /// P(Y > X) + ½ P(Y = X): the common-language effect size.
    pub prob_y_greater: f64,
    /// Standard deviation of U under H0, tie-corrected.
    pub sigma_u: f64,
}

/// Mann-Whitney U from buckets, in O(|x| + |y|).
pub fn mann_whitney(x: &[Bucket], y: &[Bucket]) -> Option<MannWhitney> {
    let (n1, n2) = (total(x), total(y));
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let n = (n1 + n2) as f64;
    let (mut i, mut j) = (0usize, 0usize);
    let mut below = 0f64; // samples strictly below the current value
    let mut rank_sum_x = 0f64;
    let mut tie_term = 0f64;
    while i < x.len() || j < y.len() {
        let v = match (x.get(i), y.get(j)) {
            (Some(a), Some(b)) => a.0.min(b.0),
            (Some(a), None) => a.0,
            (None, Some(b)) => b.0,
            (None, None) => break,
        };
        let mut cx = 0u64;
        let mut cy = 0u64;
        if let Some(&(a, c)) = x.get(i) {
            if a == v {
                cx = c;
                i += 1;
            }
        }
        if let Some(&(b, c)) = y.get(j) {
            if b == v {
                cy = c;
                j += 1;
            }
        }
        let t = (cx + cy) as f64;
        let mid_rank = below + (t + 1.0) / 2.0;
        rank_sum_x += cx as f64 * mid_rank;
        tie_term += t * t * t - t;
        below += t;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u_x = rank_sum_x - f1 * (f1 + 1.0) / 2.0;
    let u_y = f1 * f2 - u_x;
    let mu = f1 * f2 / 2.0;
    let var = f1 * f2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let sigma_u = var.max(0.0).sqrt();
    let u_max = u_x.max(u_y);
    let (z, p_value) = if sigma_u > 0.0 {
        let z = (u_max - mu - 0.5) / sigma_u;
        (z, (2.0 * normal_sf(z)).min(1.0))
    } else {
        (0.0, 1.0)
    };
    Some(MannWhitney {
        u_x,
        n_x: n1,
        n_y: n2,
        z,
        p_value,
        prob_y_greater: u_y / (f1 * f2),
        sigma_u,
    })
}

/// Number of pairs with `y_j - x_i > d` (strictly), in O(|x| + |y|).
fn pairs_above(x: &[Bucket], y: &[Bucket], d: f64) -> f64 {
    // For each y value (ascending) count x values < y - d (a moving pointer).
    let mut i = 0usize;
    let mut x_below = 0f64;
    let mut pairs = 0f64;
    for &(yv, yc) in y {
        let cut = yv - d;
        while i < x.len() && x[i].0 < cut {
            x_below += x[i].1 as f64;
            i += 1;
        }
        pairs += x_below * yc as f64;
    }
    pairs
}

/// The `k`-th smallest (1-based) of the n_x·n_y differences `y_j - x_i`,
/// found by bisection on the monotone count of pairs: O(buckets · 64).
pub fn kth_difference(x: &[Bucket], y: &[Bucket], k: f64) -> Option<f64> {
    let (xmin, xmax) = (x.first()?.0, x.last()?.0);
    let (ymin, ymax) = (y.first()?.0, y.last()?.0);
    let n_pairs = total(x) as f64 * total(y) as f64;
    let k = k.clamp(1.0, n_pairs);
    // count_le(d) = n_pairs - pairs_above(d); find the smallest d with count_le(d) >= k.
    let (mut lo, mut hi) = (ymin - xmax, ymax - xmin);
    if n_pairs - pairs_above(x, y, lo) >= k {
        return Some(lo);
    }
    for _ in 0..80 {
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi {
            break;
        }
        if n_pairs - pairs_above(x, y, mid) >= k {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Hodges-Lehmann estimate of the shift of `y` relative to `x` with its
/// distribution-free confidence interval (inverting the Mann-Whitney test).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// Median of all pairwise differences `y - x`.
    pub estimate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Confidence level of the interval, e.g. 0.95.
    pub level: f64,
}

pub fn hodges_lehmann(x: &[Bucket], y: &[Bucket], level: f64) -> Option<Shift> {
    let mw = mann_whitney(x, y)?;
    let n_pairs = mw.n_x as f64 * mw.n_y as f64;
    let estimate = if n_pairs as u64 % 2 == 1 {
        kth_difference(x, y, (n_pairs + 1.0) / 2.0)?
    } else {
        let a = kth_difference(x, y, n_pairs / 2.0)?;
        let b = kth_difference(x, y, n_pairs / 2.0 + 1.0)?;
        (a + b) / 2.0
    };
    let z = normal_quantile(1.0 - (1.0 - level) / 2.0);
    // Rank of the lower limit: n1 n2 / 2 - z σ_U (rounded as in Bauer 1972).
    let c = (n_pairs / 2.0 - z * mw.sigma_u).floor().max(1.0);
    let ci_low = kth_difference(x, y, c)?;
    let ci_high = kth_difference(x, y, (n_pairs - c + 1.0).max(1.0))?;
    Some(Shift {
        estimate,
        ci_low,
        ci_high,
        level,
    })
}

/// A quantile with its distribution-free (order statistic) confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantileCi {
    pub q: f64,
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

pub fn quantile_ci(b: &[Bucket], q: f64, level: f64) -> Option<QuantileCi> {
    let n = total(b) as f64;
    if n == 0.0 {
        return None;
    }
    let z = normal_quantile(1.0 - (1.0 - level) / 2.0);
    let half = z * (n * q * (1.0 - q)).sqrt();
    let lo_rank = (n * q - half).floor().max(1.0) as u64;
    let hi_rank = (n * q + half).ceil().min(n) as u64;
    Some(QuantileCi {
        q,
        value: quantile(b, q)?,
        ci_low: value_at_rank(b, lo_rank)?,
        ci_high: value_at_rank(b, hi_rank)?,
    })
}

/// Difference of the `q` quantiles (`y - x`) with a conservative interval:
/// each marginal interval at level `1 - (1 - level)/2` (Bonferroni), combined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantileDelta {
    pub q: f64,
    pub x: f64,
    pub y: f64,
    pub delta: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

pub fn quantile_delta(x: &[Bucket], y: &[Bucket], q: f64, level: f64) -> Option<QuantileDelta> {
    let marginal = 1.0 - (1.0 - level) / 2.0;
    let a = quantile_ci(x, q, marginal)?;
    let b = quantile_ci(y, q, marginal)?;
    Some(QuantileDelta {
        q,
        x: a.value,
        y: b.value,
        delta: b.value - a.value,
        ci_low: b.ci_low - a.ci_high,
        ci_high: b.ci_high - a.ci_low,
    })
}

/// Two-proportion z-test (pooled) of `y`'s rate against `x`'s, with an
/// Agresti-Caffo interval for the difference `p_y - p_x` (one success and
/// one failure added to each sample: the Wald interval collapses to 0..0
/// when neither color has an error, claiming equality it has not seen).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TwoProportions {
    pub p_x: f64,
    pub p_y: f64,
    pub diff: f64,
    pub z: f64,
    /// Two-sided; equals scipy `chi2_contingency(correction=False)`'s p.
    pub p_value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

pub fn two_proportions(
    k_x: u64,
    n_x: u64,
    k_y: u64,
    n_y: u64,
    level: f64,
) -> Option<TwoProportions> {
    if n_x == 0 || n_y == 0 || k_x > n_x || k_y > n_y {
        return None;
    }
    let (nx, ny) = (n_x as f64, n_y as f64);
    let (px, py) = (k_x as f64 / nx, k_y as f64 / ny);
    let pooled = (k_x + k_y) as f64 / (nx + ny);
    let se0 = (pooled * (1.0 - pooled) * (1.0 / nx + 1.0 / ny)).sqrt();
    let (z, p_value) = if se0 > 0.0 {
        let z = (py - px) / se0;
        (z, (2.0 * normal_sf(z.abs())).min(1.0))
    } else {
        (0.0, 1.0)
    };
    let (ax, ay) = (
        (k_x as f64 + 1.0) / (nx + 2.0),
        (k_y as f64 + 1.0) / (ny + 2.0),
    );
    let se = (ax * (1.0 - ax) / (nx + 2.0) + ay * (1.0 - ay) / (ny + 2.0)).sqrt();
    let zc = normal_quantile(1.0 - (1.0 - level) / 2.0);
    Some(TwoProportions {
        p_x: px,
        p_y: py,
        diff: py - px,
        z,
        p_value,
        ci_low: ay - ax - zc * se,
        ci_high: ay - ax + zc * se,
    })
}

/// An anytime-valid confidence sequence for a difference of means
/// (normal mixture / mSPRT boundary, Robbins 1970; Johari et al. 2017):
/// the running estimate `estimate` with variance `var` (of the estimate)
/// stays within the returned interval at *every* look with probability
/// ≥ 1 - alpha, so a live run may peek each second without inflating
/// false alarms. `tau2` is the mixing variance (the effect scale of interest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceSequence {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

pub fn normal_mixture_cs(estimate: f64, var: f64, tau2: f64, alpha: f64) -> ConfidenceSequence {
    if var.is_nan() || var <= 0.0 || !estimate.is_finite() {
        return ConfidenceSequence {
            estimate,
            low: f64::NEG_INFINITY,
            high: f64::INFINITY,
        };
    }
    let half = ((var * (var + tau2) / tau2)
        * (((var + tau2) / var).ln() + 2.0 * (1.0 / alpha).ln()))
    .sqrt();
    ConfidenceSequence {
        estimate,
        low: estimate - half,
        high: estimate + half,
    }
}

/// mSPRT statistic Λ for H0: θ = θ0 under the normal mixture (reject when ≥ 1/α).
pub fn msprt_lambda(estimate: f64, var: f64, tau2: f64, theta0: f64) -> f64 {
    let d = estimate - theta0;
    (var / (var + tau2)).sqrt() * (tau2 * d * d / (2.0 * var * (var + tau2))).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-12) || (a - b).abs() < 1e-12
    }

    #[test]
    fn normal_quantiles_match_tables() {
        assert!(close(normal_quantile(0.975), 1.959963984540054, 1e-9));
        assert!(close(normal_sf(1.959963984540054), 0.025, 1e-9));
    }

    #[test]
    fn quantiles_follow_hdr_definition() {
        let b = buckets_of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(quantile(&b, 0.5), Some(5.0));
        assert_eq!(quantile(&b, 0.99), Some(10.0));
        assert_eq!(quantile(&b, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(
            normalize(vec![(2.0, 1), (1.0, 2), (2.0, 3), (f64::NAN, 1), (3.0, 0)]),
            vec![(1.0, 2), (2.0, 4)]
        );
    }

    #[test]
    fn bucketed_equals_expanded() {
        // Bucketed input must give exactly what the expanded samples give.
        let b = vec![(1.0, 3), (2.0, 2), (5.0, 4)];
        let mut raw = vec![];
        for &(v, c) in &b {
            raw.extend(std::iter::repeat_n(v, c as usize));
        }
        let c = vec![(1.0, 1), (3.0, 5), (5.0, 1)];
        let mut raw2 = vec![];
        for &(v, k) in &c {
            raw2.extend(std::iter::repeat_n(v, k as usize));
        }
        assert_eq!(
            mann_whitney(&b, &c),
            mann_whitney(&buckets_of(&raw), &buckets_of(&raw2))
        );
        // Brute force pairwise differences for the HL estimate.
        let mut diffs: Vec<f64> = raw2
            .iter()
            .flat_map(|y| raw.iter().map(move |x| y - x))
            .collect();
        diffs.sort_by(f64::total_cmp);
        for k in [1usize, 7, 30, 31, diffs.len()] {
            let got = kth_difference(&b, &c, k as f64).unwrap();
            assert!(
                close(got, diffs[k - 1], 1e-9),
                "k={k}: {got} vs {}",
                diffs[k - 1]
            );
        }
    }

    #[test]
    fn confidence_sequence_is_wider_than_fixed_interval_and_shrinks() {
        let fixed = 1.96 * 0.01f64.sqrt();
        let cs = normal_mixture_cs(0.0, 0.01, 0.01, 0.05);
        assert!(cs.high > fixed);
        let later = normal_mixture_cs(0.0, 0.0001, 0.01, 0.05);
        assert!(later.high < cs.high);
        // The boundary is exactly where Λ = 1/α.
        let lambda = msprt_lambda(cs.high, 0.01, 0.01, 0.0);
        assert!(close(lambda, 20.0, 1e-9), "{lambda}");
        let degenerate = normal_mixture_cs(0.0, 0.0, 0.01, 0.05);
        assert!(degenerate.low.is_infinite());
    }

    #[test]
    fn two_proportions_edge_cases() {
        assert!(two_proportions(1, 0, 0, 10, 0.95).is_none());
        assert!(two_proportions(11, 10, 0, 10, 0.95).is_none());
        let t = two_proportions(0, 100, 0, 100, 0.95).unwrap();
        assert_eq!((t.z, t.p_value), (0.0, 1.0));
        // No errors seen is not proof of equal rates: the interval keeps a
        // width (Agresti-Caffo: ±1.96·sqrt(2·(1/102)(101/102)/102)).
        let half = 1.959_964 * (2.0 * (1.0 / 102.0) * (101.0 / 102.0) / 102.0f64).sqrt();
        assert!(
            close(t.ci_high, half, 1e-6) && close(t.ci_low, -half, 1e-6),
            "{t:?}"
        );
        // 10/100 against 20/100: centred on 21/102 - 11/102.
        let t = two_proportions(10, 100, 20, 100, 0.95).unwrap();
        let (ax, ay) = (11.0 / 102.0, 21.0 / 102.0);
        let se = (ax * (1.0 - ax) / 102.0 + ay * (1.0 - ay) / 102.0f64).sqrt();
        assert!(close(t.ci_low, ay - ax - 1.959_964 * se, 1e-6), "{t:?}");
        assert!(close(t.diff, 0.1, 1e-12));
    }
}
