//! PNG and SVG charts: throughput and latency percentiles against load, and the E2E
//! latency histogram of the last step.

use crate::report::BenchResults;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Text needs a font: DejaVu Sans from the system (Debian: fonts-dejavu-core).
fn ensure_font() -> Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Chart(format!(
            "no font for chart text; install DejaVu Sans (one of {FONT_PATHS:?})"
        )))
    }
}

fn err<E: std::fmt::Display>(e: E) -> Error {
    Error::Chart(e.to_string())
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn line_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .collect();
    let (x0, x1) = (
        xs.iter().cloned().fold(f64::MAX, f64::min),
        xs.iter().cloned().fold(f64::MIN, f64::max),
    );
    let y1 = ys.iter().cloned().fold(0.0, f64::max) * 1.1 + 1e-9;
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 1.0, x0 + 1.0)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, 0.0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(err)?;
    for (name, color, pts) in series {
        let c = *color;
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn histogram<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    samples_ms: &[f64],
    title: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let max = samples_ms.iter().cloned().fold(0.0, f64::max).max(1e-3);
    let bins = 30usize;
    let width = max / bins as f64;
    let mut counts = vec![0u32; bins];
    for &s in samples_ms {
        counts[((s / width) as usize).min(bins - 1)] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.1 + 1.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("E2E latency (ms)")
        .y_desc("requests")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            Rectangle::new(
                [(i as f64 * width, 0.0), ((i + 1) as f64 * width, c as f64)],
                BLUE.mix(0.6).filled(),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Writes the charts; returns the file names.
pub fn write_charts(r: &BenchResults, dir: &Path) -> Result<Vec<String>> {
    ensure_font()?;
    let open = r.steps.iter().any(|s| s.open_loop);
    let x_label = if open {
        "request rate (req/s)"
    } else {
        "concurrency"
    };
    let pts = |f: &dyn Fn(&crate::report::StepReport) -> f64| -> Vec<(f64, f64)> {
        r.steps.iter().map(|s| (s.load, f(s))).collect()
    };
    let throughput: Vec<Series> = vec![
        ("output tok/s", BLUE, pts(&|s| s.output_throughput)),
        ("total tok/s", GREEN, pts(&|s| s.total_token_throughput)),
    ];
    let latency: Vec<Series> = vec![
        ("TTFT p50", BLUE, pts(&|s| s.ttft_ms.median)),
        ("TTFT p99", CYAN, pts(&|s| s.ttft_ms.p99)),
        ("ITL p50", RED, pts(&|s| s.itl_ms.median)),
        ("ITL p99", MAGENTA, pts(&|s| s.itl_ms.p99)),
    ];
    let last = r
        .steps
        .last()
        .map(|s| s.e2e_samples.iter().map(|v| v * 1e3).collect::<Vec<_>>())
        .unwrap_or_default();
    let hist_title = format!(
        "E2E latency, {}",
        r.steps.last().map_or("", |s| s.label.as_str())
    );
    let size = (900, 560);
    let mut files = Vec::new();
    for (name, kind) in [("throughput", 0), ("latency", 1), ("e2e_histogram", 2)] {
        let png = dir.join(format!("{name}.png"));
        let svg = dir.join(format!("{name}.svg"));
        match kind {
            0 => {
                line_chart(
                    BitMapBackend::new(&png, size).into_drawing_area(),
                    "Throughput",
                    x_label,
                    "tokens/s",
                    &throughput,
                )?;
                line_chart(
                    SVGBackend::new(&svg, size).into_drawing_area(),
                    "Throughput",
                    x_label,
                    "tokens/s",
                    &throughput,
                )?;
            }
            1 => {
                line_chart(
                    BitMapBackend::new(&png, size).into_drawing_area(),
                    "Latency percentiles",
                    x_label,
                    "ms",
                    &latency,
                )?;
                line_chart(
                    SVGBackend::new(&svg, size).into_drawing_area(),
                    "Latency percentiles",
                    x_label,
                    "ms",
                    &latency,
                )?;
            }
            _ => {
                histogram(
                    BitMapBackend::new(&png, size).into_drawing_area(),
                    &last,
                    &hist_title,
                )?;
                histogram(
                    SVGBackend::new(&svg, size).into_drawing_area(),
                    &last,
                    &hist_title,
                )?;
            }
        }
        files.push(format!("{name}.png"));
        files.push(format!("{name}.svg"));
    }
    Ok(files)
}
