//! Pictures: digit grids (reconstructions, codes, decoded samples) and the loss curves.
//! Every picture is encoded to PNG in memory and written with [`crate::atomic::write_atomic`],
//! so a reader never sees half a file.
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::{Error, Result};

mod grid;
mod plot;
pub mod profile;

pub use grid::{codes_png, grid_png, reconstructions_png, GAP, SCALE};
pub use plot::{loss_png, LOSS_PLOT_SIZE};

/// Encode `pixels` (`width * height` samples of `color`) as PNG and write it atomically.
fn write_png(
    path: &Path,
    pixels: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
) -> Result<()> {
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(pixels, width, height, color)
        .map_err(|e| Error::Image(format!("{}: encoding the PNG: {e}", path.display())))?;
    crate::atomic::write_atomic(path, &png)
}
