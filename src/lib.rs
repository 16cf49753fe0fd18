//! wgsl-autoencoder: the Keras autoencoders trained on MNIST with hand-written WGSL.
//!
//! Every op lives in four places under one name: `shaders/<op>.wgsl` (the kernels),
//! [`ops`] (typed launchers), [`reference`] (plain-Rust ground truth) and `tests/<op>.rs`.
pub mod app;
pub mod atomic;
pub mod bench;
pub mod data;
pub mod error;
pub mod gpu;
pub mod interrupt;
pub mod ops;
pub mod reference;
pub mod report;

pub use error::{Error, Result};
pub mod model;
pub mod train;
