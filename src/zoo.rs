//! Ready-made models of the family: the article's Example 1 (and, with
//! Masking in front, Example 3) at any size. Weights start as zeros; use
//! [`crate::init::keras_default_weights`] or load trained ones.

use crate::error::Result;
use crate::model::{Activation, Conv2D, Dense, DropoutMode, LayerKind, Lstm, Model, ModelBuilder};

/// Sizes of the article's architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArticleSize {
    /// Frames are `side x side x 3`.
    pub side: usize,
    /// Conv2D filters (3x3, relu, 'valid').
    pub filters: usize,
    /// Units of the first (sequence-returning) and second LSTM.
    pub units: (usize, usize),
}

impl ArticleSize {
    /// The article's size: 64x64x3 frames, Conv2D 32, LSTM 64 then 32
    /// (31,520,330 parameters; 31,520,330 with Masking too).
    pub const FULL: ArticleSize = ArticleSize { side: 64, filters: 32, units: (64, 32) };
    /// A small variant: 16x16x3 frames, Conv2D 8, LSTM 16 then 8.
    pub const SMALL: ArticleSize = ArticleSize { side: 16, filters: 8, units: (16, 8) };
}

/// `[Masking(0.0)] -> TD(Conv2D(filters, 3x3, relu)) -> TD(SpatialDropout2D(0.2))
/// -> TD(Flatten) -> LSTM(u1, return_sequences) -> LSTM(u2) -> Dense(10, softmax)`
/// on frames `[side, side, 3]` and any number of timesteps.
pub fn article(name: &str, size: ArticleSize, masking: bool) -> Result<Model> {
    let mut builder = ModelBuilder::new(name, None, &[size.side, size.side, 3]);
    if masking {
        builder = builder.layer(LayerKind::Masking { mask_value: 0.0 });
    }
    builder
        .layer(Conv2D::new(size.filters, (3, 3)).activation(Activation::Relu))
        .layer(LayerKind::SpatialDropout { rate: 0.2, mode: DropoutMode::PerTimestep })
        .layer(LayerKind::Flatten)
        .layer(Lstm::new(size.units.0).sequences(true))
        .layer(Lstm::new(size.units.1))
        .layer(Dense::new(10).activation(Activation::Softmax))
        .build()
}
