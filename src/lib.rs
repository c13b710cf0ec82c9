//! cnn-lstm: Keras-style CNN-LSTM models on any GPU through wgpu.

pub mod error;
pub mod forward;
pub mod keras;
pub mod model;
pub mod rng;
pub mod tensor;

pub use error::{Error, Result};
pub use forward::{Forward, LayerOutput, RunOptions, StageTiming};
pub use model::{
    Activation, Conv2D, Dense, DropoutMode, InputSpec, Layer, LayerInfo, LayerKind, Lstm, Model,
    ModelBuilder, Padding, Pool2D, PoolKind, SampleShape,
};
pub use tensor::Tensor;
