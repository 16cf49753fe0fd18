//! Grids of small grayscale pictures, as in the Keras blog's figures: values in [0, 1] drawn
//! with matplotlib's gray colormap (0 black, 1 white), each picture scaled up [`SCALE`] times
//! (nearest neighbour), [`GAP`] white pixels between cells.
use std::path::Path;

use image::ExtendedColorType;

use crate::{Error, Result};

/// Nearest-neighbour scale factor for each picture.
pub const SCALE: usize = 4;
/// White pixels between neighbouring cells (none around the outside).
pub const GAP: usize = 2;
/// The gap colour: white, like a matplotlib figure's background.
const GAP_VALUE: u8 = 255;
/// Refuse pictures above this many pixels (a mistaken count, not a real figure).
const MAX_PIXELS: usize = 1 << 28;

/// A grayscale canvas of `cols` x `rows` cells of `cell_h` x `cell_w` source pixels.
struct Canvas {
    width: usize,
    height: usize,
    cell_h: usize,
    cell_w: usize,
    pixels: Vec<u8>,
}

fn bad(path: &Path, what: &str, detail: String) -> Error {
    Error::Image(format!("{}: cannot draw {what}: {detail}", path.display()))
}

/// `cells * cell + (cells - 1) * GAP` output pixels along one axis, checked.
fn extent(cells: usize, cell: usize) -> Option<usize> {
    cells
        .checked_mul(cell)?
        .checked_mul(SCALE)?
        .checked_add(cells.checked_sub(1)?.checked_mul(GAP)?)
}

impl Canvas {
    fn new(
        path: &Path,
        what: &str,
        cols: usize,
        rows: usize,
        cell_h: usize,
        cell_w: usize,
    ) -> Result<Canvas> {
        let size = extent(cols, cell_w)
            .zip(extent(rows, cell_h))
            .filter(|&(w, h)| {
                w > 0
                    && h > 0
                    && u32::try_from(w).is_ok()
                    && u32::try_from(h).is_ok()
                    && w.checked_mul(h).is_some_and(|n| n <= MAX_PIXELS)
            });
        let (width, height) = size.ok_or_else(|| {
            bad(
                path,
                what,
                format!(
                    "{cols} x {rows} cells of {cell_h}x{cell_w} pixels make an empty or too \
                     large picture (at most {MAX_PIXELS} pixels)"
                ),
            )
        })?;
        Ok(Canvas {
            width,
            height,
            cell_h,
            cell_w,
            pixels: vec![GAP_VALUE; width * height],
        })
    }

    /// Fill cell (`col`, `row`) from `value(y, x)` for source pixel (y, x), each scaled up.
    fn draw_cell(&mut self, col: usize, row: usize, value: impl Fn(usize, usize) -> u8) {
        let x0 = col * (self.cell_w * SCALE + GAP);
        let y0 = row * (self.cell_h * SCALE + GAP);
        for y in 0..self.cell_h * SCALE {
            let line = (y0 + y) * self.width + x0;
            for x in 0..self.cell_w * SCALE {
                self.pixels[line + x] = value(y / SCALE, x / SCALE);
            }
        }
    }

    fn write(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, &self.png(path)?)
    }

    /// The canvas as PNG bytes, with its width and height.
    fn png(&self, path: &Path) -> Result<Vec<u8>> {
        // The sizes were checked to fit u32 in `new`.
        super::encode_png(
            path,
            &self.pixels,
            self.width as u32,
            self.height as u32,
            ExtendedColorType::L8,
        )
    }
}

