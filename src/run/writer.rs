//! The writer thread, fed through flume: metrics, checkpoints and pictures land on disk in
//! the order they were sent, atomically, while the GPU trains on. The first failed write is
//! kept, and the training loop asks for it before it goes on, so a full disk stops the run at
//! once with the last checkpoint that did land.
use super::tensorboard;
use crate::checkpoint::{self, Checkpoint};
use crate::train::EpochMetrics;
use crate::{atomic, report, Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The pixels of the run's pictures, computed on the GPU; encoded to PNG by the writer.
pub struct Pictures {
    /// The first test images and their reconstructions.
    pub first: tensorboard::Reconstructions,
    /// The codes of every test image (`code_len` values each) and their labels: latent.png.
    pub test_codes: Vec<f32>,
    pub test_labels: Vec<u8>,
    pub code_len: usize,
    /// The code's shape (h, w, c) where the code is an image (the conv model): codes.png
    /// draws the first test images' codes.
    pub code_image: Option<[usize; 3]>,
}

pub enum Job {
    /// Where the run's TensorBoard logs go (cut back to a resumed checkpoint's position); the
    /// files are made with the first record, so a run that logs nothing leaves none.
    TensorboardOpen(PathBuf, Option<tensorboard::Resume>),
    Tensorboard(tensorboard::Record),
    Text(PathBuf, String),
    Checkpoint(PathBuf, Box<Checkpoint>),
    LossPlot(PathBuf, Vec<EpochMetrics>),
    Pictures(PathBuf, Box<Pictures>),
    /// Answers once every job queued before it is done (`Writer::settle`).
    Settled(flume::Sender<()>),
}

/// What the writer has done so far.
#[derive(Default)]
struct Status {
    /// The last checkpoint that landed, with its position (epochs done, steps into the next).
    landed: Option<(PathBuf, usize, usize)>,
    /// The first write that failed.
    failed: Option<Error>,
}

pub struct Writer {
    /// Set at the first failed write, for the training loop to poll between steps.
    pub failed: Arc<AtomicBool>,
    tx: flume::Sender<Job>,
    handle: Option<JoinHandle<()>>,
    status: Arc<Mutex<Status>>,
}

impl Writer {
    pub fn start() -> Self {
        let (tx, rx) = flume::unbounded::<Job>();
        let status = Arc::new(Mutex::new(Status::default()));
        let shared = status.clone();
        let failed_flag = Arc::new(AtomicBool::new(false));
        let flag = failed_flag.clone();
        let handle = std::thread::spawn(move || {
            let mut failed = false;
            let mut logs = Logs::None;
            for job in rx.iter() {
                if let Job::Settled(done) = job {
                    let _ = done.send(());
                    continue;
                }
                // After a failed write nothing more is written: the folder keeps a
                // consistent state (no metrics past the last checkpoint that landed).
                if failed {
                    continue;
                }
                let landed = match &job {
                    Job::Checkpoint(p, ck) => Some((p.clone(), ck.state.epoch, ck.step)),
                    _ => None,
                };
                // A panic in a writer (a picture's code, say) is a failed write too: the
                // run must learn of it at its next step, not an epoch later.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    write(job, &mut logs)
                }))
                .unwrap_or_else(|_| Err(Error::Image("writing a file of the run panicked".into())));
                if let Ok(mut s) = shared.lock() {
                    match r {
                        Ok(()) => s.landed = landed.or(s.landed.take()),
                        Err(e) => {
                            failed = true;
                            flag.store(true, Ordering::SeqCst);
                            s.failed.get_or_insert(e);
                        }
                    }
                }
            }
        });
        Writer {
            failed: failed_flag,
            tx,
            handle: Some(handle),
            status,
        }
    }

    /// Queues a job; fails if an earlier write failed (the run must stop there).
    pub fn send(&self, job: Job) -> Result<()> {
        self.check()?;
        self.tx
            .send(job)
            .map_err(|_| Error::Config("the writer thread stopped".into()))
    }

    /// The first failed write so far, as an error (every later call fails too).
    pub fn check(&self) -> Result<()> {
        let first = self.status.lock().ok().and_then(|mut s| s.failed.take());
        match first {
            Some(e) => Err(e),
            None if self.failed.load(Ordering::SeqCst) => Err(Error::Image(
                "an earlier write of the run failed (reported above)".into(),
            )),
            None => Ok(()),
        }
    }

    /// Waits until every write queued so far is done; the first that failed, if any. The
    /// training loop settles the last epoch's writes before it reports the next epoch, so a
    /// failed write stops the run one epoch after it at most, however far the writer lags.
    pub fn settle(&self) -> Result<()> {
        let (done, settled) = flume::bounded(1);
        self.send(Job::Settled(done))?;
        settled
            .recv()
            .map_err(|_| Error::Config("the writer thread stopped".into()))?;
        self.check()
    }

    /// The last checkpoint that landed: its path, epochs done and steps into the next.
    pub fn landed(&self) -> Option<(PathBuf, usize, usize)> {
        self.status.lock().ok().and_then(|s| s.landed.clone())
    }

    /// Waits for every queued write; the first that failed, if any.
    pub fn finish(&mut self) -> Result<()> {
        let (tx, _) = flume::unbounded();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(h) = self.handle.take() {
            h.join()
                .map_err(|_| Error::Config("the writer thread panicked".into()))?;
        }
        self.check()
    }
}

/// The TensorBoard logs: where they go until the first record opens them.
enum Logs {
    None,
    Pending(PathBuf, Option<tensorboard::Resume>),
    Open(tensorboard::Logs),
}

fn write(job: Job, logs: &mut Logs) -> Result<()> {
    match job {
        Job::TensorboardOpen(dir, resume) => {
            *logs = Logs::Pending(dir, resume);
            Ok(())
        }
        Job::Tensorboard(record) => {
            if let Logs::Pending(dir, resume) = logs {
                *logs = Logs::Open(tensorboard::Logs::open(dir, *resume)?);
            }
            match logs {
                Logs::Open(l) => l.write(record),
                _ => Ok(()),
            }
        }
        Job::Text(p, s) => atomic::write_atomic(&p, s.as_bytes()),
        Job::Checkpoint(p, ck) => checkpoint::save(&p, &ck),
        Job::LossPlot(p, h) => {
            let rows: Vec<(usize, f64, f64)> =
                h.iter().map(|m| (m.epoch, m.loss, m.val_loss)).collect();
            report::loss_png(&p, &rows)
        }
        Job::Pictures(dir, pics) => write_pictures(&dir, &pics),
        Job::Settled(done) => {
            let _ = done.send(());
            Ok(())
        }
    }
}

/// `reconstructions.png` (the first test digits over their reconstructions), `latent.png`
/// (the test codes on their first two principal axes) and, where the code is an image,
/// `codes.png`.
fn write_pictures(dir: &std::path::Path, p: &Pictures) -> Result<()> {
    let r = &p.first;
    let path = dir.join("reconstructions.png");
    atomic::write_atomic(&path, &r.png(&path)?.0)?;
    if let Some([h, w, c]) = p.code_image {
        let first = p.test_codes.get(..r.count * p.code_len).unwrap_or(&[]);
        report::codes_png(&dir.join("codes.png"), first, r.count, h, w, c)?;
    }
    report::latent_png(
        &dir.join("latent.png"),
        &p.test_codes,
        &p.test_labels,
        p.code_len,
    )?;
    Ok(())
}
