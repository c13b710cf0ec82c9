//! Whole-model agreement with Keras on the CPU reference: every fixture's
//! output, every layer and every mask within 1e-5 of Keras, loaded both
//! from `model.json` + `weights.safetensors` and from `model.keras`; and
//! the trained digits model on all 397 clips.
//!
//! The GPU runs the same checks through [`common::check_fixture`] with a
//! GPU `run` closure.

mod common;

use cnn_lstm::keras::StoredTensor;
use cnn_lstm::{reference, RunOptions, Tensor};
use common::*;

fn cpu(model: &cnn_lstm::Model, input: &Tensor) -> cnn_lstm::Result<cnn_lstm::Forward> {
    let opts = RunOptions { capture_layers: true, ..Default::default() };
    reference::forward(model, input, &opts)
}

#[test]
fn article_small_agrees_on_cpu() {
    check_fixture("article_small", cpu);
}

#[test]
fn batch1_sigmoid_agrees_on_cpu() {
    check_fixture("batch1_sigmoid", cpu);
}

#[test]
fn dense_relu_head_agrees_on_cpu() {
    check_fixture("dense_relu_head", cpu);
}

#[test]
fn mask_trailing_middle_agrees_on_cpu() {
    check_fixture("mask_trailing_middle", cpu);
}

#[test]
fn same_stride2_even_kernel_agrees_on_cpu() {
    check_fixture("same_stride2_even_kernel", cpu);
}

#[test]
fn seq_out_td_dense_dyn_t_agrees_on_cpu() {
    check_fixture("seq_out_td_dense_dynT", cpu);
}

#[test]
fn two_conv_maxpool_agrees_on_cpu() {
    check_fixture("two_conv_maxpool", cpu);
}

#[test]
fn every_fixture_has_an_agreement_test() {
    let src = include_str!("keras_agreement.rs");
    for name in FIXTURES {
        assert!(src.contains(&format!("check_fixture(\"{name}\"")), "{name} is not checked");
    }
}

/// The digits clips as the model's input: `f32::from(u8) / 255.0` exactly
/// (the fixture's README), shape (397, 10, 32, 32, 1).
pub fn digits_input() -> (Tensor, Vec<i32>, Tensor) {
    let io = read_io(&fixture_path("digits_clips"), "clips.safetensors");
    let StoredTensor::U8 { shape, data } = &io["frames"] else { panic!("frames is not U8") };
    let x: Vec<f32> = data.iter().map(|&u| f32::from(u) / 255.0_f32).collect();
    let StoredTensor::I32 { data: labels, .. } = &io["labels"] else { panic!("labels") };
    (Tensor::new(shape.clone(), x).unwrap(), labels.clone(), f32_of(&io, "keras_probs"))
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

#[test]
fn digits_clips_match_keras_on_cpu() {
    let (x, labels, keras_probs) = digits_input();
    assert_eq!(x.shape(), [397, 10, 32, 32, 1]);
    // Spot-check the conversion: 5 -> 5/255 as a float32 quotient.
    assert_eq!(f32::from(5u8) / 255.0_f32, 0.019_607_844_f32);
    let dir = fixture_path("digits_clips");
    for (label, model) in both_loads(&dir) {
        let fwd = reference::forward(&model, &x, &RunOptions::default()).unwrap();
        let probs = &fwd.output;
        assert_eq!(probs.shape(), [397, 10], "{label}");
        assert_close(&format!("digits {label}"), probs, &keras_probs, KERAS_ABS);
        let max_diff = probs
            .data()
            .iter()
            .zip(keras_probs.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let mut correct = 0;
        for (i, &want) in labels.iter().enumerate() {
            let got = argmax(&probs.data()[i * 10..(i + 1) * 10]);
            let keras = argmax(&keras_probs.data()[i * 10..(i + 1) * 10]);
            assert_eq!(got, keras, "{label}: clip {i}");
            correct += usize::from(got as i32 == want);
        }
        assert_eq!(correct, 354, "{label}: accuracy");
        eprintln!("digits_clips {label}: 354/397 correct, max |prob - keras| = {max_diff:e}");
    }
}

/// Masking directly on the 5-D frames (the article's Example 3, which Keras
/// itself cannot run) gives what Keras computes with its working recipe
/// `TimeDistributed(Flatten) -> Masking -> TimeDistributed(Reshape)`: the
/// recipe fixture's graph is rewired to mask the frames directly, and every
/// layer from the convolution on must still match Keras's stored outputs.
#[test]
fn masking_on_frames_equals_the_keras_recipe() {
    let dir = keras_dir("mask_trailing_middle");
    let mut v = read_json(&dir.join("model.json"));
    let layers = v["config"]["layers"].as_array_mut().unwrap();
    layers.retain(|l| l["name"] != "time_distributed" && l["name"] != "time_distributed_1");
    let input_ref = serde_json::json!({"class_name": "__keras_tensor__", "config": {
        "shape": [null, 6, 12, 12, 3], "dtype": "float32",
        "keras_history": ["input_layer", 0, 0]}});
    for l in layers.iter_mut() {
        match l["name"].as_str().unwrap() {
            "masking" | "not_equal" => l["inbound_nodes"][0]["args"][0] = input_ref.clone(),
            "time_distributed_2" => {
                let mut arg = input_ref.clone();
                arg["config"]["keras_history"][0] = "masking".into();
                l["inbound_nodes"][0]["args"][0] = arg;
            }
            _ => {}
        }
    }
    let mut k = cnn_lstm::keras::KerasModel::from_json(&v.to_string(), "rewired").unwrap();
    k.load_weights_safetensors(dir.join("weights.safetensors")).unwrap();
    assert_eq!(k.model.layers()[0].name, "masking");
    let io = read_io(&dir, "io.safetensors");
    let fwd = cpu(&k.model, &f32_of(&io, "input")).unwrap();
    assert_close("rewired output", &fwd.output, &f32_of(&io, "output"), KERAS_ABS);
    for out in fwd.layers.iter().skip(1) {
        let want = f32_of(&io, &format!("layer/{}", out.name));
        assert_close(&format!("rewired layer/{}", out.name), &out.value, &want, KERAS_ABS);
        if let Some(StoredTensor::U8 { data, .. }) = io.get(&format!("mask/{}", out.name)) {
            assert_eq!(out.mask.as_ref(), Some(data), "mask/{}", out.name);
        }
    }
}
