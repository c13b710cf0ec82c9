//! cnn-lstm: Keras-style CNN-LSTM models on any GPU through wgpu, every GPU
//! number checked against a plain-Rust CPU reference.
//!
//! # Data flow
//!
//! 1. A [`Model`] comes from [`ModelBuilder`] (shape inference and parameter
//!    counting run in [`ModelBuilder::build`]) or from a Keras file
//!    ([`keras::load_model_json`], [`keras::load_keras_file`]); weights from
//!    [`Model::set_weights`], [`keras::load_weights_safetensors`] or
//!    [`init::keras_default_weights`].
//! 2. [`gpu::Context::new`] picks an adapter (`CNN_LSTM_BACKEND`,
//!    `CNN_LSTM_ADAPTER`) and creates a device with the adapter's limits and
//!    error capture installed.
//! 3. [`gpu::GpuModel::new`] uploads the weights once and compiles the
//!    pipelines. [`gpu::GpuModel::forward`] plans buffers and bind groups for
//!    each new `(B, T)`, then writes the input, records every dispatch in one
//!    encoder, submits once and reads back what was asked for.
//! 4. [`reference::forward`] computes the same on the CPU; the tests compare
//!    both with a [`Tolerance`].
//!
//! # Layouts
//!
//! - Input `[B, T, H, W, C]`, f32, channels last, row-major, as Keras. A
//!   model may also take feature vectors `[B, T, F]`.
//! - Per-frame layers (Keras's `TimeDistributed`) see the `B * T` frames as
//!   one batch `[B * T, H, W, C]`; Flatten of `[H, W, C]` is a no-op on the
//!   buffer (index `(h * W + w) * C + c`).
//! - Conv2D kernel `[kh, kw, cin, cout]`; Dense kernel `[in, out]`; LSTM
//!   kernel `[F, 4U]`, recurrent kernel `[U, 4U]`, bias `[4U]`, gate blocks
//!   i, f, c, o.
//! - Timestep masks are `[B * T]` bytes, 1 = valid step.
//!
//! # Buffer ownership
//!
//! A [`gpu::GpuModel`] owns its weight buffers, its pipelines and one plan
//! per input shape (activation buffers, uniforms, bind groups, staging
//! buffers). Activations whose lifetimes do not overlap share a buffer; when
//! layer outputs are captured they all live to the end of the pass. Nothing
//! is allocated by a repeated forward of a planned shape. The caller's
//! [`gpu::Context`] may be shared with the caller's own GPU work through
//! [`gpu::Context::device`] and [`gpu::Context::queue`].
//!
//! # Limitations
//!
//! The README's Limitations section is the register; each entry returns
//! [`Error::Unsupported`] or [`Error::LimitExceeded`], never a silent
//! approximation.

pub mod bench;
pub mod digits;
pub mod error;
pub mod forward;
pub mod gpu;
pub mod init;
pub mod keras;
pub mod model;
pub mod reference;
pub mod rng;
pub mod shaders;
pub mod summary;
pub mod tensor;
pub mod tolerance;
pub mod zoo;

pub use error::{Error, Result};
pub use forward::{Forward, LayerOutput, RunOptions, StageTiming};
pub use model::{
    Activation, Conv2D, Dense, DropoutMode, InputSpec, Layer, LayerInfo, LayerKind, Lstm, Model,
    ModelBuilder, Padding, Pool2D, PoolKind, SampleShape,
};
pub use tensor::Tensor;
pub use tolerance::Tolerance;

/// Compiles the README's library example as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