/// A value in [0, 1] as a gray level; out-of-range values are clamped, NaN is black.
fn gray(v: f32) -> u8 {
    // `as` saturates and maps NaN to 0.
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Check that `data` holds at least `count` pictures of `per` values each.
fn check_len(
    path: &Path,
    what: &str,
    name: &str,
    data: &[f32],
    count: usize,
    per: usize,
) -> Result<()> {
    if count == 0 || per == 0 {
        return Err(bad(
            path,
            what,
            format!("nothing to draw ({count} pictures of {per} values)"),
        ));
    }
    match count.checked_mul(per) {
        Some(n) if n <= data.len() => Ok(()),
        _ => Err(bad(
            path,
            what,
            format!(
                "{name}: {} values given, fewer than {count} pictures of {per}",
                data.len()
            ),
        )),
    }
}

/// The blog's reconstruction figure: the first `count` digits of `originals` in the top row,
/// the same digits from `recon` below. Both hold `h * w` values in [0, 1] per digit.
/// The picture is `count * w * SCALE + (count - 1) * GAP` wide and `2 * h * SCALE + GAP` high.
pub fn reconstructions_png(
    path: &Path,
    originals: &[f32],
    recon: &[f32],
    count: usize,
    h: usize,
    w: usize,
) -> Result<()> {
    let (png, _, _) = reconstructions_png_bytes(path, originals, recon, count, h, w)?;
    crate::atomic::write_atomic(path, &png)
}

/// [`reconstructions_png`] as PNG bytes, with the picture's width and height; `path` names
/// it in an error.
pub fn reconstructions_png_bytes(
    path: &Path,
    originals: &[f32],
    recon: &[f32],
    count: usize,
    h: usize,
    w: usize,
) -> Result<(Vec<u8>, u32, u32)> {
    let what = "the reconstructions";
    let per = h.saturating_mul(w);
    check_len(path, what, "originals", originals, count, per)?;
    check_len(path, what, "reconstructions", recon, count, per)?;
    let mut c = Canvas::new(path, what, count, 2, h, w)?;
    for (row, data) in [originals, recon].into_iter().enumerate() {
        for i in 0..count {
            let img = &data[i * per..(i + 1) * per];
            c.draw_cell(i, row, |y, x| gray(img[y * w + x]));
        }
    }
    Ok((c.png(path)?, c.width as u32, c.height as u32))
}

/// The blog's code figure for the convolutional model: `count` codes in NHWC layout
/// (`[count, code_h, code_w, channels]`), each reshaped to `(code_h, code_w * channels)` and
/// transposed, giving a `code_w * channels` high, `code_h` wide picture, normalised by its own
/// minimum and maximum, all in one row.
pub fn codes_png(
    path: &Path,
    codes: &[f32],
    count: usize,
    code_h: usize,
    code_w: usize,
    channels: usize,
) -> Result<()> {
    let what = "the codes";
    let row_len = code_w.saturating_mul(channels);
    let per = code_h.saturating_mul(row_len);
    check_len(path, what, "codes", codes, count, per)?;
    // After the transpose: `row_len` rows of `code_h` columns.
    let mut c = Canvas::new(path, what, count, 1, row_len, code_h)?;
    for i in 0..count {
        let code = &codes[i * per..(i + 1) * per];
        let (lo, hi) = code
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let range = hi - lo;
        let norm = |v: f32| {
            if range > 0.0 && range.is_finite() {
                gray((v - lo) / range)
            } else {
                0
            }
        };
        // Transposed (code_h, row_len) matrix: picture pixel (y, x) is element [x, y].
        c.draw_cell(i, 0, |y, x| norm(code[x * row_len + y]));
    }
    c.write(path)
}

/// `count` pictures of `h * w` values in [0, 1], `cols` per row (fewer when `count < cols`),
/// rows filled left to right; unused cells of the last row stay white.
pub fn grid_png(
    path: &Path,
    images: &[f32],
    count: usize,
    h: usize,
    w: usize,
    cols: usize,
) -> Result<()> {
    let what = "the grid";
    if cols == 0 {
        return Err(bad(path, what, "zero columns".to_string()));
    }
    let per = h.saturating_mul(w);
    check_len(path, what, "images", images, count, per)?;
    let cols = cols.min(count);
    let rows = count.div_ceil(cols);
    let mut c = Canvas::new(path, what, cols, rows, h, w)?;
    for i in 0..count {
        let img = &images[i * per..(i + 1) * per];
        c.draw_cell(i % cols, i / cols, |y, x| gray(img[y * w + x]));
    }
    c.write(path)
}
