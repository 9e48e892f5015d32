//! `RUN/loss.png`: training loss per step and validation loss at each evaluation.

use crate::metrics::{self, Line};
use anyhow::{anyhow, Result};
use plotters::{prelude::*, style::FontStyle};
use std::{path::Path, sync::Once};

/// The labels' font, shipped with the binary (printable ASCII of DejaVu Sans; licence in
/// assets/LICENSE-DejaVu): plotters draws text only with a font it is given, and a plot should
/// not depend on which fonts a machine happens to have.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");

/// Draw the losses of `metrics_file` into `png`.
pub fn write(metrics_file: &Path, png: &Path) -> Result<()> {
    register_font();
    let lines = metrics::read(metrics_file)?;
    let train: Vec<(f64, f64)> =
        lines.iter().filter_map(|l| if let Line::Step(s) = l { Some((s.step as f64, s.loss)) } else { None }).collect();
    let val: Vec<(f64, f64)> =
        lines.iter().filter_map(|l| if let Line::Eval(e) = l { Some((e.step as f64, e.loss)) } else { None }).collect();
    let all = || train.iter().chain(&val);
    let last_step = all().map(|p| p.0).fold(1.0, f64::max);
    let (low, high) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (low, high) = if low.is_finite() { (low, high) } else { (0.0, 1.0) };
    let margin = ((high - low) * 0.05).max(1e-3);

    // The partial file keeps a reader from ever seeing half a picture.
    let partial = png.with_extension("partial.png");
    {
        let draw_error = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", png.display());
        let root = BitMapBackend::new(&partial, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("loss", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..last_step, (low - margin)..(high + margin))
            .map_err(draw_error)?;
        chart.configure_mesh().x_desc("optimizer step").y_desc("token-mean loss").draw().map_err(draw_error)?;
        chart
            .draw_series(LineSeries::new(train.iter().copied(), &BLUE))
            .map_err(draw_error)?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2)))
            .map_err(draw_error)?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart.draw_series(val.iter().map(|&p| Circle::new(p, 4, RED.filled()))).map_err(draw_error)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    std::fs::rename(&partial, png).map_err(|e| anyhow!("renaming {} into place: {e}", partial.display()))
}

fn register_font() {
    static REGISTERED: Once = Once::new();
    // plotters keeps registered fonts for the life of the process.
    REGISTERED.call_once(|| {
        let registered = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
        assert!(registered.is_ok(), "the shipped font is a TrueType font");
    });
}
