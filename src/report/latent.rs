//! `latent.png`: the codes of the test images projected on their first two principal axes
//! (PCA of the code vectors, [`super::pca`]), one colour per digit with a legend, drawn with
//! plotters as the loss plot is (same embedded font).
use std::path::Path;

use image::ExtendedColorType;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::pca::Pca;
use super::plot::{ensure_font, FAMILY};
use crate::{Error, Result};

/// Width and height of the latent plot in pixels.
pub const LATENT_PLOT_SIZE: (u32, u32) = (760, 640);
/// Width of the legend column at the right.
const LEGEND_W: u32 = 92;
/// matplotlib's tab10 palette: digit `k` gets colour `k`.
const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Labels past 9 (a dataset that is not MNIST's digits).
const OTHER: RGBColor = RGBColor(40, 40, 40);

fn color(label: u8) -> RGBColor {
    TAB10.get(label as usize).copied().unwrap_or(OTHER)
}

/// A projected code: its two coordinates and its label.
type Point = (f64, f64, u8);
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Writes the scatter plot of `codes` (`dim` values per row, one row per label in `labels`)
/// on their first two principal axes as a [`LATENT_PLOT_SIZE`] PNG, and returns the fit.
/// Rows with a non-finite value are left out.
pub fn latent_png(path: &Path, codes: &[f32], labels: &[u8], dim: usize) -> Result<Pca> {
    let fail = |detail: String| Error::Image(format!("{}: {detail}", path.display()));
    if dim == 0 || Some(codes.len()) != labels.len().checked_mul(dim) {
        return Err(fail(format!(
            "{} code values are not {} codes of {dim}",
            codes.len(),
            labels.len()
        )));
    }
    let pca = Pca::fit(codes, dim).map_err(|e| fail(format!("cannot project the codes: {e}")))?;
    let points: Vec<Point> = codes
        .chunks(dim)
        .zip(labels)
        .filter_map(|(c, &l)| {
            let [x, y] = pca.project(c);
            (x.is_finite() && y.is_finite()).then_some((x, y, l))
        })
        .collect();
    ensure_font()?;
    let (w, h) = LATENT_PLOT_SIZE;
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    draw(&mut pixels, &points, &pca).map_err(|e| fail(format!("drawing the latent plot: {e}")))?;
    super::write_png(path, &pixels, w, h, ExtendedColorType::Rgb8)?;
    Ok(pca)
}

/// The range of `values` widened by 5% on each side, or by 1 when they do not vary.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return (-1.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 1.0 };
    (lo - pad, hi + pad)
}

/// Tick labels with as many decimals as the axis's span needs; no `-0.0`.
fn tick(span: f64) -> impl Fn(&f64) -> String {
    let decimals = (1.0 - span.max(1e-9).log10().floor()).clamp(0.0, 6.0) as usize;
    move |v| {
        let s = format!("{:.*}", decimals, v);
        match s.strip_prefix('-') {
            Some(zero) if zero.bytes().all(|b| b == b'0' || b == b'.') => zero.to_string(),
            _ => s,
        }
    }
}

fn draw(pixels: &mut [u8], points: &[Point], pca: &Pca) -> DrawResult {
    let root = BitMapBackend::with_buffer(pixels, LATENT_PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!("Latent space: codes of {} test images, PCA", points.len());
    let body = root.titled(&title, (FAMILY, 20))?;
    let (w, _) = body.dim_in_pixel();
    let (plot, legend) = body.split_horizontally(w.saturating_sub(LEGEND_W));
    let (x_lo, x_hi) = range(points.iter().map(|p| p.0));
    let (y_lo, y_hi) = range(points.iter().map(|p| p.1));
    let [ex, ey] = pca.explained();
    let mut chart = ChartBuilder::on(&plot)
        .margin(10)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    let (fx, fy) = (tick(x_hi - x_lo), tick(y_hi - y_lo));
    chart
        .configure_mesh()
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(TRANSPARENT)
        .x_desc(format!("PC 1 ({:.1}% of variance)", ex * 100.0))
        .y_desc(format!("PC 2 ({:.1}% of variance)", ey * 100.0))
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .draw()?;
    // In the data's order (digits mixed), so that no digit is painted over all the others.
    chart.draw_series(
        points
            .iter()
            .map(|&(x, y, l)| Circle::new((x, y), 2, color(l).mix(0.55).filled())),
    )?;
    draw_legend(&legend, points)?;
    root.present()?;
    Ok(())
}

/// The legend column: a heading and one coloured dot per label present.
fn draw_legend(area: &DrawingArea<BitMapBackend, Shift>, points: &[Point]) -> DrawResult {
    let mut present = [false; 11];
    for p in points {
        present[(p.2 as usize).min(10)] = true;
    }
    let text = |s: &str, x: i32, y: i32, size: u32| {
        Text::new(
            s.to_string(),
            (x, y),
            (FAMILY, size).into_font().color(&BLACK),
        )
    };
    area.draw(&text("digit", 14, 16, 15))?;
    let rows = present.iter().enumerate().filter(|(_, &p)| p);
    for (row, (label, _)) in rows.enumerate() {
        let y = 48 + 24 * row as i32;
        let c = color(label as u8);
        area.draw(&Circle::new((22, y), 6, c.filled()))?;
        let name = if label < 10 {
            label.to_string()
        } else {
            "other".to_string()
        };
        area.draw(&text(&name, 36, y - 8, 15))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fit_the_span() {
        assert_eq!(tick(40.0)(&12.345), "12");
        assert_eq!(tick(4.0)(&-1.2345), "-1.2");
        assert_eq!(tick(400.0)(&12.6), "13");
        assert_eq!(tick(0.04)(&-0.0), "0.000");
        assert_eq!(tick(1.4)(&-1e-17), "0.0");
        assert_eq!(tick(1.4)(&-0.04), "0.0");
        assert_eq!(tick(1.4)(&-0.06), "-0.1");
    }
}
