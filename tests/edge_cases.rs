//! Numerics at the edges and variable-length batches, on the CPU reference
//! and on every GPU adapter. Expected values come from the math, not from
//! either implementation.

mod gpu_util;

use cnn_lstm::gpu::GpuModel;
use cnn_lstm::tolerance::{compare, Tolerance};
use cnn_lstm::*;

/// Runs on the CPU and on every GPU; returns every device's forward.
fn everywhere(model: &Model, x: &Tensor) -> Vec<(String, Forward)> {
    let opts = RunOptions::default();
    let mut out = vec![("cpu".to_string(), reference::forward(model, x, &opts).unwrap())];
    for ctx in gpu_util::contexts() {
        let f = GpuModel::new(ctx.clone(), model).unwrap().forward(x, &opts).unwrap();
        out.push((ctx.describe(), f));
    }
    out
}

fn identity_dense(n: usize, act: Activation) -> Model {
    let mut model = ModelBuilder::new("identity", None, &[n])
        .layer(LayerKind::Dense(Dense { units: n, activation: act, use_bias: false }))
        .build()
        .unwrap();
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        k[i * n + i] = 1.0;
    }
    model.set_weight("dense", "kernel", Tensor::new(vec![n, n], k).unwrap()).unwrap();
    model
}

#[test]
fn sigmoid_and_tanh_saturate_exactly_at_large_inputs() {
    let x = Tensor::new(vec![1, 1, 4], vec![1000.0, -1000.0, 0.0, 20.0]).unwrap();
    for (who, f) in everywhere(&identity_dense(4, Activation::Sigmoid), &x) {
        let y = f.output.data();
        assert_eq!(y[0], 1.0, "{who}");
        assert_eq!(y[1], 0.0, "{who}");
        assert_eq!(y[2], 0.5, "{who}");
        assert!(y[3] > 0.999_999 && y[3] <= 1.0, "{who}: {}", y[3]);
    }
    for (who, f) in everywhere(&identity_dense(4, Activation::Tanh), &x) {
        assert_eq!(&f.output.data()[..3], &[1.0, -1.0, 0.0], "{who}");
        assert_eq!(f.output.data()[3], 1.0, "{who}");
    }
}

#[test]
fn softmax_is_stable_for_huge_and_spread_logits() {
    let mut logits = vec![1000.0, 1000.0, 0.0, 0.0];
    logits.extend([400.0, -400.0, 0.0, 399.0]);
    let x = Tensor::new(vec![1, 2, 4], logits).unwrap();
    for (who, f) in everywhere(&identity_dense(4, Activation::Softmax), &x) {
        let y = f.output.data();
        assert!(y.iter().all(|v| v.is_finite()), "{who}: {y:?}");
        assert_eq!(&y[..4], &[0.5, 0.5, 0.0, 0.0], "{who}");
        // e^1 / (1 + e^1) for the 400 vs 399 pair; the rest underflows to 0.
        let e = std::f32::consts::E;
        assert!((y[4] - e / (1.0 + e)).abs() < 1e-6, "{who}: {}", y[4]);
        assert_eq!(y[5], 0.0, "{who}");
        assert!((y[4] + y[7] - 1.0).abs() < 1e-6, "{who}");
    }
}

fn lstm_model(features: usize, units: usize, seq: bool) -> Model {
    let mut model = ModelBuilder::new("lstm", None, &[features])
        .layer(LayerKind::Masking { mask_value: 0.0 })
        .layer(LayerKind::Lstm(Lstm {
            units,
            return_sequences: seq,
            zero_output_for_mask: false,
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
            use_bias: true,
        }))
        .build()
        .unwrap();
    for (i, (layer, var, shape)) in model.weight_specs().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|j| (((j * 31 + i * 7) % 17) as f32 - 8.0) * 0.07).collect();
        model.set_weight(&layer, var, Tensor::new(shape, data).unwrap()).unwrap();
    }
    model
}

#[test]
fn lstm_fed_plus_minus_100_stays_finite_and_bounded() {
    let model = lstm_model(3, 5, true);
    let data: Vec<f32> = (0..2 * 6 * 3).map(|i| if i % 2 == 0 { 100.0 } else { -100.0 }).collect();
    let x = Tensor::new(vec![2, 6, 3], data).unwrap();
    for (who, f) in everywhere(&model, &x) {
        // h = o * tanh(c) lies in [-1, 1] whatever the input.
        assert!(f.output.data().iter().all(|v| v.is_finite() && v.abs() <= 1.0), "{who}");
    }
}

