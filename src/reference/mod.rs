//! CPU reference of every op: plain loops, f64 accumulation; the ground truth for the tests.
//!
//! One module per shader file (`shaders/<op>.wgsl`), computing the same mathematical function
//! as its kernels (DESIGN.md §1, the Keras semantics). Each op's core works on `f64` slices, so
//! the backward passes can be checked against central finite differences in `f64`
//! (`tests/reference_gradients.rs`); the public `f32` API converts in, computes in `f64` and
//! rounds once on the way out. The exceptions are [`adam`] and [`batch`], which are elementwise
//! and computed in `f32` exactly as the shaders (and Keras) do.
//!
//! The backward functions of the layers with a fused ReLU (conv2d, dense) take `dy` already
//! masked by the ReLU; the mask is [`activation::relu_backward`].
//!
//! Every function panics on a slice of the wrong length: this is test code, and a wrong length
//! is a bug in the caller.

pub mod activation;
pub mod adam;
pub mod batch;
pub mod bce;
pub mod conv2d;
pub mod dense;
pub mod model;
pub mod pool;
pub mod stride;
pub mod upsample;

pub use activation::sigmoid;

/// Widens an `f32` slice to `f64` (exact).
pub(crate) fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

/// Rounds an `f64` slice to `f32` (round to nearest).
pub(crate) fn to_f32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

/// Panics with the op and the tensor's name when a slice has the wrong length.
pub(crate) fn expect_len(op: &str, name: &str, len: usize, want: u64) {
    assert_eq!(
        len as u64, want,
        "reference::{op}: {name} has {len} elements, the shape needs {want}"
    );
}
