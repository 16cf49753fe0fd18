//! `shaders/cpu/dense.wgsl`: forward, backward_input and backward_params as register-tiled
//! products over vec4s. Only for feature counts that are multiples of 4 ([`fits`]). Where one
//! operand fits in the uniform windows (the forward pass's kernel in two, split at a row; the
//! input gradient's kernel, or a narrow layer's input or output gradient, in one) the `_win`
//! entry points read it through them: the same sums in the same order, a quarter of the
//! storage loads.
use crate::gpu::{Cost, Dispatch, Gpu, Tensor, UNIFORM_WINDOW};
use crate::ops::dense::{GradOut, Params};
use crate::ops::{build, Launch, Shader};
use crate::shapes::DenseShape;
use crate::Result;

/// Invocations per workgroup: the shader's CPU_WG.
pub const CPU_WG: u64 = 8;
/// Forward and backward_input tiles: 16 rows x 16 columns.
const TILE_ROWS: u64 = 16;
const TILE_COLS: u64 = 16;
/// backward_params tile: 16 inputs x 16 outputs.
const TILE_W: u64 = 16;
/// The `_win` kernels' tile: 8 x 32 (storage side x window side).
const WIN_NARROW: u64 = 8;
const WIN_WIDE: u64 = 32;
/// Elements in one uniform window: the shader's WINDOW4 vec4s.
const WINDOW_LEN: u64 = UNIFORM_WINDOW / 4;

/// Whether the CPU kernels take this shape: they load features four at a time.
pub fn fits(s: &DenseShape) -> bool {
    s.fin.is_multiple_of(4) && s.fout.is_multiple_of(4)
}

