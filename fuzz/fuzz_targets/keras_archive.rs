//! `.keras` files (zip of config.json and model.weights.h5): load
//! architecture and weights, then run the model.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = cnn_lstm::keras::load_keras_bytes(data, "fuzz.keras") {
        common::exercise(&model);
    }
});
