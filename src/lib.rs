//! wgsl-autoencoder: the Keras autoencoders trained on MNIST with hand-written WGSL.
//!
//! Every op lives in four places under one name: `shaders/<op>.wgsl` (the kernels; a long
//! one is a folder, `shaders/cpu/conv2d/`), [`ops`] (typed launchers),
//! [`reference`](mod@reference) (plain-Rust ground truth) and `tests/ops/<op>.rs` (or a
//! folder, `tests/ops/conv2d/`).
//!
//! The modules form layers; each uses only those listed before it (`tests/architecture.rs`
//! checks it):
//!
//! | layer | modules |
//! |---|---|
//! | foundations | [`interrupt`], [`error`], [`atomic`] |
//! | plain data | [`shapes`], [`model`], [`data`] |
//! | ground truth | [`reference`](mod@reference) |
//! | GPU base | [`gpu`] |
//! | launchers | [`ops`] |
//! | GPU-resident network | [`network`] |
//! | pictures and tables | [`report`] |
//! | training, inference | [`train`], [`infer`] |
//! | checkpoints | [`checkpoint`] |
//! | the run | [`run`] |
//! | commands | [`commands`] |
pub mod atomic;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod error;
pub mod gpu;
pub mod infer;
pub mod interrupt;
pub mod model;
pub mod network;
pub mod ops;
pub mod reference;
pub mod report;
pub mod run;
pub mod shapes;
pub mod train;

pub use error::{Error, Result};
