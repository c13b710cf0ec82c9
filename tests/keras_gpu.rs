//! Keras agreement on the GPU: every fixture (loaded from model.json +
//! weights.safetensors and from model.keras) on every adapter, output,
//! every layer and every mask within 1e-5 of Keras; and the trained
//! digits model on all 397 clips.

mod common;
mod gpu_util;

use cnn_lstm::gpu::GpuModel;
use cnn_lstm::keras::StoredTensor;
use cnn_lstm::{Forward, Model, Result, RunOptions, Tensor};
use common::*;

fn on_every_gpu(name: &str) {
    let contexts = gpu_util::contexts();
    for ctx in contexts {
        let run = |model: &Model, input: &Tensor| -> Result<Forward> {
            let opts = RunOptions { capture_layers: true, ..Default::default() };
            GpuModel::new(ctx.clone(), model)?.forward(input, &opts)
        };
        check_fixture(name, run);
    }
}

#[test]
fn article_small_agrees_on_gpu() {
    on_every_gpu("article_small");
}

#[test]
fn batch1_sigmoid_agrees_on_gpu() {
    on_every_gpu("batch1_sigmoid");
}

#[test]
fn dense_relu_head_agrees_on_gpu() {
    on_every_gpu("dense_relu_head");
}

#[test]
fn mask_trailing_middle_agrees_on_gpu() {
    on_every_gpu("mask_trailing_middle");
}

#[test]
fn same_stride2_even_kernel_agrees_on_gpu() {
    on_every_gpu("same_stride2_even_kernel");
}

#[test]
fn seq_out_td_dense_dyn_t_agrees_on_gpu() {
    on_every_gpu("seq_out_td_dense_dynT");
}

#[test]
fn two_conv_maxpool_agrees_on_gpu() {
    on_every_gpu("two_conv_maxpool");
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

#[test]
fn digits_clips_match_keras_on_gpu() {
    let io = read_io(&fixture_path("digits_clips"), "clips.safetensors");
    let StoredTensor::U8 { shape, data } = &io["frames"] else { panic!("frames is not U8") };
    let x = Tensor::new(shape.clone(), data.iter().map(|&u| f32::from(u) / 255.0_f32).collect())
        .unwrap();
    let StoredTensor::I32 { data: labels, .. } = &io["labels"] else { panic!("labels") };
    let keras_probs = f32_of(&io, "keras_probs");
    let model = load_json_and_safetensors(&fixture_path("digits_clips"));
    for ctx in gpu_util::contexts() {
        let mut gm = GpuModel::new(ctx.clone(), &model).unwrap();
        let probs = gm.forward(&x, &RunOptions::default()).unwrap().output;
        assert_close(&format!("digits on {}", ctx.describe()), &probs, &keras_probs, 1e-5);
        let mut correct = 0;
        for (i, &label) in labels.iter().enumerate() {
            let got = argmax(&probs.data()[i * 10..(i + 1) * 10]);
            assert_eq!(got, argmax(&keras_probs.data()[i * 10..(i + 1) * 10]), "clip {i}");
            correct += usize::from(got as i32 == label);
        }
        assert_eq!(correct, 354, "{}", ctx.describe());
    }
}
