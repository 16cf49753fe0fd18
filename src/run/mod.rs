//! The `train` command as a library call: settings, data, device, run folder, the epoch loop,
//! checkpoints, stop requests, and the writer thread that puts every file on disk.
//!
//! Checkpoints: `checkpoint.safetensors` at the end of every epoch and, with
//! `checkpoint_every`, every N steps inside epochs; `best.safetensors` at the end of the epoch
//! with the lowest val_loss. A checkpoint taken inside an epoch records the step and the
//! losses of the steps done, and a resumed run continues from that very step (the epoch's
//! permutation is a function of the seed and the epoch), so that its metrics equal an
//! uninterrupted run's bit for bit. A stop request (Ctrl-C, SIGTERM: [`Control::stop`]) is
//! honoured between two steps: the steps already queued finish, a checkpoint is written,
//! and [`Error::Interrupted`](crate::Error::Interrupted) says where the run can continue.
mod folder;
mod session;
mod setup;
mod tensorboard;
mod writer;

pub use folder::{checkpoint_path, BEST, CHECKPOINT};
pub use setup::TrainRequest;

use crate::gpu::DeviceChoice;
use crate::train::EpochMetrics;
use crate::Result;
use std::path::PathBuf;
use std::sync::atomic::AtomicI32;

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The settings asked for; what is left out is the model's default (a new run) or the
    /// checkpoint's (a resumed one).
    pub request: TrainRequest,
    /// The dataset's folder; by default the resumed run's (as its checkpoint records it), or
    /// the shipped MNIST.
    pub data_dir: Option<PathBuf>,
    pub out_dir: Option<PathBuf>,
    /// Empty a non-empty `out_dir` before the run (otherwise it is refused).
    pub overwrite: bool,
    /// Write TensorBoard event files into the run folder (`train/`, `validation/`).
    pub tensorboard: bool,
    pub device: DeviceChoice,
    pub resume: Option<PathBuf>,
}

/// How a run is stopped or paused from outside: the CLI's signal handler, tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Control<'a> {
    /// Polled between steps: 0 goes on; a signal's number stops the run after the steps
    /// already queued, with a checkpoint, as [`crate::Error::Interrupted`].
    pub stop: Option<&'a AtomicI32>,
    /// Also write `checkpoint.safetensors` every N training steps (Adam's step count, over
    /// the whole run) inside epochs.
    pub checkpoint_every: Option<usize>,
    /// After the run (its last checkpoint written), profile 20 training steps and write the
    /// table to `profile.txt` and a Chrome trace to `trace.json` in the run folder.
    pub profile: bool,
    /// Fault injection for tests: destroy the device when the trainer asks whether to pause
    /// before the step that follows this many Adam steps. At more than one step per submit
    /// the earlier steps of that execution are not submitted yet, and are lost with it.
    #[doc(hidden)]
    pub lose_device_after: Option<u64>,
}

/// What the caller (the CLI) is told as training goes.
#[derive(Clone, Debug)]
pub enum Event {
    Started {
        adapter: String,
        /// The kernel set the run uses (`gpu` or `cpu`).
        kernels: String,
        /// The work folded into fewer dispatches (`gpu::FoldSet`: none, all, or a list).
        folds: String,
        /// How they were chosen (`gpu::FoldsBy::describe`).
        folds_by: String,
        /// Training steps per submit (`--steps-per-execution`).
        steps_per_execution: usize,
        run_dir: PathBuf,
        model: String,
        train_count: usize,
        test_count: usize,
        steps: usize,
        epochs: usize,
        first_epoch: usize,
        /// Steps of `first_epoch` already done (a checkpoint taken inside it).
        first_step: usize,
    },
    Progress {
        epoch: usize,
        done: usize,
        steps: usize,
        images_per_s: f64,
        /// The epoch's training loss so far (None until the first reading lands).
        running_loss: Option<f64>,
    },
    Epoch {
        metrics: EpochMetrics,
        epochs: usize,
    },
    Finished {
        run_dir: PathBuf,
    },
}

/// Trains as configured and leaves the run folder complete. `on_event` is called from this
/// thread; it should only print.
pub fn train(opts: &RunOptions, on_event: &mut dyn FnMut(Event)) -> Result<PathBuf> {
    train_with(opts, &Control::default(), on_event)
}

/// [`train`], stoppable and with mid-epoch checkpoints as `ctl` says.
pub fn train_with(
    opts: &RunOptions,
    ctl: &Control,
    on_event: &mut dyn FnMut(Event),
) -> Result<PathBuf> {
    let setup = setup::Setup::prepare(opts, ctl)?;
    let (gpu, mut trainer) = setup.trainer(&opts.device)?;
    // Only now, when nothing about the settings can fail any more: a run that cannot start
    // leaves no folder behind.
    let dir = setup.run_dir(opts)?;
    let mut run = session::Session::start(
        setup,
        ctl,
        &gpu,
        &mut trainer,
        dir,
        opts.tensorboard,
        on_event,
    )?;
    let result = run.train(&gpu, &mut trainer, on_event);
    run.close(result, on_event)
}
