use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Distribution of a latency, milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// From values in seconds; percentiles from an HDR histogram at microsecond
    /// resolution with 3 significant digits.
    pub fn of_seconds(values: impl IntoIterator<Item = f64>) -> Summary {
        let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
        let (mut sum, mut n) = (0f64, 0u64);
        for v in values {
            let us = (v * 1e6).round().max(0.0) as u64;
            h.record(us.max(1)).expect("auto-resizing histogram");
            sum += v;
            n += 1;
        }
        if n == 0 {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1e3;
        Summary {
            count: n,
            mean: sum / n as f64 * 1e3,
            median: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let s = Summary::of_seconds((1..=1000).map(|i| i as f64 / 1000.0));
        assert_eq!(s.count, 1000);
        assert!((s.mean - 500.5).abs() < 1e-9);
        assert!((s.median - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99 - 990.0).abs() < 1.5, "{s:?}");
        assert!((s.max - 1000.0).abs() < 1.0);
        assert_eq!(Summary::of_seconds(Vec::<f64>::new()), Summary::default());
    }
}