#[test]
fn unsorted_lengths_give_each_sample_its_own_result() {
    // Lengths [2, 4, 3] zero-padded to T = 4, and a fourth sample with no
    // valid step at all. Each sample must equal the same sample run alone
    // on its valid steps only; the fully masked one gives zeros.
    let model = lstm_model(3, 4, false);
    let lengths = [2usize, 4, 3, 0];
    let value = |b: usize, t: usize, f: usize| ((b * 13 + t * 5 + f * 3) % 11) as f32 * 0.1 + 0.05;
    let mut data = vec![0.0; 4 * 4 * 3];
    for (b, &len) in lengths.iter().enumerate() {
        for t in 0..len {
            for f in 0..3 {
                data[(b * 4 + t) * 3 + f] = value(b, t, f);
            }
        }
    }
    let batch = Tensor::new(vec![4, 4, 3], data).unwrap();
    let results = everywhere(&model, &batch);
    for (b, &len) in lengths.iter().enumerate() {
        let alone = if len == 0 {
            vec![0.0; 4]
        } else {
            let d: Vec<f32> = (0..len).flat_map(|t| (0..3).map(move |f| value(b, t, f))).collect();
            let x = Tensor::new(vec![1, len, 3], d).unwrap();
            reference::forward(&model, &x, &RunOptions::default()).unwrap().output.into_data()
        };
        for (who, f) in &results {
            let got = &f.output.data()[b * 4..(b + 1) * 4];
            let c = compare(got, &alone, &[4], Tolerance::GPU_F32);
            assert!(c.is_ok(), "{who} sample {b} (length {len}): {c}");
            if len == 0 {
                assert_eq!(got, &[0.0; 4], "{who}");
            }
        }
    }
}

#[test]
fn nan_and_infinity_in_the_input_are_rejected_with_their_index() {
    // WGSL leaves NaN and infinity arithmetic to the implementation (GL and
    // Vulkan disagree here), so every device refuses such inputs instead of
    // returning backend-dependent numbers.
    let model = lstm_model(3, 4, false);
    for (bad, at, text) in [(f32::NAN, 0, "[0, 0, 0]"), (f32::INFINITY, 7, "[0, 2, 1]")] {
        let mut data: Vec<f32> = (0..3 * 4 * 3).map(|i| 0.1 + i as f32 * 0.01).collect();
        data[at] = bad;
        let x = Tensor::new(vec![3, 4, 3], data).unwrap();
        let want = format!(
            "input value at {text}: expected a finite number (NaN and infinity are rejected), \
             got {bad}"
        );
        let err = reference::forward(&model, &x, &RunOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), want, "cpu");
        for ctx in gpu_util::contexts() {
            let mut gm = GpuModel::new(ctx.clone(), &model).unwrap();
            let err = gm.forward(&x, &RunOptions::default()).unwrap_err();
            assert!(matches!(err, Error::Input { .. }), "{err}");
            assert_eq!(err.to_string(), want, "{}", ctx.describe());
        }
    }
}

#[test]
fn an_explicit_mask_skips_its_steps_like_keras_mask_argument() {
    // No Masking layer: the caller's mask alone decides. Sample 0 skips its
    // middle step, sample 1 its first; each equals its valid steps run alone.
    let mut model = ModelBuilder::new("lstm", None, &[3])
        .layer(LayerKind::Lstm(Lstm {
            units: 4,
            return_sequences: false,
            zero_output_for_mask: false,
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
            use_bias: true,
        }))
        .build()
        .unwrap();
    for (i, (layer, var, shape)) in model.weight_specs().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|j| (((j * 13 + i * 5) % 11) as f32 - 5.0) * 0.09).collect();
        model.set_weight(&layer, var, Tensor::new(shape, data).unwrap()).unwrap();
    }
    let data: Vec<f32> = (0..2 * 3 * 3).map(|i| ((i * 7) % 10) as f32 * 0.1 - 0.45).collect();
    let x = Tensor::new(vec![2, 3, 3], data.clone()).unwrap();
    let mask = [1u8, 0, 1, 0, 1, 1];
    let alone = |steps: &[usize], b: usize| {
        let d: Vec<f32> = steps
            .iter()
            .flat_map(|&t| data[(b * 3 + t) * 3..(b * 3 + t + 1) * 3].to_vec())
            .collect();
        let x = Tensor::new(vec![1, steps.len(), 3], d).unwrap();
        reference::forward(&model, &x, &RunOptions::default()).unwrap().output.into_data()
    };
    let want: Vec<f32> = [alone(&[0, 2], 0), alone(&[1, 2], 1)].concat();
    let opts = RunOptions { capture_layers: true, ..Default::default() };
    let mut results =
        vec![("cpu".to_string(), reference::forward_with_mask(&model, &x, &mask, &opts).unwrap())];
    for ctx in gpu_util::contexts() {
        let mut gm = GpuModel::new(ctx.clone(), &model).unwrap();
        results.push((ctx.describe(), gm.forward_with_mask(&x, &mask, &opts).unwrap()));
        // A mask of the wrong shape is refused, naming B x T.
        let err = gm.forward_with_mask(&x, &mask[..5], &opts).unwrap_err().to_string();
        assert!(err.contains("2 x 3 = 6 values") && err.contains("5 values"), "{err}");
    }
    let err = reference::forward_with_mask(&model, &x, &[1; 7], &opts).unwrap_err().to_string();
    assert!(err.contains("2 x 3 = 6 values"), "{err}");
    for (who, f) in results {
        let c = compare(f.output.data(), &want, &[2, 4], Tolerance::GPU_F32);
        assert!(c.is_ok(), "{who}: {c}");
    }
}