fn constants(s: &DenseShape, with_bias: bool) -> [(&'static str, f64); 3] {
    [
        ("FIN", s.fin as f64),
        ("FOUT", s.fout as f64),
        ("WITH_BIAS", with_bias as u32 as f64),
    ]
}

fn tiles(rows: u64, cols: u64, tile_rows: u64, tile_cols: u64) -> u64 {
    rows.div_ceil(tile_rows) * cols.div_ceil(tile_cols)
}

/// An operand read through the two uniform windows (bindings 10 and 11).
struct Windows {
    first: Tensor,
    second: Tensor,
    /// Whether the operand reaches into the second window.
    two: bool,
    /// For a kernel split at a row ([`Windows::rows`]): the shader's SPLIT4, the steps of
    /// four rows that the first window holds (all of them when it holds the whole kernel).
    split4: Option<u64>,
}

impl Windows {
    /// `t` in the first window (the second bound to the same range, its loads folded away):
    /// with the `windows` variant, where it fits in one, its buffer was made for uniform reads
    /// with room for a window after it, its start keeps the uniform offset alignment, and no
    /// buffer the kernel writes is its buffer (wgpu forbids a uniform and a writable binding
    /// of one buffer in a dispatch). Only one: the input gradient and the weight gradient read
    /// an element from wherever it lies, so across two windows each read would load from both
    /// and select one, twice the loads, which took longer than storage's (the dense model's
    /// 32 -> 784 input gradient 1.4x as long as with no windows: BENCHMARKS.md).
    fn of(gpu: &Gpu, t: &Tensor, written: &[&Tensor]) -> Option<Self> {
        (t.len <= WINDOW_LEN)
            .then(|| Self::split_at(gpu, t, WINDOW_LEN, written))
            .flatten()
    }

    /// [`Windows::of`] for a kernel `[rows, row_len]`, the second window starting at a row
    /// (the forward pass reads each window in a loop of its own): the most rows a window holds
    /// whose byte count keeps the uniform alignment, a multiple of 4. A kernel that fits in
    /// one window needs no split.
    fn rows(gpu: &Gpu, t: &Tensor, row_len: u64, written: &[&Tensor]) -> Option<Self> {
        let row_len = row_len.max(1);
        let split = match t.len <= WINDOW_LEN {
            true => WINDOW_LEN,
            false => {
                let align = gpu.limits.min_uniform_buffer_offset_alignment.max(1) as u64;
                let aligned = |rows: u64| (rows * row_len * 4).is_multiple_of(align);
                let rows = (1..=WINDOW_LEN / row_len / 4)
                    .rev()
                    .map(|q| 4 * q)
                    .find(|&r| aligned(r))?;
                rows * row_len
            }
        };
        let win = Self::split_at(gpu, t, split, written)?;
        let first_rows = match win.two {
            true => split / row_len,
            false => t.len / row_len,
        };
        Some(Windows {
            split4: Some(first_rows / 4),
            ..win
        })
    }

    fn split_at(gpu: &Gpu, t: &Tensor, split: u64, written: &[&Tensor]) -> Option<Self> {
        let align = gpu.limits.min_uniform_buffer_offset_alignment.max(1) as u64;
        let two = t.len > WINDOW_LEN;
        let second_at = if two { split } else { 0 };
        let usable = gpu.folds.windows
            && t.buffer.usage().contains(wgpu::BufferUsages::UNIFORM)
            && gpu.limits.max_uniform_buffer_binding_size >= UNIFORM_WINDOW
            && split <= WINDOW_LEN
            && t.len <= split + WINDOW_LEN
            && (t.offset * 4).is_multiple_of(align)
            && ((t.offset + second_at) * 4).is_multiple_of(align)
            && (t.offset + second_at + WINDOW_LEN) * 4 <= t.buffer.size()
            && written.iter().all(|w| w.buffer != t.buffer);
        let window = |at: u64| Tensor {
            buffer: t.buffer.clone(),
            offset: t.offset + at,
            len: WINDOW_LEN,
        };
        usable.then(|| Windows {
            first: window(0),
            // Unread when the operand fits in one: the shader's loads from it fold away.
            second: window(second_at),
            two,
            split4: None,
        })
    }

    fn constants(&self, s: &DenseShape, with_bias: bool) -> Vec<(&'static str, f64)> {
        let mut c = constants(s, with_bias).to_vec();
        c.push(("TWO_WINDOWS", self.two as u32 as f64));
        if let Some(split4) = self.split4 {
            c.push(("SPLIT4", split4 as f64));
        }
        c
    }
}

/// A launch on the CPU dense kernels: the common fields, and the windows' bindings and
/// constant where the entry point reads them.
struct CpuLaunch<'a> {
    entry: &'static str,
    kernel: &'static str,
    invocations: u64,
    bindings: Vec<(u32, &'a Tensor)>,
    windows: Option<&'a Windows>,
    with_bias: bool,
    cost: Cost,
}

fn launch(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    p: &Params,
    l: CpuLaunch<'_>,
) -> Result<Dispatch> {
    let mut bindings = l.bindings;
    let constants = match l.windows {
        Some(win) => {
            bindings.extend([(10, &win.first), (11, &win.second)]);
            win.constants(s, l.with_bias)
        }
        None => constants(s, l.with_bias).to_vec(),
    };
    build(
        gpu,
        Launch {
            shader: Shader::CpuDense,
            entry: l.entry,
            kernel: l.kernel,
            label,
            params: bytemuck::bytes_of(p),
            bindings: &bindings,
            constants: &constants,
            workgroups: gpu.grid_of(l.kernel, l.invocations, CPU_WG)?,
            cost: l.cost,
        },
    )
}

/// How forward and backward_input read the kernel `w` for `rows` x `cols` outputs: the
/// window entry point of `entries` through `win` (which [`launch`] binds), its 8 x 32 tiles,
/// else the register-tiled one from binding 2, its 16 x 16 tiles.
fn kernel_read<'a>(
    win: &Option<Windows>,
    entries: (&'static str, &'static str),
    w: &'a Tensor,
    rows: u32,
    cols: u32,
) -> (&'static str, u64, Vec<(u32, &'a Tensor)>) {
    let (rows, cols) = (rows as u64, cols as u64);
    match win {
        Some(_) => (entries.1, tiles(rows, cols, WIN_NARROW, WIN_WIDE), vec![]),
        None => (
            entries.0,
            tiles(rows, cols, TILE_ROWS, TILE_COLS),
            vec![(2, w)],
        ),
    }
}

// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    p: &Params,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    let win = Windows::rows(gpu, w, s.fout as u64, &[y]);
    let (entry, invocations, mut bindings) =
        kernel_read(&win, ("forward", "forward_win"), w, s.n, s.fout);
    bindings.extend([(1, x), (3, b), (4, y)]);
    let cost = Cost {
        bytes: 4 * (s.input_len() + s.weight_len() + s.fout as u64 + s.output_len()),
        flops: 2 * s.output_len() * s.fin as u64,
    };
    let l = CpuLaunch {
        entry,
        kernel: "dense.forward",
        invocations,
        bindings,
        windows: win.as_ref(),
        with_bias: false,
        cost,
    };
    launch(gpu, label, s, p, l)
}

pub fn backward_input(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    g: &GradOut<'_>,
    p: &Params,
    w: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    let (dy, act, relu) = g.bindings();
    let win = Windows::of(gpu, w, &[dx]);
    let (entry, invocations, mut bindings) = kernel_read(
        &win,
        ("backward_input", "backward_input_win"),
        w,
        s.n,
        s.fin,
    );
    bindings.extend([(5, dy), (6, act), (7, dx)]);
    let cost = Cost {
        bytes: 4 * (s.output_len() * (1 + relu as u64) + s.weight_len() + s.input_len()),
        flops: 2 * s.output_len() * s.fin as u64,
    };
    let l = CpuLaunch {
        entry,
        kernel: "dense.backward_input",
        invocations,
        bindings,
        windows: win.as_ref(),
        with_bias: false,
        cost,
    };
    launch(gpu, label, s, p, l)
}

/// The kernel gradient and, with `db`, the bias gradient, in one pass over the batch.
// One argument per binding of the kernel: grouping them would hide which buffer is which.
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    gpu: &Gpu,
    label: &str,
    s: &DenseShape,
    g: &GradOut<'_>,
    p: &Params,
    x: &Tensor,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<Dispatch> {
    let (dy, act, relu) = g.bindings();
    let kernel = match db {
        Some(_) => "dense.backward_params",
        None => "dense.backward_weight",
    };
    // Without a bias gradient the kernel never writes db: alias dw.
    let db_binding = db.unwrap_or(dw);
    let written = [dw, db_binding];
    // x in the windows, else the gradient (when no ReLU mask is read with it), else neither.
    let x_win = Windows::of(gpu, x, &written);
    let g_win = match (&x_win, relu) {
        (None, false) => Windows::of(gpu, dy, &written),
        _ => None,
    };
    let (entry, invocations, mut bindings, win) = match (&x_win, &g_win) {
        (Some(win), _) => (
            "backward_params_x_win",
            tiles(s.fin as u64, s.fout as u64, WIN_WIDE, WIN_NARROW),
            vec![(5, dy), (6, act)],
            Some(win),
        ),
        (None, Some(win)) => (
            "backward_params_g_win",
            tiles(s.fin as u64, s.fout as u64, WIN_NARROW, WIN_WIDE),
            vec![(1, x)],
            Some(win),
        ),
        (None, None) => (
            "backward_params",
            tiles(s.fin as u64, s.fout as u64, TILE_W, TILE_W),
            vec![(1, x), (5, dy), (6, act)],
            None,
        ),
    };
    bindings.extend([(8, dw), (9, db_binding)]);
    let cost = Cost {
        bytes: 4 * (s.output_len() * (1 + relu as u64) + s.input_len() + s.weight_len()),
        flops: 2 * s.output_len() * s.fin as u64 + s.output_len() * db.is_some() as u64,
    };
    let l = CpuLaunch {
        entry,
        kernel,
        invocations,
        bindings,
        windows: win,
        with_bias: db.is_some(),
        cost,
    };
    launch(gpu, label, s, p, l)
}
