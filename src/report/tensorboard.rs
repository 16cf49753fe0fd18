//! TensorBoard event files, as Keras' `TensorBoard` callback leaves them: TFRecord framing
//! (length, masked CRC-32C of the length, payload, masked CRC-32C of the payload) around
//! `Event` protocol buffers holding scalars, PNG images and histograms.
//!
//! The messages are the few fields of TensorFlow's `event.proto` and `summary.proto` that
//! TensorBoard reads, declared with prost's derive; CRC-32C comes from the `crc32c` crate.
//! A file is appended to record by record (flushed after each batch), so a killed writer
//! leaves at most one partial record at the end, which TensorBoard's reader stops at.
use crate::{Error, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `tensorflow.Event`: a wall time, a step, and a summary (or, first in a file, the version).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`: tagged values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: one tag and its scalar, image or histogram.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(oneof = "Value", tags = "2, 4, 5")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "4")]
    Image(Image),
    #[prost(message, tag = "5")]
    Histo(Histogram),
}

/// `tensorflow.Summary.Image`: an encoded (PNG) picture.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grayscale, 3 RGB.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// `tensorflow.HistogramProto`: bucket `i` counts values in (`bucket_limit[i-1]`,
/// `bucket_limit[i]`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(double, tag = "1")]
    pub min: f64,
    #[prost(double, tag = "2")]
    pub max: f64,
    #[prost(double, tag = "3")]
    pub num: f64,
    #[prost(double, tag = "4")]
    pub sum: f64,
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

/// Buckets of a weight histogram.
const BUCKETS: usize = 30;

impl Histogram {
    /// `values` in `BUCKETS` equal buckets between their minimum and maximum (non-finite
    /// values left out).
    pub fn of(values: &[f32]) -> Self {
        let finite = values.iter().filter(|v| v.is_finite()).map(|&v| v as f64);
        let (mut min, mut max, mut num, mut sum, mut sum_squares) =
            (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0, 0.0);
        for v in finite.clone() {
            (min, max) = (min.min(v), max.max(v));
            num += 1.0;
            sum += v;
            sum_squares += v * v;
        }
        if num == 0.0 {
            (min, max) = (0.0, 0.0);
        }
        let width = (max - min) / BUCKETS as f64;
        let bucket_limit: Vec<f64> = (1..=BUCKETS).map(|k| min + width * k as f64).collect();
        let mut bucket = vec![0.0; BUCKETS];
        for v in finite {
            let k = if width > 0.0 {
                (((v - min) / width).ceil() as usize).clamp(1, BUCKETS) - 1
            } else {
                0
            };
            bucket[k] += 1.0;
        }
        Histogram {
            min,
            max,
            num,
            sum,
            sum_squares,
            bucket_limit,
            bucket,
        }
    }
}

/// TFRecord's masked CRC-32C.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the payload, its masked CRC.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

/// The complete, intact records at the start of `bytes` (a cut or damaged tail is where they
/// end).
pub fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 12) {
        let len_bytes = &header[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
        let len_crc = u32::from_le_bytes(header[8..12].try_into().unwrap_or([0; 4]));
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| (at + 12).checked_add(l));
        let body = end.and_then(|e| Some((bytes.get(at + 12..e)?, bytes.get(e..e + 4)?)));
        let Some((payload, crc)) = body.filter(|_| masked_crc(len_bytes) == len_crc) else {
            break;
        };
        if u32::from_le_bytes(crc.try_into().unwrap_or([0; 4])) != masked_crc(payload) {
            break;
        }
        out.push(payload);
        at += 12 + payload.len() + 4;
    }
    out
}

/// One run split's event file (`train/` or `validation/`), appended to as events come.
pub struct EventLog {
    file: File,
    path: PathBuf,
}

/// The event file in `dir` (TensorBoard reads every `*tfevents*` file of a folder).
fn event_file(dir: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("events.out.tfevents."))
        })
        .collect();
    found.sort();
    Ok(found.pop())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventLog {
    /// The log of folder `dir`: a new event file, or (a resumed run) its existing one with
    /// every event that `keep` refuses dropped first, so that no step is logged twice.
    pub fn open(dir: &Path, keep: Option<&dyn Fn(&Event) -> bool>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        if let (Some(path), Some(keep)) = (event_file(dir)?, keep) {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let kept: Vec<u8> = records(&bytes)
                .into_iter()
                .filter(|r| <Event as prost::Message>::decode(*r).is_ok_and(|e| keep(&e)))
                .flat_map(frame)
                .collect();
            crate::atomic::write_atomic(&path, &kept)?;
            let file = File::options()
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            return Ok(EventLog { file, path });
        }
        let secs = now() as u64;
        let path = dir.join(format!("events.out.tfevents.{secs}.wgsl-autoencoder.v2"));
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut log = EventLog { file, path };
        log.write(&[Event {
            wall_time: now(),
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        }])?;
        Ok(log)
    }

    /// Appends `events` and flushes them to the file.
    pub fn write(&mut self, events: &[Event]) -> Result<()> {
        let bytes: Vec<u8> = events
            .iter()
            .flat_map(|e| frame(&prost::Message::encode_to_vec(e)))
            .collect();
        self.file.write_all(&bytes).map_err(io(&self.path))?;
        self.file.flush().map_err(io(&self.path))
    }
}

/// An event holding `values` at `step`.
pub fn event(step: i64, values: Vec<(String, Value)>) -> Event {
    Event {
        wall_time: now(),
        step,
        file_version: None,
        summary: Some(Summary {
            value: values
                .into_iter()
                .map(|(tag, v)| SummaryValue {
                    tag,
                    value: Some(v),
                })
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TFRecord's masked CRC of the empty string and of "a", as TensorFlow computes them
    /// (crc32c("") = 0, crc32c("a") = 0xc1d04330).
    #[test]
    fn masked_crc_matches_tensorflow() {
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(
            masked_crc(b"a"),
            0xc1d0_4330u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn histogram_buckets_hold_every_value_once() {
        let h = Histogram::of(&[-1.0, 0.0, 0.5, 1.0, f32::NAN]);
        assert_eq!(h.num, 4.0);
        assert_eq!(h.bucket.iter().sum::<f64>(), 4.0);
        assert_eq!((h.min, h.max), (-1.0, 1.0));
        assert_eq!(h.bucket[0], 1.0);
        assert_eq!(h.bucket[BUCKETS - 1], 1.0);
    }
}
