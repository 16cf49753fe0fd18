//! The IDX file format used by MNIST: a big-endian u32 magic (`0x00000803` for u8 images,
//! `0x00000801` for u8 labels), one big-endian u32 per dimension (count, then rows and cols
//! for images), then the u8 payload, row-major. Files may be gzip-compressed; that is
//! detected from the gzip magic `1f 8b`, not from the file name.
//!
//! Every malformed input is an [`Error::Data`] naming the file and what is wrong. Nothing
//! here allocates more than the file can hold: the payload is read through a reader that
//! stops one byte after what the header promises.
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::Images;
use crate::{Error, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// How far past the promised payload a gzip stream is read to reach its checksum.
const GZ_DRAIN_LIMIT: u64 = 1 << 30;

/// Initial buffer for a gzip payload is at most this many times the compressed size; the
/// buffer grows with what actually decompresses, never past what the header promises + 1.
const GZ_RESERVE_RATIO: u64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    fn magic(self) -> u32 {
        match self {
            Kind::Images => IMAGES_MAGIC,
            Kind::Labels => LABELS_MAGIC,
        }
    }
    fn header_len(self) -> usize {
        match self {
            Kind::Images => 16,
            Kind::Labels => 8,
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Kind::Images => "images",
            Kind::Labels => "labels",
        }
    }
    fn header_fields(self) -> &'static str {
        match self {
            Kind::Images => "magic, count, rows, cols",
            Kind::Labels => "magic, count",
        }
    }
    fn other(self) -> Kind {
        match self {
            Kind::Images => Kind::Labels,
            Kind::Labels => Kind::Images,
        }
    }
}

/// A validated header: dimensions and the exact payload size they imply.
#[derive(Clone, Copy, Debug)]
struct Header {
    count: usize,
    rows: usize,
    cols: usize,
    payload: usize,
}

fn data_err(path: &Path, detail: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Validate the header at the start of `bytes` (which may be shorter than a header, or
/// only the header, or the whole file).
fn parse_header(kind: Kind, bytes: &[u8], path: &Path) -> Result<Header> {
    check_magic(kind, bytes, path)?;
    let hl = kind.header_len();
    if bytes.len() < hl {
        return Err(truncated(kind, bytes, path, ""));
    }
    let count = be_u32(&bytes[4..8]) as usize;
    let (rows, cols) = match kind {
        Kind::Images => (
            be_u32(&bytes[8..12]) as usize,
            be_u32(&bytes[12..16]) as usize,
        ),
        Kind::Labels => (1, 1),
    };
    if count == 0 || rows == 0 || cols == 0 {
        let dims = match kind {
            Kind::Images => format!("count={count}, rows={rows}, cols={cols}"),
            Kind::Labels => format!("count={count}"),
        };
        return Err(data_err(
            path,
            format!("zero dimension in the header ({dims}); the file holds no data"),
        ));
    }
    let payload = count
        .checked_mul(rows)
        .and_then(|n| n.checked_mul(cols))
        .filter(|n| n.checked_add(hl).is_some())
        .ok_or_else(|| {
            data_err(
                path,
                format!(
                    "header dimensions overflow: {count} x {rows} x {cols} bytes does not fit \
                     in memory addresses"
                ),
            )
        })?;
    Ok(Header {
        count,
        rows,
        cols,
        payload,
    })
}

fn truncated(kind: Kind, bytes: &[u8], path: &Path, unit: &str) -> Error {
    data_err(
        path,
        format!(
            "header truncated: an IDX {} header is {} bytes ({}), found only {}{unit}",
            kind.noun(),
            kind.header_len(),
            kind.header_fields(),
            bytes.len()
        ),
    )
}

/// The first four bytes must be `kind`'s magic number; a gzip stream, the other kind's file
/// or another element type each get their own explanation.
fn check_magic(kind: Kind, bytes: &[u8], path: &Path) -> Result<()> {
    if bytes.starts_with(&GZIP_MAGIC) {
        return Err(data_err(
            path,
            format!(
                "this is gzip-compressed data, not a raw IDX {} file; decompress it first \
                 (read_{} does that automatically)",
                kind.noun(),
                kind.noun()
            ),
        ));
    }
    if bytes.len() < 4 {
        return Err(truncated(kind, bytes, path, " byte(s)"));
    }
    let magic = be_u32(&bytes[0..4]);
    if magic == kind.magic() {
        return Ok(());
    }
    let mut detail = format!(
        "wrong magic number: expected {:#010x} (IDX u8 {}), found {magic:#010x}",
        kind.magic(),
        kind.noun()
    );
    if magic == kind.other().magic() {
        detail.push_str(&format!(
            "; this is an IDX {} file. Were the {} and {} files swapped?",
            kind.other().noun(),
            kind.noun(),
            kind.other().noun()
        ));
    } else if magic >> 16 == 0 && (magic >> 8) & 0xff != 0x08 {
        detail.push_str(&format!(
            "; the element type is {:#04x}, only unsigned bytes (0x08) are supported",
            (magic >> 8) & 0xff
        ));
    } else if magic >> 16 != 0 {
        detail.push_str("; this is not an IDX file");
    }
    Err(data_err(path, detail))
}

fn describe(kind: Kind, h: &Header) -> String {
    match kind {
        Kind::Images => format!(
            "{} images of {}x{} = {} payload bytes",
            h.count, h.rows, h.cols, h.payload
        ),
        Kind::Labels => format!("{} labels = {} payload bytes", h.count, h.payload),
    }
}

/// Compare what the header promises with the payload that is there. `extra_known` is false
/// when the payload was read through a bounded reader, so only "more" is known.
fn check_payload(
    kind: Kind,
    h: &Header,
    found: usize,
    extra_known: bool,
    path: &Path,
) -> Result<()> {
    let hl = kind.header_len();
    if found < h.payload {
        return Err(data_err(
            path,
            format!(
                "truncated: the header says {}, expected {} bytes after the {hl}-byte header \
                 but found {found}",
                describe(kind, h),
                h.payload
            ),
        ));
    }
    if found > h.payload {
        let extra = if extra_known {
            format!("{} extra byte(s)", found - h.payload)
        } else {
            "more".to_string()
        };
        return Err(data_err(
            path,
            format!(
                "trailing garbage: the header says {}, expected exactly {} bytes after the \
                 {hl}-byte header, found {extra}",
                describe(kind, h),
                h.payload
            ),
        ));
    }
    Ok(())
}

/// Parse an in-memory, uncompressed IDX images file.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<Images> {
    let h = parse_header(Kind::Images, bytes, path)?;
    let payload = &bytes[Kind::Images.header_len()..];
    check_payload(Kind::Images, &h, payload.len(), true, path)?;
    Ok(Images {
        count: h.count,
        rows: h.rows,
        cols: h.cols,
        pixels: payload.to_vec(),
    })
}

/// Parse an in-memory, uncompressed IDX labels file.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let h = parse_header(Kind::Labels, bytes, path)?;
    let payload = &bytes[Kind::Labels.header_len()..];
    check_payload(Kind::Labels, &h, payload.len(), true, path)?;
    Ok(payload.to_vec())
}

