//! The evaluation chart: one row per dataset, quality on the left (nDCG@10 and Recall@100 per mode), mean
//! latency per stage on the right (stacked, per mode). Drawn with plotters into a PNG; the font (DejaVu Sans,
//! `assets/`) is compiled in so the chart looks the same on every machine.

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::Report;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const ROW_HEIGHT: u32 = 420;
const WIDTH: u32 = 1400;

#[derive(Debug, thiserror::Error)]
#[error("drawing the chart: {0}")]
pub struct ChartError(String);

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// A colour per stage name, stable across charts.
fn stage_colour(stage: &str) -> RGBColor {
    match stage {
        "analyze" | "stats" | "bm25" | "fetch" => RGBColor(0x4c, 0x72, 0xb0),
        "embed" => RGBColor(0xdd, 0x84, 0x52),
        "ann" => RGBColor(0x55, 0xa8, 0x68),
        "fuse" => RGBColor(0x81, 0x72, 0xb3),
        "rerank" => RGBColor(0xc4, 0x4e, 0x52),
        "documents" => RGBColor(0x93, 0x78, 0x60),
        _ => RGBColor(0x8c, 0x8c, 0x8c),
    }
}

/// Folds BM25's sub-stages into one `bm25` stage (for the chart only).
fn chart_stages(r: &Report) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (stage, ms) in &r.stage_ms_mean {
        let name = match stage.as_str() {
            "analyze" | "stats" | "fetch" => "bm25",
            s => s,
        };
        match out.iter_mut().find(|(s, _)| s == name) {
            Some(slot) => slot.1 += ms,
            None => out.push((name.to_owned(), *ms)),
        }
    }
    out
}

/// Writes the chart of `reports` (grouped by dataset, in order) to `path`.
pub fn write_png(reports: &[Report], path: &Path) -> Result<(), ChartError> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let mut datasets: Vec<&str> = Vec::new();
    for r in reports {
        if !datasets.contains(&r.dataset.as_str()) {
            datasets.push(&r.dataset);
        }
    }
    let rows = datasets.len().max(1) as u32;
    let root = BitMapBackend::new(path, (WIDTH, ROW_HEIGHT * rows)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((rows as usize, 2));
    for (i, dataset) in datasets.iter().enumerate() {
        let rs: Vec<&Report> = reports.iter().filter(|r| r.dataset == *dataset).collect();
        quality(&areas[2 * i], dataset, &rs)?;
        latency(&areas[2 * i + 1], dataset, &rs)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn label(r: &Report) -> String {
    r.system.trim_start_matches("sieve ").split(" (").next().unwrap_or("").to_owned()
}

/// Axes with one x label per mode, centred under its bars.
fn draw_mesh<DB: DrawingBackend, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    rs: &[&Report],
    y_desc: &str,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let n = rs.len().max(1);
    let labels: Vec<String> = rs.iter().map(|r| label(r)).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)
}

fn quality<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    dataset: &str,
    rs: &[&Report],
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let n = rs.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{dataset}: quality"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..n as f64, 0f64..1.25f64)
        .map_err(err)?;
    draw_mesh(&mut chart, rs, "score")?;
    let series = [("nDCG@10", RGBColor(0x4c, 0x72, 0xb0)), ("Recall@100", RGBColor(0x55, 0xa8, 0x68))];
    for (s, (name, colour)) in series.iter().enumerate() {
        let bars: Vec<Rectangle<(f64, f64)>> = rs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let v = if s == 0 { r.ndcg_at_10 } else { r.recall_at_100 };
                let x0 = i as f64 + 0.12 + s as f64 * 0.38;
                Rectangle::new([(x0, 0.0), (x0 + 0.36, v)], colour.filled())
            })
            .collect();
        let colour = *colour;
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled()));
        let values = rs.iter().enumerate().map(|(i, r)| {
            let v = if s == 0 { r.ndcg_at_10 } else { r.recall_at_100 };
            let x0 = i as f64 + 0.14 + s as f64 * 0.38;
            Text::new(format!("{v:.3}"), (x0, v + 0.03), ("sans-serif", 14).into_font())
        });
        chart.draw_series(values).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    dataset: &str,
    rs: &[&Report],
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let n = rs.len().max(1);
    let stacks: Vec<Vec<(String, f64)>> = rs.iter().map(|r| chart_stages(r)).collect();
    // A log axis: BM25's tenth of a millisecond and a cross-encoder's hundreds stay readable side by side.
    let total = |s: &Vec<(String, f64)>| s.iter().map(|(_, ms)| ms).sum::<f64>();
    let top = stacks.iter().map(total).fold(0.0, f64::max).max(1e-2) * 8.0;
    let floor = (stacks.iter().map(total).fold(f64::INFINITY, f64::min).max(1e-4) / 4.0).min(0.1);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{dataset}: mean latency per stage (ms, log scale)"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, (floor..top).log_scale())
        .map_err(err)?;
    draw_mesh(&mut chart, rs, "ms")?;
    let mut legend: Vec<String> = Vec::new();
    for (i, stack) in stacks.iter().enumerate() {
        let mut base = floor;
        for (stage, ms) in stack {
            let colour = stage_colour(stage);
            let rect = Rectangle::new([(i as f64 + 0.25, base), (i as f64 + 0.75, base + ms)], colour.filled());
            let series = chart.draw_series(std::iter::once(rect)).map_err(err)?;
            if !legend.contains(stage) {
                legend.push(stage.clone());
                series
                    .label(stage.as_str())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled()));
            }
            base += ms;
        }
        let sum = base - floor;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{sum:.2} ms"),
                (i as f64 + 0.33, base * 1.6),
                ("sans-serif", 14).into_font(),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(dataset: &str, system: &str, ndcg: f64, stages: &[(&str, f64)]) -> Report {
        Report {
            dataset: dataset.into(),
            system: system.into(),
            docs: 10,
            queries: 5,
            queries_skipped: 0,
            ndcg_at_10: ndcg,
            mrr_at_10: ndcg,
            recall_at_10: ndcg,
            recall_at_100: (ndcg + 0.1).min(1.0),
            latency_ms_mean: 1.0,
            latency_ms_p50: 1.0,
            latency_ms_p90: 1.0,
            latency_ms_p99: 1.0,
            latency_ms_max: 1.0,
            index_docs_per_s: None,
            stage_ms_mean: stages.iter().map(|(s, m)| (s.to_string(), *m)).collect(),
            pass_seconds: Vec::new(),
            settings: serde_json::Value::Null,
        }
    }

    #[test]
    fn draws_a_png_with_a_row_per_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        let reports = vec![
            report("a", "sieve bm25", 0.7, &[("analyze", 0.1), ("bm25", 0.5)]),
            report("a", "sieve hybrid", 0.8, &[("bm25", 0.5), ("embed", 3.0), ("ann", 0.2), ("fuse", 0.01)]),
            report("b", "sieve hybrid+rerank (random weights)", 0.2, &[("bm25", 0.5), ("rerank", 40.0)]),
        ];
        write_png(&reports, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // width and height from the IHDR chunk: two dataset rows
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((w, h), (WIDTH, 2 * ROW_HEIGHT));
        assert_eq!(chart_stages(&reports[0]), vec![("bm25".to_string(), 0.6)]);
    }
}
