//! Verdict math against reference values computed with scipy/numpy
//! (see `fixtures/gen_stats_fixtures.py` for the provenance and how to
//! regenerate `fixtures/stats_fixtures.json`).

use greenlight_verdict::stats::{self, Bucket};
use serde_json::Value;

fn fixtures() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stats_fixtures.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn buckets(v: &Value) -> Vec<Bucket> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| (b[0].as_f64().unwrap(), b[1].as_u64().unwrap()))
        .collect()
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-300)
}

#[test]
fn mann_whitney_matches_scipy() {
    let f = fixtures();
    assert!(f["provenance"].as_str().unwrap().contains("scipy"));
    for case in f["mann_whitney"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (x, y) = (buckets(&case["x"]), buckets(&case["y"]));
        let mw = stats::mann_whitney(&x, &y).unwrap();
        let u = case["u_x"].as_f64().unwrap();
        let p = case["p_value"].as_f64().unwrap();
        assert!(
            rel_close(mw.u_x, u, 1e-12),
            "{name}: U {} vs scipy {u}",
            mw.u_x
        );
        assert!(
            rel_close(mw.p_value, p, 1e-6),
            "{name}: p {} vs scipy {p}",
            mw.p_value
        );
    }
}

#[test]
fn hodges_lehmann_matches_numpy_median_of_differences() {
    let f = fixtures();
    for case in f["mann_whitney"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (x, y) = (buckets(&case["x"]), buckets(&case["y"]));
        let hl = stats::hodges_lehmann(&x, &y, 0.95).unwrap();
        let want = case["hl_shift"].as_f64().unwrap();
        assert!(
            (hl.estimate - want).abs() < 1e-6,
            "{name}: HL {} vs numpy {want}",
            hl.estimate
        );
        assert!(
            hl.ci_low <= hl.estimate && hl.estimate <= hl.ci_high,
            "{name}: {hl:?}"
        );
    }
}

#[test]
fn textbook_example() {
    // Checkable by hand: pooled order 11y 12y 16x 17y 19x 20y 22x 24x 29x,
    // so x's ranks are 3+5+7+8+9 = 32, U_x = 32 - 5·6/2 = 17, U_y = 20 - 17 = 3.
    let x = stats::buckets_of(&[19.0, 22.0, 16.0, 29.0, 24.0]);
    let y = stats::buckets_of(&[20.0, 11.0, 17.0, 12.0]);
    let mw = stats::mann_whitney(&x, &y).unwrap();
    assert_eq!(mw.u_x, 17.0);
    assert_eq!(mw.n_x as f64 * mw.n_y as f64 - mw.u_x, 3.0);
}

#[test]
fn two_proportions_match_scipy_chi2() {
    let f = fixtures();
    for case in f["two_proportions"].as_array().unwrap() {
        let g = |k: &str| case[k].as_u64().unwrap();
        let t = stats::two_proportions(g("k_x"), g("n_x"), g("k_y"), g("n_y"), 0.95).unwrap();
        let (z, p) = (
            case["z"].as_f64().unwrap(),
            case["p_value"].as_f64().unwrap(),
        );
        assert!(rel_close(t.z, z, 1e-9), "{case}: z {}", t.z);
        assert!(
            rel_close(t.p_value, p, 1e-6),
            "{case}: p {} vs {p}",
            t.p_value
        );
    }
}

#[test]
fn normal_quantiles_match_scipy() {
    let f = fixtures();
    for case in f["normal_quantiles"].as_array().unwrap() {
        let (p, z) = (case["p"].as_f64().unwrap(), case["z"].as_f64().unwrap());
        assert!((stats::normal_quantile(p) - z).abs() < 1e-9, "p={p}");
    }
}
