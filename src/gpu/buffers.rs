//! Buffers and views. A [`Tensor`] is a window of 32-bit elements into a buffer, so the flat
//! parameter, gradient and Adam buffers can hand each layer its own slice.
use super::Gpu;
use crate::{Error, Result};
use wgpu::util::DeviceExt;

/// Storage usage shared by every tensor buffer: bound in shaders, copied in and out.
pub const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// With the CPU kernel set's `windows` variant a tensor buffer may also be read through uniform
/// bindings of [`UNIFORM_WINDOW`] bytes (lavapipe gathers a uniform load lane by lane in
/// straight code, a storage load in a guarded loop: `ops::cpu::dense`), so it gets UNIFORM
/// usage and this many bytes after its end, that a window starting anywhere in it stays inside
/// the buffer.
pub const UNIFORM_WINDOW: u64 = 65536;

/// `len` 32-bit elements of `buffer` starting at element `offset`.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub len: u64,
}

impl Tensor {
    pub fn whole(buffer: wgpu::Buffer) -> Self {
        let len = buffer.size() / 4;
        Tensor {
            buffer,
            offset: 0,
            len,
        }
    }

    /// A sub-view; `offset` must keep the adapter's storage offset alignment (the layouts that
    /// use views align every start to 256 bytes).
    pub fn view(&self, offset: u64, len: u64) -> Self {
        debug_assert!(offset + len <= self.len);
        Tensor {
            buffer: self.buffer.clone(),
            offset: self.offset + offset,
            len,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.len * 4
    }

    /// Bytes of the whole buffer under the view (with any uniform-window tail): what the
    /// memory counts add up.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffer.size()
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset * 4,
            size: wgpu::BufferSize::new(self.len.max(1) * 4),
        })
    }
}

impl Gpu {
    /// A zeroed storage tensor of `len` elements (at least one, wgpu forbids empty bindings).
    pub fn tensor(&self, label: &str, len: u64) -> Result<Tensor> {
        self.tensor_or(label, len, "use a smaller --batch-size")
    }

    /// [`Gpu::tensor`] for a buffer whose size the batch does not set: `fix` says what does.
    pub fn tensor_or(&self, label: &str, len: u64, fix: &str) -> Result<Tensor> {
        let bytes = len.max(1) * 4;
        self.check_buffer(label, bytes + self.window_tail(), fix)?;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes + self.window_tail(),
            usage: self.tensor_usage(),
            mapped_at_creation: false,
        });
        Ok(Tensor {
            buffer,
            offset: 0,
            len,
        })
    }

    /// A storage tensor holding `data` (f32, u32 or any Pod of 4 bytes).
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<Tensor> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let allocated = bytes.len() as u64 + self.window_tail();
        self.check_buffer(label, allocated, "use a smaller --batch-size")?;
        // At least 4 bytes (wgpu forbids empty bindings), then the window tail's zeros.
        let mut contents = Vec::with_capacity(bytes.len().max(4) + self.window_tail() as usize);
        contents.extend_from_slice(bytes);
        contents.resize(bytes.len().max(4) + self.window_tail() as usize, 0);
        let buffer = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &contents,
                usage: self.tensor_usage(),
            });
        Ok(Tensor {
            buffer,
            offset: 0,
            len: (bytes.len() / 4) as u64,
        })
    }

    /// Whether tensors may be read through uniform windows: on the CPU kernel set with the
    /// `windows` variant.
    fn uniform_windows(&self) -> bool {
        self.kernels == super::KernelSet::Cpu && self.folds.windows
    }

    fn tensor_usage(&self) -> wgpu::BufferUsages {
        match self.uniform_windows() {
            true => STORAGE | wgpu::BufferUsages::UNIFORM,
            false => STORAGE,
        }
    }

    fn window_tail(&self) -> u64 {
        self.uniform_windows() as u64 * UNIFORM_WINDOW
    }

    /// A tensor filled with NaN, so a kernel that leaves an element unwritten is caught.
    pub fn poisoned(&self, label: &str, len: u64) -> Result<Tensor> {
        self.upload(label, &vec![f32::NAN; len as usize])
    }

    /// Overwrites a tensor's contents (queued; takes effect before the next submit).
    pub fn write<T: bytemuck::Pod>(&self, t: &Tensor, data: &[T]) {
        self.queue
            .write_buffer(&t.buffer, t.offset * 4, bytemuck::cast_slice(data));
    }

    /// A uniform buffer holding one `T`.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Copies a tensor back to the host. Waits for the queue: never call inside an epoch.
    pub fn read<T: bytemuck::Pod>(&self, t: &Tensor) -> Result<Vec<T>> {
        let bytes = t.bytes();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        if bytes > 0 {
            enc.copy_buffer_to_buffer(&t.buffer, t.offset * 4, &staging, 0, bytes);
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = flume::bounded(1);
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        let mapped = rx.recv().map_err(|e| self.gpu_error(e))?;
        mapped.map_err(|e| self.gpu_error(e))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| self.gpu_error(e))?;
        let out = bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    pub(crate) fn gpu_error(&self, e: impl std::fmt::Display) -> Error {
        Error::Gpu {
            adapter: self.name(),
            detail: e.to_string(),
        }
    }
}
