//! MNIST in its IDX files: reading, validating and finding them.
//!
//! A copy ships in `assets/mnist/` (gzip-compressed, as distributed). Both the original names
//! (`train-images-idx3-ubyte`) and the common variant with a dot (`train-images.idx3-ubyte`)
//! are accepted, each with or without `.gz`.
use std::path::{Path, PathBuf};

use crate::shapes::Features;
use crate::{Error, Result};
use sha2::Digest;

mod idx;

pub use idx::{parse_images, parse_labels, read_images, read_labels};

/// File stems of the four MNIST files, in the original naming.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// `count` images of `rows` x `cols` unsigned bytes, each image row-major, images back to back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl Images {
    /// Bytes per image (`rows * cols`).
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// Images `range` as the models take them: each pixel u8 / 255, a value in [0, 1] (the
    /// batch gather does the same on the GPU).
    pub fn values(&self, range: std::ops::Range<usize>) -> Vec<f32> {
        let n = self.image_len();
        self.pixels[range.start * n..range.end * n]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect()
    }

    /// The pixels of image `i`, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.image_len();
        let start = i.checked_mul(n)?;
        self.pixels.get(start..start.checked_add(n)?)
    }
}

/// Images with their labels (same count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub images: Images,
    pub labels: Vec<u8>,
}

/// The training and test splits, read from `dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub dir: PathBuf,
    pub train: Split,
    pub test: Split,
}

/// The other common spelling of an MNIST file stem: `train-images-idx3-ubyte` <->
/// `train-images.idx3-ubyte`.
fn alternate_stem(stem: &str) -> Option<String> {
    if let Some(i) = stem.rfind("-idx") {
        Some(format!("{}.{}", &stem[..i], &stem[i + 1..]))
    } else {
        stem.rfind(".idx")
            .map(|i| format!("{}-{}", &stem[..i], &stem[i + 1..]))
    }
}

/// Find the file for `stem` (e.g. `"train-images-idx3-ubyte"`) in `dir`, under either naming,
/// raw or `.gz`.
pub fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let mut stems = vec![stem.to_string()];
    stems.extend(alternate_stem(stem));
    let names: Vec<String> = stems
        .iter()
        .flat_map(|s| [s.clone(), format!("{s}.gz")])
        .collect();
    for name in &names {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let why = if dir.is_dir() {
        "no such file"
    } else if dir.exists() {
        "not a folder"
    } else {
        "folder not found"
    };
    Err(Error::Data {
        path: dir.to_path_buf(),
        detail: format!(
            "{why}: no MNIST file for {stem} (tried {}); pass --data DIR with the four MNIST \
             IDX files ({TRAIN_IMAGES}, {TRAIN_LABELS}, {TEST_IMAGES}, {TEST_LABELS}, \
             optionally .gz)",
            names.join(", ")
        ),
    })
}

/// A damaged file's error, with what to do about it.
fn with_fix(e: Error) -> Error {
    match e {
        Error::Data { path, detail } => Error::Data {
            path,
            detail: format!(
                "{detail}. Replace it with an intact copy (assets/mnist/SHA256SUMS lists the \
                 originals), or pass --data DIR with four good IDX files"
            ),
        },
        e => e,
    }
}

fn load_split(dir: &Path, images_stem: &str, labels_stem: &str, name: &str) -> Result<Split> {
    let images_path = find_file(dir, images_stem)?;
    let labels_path = find_file(dir, labels_stem)?;
    let images = read_images(&images_path).map_err(with_fix)?;
    let labels = read_labels(&labels_path).map_err(with_fix)?;
    if images.count != labels.len() {
        return Err(Error::Data {
            path: labels_path.clone(),
            detail: format!(
                "{name} split: {} holds {} images but {} holds {} labels; the counts must agree",
                images_path.display(),
                images.count,
                labels_path.display(),
                labels.len()
            ),
        });
    }
    Ok(Split { images, labels })
}

