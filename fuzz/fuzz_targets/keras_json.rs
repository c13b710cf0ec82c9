//! Keras model JSON: parse, then use the model as a user would.
#![no_main]

use cnn_lstm::keras::{InnerNames, KerasModel};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(k) = KerasModel::from_json(text, "fuzz.json") else { return };
    let _ = InnerNames::keras_defaults(&k.model);
    common::exercise(&k.model);
});