/// Read an IDX images file, raw or gzip-compressed.
pub fn read_images(path: &Path) -> Result<Images> {
    let (h, pixels) = read_idx(Kind::Images, path)?;
    Ok(Images {
        count: h.count,
        rows: h.rows,
        cols: h.cols,
        pixels,
    })
}

/// Read an IDX labels file, raw or gzip-compressed.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    read_idx(Kind::Labels, path).map(|(_, labels)| labels)
}

/// Read into `buf` until it holds `want` bytes or the reader ends.
fn read_up_to(r: &mut dyn Read, want: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(want);
    r.take(want as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_idx(kind: Kind, path: &Path) -> Result<(Header, Vec<u8>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut buf = BufReader::new(file);
    // Sniff the gzip magic from the buffered start of the file (not from its name).
    let gz = buf
        .fill_buf()
        .map_err(|e| Error::io(path, e))?
        .starts_with(&GZIP_MAGIC);
    let io_err = |e: io::Error| -> Error {
        if gz {
            data_err(path, format!("corrupt or truncated gzip stream: {e}"))
        } else {
            Error::io(path, e)
        }
    };
    let (mut reader, reserve_cap): (Box<dyn Read>, u64) = if gz {
        (
            Box::new(MultiGzDecoder::new(buf)),
            file_len.saturating_mul(GZ_RESERVE_RATIO),
        )
    } else {
        (Box::new(buf), file_len)
    };
    let header = read_up_to(&mut reader, kind.header_len()).map_err(io_err)?;
    let h = parse_header(kind, &header, path)?;
    // At most payload + 1 bytes: the extra byte detects trailing garbage (and, for gzip,
    // makes the decoder reach and verify the stream's end).
    let limit = h.payload as u64 + 1;
    let reserve = limit.min(reserve_cap);
    let mut payload = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
    (&mut reader)
        .take(limit)
        .read_to_end(&mut payload)
        .map_err(io_err)?;
    if gz && payload.len() > h.payload {
        // More output than the header promised: either data after a good stream, or a
        // stream corrupted midway that inflates to more. Only the stream's own checksum at
        // its end tells which, so read on (bounded, storing nothing) to reach it.
        io::copy(&mut reader.take(GZ_DRAIN_LIMIT), &mut io::sink()).map_err(io_err)?;
    }
    let extra_known = !gz;
    if payload.len() > h.payload && extra_known {
        // A raw file's size tells exactly how much is extra.
        let found = usize::try_from(file_len)
            .unwrap_or(usize::MAX)
            .saturating_sub(kind.header_len());
        check_payload(kind, &h, found, true, path)?;
    }
    check_payload(kind, &h, payload.len(), false, path)?;
    Ok((h, payload))
}
