//! Medians and percentiles.

use std::time::Duration;

/// The median of `values` (the mean of the middle two for an even count); `None`
/// when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// The `p`-th percentile (0 < p ≤ 100, nearest rank) of `samples`; `None` when
/// empty.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The widest relative gap between paired rates, `fast / slow - 1` (0.05 = 5 %)
/// over the pairs of `slowest` and `fastest`; pairs whose slow rate is not
/// positive are left out; 0 when none is left.
pub fn widest_gap(slowest: &[f64], fastest: &[f64]) -> f64 {
    slowest
        .iter()
        .zip(fastest)
        .filter(|(slow, _)| **slow > 0.0)
        .map(|(slow, fast)| fast / slow - 1.0)
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn the_widest_gap_between_pairs() {
        assert_eq!(widest_gap(&[], &[]), 0.0);
        let gap = widest_gap(&[100.0, 200.0], &[110.0, 210.0]);
        assert!(
            (gap - 0.10).abs() < 1e-9,
            "the 10 % pair is the widest, got {gap}"
        );
        assert_eq!(widest_gap(&[0.0, 100.0], &[50.0, 100.0]), 0.0);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_micros(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_micros(99)));
        assert_eq!(
            percentile(&samples, 100.0),
            Some(Duration::from_micros(100))
        );
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(
            percentile(&[Duration::from_micros(7)], 99.0),
            Some(Duration::from_micros(7))
        );
    }
}
