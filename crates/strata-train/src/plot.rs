//! The plots section 12.1.3 tells people to watch: loss against step (raw and
//! smoothed) and training vs validation accuracy per epoch; and a confusion
//! matrix image.

use image::ImageEncoder;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

/// Plotters draws text with an embedded font (DejaVu Sans), so plots look the
/// same on machines without system fonts.
pub(crate) fn fonts() {
    FONT.call_once(|| {
        let _ = register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
    });
}

/// Writes an RGB buffer drawn by plotters as a PNG, atomically.
pub(crate) fn save_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<(), String> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| err(path, e))?;
    crate::checkpoint::write_atomic(path, &png).map_err(|e| e.to_string())
}

pub(crate) fn err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: cannot draw the plot: {e}", path.display())
}

/// Exponential moving average (the "smoothed" curve).
pub fn smooth(values: &[f64], alpha: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let mut s = None;
    for &v in values {
        let next = match s {
            None => v,
            Some(p) => alpha * v + (1.0 - alpha) * p,
        };
        s = Some(next);
        out.push(next);
    }
    out
}

fn bounds(values: &[f64]) -> (f64, f64) {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, f64::min);
    let hi = finite.fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// `loss.png`: minibatch loss against step, raw (light) and smoothed (dark).
pub fn loss_plot(path: &Path, losses: &[f64]) -> Result<(), String> {
    fonts();
    let mut buf = vec![0u8; 900 * 500 * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let (lo, hi) = bounds(losses);
        let n = losses.len().max(2) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("training loss", ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n, lo.min(0.0)..hi * 1.05)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|e| err(path, e))?;
        let raw = RGBColor(150, 180, 230);
        chart
            .draw_series(LineSeries::new(
                losses.iter().enumerate().map(|(i, &v)| (i as f64, v)),
                raw,
            ))
            .map_err(|e| err(path, e))?
            .label("raw")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], raw));
        let sm = smooth(losses, 0.05);
        chart
            .draw_series(LineSeries::new(
                sm.iter().enumerate().map(|(i, &v)| (i as f64, v)),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| err(path, e))?
            .label("smoothed")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))?;
    }
    save_png(path, &buf, (900, 500))
}

/// `accuracy.png`: training and validation accuracy per epoch — a widening
/// gap means over-fitting.
pub fn accuracy_plot(path: &Path, train: &[f64], validation: &[Option<f64>]) -> Result<(), String> {
    fonts();
    let mut buf = vec![0u8; 900 * 500 * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let all: Vec<f64> = train
            .iter()
            .copied()
            .chain(validation.iter().flatten().copied())
            .collect();
        let (lo, _) = bounds(&all);
        let epochs = train.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("accuracy", ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..epochs + 0.5, (lo - 0.02).max(0.0)..1.0)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("accuracy")
            .draw()
            .map_err(|e| err(path, e))?;
        let pts = |v: &[f64]| {
            v.iter()
                .enumerate()
                .map(|(i, &a)| (i as f64 + 1.0, a))
                .collect::<Vec<_>>()
        };
        let t = pts(train);
        chart
            .draw_series(LineSeries::new(t.clone(), BLUE.stroke_width(2)))
            .map_err(|e| err(path, e))?
            .label("training")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(t.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))
            .map_err(|e| err(path, e))?;
        let v: Vec<(f64, f64)> = validation
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.map(|a| (i as f64 + 1.0, a)))
            .collect();
        if !v.is_empty() {
            chart
                .draw_series(LineSeries::new(v.clone(), RED.stroke_width(2)))
                .map_err(|e| err(path, e))?
                .label("validation")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
            chart
                .draw_series(v.iter().map(|&p| Circle::new(p, 3, RED.filled())))
                .map_err(|e| err(path, e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))?;
    }
    save_png(path, &buf, (900, 500))
}

/// `confusion.png`: counts of (true class, predicted class), darker = more.
pub fn confusion_plot(
    path: &Path,
    confusion: &[Vec<usize>],
    class_names: &[String],
) -> Result<(), String> {
    use plotters::coord::ranged1d::SegmentValue;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    fonts();
    let k = confusion.len().max(1);
    let mut buf = vec![0u8; 760 * 720 * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (760, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "confusion matrix (rows: true class, columns: predicted)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(110)
            .build_cartesian_2d((0..k).into_segmented(), (0..k).into_segmented())
            .map_err(|e| err(path, e))?;
        let name = |i: usize| class_names.get(i).cloned().unwrap_or_else(|| i.to_string());
        // Row 0 (the first true class) is drawn at the top.
        let label = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) if *i < k => name(if flip { k - 1 - i } else { *i }),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(k)
            .y_labels(k)
            .x_label_formatter(&|v| label(v, false))
            .y_label_formatter(&|v| label(v, true))
            .draw()
            .map_err(|e| err(path, e))?;
        let max = confusion
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let cells = confusion
            .iter()
            .enumerate()
            .flat_map(|(t, row)| row.iter().enumerate().map(move |(p, &c)| (t, p, c)));
        chart
            .draw_series(cells.clone().map(|(t, p, c)| {
                let shade = 255 - (215.0 * (c as f64 / max).sqrt()) as u8;
                let y = k - 1 - t;
                Rectangle::new(
                    [
                        (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                    ],
                    RGBColor(shade, shade, 255).filled(),
                )
            }))
            .map_err(|e| err(path, e))?;
        let centre = Pos::new(HPos::Center, VPos::Center);
        chart
            .draw_series(cells.map(|(t, p, c)| {
                let style = ("sans-serif", 14).into_font().color(&BLACK).pos(centre);
                Text::new(
                    c.to_string(),
                    (SegmentValue::CenterOf(p), SegmentValue::CenterOf(k - 1 - t)),
                    style,
                )
            }))
            .map_err(|e| err(path, e))?;
        root.present().map_err(|e| err(path, e))?;
    }
    save_png(path, &buf, (760, 720))
}
