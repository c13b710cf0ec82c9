//! Safetensors bytes: read every tensor, then match them as weights of a
//! small fixed model (the path `load_weights_safetensors` takes) and run it.
#![no_main]

use std::collections::BTreeMap;

use cnn_lstm::keras::{weights, InnerNames, StoredTensor};
use cnn_lstm::model::{Activation, Conv2D, Dense, Lstm, Padding};
use cnn_lstm::{LayerKind, Model, ModelBuilder};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// The model the seeds' weights belong to: `(T, 6, 6, 1)` -> TD(Conv2D 2,
/// 3x3) -> TD(Flatten) -> LSTM 3 -> Dense 2, with Keras's default names.
fn model() -> Model {
    ModelBuilder::new("fuzz", None, &[6, 6, 1])
        .named_layer(
            "time_distributed",
            LayerKind::Conv2D(Conv2D {
                filters: 2,
                kernel: (3, 3),
                strides: (1, 1),
                dilation: (1, 1),
                padding: Padding::Valid,
                activation: Activation::Relu,
                use_bias: true,
            }),
        )
        .named_layer("time_distributed_1", LayerKind::Flatten)
        .named_layer(
            "lstm",
            LayerKind::Lstm(Lstm {
                units: 3,
                return_sequences: false,
                zero_output_for_mask: false,
                activation: Activation::Tanh,
                recurrent_activation: Activation::Sigmoid,
                use_bias: true,
            }),
        )
        .named_layer(
            "dense",
            LayerKind::Dense(Dense { units: 2, activation: Activation::Softmax, use_bias: true }),
        )
        .build()
        .expect("the fixed model is valid")
}

fuzz_target!(|data: &[u8]| {
    let Ok(tensors) = cnn_lstm::keras::read_tensors_bytes(data, "fuzz.safetensors") else {
        return;
    };
    for t in tensors.values() {
        let _ = t.shape();
        let _ = t.dtype_name();
    }
    let f32s: BTreeMap<_, _> = tensors
        .into_iter()
        .filter_map(|(k, t)| match t {
            StoredTensor::F32(t) => Some((k, t)),
            _ => None,
        })
        .collect();
    let mut model = model();
    let inner = InnerNames::keras_defaults(&model);
    let Ok(matched) = weights::match_paths(&model, &inner, f32s) else { return };
    if model.set_weights(matched).is_ok() {
        common::exercise(&model);
    }
});
