//! Shared helpers for the Keras fixture tests: loading the fixtures both
//! ways, checking them against `meta.json`, and comparing a forward pass
//! (CPU reference or GPU, whatever `run` does) with Keras's `io.safetensors`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cnn_lstm::keras::{self, KerasModel, StoredTensor};
use cnn_lstm::{Forward, Model, Result, Tensor};

/// The fixtures in `tests/fixtures/keras/`.
pub const FIXTURES: [&str; 7] = [
    "article_small",
    "batch1_sigmoid",
    "dense_relu_head",
    "mask_trailing_middle",
    "same_stride2_even_kernel",
    "seq_out_td_dense_dynT",
    "two_conv_maxpool",
];

/// Absolute tolerance against Keras's stored tensors.
pub const KERAS_ABS: f32 = 1e-5;

/// `tests/fixtures/<rel>`.
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// A Keras fixture's folder.
pub fn keras_dir(name: &str) -> PathBuf {
    fixture_path(&format!("keras/{name}"))
}

/// Reads and parses a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Loads a fixture from `model.json` + `weights.safetensors`.
pub fn load_json_and_safetensors(dir: &Path) -> Model {
    let text = std::fs::read_to_string(dir.join("model.json")).unwrap();
    let mut k = KerasModel::from_json(&text, "model.json").unwrap();
    k.load_weights_safetensors(dir.join("weights.safetensors")).unwrap();
    k.model
}

/// Loads a fixture from `model.keras`.
pub fn load_keras(dir: &Path) -> Model {
    keras::load_keras_file(dir.join("model.keras")).unwrap()
}

/// Both ways of loading a fixture, labelled.
pub fn both_loads(dir: &Path) -> Vec<(&'static str, Model)> {
    vec![
        ("model.json+weights.safetensors", load_json_and_safetensors(dir)),
        ("model.keras", load_keras(dir)),
    ]
}

/// Every tensor of an `io.safetensors`-style file.
pub fn read_io(dir: &Path, file: &str) -> BTreeMap<String, StoredTensor> {
    keras::read_tensors(dir.join(file)).unwrap()
}

/// An f32 tensor from a map read with [`read_io`].
pub fn f32_of(io: &BTreeMap<String, StoredTensor>, key: &str) -> Tensor {
    match io.get(key) {
        Some(StoredTensor::F32(t)) => t.clone(),
        other => panic!("{key}: expected an F32 tensor, got {other:?}"),
    }
}

/// Checks a loaded fixture's layer names, output shapes, masks and parameter
/// count against its `meta.json`.
pub fn check_meta(model: &Model, meta: &serde_json::Value, label: &str) {
    let input: Vec<usize> = serde_json::from_value(meta["input_shape"].clone()).unwrap();
    let (b, t) = (input[0], input[1]);
    let layers = meta["layers"].as_array().unwrap();
    assert_eq!(model.layers().len(), layers.len(), "{label}: layer count");
    for ((layer, info), want) in model.layers().iter().zip(model.infos()).zip(layers) {
        assert_eq!(layer.name, want["name"].as_str().unwrap(), "{label}: layer name");
        let shape: Vec<usize> = serde_json::from_value(want["output_shape"].clone()).unwrap();
        assert_eq!(info.output.with_batch(b, t), shape, "{label}: output of {}", layer.name);
        assert_eq!(
            info.has_mask,
            want["has_mask"].as_bool().unwrap(),
            "{label}: mask {}",
            layer.name
        );
        let class = want["inner"].as_str().unwrap_or(want["class"].as_str().unwrap());
        assert_eq!(layer.kind.class_name(), class, "{label}: class of {}", layer.name);
    }
    assert_eq!(model.param_count() as u64, meta["param_count"].as_u64().unwrap(), "{label}");
    model.check_input(&input).unwrap();
}

/// Compares `got` with `want` elementwise at absolute tolerance `abs`;
/// panics with the mismatch count, the max error and the first indices.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, abs: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let mut bad = Vec::new();
    let mut max = 0f32;
    for (i, (g, w)) in got.data().iter().zip(want.data()).enumerate() {
        let d = (g - w).abs();
        if d.is_nan() || d > abs {
            bad.push((i, *g, *w));
        }
        if d > max {
            max = d;
        }
    }
    if !bad.is_empty() {
        let first: Vec<String> = bad
            .iter()
            .take(5)
            .map(|(i, g, w)| format!("{:?}: got {g}, want {w}", unravel(*i, want.shape())))
            .collect();
        panic!(
            "{what}: {} of {} values differ by more than {abs} (max {max}); first: {}",
            bad.len(),
            want.len(),
            first.join("; ")
        );
    }
}

/// A flat row-major index as a multi-index.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, d) in shape.iter().enumerate().rev() {
        if *d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Loads fixture `name` both ways, runs `run` on its stored input with every
/// layer captured, and checks the output, every layer's output and every
/// mask against Keras's `io.safetensors` at [`KERAS_ABS`].
///
/// `run` is the device under test: the CPU reference, or a GPU context.
/// It must return every layer (capture_layers = true).
pub fn check_fixture(name: &str, run: impl Fn(&Model, &Tensor) -> Result<Forward>) {
    let dir = keras_dir(name);
    let io = read_io(&dir, "io.safetensors");
    let input = f32_of(&io, "input");
    for (label, model) in both_loads(&dir) {
        let what = format!("{name} ({label})");
        let fwd = run(&model, &input).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_close(&format!("{what}: output"), &fwd.output, &f32_of(&io, "output"), KERAS_ABS);
        assert_eq!(fwd.layers.len(), model.layers().len(), "{what}: every layer captured");
        for out in &fwd.layers {
            let want = f32_of(&io, &format!("layer/{}", out.name));
            assert_close(&format!("{what}: layer/{}", out.name), &out.value, &want, KERAS_ABS);
            match (io.get(&format!("mask/{}", out.name)), &out.mask) {
                (None, None) => {}
                (Some(StoredTensor::U8 { shape, data }), Some(got)) => {
                    assert_eq!(shape.iter().product::<usize>(), got.len(), "{what}: mask size");
                    assert_eq!(got, data, "{what}: mask/{}", out.name);
                }
                (want, got) => panic!("{what}: mask/{}: Keras {want:?}, got {got:?}", out.name),
            }
        }
    }
}
