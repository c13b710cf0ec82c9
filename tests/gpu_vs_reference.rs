//! Every kernel and whole models: GPU output against the CPU reference, on
//! every adapter present and with every GEMM variant, layer by layer.

mod gpu_util;

use cnn_lstm::gpu::{GpuModel, LstmRecurrence, MatmulVariant};
use cnn_lstm::tolerance::{compare, Tolerance};
use cnn_lstm::*;

/// Deterministic pseudo-random values in [-scale, scale).
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (((s >> 40) as f32) / ((1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Gives every weight seeded random values (biases too, unlike Keras's zeros,
/// so bias handling is exercised).
fn randomize(model: &mut Model, seed: u64) {
    for (i, (layer, var, shape)) in model.weight_specs().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let fan_in = if shape.len() > 1 { shape[..shape.len() - 1].iter().product() } else { 4 };
        let scale = (3.0 / fan_in as f32).sqrt();
        let t = Tensor::new(shape, values(seed + i as u64, n, scale)).unwrap();
        model.set_weight(&layer, var, t).unwrap();
    }
}

fn input(seed: u64, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape.to_vec(), values(seed, n, 1.0)).unwrap()
}

/// Zeroes whole frames: `masked` lists (b, t).
fn mask_frames(x: &mut Tensor, masked: &[(usize, usize)]) {
    let (t, frame) = (x.shape()[1], x.shape()[2..].iter().product::<usize>());
    for &(b, s) in masked {
        let at = (b * t + s) * frame;
        x.data_mut()[at..at + frame].fill(0.0);
    }
}

/// Runs `model` on the CPU and on every GPU context with both GEMM
/// variants, and compares every layer's output and mask.
fn check(model: &Model, x: &Tensor, opts: &RunOptions, tol: Tolerance) {
    let opts = RunOptions { capture_layers: true, ..opts.clone() };
    let want = reference::forward(model, x, &opts).unwrap();
    let mut ran = 0;
    for variant in [MatmulVariant::Register, MatmulVariant::Tiled, MatmulVariant::SplitK] {
        for ctx in gpu_util::contexts_with_matmul(variant) {
            let mut gm = GpuModel::new(ctx.clone(), model).unwrap();
            let got = gm.forward(x, &opts).unwrap();
            let who = format!("{} {variant:?}", ctx.describe());
            assert_eq!(got.layers.len(), want.layers.len(), "{who}: layer count");
            for (g, w) in got.layers.iter().zip(&want.layers) {
                assert_eq!(g.name, w.name);
                assert_eq!(g.value.shape(), w.value.shape(), "{who} {}", g.name);
                let c = compare(g.value.data(), w.value.data(), w.value.shape(), tol);
                assert!(c.is_ok(), "{who} layer {}: {c}", g.name);
                assert_eq!(g.mask, w.mask, "{who} layer {} mask", g.name);
            }
            let c = compare(got.output.data(), want.output.data(), want.output.shape(), tol);
            assert!(c.is_ok(), "{who} output: {c}");
            ran += 1;
        }
    }
    if std::env::var_os("CI").is_some() {
        assert!(ran >= 2, "CI must run on at least one adapter with both GEMM variants");
    }
}

fn conv(
    filters: usize,
    k: (usize, usize),
    s: (usize, usize),
    d: (usize, usize),
    padding: Padding,
    act: Activation,
) -> LayerKind {
    LayerKind::Conv2D(Conv2D {
        filters,
        kernel: k,
        strides: s,
        dilation: d,
        padding,
        activation: act,
        use_bias: true,
    })
}

fn lstm(units: usize, seq: bool) -> LayerKind {
    LayerKind::Lstm(Lstm {
        units,
        return_sequences: seq,
        zero_output_for_mask: false,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
        use_bias: true,
    })
}

fn dense(units: usize, act: Activation) -> LayerKind {
    LayerKind::Dense(Dense { units, activation: act, use_bias: true })
}

/// The article's Example 1 at reduced size (the `article_small` fixture's shapes).
fn article_small() -> Model {
    ModelBuilder::new("article_small", None, &[16, 16, 3])
        .layer(conv(8, (3, 3), (1, 1), (1, 1), Padding::Valid, Activation::Relu))
        .layer(LayerKind::SpatialDropout { rate: 0.2, mode: DropoutMode::PerTimestep })
        .layer(LayerKind::Flatten)
        .layer(lstm(16, true))
        .layer(lstm(8, false))
        .layer(dense(10, Activation::Softmax))
        .build()
        .unwrap()
}

#[test]
fn article_model_matches_reference_every_layer() {
    let mut model = article_small();
    randomize(&mut model, 1);
    let x = input(2, &[3, 5, 16, 16, 3]);
    check(&model, &x, &RunOptions::default(), Tolerance::GPU_F32);
}

#[test]
fn article_model_matches_reference_in_training_mode() {
    let mut model = article_small();
    randomize(&mut model, 3);
    let x = input(4, &[2, 4, 16, 16, 3]);
    check(
        &model,
        &x,
        &RunOptions { training: true, seed: 77, ..Default::default() },
        Tolerance::GPU_F32,
    );
}

#[test]
fn masked_model_with_pooling_matches_reference() {
    // Masking, 'same' conv with stride 2 on an odd frame, max and average
    // pooling, SpatialDropout3D, two LSTMs, TimeDistributed Dense softmax.
    let mut model = ModelBuilder::new("masked_pool", None, &[15, 13, 2])
        .layer(LayerKind::Masking { mask_value: 0.0 })
        .layer(conv(5, (4, 4), (2, 2), (1, 1), Padding::Same, Activation::Tanh))
        .layer(LayerKind::Pool2D(Pool2D {
            kind: PoolKind::Max,
            pool: (2, 2),
            strides: (2, 2),
            padding: Padding::Same,
        }))
        .layer(conv(3, (3, 3), (1, 1), (2, 2), Padding::Same, Activation::Relu))
        .layer(LayerKind::Pool2D(Pool2D {
            kind: PoolKind::Average,
            pool: (3, 2),
            strides: (1, 1),
            padding: Padding::Same,
        }))
        .layer(LayerKind::SpatialDropout { rate: 0.3, mode: DropoutMode::PerSample })
        .layer(LayerKind::Flatten)
        .layer(lstm(7, true))
        .layer(lstm(5, true))
        .layer(dense(4, Activation::Softmax))
        .build()
        .unwrap();
    randomize(&mut model, 5);
    let mut x = input(6, &[4, 6, 15, 13, 2]);
    // Sample 0: masked at the start; 1: in the middle; 2: at the end; 3: every step.
    let mut masked = vec![(0, 0), (0, 1), (1, 2), (1, 3), (2, 5), (2, 4)];
    masked.extend((0..6).map(|t| (3, t)));
    mask_frames(&mut x, &masked);
    for training in [false, true] {
        check(
            &model,
            &x,
            &RunOptions { training, seed: 9, ..Default::default() },
            Tolerance::GPU_F32,
        );
    }
}

#[test]
fn batch_one_and_single_timestep_match_reference() {
    let mut model = article_small();
    randomize(&mut model, 7);
    check(&model, &input(8, &[1, 1, 16, 16, 3]), &RunOptions::default(), Tolerance::GPU_F32);
    check(&model, &input(9, &[1, 7, 16, 16, 3]), &RunOptions::default(), Tolerance::GPU_F32);
}

#[test]
fn lstm_options_match_reference() {
    // zero_output_for_mask, other activations, no bias, a TimeDistributed
    // Dense head, and units that are not multiples of the workgroup size:
    // 67 and 13 run lstm_recurrence.wgsl, 68 and 12 (multiples of 4)
    // lstm_recurrence_texture.wgsl.
    for ((zero, act, rec, bias), (u1, u2)) in [
        (true, Activation::Tanh, Activation::Sigmoid, true),
        (false, Activation::Relu, Activation::HardSigmoid, false),
        (true, Activation::Softsign, Activation::Sigmoid, true),
    ]
    .into_iter()
    .flat_map(|opts| [(opts, (67, 13)), (opts, (68, 12))])
    {
        let l = |units, seq| {
            LayerKind::Lstm(Lstm {
                units,
                return_sequences: seq,
                zero_output_for_mask: zero,
                activation: act,
                recurrent_activation: rec,
                use_bias: bias,
            })
        };
        let mut model = ModelBuilder::new("lstm_opts", None, &[11])
            .layer(LayerKind::Masking { mask_value: -1.0 })
            .layer(l(u1, true))
            .layer(l(u2, false))
            .layer(dense(3, Activation::Sigmoid))
            .build()
            .unwrap();
        randomize(&mut model, 11);
        let mut x = input(12, &[3, 5, 11]);
        // Trailing masked steps for sample 0 with mask value -1.
        for s in 3..5 {
            x.data_mut()[s * 11..(s + 1) * 11].fill(-1.0);
        }
        check(&model, &x, &RunOptions::default(), Tolerance::GPU_F32);
    }
}

#[test]
fn dense_activations_match_reference() {
    for act in [
        Activation::Linear,
        Activation::Relu,
        Activation::Elu,
        Activation::Selu,
        Activation::Softplus,
        Activation::Silu,
        Activation::Exponential,
        Activation::Softmax,
    ] {
        let mut model = ModelBuilder::new("dense", None, &[37])
            .layer(dense(19, act))
            .layer(LayerKind::Dropout { rate: 0.4 })
            .build()
            .unwrap();
        randomize(&mut model, 13);
        let x = input(14, &[2, 3, 37]);
        for training in [false, true] {
            check(
                &model,
                &x,
                &RunOptions { training, seed: 5, ..Default::default() },
                Tolerance::GPU_F32,
            );
        }
    }
}

#[test]
fn softmax_of_huge_logits_has_no_nan_on_gpu() {
    // Dense with an identity kernel passes the logits through unchanged.
    let mut model = ModelBuilder::new("softmax", None, &[2])
        .layer(LayerKind::Dense(Dense {
            units: 2,
            activation: Activation::Softmax,
            use_bias: false,
        }))
        .build()
        .unwrap();
    model
        .set_weight("dense", "kernel", Tensor::new(vec![2, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap())
        .unwrap();
    let x =
        Tensor::new(vec![1, 3, 2], vec![1000.0, 1000.0, 400.0, -400.0, -1000.0, -1000.0]).unwrap();
    for ctx in gpu_util::contexts() {
        let out = GpuModel::new(ctx, &model).unwrap().forward(&x, &RunOptions::default()).unwrap();
        assert_eq!(out.output.data(), &[0.5, 0.5, 1.0, 0.0, 0.5, 0.5]);
    }
}

#[test]
fn dropout_masks_equal_reference_bit_for_bit() {
    // Dropout straight on the input: both sides see identical values, so
    // the outputs must be identical, not just close.
    for mode in [DropoutMode::PerTimestep, DropoutMode::PerSample] {
        let model = ModelBuilder::new("drop", None, &[5, 3, 17])
            .layer(LayerKind::SpatialDropout { rate: 0.35, mode })
            .build()
            .unwrap();
        let x = input(15, &[6, 4, 5, 3, 17]);
        let opts = RunOptions { training: true, seed: 1234, capture_layers: false };
        let want = reference::forward(&model, &x, &opts).unwrap();
        for ctx in gpu_util::contexts() {
            let got = GpuModel::new(ctx, &model).unwrap().forward(&x, &opts).unwrap();
            assert_eq!(got.output.data(), want.output.data(), "{mode:?}");
        }
        // And inference mode is the identity.
        let inference = RunOptions { training: false, ..opts };
        for ctx in gpu_util::contexts() {
            let got = GpuModel::new(ctx, &model).unwrap().forward(&x, &inference).unwrap();
            assert_eq!(got.output.data(), x.data());
        }
    }
}

#[test]
fn repeated_forward_reuses_the_plan_and_accepts_other_t() {
    let mut model = article_small();
    randomize(&mut model, 17);
    for ctx in gpu_util::contexts() {
        let mut gm = GpuModel::new(ctx, &model).unwrap();
        let opts = RunOptions::default();
        let a = input(18, &[2, 3, 16, 16, 3]);
        let first = gm.forward(&a, &opts).unwrap();
        let bytes = gm.plan_bytes(2, 3).unwrap();
        // Per-stage GPU times where the device has timestamp queries, and
        // always the wall time of the whole pass.
        let names: Vec<&str> = first.timings.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.last(), Some(&"total"));
        if gm.context().has_timestamps() {
            let lstm = ["lstm/input_projection", "lstm/recurrence", "lstm_1/recurrence"];
            for stage in ["conv2d", "dense"].iter().chain(&lstm) {
                assert!(names.contains(stage), "{stage} missing from {names:?}");
            }
        }
        let b = input(19, &[2, 6, 16, 16, 3]);
        let other = gm.forward(&b, &opts).unwrap();
        let again = gm.forward(&a, &opts).unwrap();
        assert_eq!(first.output.data(), again.output.data());
        assert_eq!(gm.plan_bytes(2, 3), Some(bytes));
        let want = reference::forward(&model, &b, &opts).unwrap();
        let c = compare(
            other.output.data(),
            want.output.data(),
            want.output.shape(),
            Tolerance::GPU_F32,
        );
        assert!(c.is_ok(), "{c}");
    }
}

/// Regression: llvmpipe returned wrong values from a 64 MiB weight binding
/// (a Dense kernel of 65535 x 256), although it advertises 128 MiB. Kernels
/// that large are now split into chunks on CPU adapters.
#[test]
fn dense_with_64_mib_kernel_matches_reference() {
    let mut model = ModelBuilder::new("wide", None, &[65535])
        .layer(dense(256, Activation::Linear))
        .build()
        .unwrap();
    randomize(&mut model, 21);
    let x = input(22, &[1, 2, 65535]);
    let want = reference::forward(&model, &x, &RunOptions::default()).unwrap();
    for ctx in gpu_util::contexts() {
        let got = GpuModel::new(ctx.clone(), &model)
            .unwrap()
            .forward(&x, &RunOptions::default())
            .unwrap();
        let c =
            compare(got.output.data(), want.output.data(), want.output.shape(), Tolerance::GPU_F32);
        assert!(c.is_ok(), "{}: {c}", ctx.describe());
    }
}

/// The texture convolution (Cout a multiple of 4), both entries (16 and 8
/// channels per invocation), with strides, 'same' padding, dilation, a spare
/// channel quad (Cout = 12) and rows not a multiple of 8 pixels wide.
#[test]
fn texture_conv_with_strides_padding_and_dilation_matches_reference() {
    let mut model = ModelBuilder::new("conv_tex", None, &[13, 11, 5])
        .layer(conv(12, (4, 4), (2, 2), (1, 1), Padding::Same, Activation::Tanh))
        .layer(conv(8, (3, 3), (1, 1), (2, 2), Padding::Same, Activation::Relu))
        .layer(conv(16, (2, 3), (1, 2), (1, 1), Padding::Valid, Activation::Linear))
        .build()
        .unwrap();
    randomize(&mut model, 31);
    let x = input(32, &[2, 3, 13, 11, 5]);
    check(&model, &x, &RunOptions::default(), Tolerance::GPU_F32);
}

/// Split-K from textures over a weight larger than one binding on CPU
/// adapters (65536 x 256 f32 = 64 MiB, two texture chunks), with a bias and
/// an activation applied once after the slices are summed.
#[test]
fn split_k_over_two_weight_chunks_matches_reference() {
    let mut model = ModelBuilder::new("wide_split", None, &[65536])
        .layer(dense(256, Activation::Tanh))
        .build()
        .unwrap();
    randomize(&mut model, 33);
    let x = input(34, &[3, 1, 65536]);
    let want = reference::forward(&model, &x, &RunOptions::default()).unwrap();
    for ctx in gpu_util::contexts() {
        let got = GpuModel::new(ctx.clone(), &model)
            .unwrap()
            .forward(&x, &RunOptions::default())
            .unwrap();
        let c =
            compare(got.output.data(), want.output.data(), want.output.shape(), Tolerance::GPU_F32);
        assert!(c.is_ok(), "{}: {c}", ctx.describe());
    }
}

/// Runs `model` without capturing layers on every adapter and every GEMM
/// variant, with `mask` passed explicitly when given, and compares the
/// output with the CPU reference (which convolves every frame). Returns
/// the conv layers each GPU plan skipped masked frames in (the same on all).
fn check_output_only(
    model: &Model,
    x: &Tensor,
    mask: Option<&[u8]>,
    opts: &RunOptions,
) -> Vec<String> {
    let opts = RunOptions { capture_layers: false, ..opts.clone() };
    let want = match mask {
        Some(m) => reference::forward_with_mask(model, x, m, &opts).unwrap(),
        None => reference::forward(model, x, &opts).unwrap(),
    };
    let (b, t) = (x.shape()[0], x.shape()[1]);
    let mut skipped: Option<Vec<String>> = None;
    for variant in [MatmulVariant::Register, MatmulVariant::Tiled, MatmulVariant::SplitK] {
        for ctx in gpu_util::contexts_with_matmul(variant) {
            let mut gm = GpuModel::new(ctx.clone(), model).unwrap();
            let got = match mask {
                Some(m) => gm.forward_with_mask(x, m, &opts).unwrap(),
                None => gm.forward(x, &opts).unwrap(),
            };
            let who = format!("{} {variant:?} training={}", ctx.describe(), opts.training);
            let c = compare(got.output.data(), want.output.data(), want.output.shape(), {
                Tolerance::GPU_F32
            });
            assert!(c.is_ok(), "{who} output: {c}");
            let here = gm.layers_skipping_masked_frames(b, t);
            if let Some(s) = &skipped {
                assert_eq!(&here, s, "{who}");
            }
            skipped = Some(here);
        }
    }
    skipped.unwrap_or_default()
}

/// Frames masked at the start (sample 0), in the middle (1), at the end
/// (2) and everywhere (3) of 4 samples x 6 steps: 12 of 24.
fn masked_steps() -> Vec<(usize, usize)> {
    let mut masked = vec![(0, 0), (0, 1), (1, 2), (1, 3), (2, 5), (2, 4)];
    masked.extend((0..6).map(|t| (3, t)));
    masked
}

#[test]
fn convolution_of_masked_frames_is_skipped_without_changing_the_output() {
    // Texture conv with 16 channels per invocation (16 filters), then one
    // with 8 (24 filters), then the storage-buffer conv (5 filters), all
    // behind a Masking layer and before LSTMs: every one skips masked frames.
    let mut model = ModelBuilder::new("skip", None, &[9, 8, 2])
        .layer(LayerKind::Masking { mask_value: 0.0 })
        .layer(conv(16, (3, 3), (1, 1), (1, 1), Padding::Same, Activation::Sigmoid))
        .layer(LayerKind::Pool2D(Pool2D {
            kind: PoolKind::Max,
            pool: (2, 2),
            strides: (2, 2),
            padding: Padding::Valid,
        }))
        .layer(conv(24, (2, 2), (1, 1), (1, 1), Padding::Valid, Activation::Tanh))
        .layer(conv(5, (2, 2), (1, 1), (1, 1), Padding::Same, Activation::Sigmoid))
        .layer(LayerKind::SpatialDropout { rate: 0.25, mode: DropoutMode::PerTimestep })
        .layer(LayerKind::Flatten)
        .layer(dense(6, Activation::Sigmoid))
        .layer(lstm(7, true))
        .layer(lstm(5, false))
        .layer(dense(3, Activation::Softmax))
        .build()
        .unwrap();
    randomize(&mut model, 31);
    let mut x = input(32, &[4, 6, 9, 8, 2]);
    mask_frames(&mut x, &masked_steps());
    for training in [false, true] {
        let opts = RunOptions { training, seed: 41, ..Default::default() };
        let skipped = check_output_only(&model, &x, None, &opts);
        assert_eq!(skipped, ["conv2d", "conv2d_1", "conv2d_2"]);
        // With layer outputs captured every frame is convolved, as Keras does.
        check(&model, &x, &opts, Tolerance::GPU_F32);
    }
    for ctx in gpu_util::contexts() {
        let mut gm = GpuModel::new(ctx, &model).unwrap();
        let opts = RunOptions { capture_layers: true, ..Default::default() };
        gm.forward(&x, &opts).unwrap();
        assert!(gm.layers_skipping_masked_frames(4, 6).is_empty());
    }
}

#[test]
fn explicit_mask_skips_masked_frames_only_before_an_lstm() {
    // The caller's mask: the masked frames hold ordinary values, which a
    // convolution that wrongly reached the output would reveal.
    let x = input(33, &[4, 6, 7, 7, 3]);
    let mut mask = vec![1u8; 24];
    for (b, t) in masked_steps() {
        mask[b * 6 + t] = 0;
    }
    let seq_lstm = LayerKind::Lstm(Lstm {
        units: 4,
        return_sequences: true,
        zero_output_for_mask: false,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
        use_bias: true,
    });
    let build = |layers: Vec<LayerKind>| {
        let mut b = ModelBuilder::new("explicit", None, &[7, 7, 3]);
        for l in layers {
            b = b.layer(l);
        }
        let mut model = b.build().unwrap();
        randomize(&mut model, 34);
        model
    };
    let relu8 = || conv(8, (3, 3), (2, 2), (1, 1), Padding::Valid, Activation::Relu);
    let tanh3 = || conv(3, (3, 3), (1, 1), (1, 1), Padding::Same, Activation::Tanh);
    // Conv, Dense, then an LSTM returning sequences (masked steps repeat
    // the previous output): both convs skip.
    let model = build(vec![
        tanh3(),
        relu8(),
        LayerKind::Flatten,
        dense(5, Activation::Linear),
        seq_lstm.clone(),
    ]);
    let opts = RunOptions::default();
    assert_eq!(check_output_only(&model, &x, Some(&mask), &opts), ["conv2d", "conv2d_1"]);
    // A Masking layer after the conv recomputes the mask from its values:
    // the conv before it computes every frame, the one after may skip.
    let model = build(vec![
        relu8(),
        LayerKind::Masking { mask_value: 0.0 },
        tanh3(),
        LayerKind::Flatten,
        seq_lstm,
    ]);
    assert_eq!(check_output_only(&model, &x, Some(&mask), &opts), ["conv2d_1"]);
    // No LSTM: the conv's values reach the output, nothing is skipped.
    let model = build(vec![relu8(), LayerKind::Flatten, dense(4, Activation::Linear)]);
    assert!(check_output_only(&model, &x, Some(&mask), &opts).is_empty());
}

/// Whether each channel map (b, t, c) of a `[B, T, H, W, C]` value is all zeros.
fn zero_maps(v: &Tensor) -> Vec<bool> {
    let s = v.shape();
    let (frames, pixels, c) = (s[0] * s[1], s[2] * s[3], s[4]);
    let mut out = Vec::with_capacity(frames * c);
    for f in 0..frames {
        for ch in 0..c {
            out.push((0..pixels).all(|p| v.data()[(f * pixels + p) * c + ch] == 0.0));
        }
    }
    out
}

#[test]
fn spatial_dropout_fused_into_the_conv_matches_reference() {
    // Each conv kernel (texture entries `main` for 16 filters and `main8`
    // for 8, the storage-buffer conv for 5) followed by SpatialDropout2D
    // and SpatialDropout3D. Sigmoid outputs are never 0, so the zero
    // channel maps are exactly the dropped channels, which the test
    // derives from the hash (src/rng.rs) as well as from the reference.
    let (b, t) = (5, 3);
    let x = input(51, &[b, t, 7, 6, 3]);
    for (filters, mode) in [
        (16, DropoutMode::PerTimestep),
        (8, DropoutMode::PerSample),
        (5, DropoutMode::PerTimestep),
        (16, DropoutMode::PerSample),
        (5, DropoutMode::PerSample),
    ] {
        let rate = 0.4;
        let mut model = ModelBuilder::new("fused", None, &[7, 6, 3])
            .layer(conv(filters, (3, 3), (1, 1), (1, 1), Padding::Same, Activation::Sigmoid))
            .layer(LayerKind::SpatialDropout { rate, mode })
            .build()
            .unwrap();
        randomize(&mut model, 52);
        let opts = RunOptions { training: true, seed: 2024, capture_layers: false };
        let want = reference::forward(&model, &x, &opts).unwrap();
        // Expected zero maps from the semantics: layer 1's seed, channel c
        // of (b, t) dropped unless rng::keep, t = 0 for SpatialDropout3D.
        let seed = rng::layer_seed(opts.seed, 1);
        let thr = rng::drop_threshold(rate);
        let mut dropped = Vec::new();
        for s in 0..b {
            for st in 0..t {
                let tt = if mode == DropoutMode::PerSample { 0 } else { st };
                for ch in 0..filters {
                    dropped.push(!rng::keep(seed, thr, s as u32, tt as u32, ch as u32));
                }
            }
        }
        assert!(dropped.iter().any(|&d| d) && dropped.iter().any(|&d| !d));
        assert_eq!(zero_maps(&want.output), dropped, "reference, {filters} filters {mode:?}");
        // Every adapter, and with 16 KiB bindings: the batch then runs in
        // slices, whose samples keep their indices in the hash.
        let mut contexts = gpu_util::contexts();
        for ctx in gpu_util::contexts() {
            let backend = format!("{:?}", ctx.adapter_info().backend).to_lowercase();
            let small = gpu::ContextOptions {
                backend: Some(backend),
                max_binding: Some(16 << 10),
                ..Default::default()
            };
            contexts.push(gpu::Context::new(&small).unwrap());
        }
        for ctx in contexts {
            let who = format!("{} {filters} filters {mode:?}", ctx.describe());
            let mut gm = GpuModel::new(ctx.clone(), &model).unwrap();
            let got = gm.forward(&x, &opts).unwrap();
            let c = compare(got.output.data(), want.output.data(), want.output.shape(), {
                Tolerance::GPU_F32
            });
            assert!(c.is_ok(), "{who}: {c}");
            assert_eq!(zero_maps(&got.output), dropped, "{who}");
            // Fused: no dropout stage of its own.
            let profiled = gm.forward_profiled(&x, &opts).unwrap();
            assert_eq!(profiled.output.data(), got.output.data(), "{who}");
            let names: Vec<&str> = profiled.timings.iter().map(|s| s.name.as_str()).collect();
            assert!(names.iter().all(|n| !n.starts_with("spatial_dropout")), "{who}: {names:?}");
            // Captured, the dropout runs on its own and agrees too.
            let captured = RunOptions { capture_layers: true, ..opts.clone() };
            let got = gm.forward(&x, &captured).unwrap();
            let c = compare(got.output.data(), want.output.data(), want.output.shape(), {
                Tolerance::GPU_F32
            });
            assert!(c.is_ok(), "{who} captured: {c}");
            assert_eq!(zero_maps(&got.output), dropped, "{who} captured");
            let profiled = gm.forward_profiled(&x, &captured).unwrap();
            let names: Vec<&str> = profiled.timings.iter().map(|s| s.name.as_str()).collect();
            assert!(names.iter().any(|n| n.starts_with("spatial_dropout")), "{who}: {names:?}");
        }
    }
}

#[test]
fn lstm_recurrence_persistent_and_per_step_match_reference() {
    // Units multiples of 4 (the texture kernels): 12 with
    // zero_output_for_mask, 68 returning only the last output, 4 after it.
    let lstm_z = |units: usize, seq: bool, zero: bool| {
        LayerKind::Lstm(Lstm {
            units,
            return_sequences: seq,
            zero_output_for_mask: zero,
            activation: Activation::Tanh,
            recurrent_activation: Activation::HardSigmoid,
            use_bias: true,
        })
    };
    let mut model = ModelBuilder::new("rec", None, &[6])
        .layer(LayerKind::Masking { mask_value: 0.0 })
        .layer(lstm_z(12, true, true))
        .layer(lstm_z(68, true, false))
        .layer(lstm_z(4, false, true))
        .build()
        .unwrap();
    randomize(&mut model, 61);
    let mut inputs = Vec::new();
    let mut x = input(62, &[4, 6, 6]);
    mask_frames(&mut x, &masked_steps());
    inputs.push(x);
    inputs.push(input(63, &[1, 9, 6]));
    inputs.push(input(64, &[8, 1, 6]));
    for x in &inputs {
        for capture_layers in [true, false] {
            let opts = RunOptions { capture_layers, ..Default::default() };
            let want = reference::forward(&model, x, &opts).unwrap();
            for ctx in gpu_util::contexts() {
                let mut gm = GpuModel::new(ctx.clone(), &model).unwrap();
                for r in [LstmRecurrence::Persistent, LstmRecurrence::PerStep, LstmRecurrence::Auto]
                {
                    gm.set_lstm_recurrence(r);
                    let got = gm.forward(x, &opts).unwrap();
                    let who = format!("{} {r:?} {:?}", ctx.describe(), x.shape());
                    assert_eq!(got.layers.len(), want.layers.len(), "{who}");
                    for (g, w) in got.layers.iter().zip(&want.layers) {
                        let c = compare(g.value.data(), w.value.data(), w.value.shape(), {
                            Tolerance::GPU_F32
                        });
                        assert!(c.is_ok(), "{who} layer {}: {c}", g.name);
                        assert_eq!(g.mask, w.mask, "{who} layer {} mask", g.name);
                    }
                    let c = compare(got.output.data(), want.output.data(), want.output.shape(), {
                        Tolerance::GPU_F32
                    });
                    assert!(c.is_ok(), "{who} output: {c}");
                }
            }
        }
    }
}