/// Load all four MNIST files from `dir` and check that they fit together.
pub fn load_dir(dir: &Path) -> Result<Dataset> {
    let train = load_split(dir, TRAIN_IMAGES, TRAIN_LABELS, "train")?;
    let test = load_split(dir, TEST_IMAGES, TEST_LABELS, "test")?;
    let (a, b) = (&train.images, &test.images);
    if (a.rows, a.cols) != (b.rows, b.cols) {
        return Err(Error::Data {
            path: dir.to_path_buf(),
            detail: format!(
                "train images are {}x{} but test images are {}x{}; they must be the same size",
                a.rows, a.cols, b.rows, b.cols
            ),
        });
    }
    Ok(Dataset {
        dir: dir.to_path_buf(),
        train,
        test,
    })
}

/// [`load_dir`], keeping only the first `limit` training images.
pub fn load(dir: &Path, limit: Option<usize>) -> Result<Dataset> {
    let mut d = load_dir(dir)?;
    if let Some(n) = limit {
        d.train.truncate(n);
    }
    Ok(d)
}

impl Split {
    /// Keeps the first `n` images (all of them when there are fewer).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.images.count);
        self.images.pixels.truncate(n * self.images.image_len());
        self.images.count = n;
        self.labels.truncate(n);
    }
}

impl Dataset {
    /// The shape of one image as the models take it: grey, one channel.
    pub fn features(&self) -> Features {
        Features {
            h: self.train.images.rows as u32,
            w: self.train.images.cols as u32,
            c: 1,
        }
    }
}

/// One of a dataset's files as a run recorded it: a resumed run refuses another file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Where a run's data came from and what exactly its four files were.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataRecord {
    pub dir: PathBuf,
    pub files: Vec<FileRecord>,
}

impl DataRecord {
    /// The four MNIST files of `dir`: names, sizes and SHA-256 of the bytes on disk.
    pub fn of(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        for stem in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
            let path = find_file(dir, stem)?;
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let digest = sha2::Sha256::digest(&bytes);
            files.push(FileRecord {
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes: bytes.len() as u64,
                sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            });
        }
        Ok(DataRecord {
            // Absolute, so that a resume from another working folder finds the files.
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
            files,
        })
    }

    /// Fails, naming the first file that differs, unless `other` holds the same files.
    pub fn check_same(&self, other: &DataRecord) -> Result<()> {
        if self.files.len() != other.files.len() {
            return Err(Error::Data {
                path: other.dir.clone(),
                detail: format!(
                    "the run recorded {} data files, this folder has {}; pass --data with the \
                     run's own files",
                    self.files.len(),
                    other.files.len()
                ),
            });
        }
        let short = |s: &str| s.get(..16).unwrap_or(s).to_string();
        for (want, got) in self.files.iter().zip(&other.files) {
            if want.bytes != got.bytes || want.sha256 != got.sha256 {
                return Err(Error::Data {
                    path: other.dir.join(&got.name),
                    detail: format!(
                        "this is not the file the run trained on ({} bytes, SHA-256 {}; the \
                         run had {} of {} bytes, SHA-256 {}, in {}). Pass --data with the \
                         run's own files",
                        got.bytes,
                        short(&got.sha256),
                        want.name,
                        want.bytes,
                        short(&want.sha256),
                        self.dir.display()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// `assets/mnist` when it exists relative to the current folder, else the copy next to this
/// crate's manifest.
pub fn default_dir() -> PathBuf {
    let local = Path::new("assets/mnist");
    if local.is_dir() {
        local.to_path_buf()
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/mnist"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternate_stems() {
        assert_eq!(
            alternate_stem("train-images-idx3-ubyte").as_deref(),
            Some("train-images.idx3-ubyte")
        );
        assert_eq!(
            alternate_stem("t10k-labels.idx1-ubyte").as_deref(),
            Some("t10k-labels-idx1-ubyte")
        );
        assert_eq!(alternate_stem("plain"), None);
    }
}
