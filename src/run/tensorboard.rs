//! The run's TensorBoard log, laid out as Keras' `TensorBoard(log_dir=run)` callback lays it
//! out: `train/` and `validation/` folders, each with one event file, and the scalar
//! `epoch_loss` at step `epoch - 1` in both, so that `tensorboard --logdir runs` draws both
//! curves on one chart and compares runs side by side. The train log also holds the running
//! loss (`batch_loss`, at Adam's step count), the learning rate, images per second, the
//! reconstructions grid as an image, and a histogram of every kernel and bias, each epoch.
//! Written by the writer thread; a resumed run drops what its checkpoint does not cover, then
//! appends, so no step is logged twice.
use crate::report::reconstructions_png_bytes;
use crate::report::tensorboard::{event, Event, EventLog, Histogram, Image, Value};
use crate::Result;
use std::path::Path;

/// Where a resumed run's logs stop being history: the checkpoint's position.
#[derive(Clone, Copy, Debug)]
pub struct Resume {
    /// Epochs completed.
    pub epochs: usize,
    /// Adam steps taken.
    pub iterations: u64,
}

/// The first test digits and their reconstructions after an epoch (`count` of `h` x `w`).
pub struct Reconstructions {
    pub originals: Vec<f32>,
    pub reconstructions: Vec<f32>,
    pub count: usize,
    pub h: usize,
    pub w: usize,
}

/// What an epoch adds to the logs.
pub struct EpochRecord {
    /// 1-based, as printed; logged at step `epoch - 1`, as Keras does.
    pub epoch: usize,
    pub loss: f64,
    pub val_loss: f64,
    pub learning_rate: f32,
    pub images_per_s: f64,
    pub reconstructions: Reconstructions,
    /// Every parameter tensor by its Keras name (`conv2d/kernel`, ...).
    pub weights: Vec<(String, Vec<f32>)>,
}

pub enum Record {
    /// The epoch's running training loss after Adam step `iteration`.
    Batch {
        iteration: u64,
        loss: f64,
    },
    Epoch(Box<EpochRecord>),
}

pub struct Logs {
    train: EventLog,
    validation: EventLog,
}

/// Tags logged per Adam step rather than per epoch.
const BATCH_LOSS: &str = "batch_loss";

impl Logs {
    /// Opens `run_dir/train` and `run_dir/validation`, cut back to `resume` when resuming.
    pub fn open(run_dir: &Path, resume: Option<Resume>) -> Result<Self> {
        let keep = resume.map(|r| move |e: &Event| covered(e, r));
        let keep = keep.as_ref().map(|k| k as &dyn Fn(&Event) -> bool);
        Ok(Logs {
            train: EventLog::open(&run_dir.join("train"), keep)?,
            validation: EventLog::open(&run_dir.join("validation"), keep)?,
        })
    }

    pub fn write(&mut self, record: Record) -> Result<()> {
        match record {
            Record::Batch { iteration, loss } => self.train.write(&[event(
                iteration as i64,
                vec![(BATCH_LOSS.into(), Value::SimpleValue(loss as f32))],
            )]),
            Record::Epoch(e) => self.epoch(&e),
        }
    }

    fn epoch(&mut self, e: &EpochRecord) -> Result<()> {
        let step = e.epoch as i64 - 1;
        let scalar = |tag: &str, v: f64| (tag.to_string(), Value::SimpleValue(v as f32));
        let mut train = vec![
            scalar("epoch_loss", e.loss),
            scalar("epoch_learning_rate", e.learning_rate as f64),
            scalar("epoch_images_per_second", e.images_per_s),
            (
                "reconstructions".into(),
                Value::Image(image(&e.reconstructions)?),
            ),
        ];
        for (name, values) in &e.weights {
            train.push((name.clone(), Value::Histo(Histogram::of(values))));
        }
        self.train.write(&[event(step, train)])?;
        self.validation
            .write(&[event(step, vec![scalar("epoch_loss", e.val_loss)])])
    }
}

/// Whether event `e` lies within what the resumed checkpoint covers.
fn covered(e: &Event, r: Resume) -> bool {
    let Some(summary) = &e.summary else {
        return true;
    };
    let per_step = summary.value.iter().any(|v| v.tag == BATCH_LOSS);
    if per_step {
        e.step <= r.iterations as i64
    } else {
        e.step < r.epochs as i64
    }
}

impl Reconstructions {
    /// The blog's figure (digits over their reconstructions) as PNG bytes, with its width and
    /// height; `path` names it in an error.
    pub fn png(&self, path: &Path) -> Result<(Vec<u8>, u32, u32)> {
        reconstructions_png_bytes(
            path,
            &self.originals,
            &self.reconstructions,
            self.count,
            self.h,
            self.w,
        )
    }
}

fn image(r: &Reconstructions) -> Result<Image> {
    let (png, w, h) = r.png(Path::new("reconstructions (TensorBoard)"))?;
    Ok(Image {
        height: h as i32,
        width: w as i32,
        colorspace: 1,
        encoded_image_string: png,
    })
}
