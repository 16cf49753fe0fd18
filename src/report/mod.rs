//! Pictures: digit grids (reconstructions, codes, decoded samples) and the loss curves.
//! Every picture is encoded to PNG in memory and written with [`crate::atomic::write_atomic`],
//! so a reader never sees half a file.
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::{Error, Result};

mod grid;
mod latent;
pub mod pca;
mod plot;
pub mod profile;

pub mod tensorboard;

pub use grid::{codes_png, grid_png, reconstructions_png, reconstructions_png_bytes, GAP, SCALE};
pub use latent::{latent_png, LATENT_PLOT_SIZE};
pub use plot::{loss_png, LOSS_PLOT_SIZE};

/// Encode `pixels` (`width * height` samples of `color`) as PNG and write it atomically.
fn write_png(
    path: &Path,
    pixels: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
) -> Result<()> {
    crate::atomic::write_atomic(path, &encode_png(path, pixels, width, height, color)?)
}

/// `pixels` as PNG bytes; `path` names the picture in an error.
fn encode_png(
    path: &Path,
    pixels: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
) -> Result<Vec<u8>> {
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(pixels, width, height, color)
        .map_err(|e| Error::Image(format!("{}: encoding the PNG: {e}", path.display())))?;
    Ok(png)
}
