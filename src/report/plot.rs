//! The loss curves: training and validation loss against epoch, drawn with plotters into an
//! RGB buffer. Text uses DejaVu Sans, embedded in the binary (assets/fonts, see
//! LICENSE-DejaVu.txt there), so no system fonts are needed.
use std::path::Path;
use std::sync::OnceLock;

use image::ExtendedColorType;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::{Error, Result};

/// Width and height of the loss plot in pixels (matplotlib's default 6.4 x 4.8 in at 100 dpi).
pub const LOSS_PLOT_SIZE: (u32, u32) = (640, 480);

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family every plotters default (axis labels, legend) asks for.
pub(super) const FAMILY: &str = "sans-serif";
/// matplotlib's first two colours, C0 and C1.
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);
/// Markers on every point up to this many epochs (so a single epoch still shows).
const MAX_MARKED: usize = 30;
/// Plot x units per epoch.
const X_RES: f64 = 100.0;

pub(super) fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Image(
            "the embedded DejaVu Sans font could not be loaded".to_string(),
        ))
    }
}

/// Write the training (`loss`) and validation (`val_loss`) curves for `rows` of
/// `(epoch, loss, val_loss)` as a [`LOSS_PLOT_SIZE`] PNG. Non-finite values are left out;
/// a series with no finite value is not drawn.
pub fn loss_png(path: &Path, rows: &[(usize, f64, f64)]) -> Result<()> {
    let fail = |detail: String| Error::Image(format!("{}: {detail}", path.display()));
    let train: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.1.is_finite())
        .map(|r| (r.0 as f64, r.1))
        .collect();
    let val: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.2.is_finite())
        .map(|r| (r.0 as f64, r.2))
        .collect();
    if train.is_empty() && val.is_empty() {
        return Err(fail(if rows.is_empty() {
            "no epochs to plot".to_string()
        } else {
            "no finite loss values to plot".to_string()
        }));
    }
    ensure_font()?;
    let (w, h) = LOSS_PLOT_SIZE;
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    draw(&mut pixels, &train, &val).map_err(|e| fail(format!("drawing the loss plot: {e}")))?;
    super::write_png(path, &pixels, w, h, ExtendedColorType::Rgb8)
}

/// `[lo, hi]` widened by 5% on each side (matplotlib's margins), or by `flat` when empty.
fn padded(lo: f64, hi: f64, flat: f64) -> (f64, f64) {
    let span = hi - lo;
    let pad = if span > 0.0 { span * 0.05 } else { flat };
    (lo - pad, hi + pad)
}

/// Whole-epoch ticks: multiples of a 1-2-5 step, at most about 10 of them, within [lo, hi].
fn epoch_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = ((hi - lo) / 8.0).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil();
    (0..100)
        .map(|k| (first + k as f64) * step + 0.0) // + 0.0 turns -0 into 0
        .take_while(|t| *t <= hi)
        .collect()
}

/// Points (x in hundredths of an epoch), colour, legend name.
type Series<'a> = (&'a [(i64, f64)], RGBColor, &'static str);

fn draw(
    pixels: &mut [u8],
    train: &[(f64, f64)],
    val: &[(f64, f64)],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let all = || train.iter().chain(val);
    let (x_lo, x_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (y_lo, y_hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1), b.max(p.1))
    });
    let (x_lo, x_hi) = padded(x_lo, x_hi, 1.0);
    let (y_lo, y_hi) = padded(y_lo, y_hi, (y_lo.abs() * 0.05).max(0.01));
    // The x axis counts hundredths of an epoch on integers: plotters' custom key points need
    // an integer coordinate to keep its default tick formatting.
    let hx = |x: f64| (x * X_RES).round() as i64;
    let ticks: Vec<i64> = epoch_ticks(x_lo, x_hi).into_iter().map(hx).collect();
    let (train, val): (Vec<_>, Vec<_>) = (
        train.iter().map(|&(x, y)| (hx(x), y)).collect(),
        val.iter().map(|&(x, y)| (hx(x), y)).collect(),
    );

    let root = BitMapBackend::with_buffer(pixels, LOSS_PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("loss (binary cross-entropy)", (FAMILY, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((hx(x_lo)..hx(x_hi)).with_key_points(ticks), y_lo..y_hi)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(TRANSPARENT)
        .x_desc("epoch")
        .y_desc("loss")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .x_label_formatter(&|x| format!("{}", (*x as f64 / X_RES).round()))
        .y_label_formatter(&|y| format!("{y:.3}"))
        .draw()?;

    let series: [Series; 2] = [(&train, TRAIN_COLOR, "loss"), (&val, VAL_COLOR, "val_loss")];
    let marked = train.len().max(val.len()) <= MAX_MARKED;
    for (points, color, name) in series {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (22, 0)], color.stroke_width(2))
                    + Circle::new((11, 0), 3, color.filled())
            });
        if marked {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_whole_epochs() {
        assert_eq!(epoch_ticks(0.0, 2.0), vec![0.0, 1.0, 2.0]);
        let t = epoch_ticks(-1.45, 52.45);
        assert_eq!(t, vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert!(epoch_ticks(0.95, 2.05).iter().all(|t| t.fract() == 0.0));
    }
}
