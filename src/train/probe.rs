//! The running loss for the progress bar, without stalling the queue: every few steps the loss
//! log is copied into a mappable buffer, recorded in the command buffer of the steps before
//! it, and the mapping is picked up whenever the host next finds it done (it waits on older
//! steps anyway).
use crate::gpu::{Gpu, Tensor};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

const IDLE: u8 = 0;
const PENDING: u8 = 1;
const MAPPED: u8 = 2;
const FAILED: u8 = 3;

pub struct LossProbe {
    staging: wgpu::Buffer,
    state: Arc<AtomicU8>,
    /// Steps the pending copy covers.
    covered: usize,
    /// The latest running loss, as f64 bits (NaN: none yet this epoch).
    running: Arc<AtomicU64>,
    /// Every reading since the last [`LossProbe::take_readings`]: (steps covered, loss).
    readings: Vec<(usize, f64)>,
}

impl LossProbe {
    pub fn new(gpu: &Gpu, steps: usize) -> Self {
        LossProbe {
            staging: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("running loss"),
                size: (steps.max(1) * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            state: Arc::new(AtomicU8::new(IDLE)),
            covered: 0,
            running: Arc::new(AtomicU64::new(f64::NAN.to_bits())),
            readings: Vec::new(),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.staging.size()
    }

    /// Where the caller reads the running loss (NaN until the first probe of an epoch lands).
    pub fn handle(&self) -> Arc<AtomicU64> {
        self.running.clone()
    }

    /// The readings taken since the last call: (steps of the epoch covered, running loss).
    pub fn take_readings(&mut self) -> Vec<(usize, f64)> {
        std::mem::take(&mut self.readings)
    }

    pub fn reset(&mut self) {
        self.running.store(f64::NAN.to_bits(), Ordering::Relaxed);
    }

    /// Records into `enc` a copy of the first `steps` losses, unless one is already in
    /// flight; true if it did: then call [`Self::arm`] once `enc` is submitted.
    pub fn record(&mut self, enc: &mut wgpu::CommandEncoder, log: &Tensor, steps: usize) -> bool {
        if steps == 0 || self.state.load(Ordering::Acquire) != IDLE {
            return false;
        }
        let bytes = (steps * 4) as u64;
        enc.copy_buffer_to_buffer(&log.buffer, log.offset * 4, &self.staging, 0, bytes);
        self.covered = steps;
        true
    }

    /// Maps the copy [`Self::record`] put in a command buffer that is now submitted.
    pub fn arm(&mut self) {
        self.state.store(PENDING, Ordering::Release);
        let state = self.state.clone();
        self.staging.map_async(
            wgpu::MapMode::Read,
            0..(self.covered * 4) as u64,
            move |r| {
                state.store(if r.is_ok() { MAPPED } else { FAILED }, Ordering::Release);
            },
        );
    }

    /// Picks up a finished copy: the sample-weighted mean of the losses it holds.
    pub fn collect(&mut self, sizes: &[u32]) {
        match self.state.load(Ordering::Acquire) {
            MAPPED => {
                let bytes = (self.covered * 4) as u64;
                if let Ok(view) = self.staging.get_mapped_range(0..bytes) {
                    let losses: &[f32] = bytemuck::cast_slice(&view);
                    let mean = super::weighted_mean(losses, &sizes[..self.covered]);
                    self.readings.push((self.covered, mean));
                    self.running.store(mean.to_bits(), Ordering::Relaxed);
                }
                self.staging.unmap();
                self.state.store(IDLE, Ordering::Release);
            }
            FAILED => self.state.store(IDLE, Ordering::Release),
            _ => {}
        }
    }
}
