//! The writer thread, fed through flume: metrics, checkpoints and pictures land on disk in
//! the order they were sent, atomically, while the GPU trains on. The first failed write is
//! kept, and the training loop asks for it before it goes on, so a full disk stops the run at
//! once with the last checkpoint that did land.
use crate::checkpoint::{self, Checkpoint};
use crate::train::EpochMetrics;
use crate::{atomic, report, Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The pixels of the run's pictures, computed on the GPU; encoded to PNG by the writer.
pub struct Pictures {
    /// The first test images and their reconstructions, `count` of `h` x `w`.
    pub originals: Vec<f32>,
    pub reconstructions: Vec<f32>,
    pub count: usize,
    pub h: usize,
    pub w: usize,
    /// Their codes and the code's shape (h, w, c), for models whose code is an image.
    pub codes: Option<(Vec<f32>, [usize; 3])>,
}

pub enum Job {
    Text(PathBuf, String),
    Checkpoint(PathBuf, Box<Checkpoint>),
    LossPlot(PathBuf, Vec<EpochMetrics>),
    Pictures(PathBuf, Box<Pictures>),
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
            for job in rx.iter() {
                // After a failed write nothing more is written: the folder keeps a
                // consistent state (no metrics past the last checkpoint that landed).
                if failed {
                    continue;
                }
                let landed = match &job {
                    Job::Checkpoint(p, ck) => Some((p.clone(), ck.state.epoch, ck.step)),
                    _ => None,
                };
                let r = write(job);
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

    /// The first failed write so far, as an error.
    pub fn check(&self) -> Result<()> {
        match self.status.lock() {
            Ok(mut s) => s.failed.take().map_or(Ok(()), Err),
            Err(_) => Err(Error::Config("the writer thread panicked".into())),
        }
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

fn write(job: Job) -> Result<()> {
    match job {
        Job::Text(p, s) => atomic::write_atomic(&p, s.as_bytes()),
        Job::Checkpoint(p, ck) => checkpoint::save(&p, &ck),
        Job::LossPlot(p, h) => {
            let rows: Vec<(usize, f64, f64)> =
                h.iter().map(|m| (m.epoch, m.loss, m.val_loss)).collect();
            report::loss_png(&p, &rows)
        }
        Job::Pictures(dir, pics) => write_pictures(&dir, &pics),
    }
}

/// `reconstructions.png` (the first test digits over their reconstructions) and, where the
/// code is an image, `codes.png`.
fn write_pictures(dir: &std::path::Path, p: &Pictures) -> Result<()> {
    report::reconstructions_png(
        &dir.join("reconstructions.png"),
        &p.originals,
        &p.reconstructions,
        p.count,
        p.h,
        p.w,
    )?;
    if let Some((codes, [h, w, c])) = &p.codes {
        report::codes_png(&dir.join("codes.png"), codes, p.count, *h, *w, *c)?;
    }
    Ok(())
}
