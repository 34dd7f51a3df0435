//! Saved runs and comparisons against them.

use crate::report::{BenchResults, StepReport};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

fn path(dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.starts_with('.')
    {
        return Err(Error::Config(format!(
            "baseline name {name:?}: use letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(dir.join(format!("{name}.json")))
}

pub fn save_baseline(dir: &Path, name: &str, r: &BenchResults) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let p = path(dir, name)?;
    let mut slim = r.clone();
    slim.steps.iter_mut().for_each(|s| s.e2e_samples.clear());
    std::fs::write(&p, serde_json::to_string_pretty(&slim)?)?;
    Ok(p)
}

pub fn load_baseline(dir: &Path, name: &str) -> Result<BenchResults> {
    let p = path(dir, name)?;
    let text = std::fs::read_to_string(&p)
        .map_err(|e| Error::Config(format!("baseline {}: {e}", p.display())))?;
    Ok(serde_json::from_str(&text)?)
}

/// One metric of one step, beside its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub step: String,
    pub metric: &'static str,
    pub baseline: f64,
    pub current: f64,
    /// current / baseline.
    pub ratio: f64,
    /// How much worse, in percent (negative when better).
    pub worse_pct: f64,
}

fn metrics(s: &StepReport) -> Vec<(&'static str, f64, bool)> {
    // (name, value, higher is better)
    vec![
        ("output tok/s", s.output_throughput, true),
        ("req/s", s.request_throughput, true),
        ("TTFT p50 ms", s.ttft_ms.median, false),
        ("TTFT p99 ms", s.ttft_ms.p99, false),
        ("TPOT p50 ms", s.tpot_ms.median, false),
        ("ITL p50 ms", s.itl_ms.median, false),
        ("ITL p99 ms", s.itl_ms.p99, false),
        ("E2E p50 ms", s.e2el_ms.median, false),
        ("E2E p99 ms", s.e2el_ms.p99, false),
        ("error %", s.error_rate() * 100.0, false),
    ]
}

/// Every metric of the steps both runs have (matched by label).
pub fn compare(current: &BenchResults, baseline: &BenchResults) -> Vec<Comparison> {
    let mut out = Vec::new();
    for s in &current.steps {
        let Some(b) = baseline.steps.iter().find(|b| b.label == s.label) else {
            continue;
        };
        for ((name, cur, higher_better), (_, base, _)) in metrics(s).into_iter().zip(metrics(b)) {
            let ratio = if base == 0.0 {
                if cur == 0.0 {
                    1.0
                } else {
                    f64::INFINITY
                }
            } else {
                cur / base
            };
            let worse_pct = if name == "error %" {
                cur - base
            } else if higher_better {
                (1.0 - ratio) * 100.0
            } else {
                (ratio - 1.0) * 100.0
            };
            out.push(Comparison {
                step: s.label.clone(),
                metric: name,
                baseline: base,
                current: cur,
                ratio,
                worse_pct,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let d = std::env::temp_dir();
        assert!(path(&d, "../etc/passwd").is_err());
        assert!(path(&d, "ok-name_1.2").is_ok());
    }
}
