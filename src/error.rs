//! The library's typed errors. The binary adds context with anyhow; nothing here panics on
//! anything a user controls.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter matches --adapter {choice:?}. Adapters seen:\n{seen}\nTry --adapter auto, or --adapter cpu for a software (lavapipe/llvmpipe) adapter.")]
    NoAdapter { choice: String, seen: String },
    #[error("could not open a device on {adapter}: {reason}")]
    RequestDevice { adapter: String, reason: String },
    #[error("{what} needs {needed} but the adapter {adapter} allows {allowed} ({limit}). {fix}")]
    Limit {
        what: String,
        limit: &'static str,
        needed: u64,
        allowed: u64,
        adapter: String,
        fix: String,
    },
    #[error("shape error in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("GPU error on {adapter}: {detail}")]
    Gpu { adapter: String, detail: String },
    #[error("the GPU device was lost ({adapter}): {detail}")]
    DeviceLost { adapter: String, detail: String },
    #[error("{path}: {detail}")]
    Data { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {detail}")]
    Checkpoint { path: PathBuf, detail: String },
    #[error("invalid setting: {0}")]
    Config(String),
    /// A model description this program cannot train as written.
    #[error("{file}: {detail}")]
    Model { file: String, detail: String },
    #[error("the loss became {value} at epoch {epoch}, step {step}; training stopped. {kept}")]
    NonFiniteLoss {
        value: f32,
        epoch: usize,
        step: usize,
        kept: String,
    },
    #[error("{0}")]
    Image(String),
    /// A file of the run could not be written (a full disk): the run stopped there. `kept`
    /// names the last checkpoint that did land.
    #[error("{detail}. Training stopped at the first failed write. {kept}")]
    WriteFailed { detail: String, kept: String },
    /// A signal (Ctrl-C, SIGTERM) stopped the run; `detail` says what was saved, `resume`
    /// is the run folder to resume (None: nothing to resume). The binary exits with
    /// 128 + `signal`.
    #[error("stopped by {}: {detail}", crate::interrupt::name(*.signal))]
    Interrupted {
        signal: i32,
        detail: String,
        resume: Option<PathBuf>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
