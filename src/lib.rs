//! cnn-lstm: Keras-style CNN-LSTM models on any GPU through wgpu.

pub mod bench;
pub mod error;
pub mod forward;
pub mod gpu;
pub mod init;
pub mod keras;
pub mod model;
pub mod reference;
pub mod rng;
pub mod shaders;
pub mod tensor;
pub mod tolerance;

pub use error::{Error, Result};
pub use forward::{Forward, LayerOutput, RunOptions, StageTiming};
pub use model::{
    Activation, Conv2D, Dense, DropoutMode, InputSpec, Layer, LayerInfo, LayerKind, Lstm, Model,
    ModelBuilder, Padding, Pool2D, PoolKind, SampleShape,
};
pub use tensor::Tensor;
pub use tolerance::Tolerance;
