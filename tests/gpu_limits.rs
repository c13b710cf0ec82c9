//! Device limits: tensors larger than one storage binding, grids larger
//! than 65535 workgroups, small devices, and models that can never fit.

mod gpu_util;

use std::sync::Arc;

use cnn_lstm::gpu::{Context, ContextOptions, GpuModel};
use cnn_lstm::tolerance::{compare, Tolerance};
use cnn_lstm::*;

fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32) / ((1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// One context per backend with bindings and buffers capped at `cap` bytes.
fn small_contexts(cap: u64) -> Vec<Arc<Context>> {
    gpu_util::contexts()
        .iter()
        .map(|c| {
            let backend = format!("{:?}", c.adapter_info().backend).to_lowercase();
            let opts = ContextOptions {
                backend: Some(backend),
                max_binding: Some(cap),
                ..Default::default()
            };
            Context::new(&opts).unwrap()
        })
        .collect()
}

fn random_weights(model: &mut Model, seed: u64) {
    for (i, (layer, var, shape)) in model.weight_specs().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let fan_in: usize =
            if shape.len() > 1 { shape[..shape.len() - 1].iter().product() } else { 4 };
        let scale = (3.0 / fan_in as f32).sqrt();
        let data = values(seed + i as u64, n).into_iter().map(|v| v * scale).collect();
        model.set_weight(&layer, var, Tensor::new(shape, data).unwrap()).unwrap();
    }
}

fn compare_all(what: &str, got: &Forward, want: &Forward) {
    for (g, w) in got.layers.iter().zip(&want.layers) {
        let c = compare(g.value.data(), w.value.data(), w.value.shape(), Tolerance::GPU_F32);
        assert!(c.is_ok(), "{what} layer {}: {c}", g.name);
        assert_eq!(g.mask, w.mask, "{what} layer {} mask", g.name);
    }
    let c = compare(got.output.data(), want.output.data(), want.output.shape(), Tolerance::GPU_F32);
    assert!(c.is_ok(), "{what} output: {c}");
}

#[test]
fn tensors_beyond_one_binding_are_split_and_match_reference() {
    // With 1 MiB bindings: the LSTM kernel (3872 x 128 f32 = 1.9 MiB) is
    // split along K, and the conv output of 16 x 5 frames (1.2 MiB) makes
    // the batch run in slices. Training mode checks that dropout masks
    // keep their sample indices across slices.
    let mut model = ModelBuilder::new("split", None, &[24, 24, 3])
        .layer(LayerKind::Masking { mask_value: 0.0 })
        .layer(Conv2D::new(8, (3, 3)).activation(Activation::Relu))
        .layer(LayerKind::SpatialDropout { rate: 0.25, mode: DropoutMode::PerTimestep })
        .layer(LayerKind::Flatten)
        .layer(Lstm::new(32))
        .layer(LayerKind::Dense(Dense {
            units: 10,
            activation: Activation::Softmax,
            use_bias: true,
        }))
        .build()
        .unwrap();
    random_weights(&mut model, 1);
    let shape = vec![16, 5, 24, 24, 3];
    let mut x = Tensor::new(shape.clone(), values(2, shape.iter().product())).unwrap();
    // Sample 9 (in the second slice) ends with two masked frames.
    let frame = 24 * 24 * 3;
    x.data_mut()[(9 * 5 + 3) * frame..(9 * 5 + 5) * frame].fill(0.0);
    for training in [false, true] {
        let opts = RunOptions { training, seed: 31, capture_layers: true };
        let want = reference::forward(&model, &x, &opts).unwrap();
        for ctx in small_contexts(1 << 20) {
            let mut gm = GpuModel::new(ctx.clone(), &model).unwrap();
            let got = gm.forward(&x, &opts).unwrap();
            compare_all(&format!("{} training={training}", ctx.describe()), &got, &want);
            // No buffer the plan holds exceeds the binding limit.
            assert!(gm.plan_bytes(16, 5).is_none(), "the full batch must not have been planned");
        }
    }
}

#[test]
fn elementwise_grid_beyond_65535_workgroups_is_right_to_the_last_element() {
    // 65535 * 64 + 1 values in one frame: the masking kernel's grid needs a
    // second dimension. Dropout (per element) over the same tensor is
    // compared bit for bit, up to the last element.
    let n = 65535 * 64 + 1;
    let model = ModelBuilder::new("wide", None, &[n])
        .layer(LayerKind::Masking { mask_value: 0.0 })
        .layer(LayerKind::Dropout { rate: 0.5 })
        .build()
        .unwrap();
    let mut data = values(3, n);
    data[n - 1] = 7.5;
    let x = Tensor::new(vec![1, 1, n], data).unwrap();
    let opts = RunOptions { training: true, seed: 4, capture_layers: true };
    let want = reference::forward(&model, &x, &opts).unwrap();
    for ctx in gpu_util::contexts() {
        let got = GpuModel::new(ctx.clone(), &model).unwrap().forward(&x, &opts).unwrap();
        assert_eq!(
            got.layers[0].value.data(),
            x.data(),
            "{}: masking of a valid frame",
            ctx.describe()
        );
        assert_eq!(got.output.data(), want.output.data(), "{}", ctx.describe());
        let last = got.output.data()[n - 1];
        assert!(last == 0.0 || last == 15.0, "last element {last}");
    }
}

#[test]
fn a_frame_that_can_never_fit_is_refused_before_any_work() {
    // One 200 x 200 x 8 conv output is 1.28 MB, over a 1 MiB binding, even
    // for a single sample: nothing can be split further.
    let mut model = ModelBuilder::new("huge", None, &[202, 202, 1])
        .layer(Conv2D::new(8, (3, 3)).activation(Activation::Relu))
        .build()
        .unwrap();
    random_weights(&mut model, 5);
    let x = Tensor::zeros(vec![1, 1, 202, 202, 1]);
    for ctx in small_contexts(1 << 20) {
        let err =
            GpuModel::new(ctx, &model).unwrap().forward(&x, &RunOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::LimitExceeded { .. }), "{text}");
        assert!(
            text.contains("conv2d") && text.contains("1280000") && text.contains("1048576"),
            "{text}"
        );
    }
}

#[test]
fn runs_within_downlevel_default_limits() {
    // wgpu's downlevel defaults (256 invocations per workgroup, 16 KiB of
    // workgroup memory), with the 7 storage buffers the LSTM kernel binds.
    let limits = wgpu::Limits {
        max_storage_buffers_per_shader_stage: 7,
        ..wgpu::Limits::downlevel_defaults()
    };
    let mut model = ModelBuilder::new("small", None, &[10, 10, 2])
        .layer(Conv2D::new(4, (3, 3)).padding(Padding::Same).activation(Activation::Relu))
        .layer(LayerKind::Flatten)
        .layer(Lstm::new(9))
        .build()
        .unwrap();
    random_weights(&mut model, 6);
    let x = Tensor::new(vec![2, 3, 10, 10, 2], values(7, 1200)).unwrap();
    let opts = RunOptions { capture_layers: true, ..Default::default() };
    let want = reference::forward(&model, &x, &opts).unwrap();
    for ctx in gpu_util::contexts() {
        let backend = format!("{:?}", ctx.adapter_info().backend).to_lowercase();
        let opts_ctx = ContextOptions {
            backend: Some(backend),
            limits: Some(limits.clone()),
            ..Default::default()
        };
        let small = Context::new(&opts_ctx).unwrap();
        let got = GpuModel::new(small.clone(), &model).unwrap().forward(&x, &opts).unwrap();
        compare_all(&small.describe(), &got, &want);

        // With only 4 storage buffers per stage the LSTM cannot be built:
        // the error names the limit instead of failing inside wgpu.
        let four = wgpu::Limits { max_storage_buffers_per_shader_stage: 4, ..limits.clone() };
        let opts_ctx = ContextOptions { limits: Some(four), ..opts_ctx };
        let tiny = Context::new(&opts_ctx).unwrap();
        let err = GpuModel::new(tiny, &model).err().unwrap().to_string();
        assert!(err.contains("max_storage_buffers_per_shader_stage"), "{err}");
    }
}

/// Regressions: llvmpipe ends an invocation's loops after 65535 iterations in
/// all (nested loops do not escape it), which silently truncated long loops.
/// Each case runs past that count in one invocation unless the work is split.
mod loop_budget {
    use super::*;

    fn check(model: &Model, x: &Tensor) {
        let opts = RunOptions::default();
        let want = reference::forward(model, x, &opts).unwrap();
        for ctx in gpu_util::contexts() {
            let got = GpuModel::new(ctx.clone(), model).unwrap().forward(x, &opts).unwrap();
            let c = compare(
                got.output.data(),
                want.output.data(),
                want.output.shape(),
                Tolerance::GPU_F32,
            );
            assert!(c.is_ok(), "{}: {c}", ctx.describe());
        }
    }

    #[test]
    fn masking_a_frame_of_70001_values_sees_its_last_value() {
        let n = 70001;
        let model = ModelBuilder::new("m", None, &[n])
            .layer(LayerKind::Masking { mask_value: 0.0 })
            .layer(LayerKind::Dropout { rate: 0.5 })
            .build()
            .unwrap();
        // Frame 1 differs from the mask value only in its last element.
        let mut data = vec![0.0; 2 * n];
        data[..n].copy_from_slice(&values(8, n));
        data[2 * n - 1] = 3.0;
        let x = Tensor::new(vec![1, 2, n], data).unwrap();
        let opts = RunOptions { capture_layers: true, ..Default::default() };
        for ctx in gpu_util::contexts() {
            let got = GpuModel::new(ctx.clone(), &model).unwrap().forward(&x, &opts).unwrap();
            assert_eq!(got.layers[0].mask, Some(vec![1, 1]), "{}", ctx.describe());
            assert_eq!(got.output.data(), x.data(), "{}", ctx.describe());
        }
    }

    #[test]
    fn register_gemm_with_k_of_65539_matches_reference() {
        // K and N not multiples of 4: the register-tiled GEMM.
        let mut model =
            ModelBuilder::new("wide", None, &[65539]).layer(Dense::new(10)).build().unwrap();
        random_weights(&mut model, 9);
        check(&model, &Tensor::new(vec![1, 2, 65539], values(10, 2 * 65539)).unwrap());
    }

    #[test]
    fn persistent_lstm_over_3000_steps_matches_reference() {
        for units in [64, 3] {
            let mut model = ModelBuilder::new("long", None, &[2])
                .layer(Lstm::new(units).sequences(true))
                .build()
                .unwrap();
            random_weights(&mut model, 11);
            let x = Tensor::new(vec![1, 3000, 2], values(12, 6000)).unwrap();
            check(&model, &x);
        }
    }

    #[test]
    fn lstm_over_70000_samples_splits_its_grid() {
        let mut model = ModelBuilder::new("many", None, &[2]).layer(Lstm::new(3)).build().unwrap();
        random_weights(&mut model, 13);
        check(&model, &Tensor::new(vec![70000, 1, 2], values(14, 140000)).unwrap());
    }

    #[test]
    fn softmax_too_wide_for_a_cpu_adapter_is_refused_not_truncated() {
        let mut model = ModelBuilder::new("vocab", None, &[4])
            .layer(Dense::new(20000).activation(Activation::Softmax))
            .build()
            .unwrap();
        random_weights(&mut model, 15);
        let x = Tensor::new(vec![1, 1, 4], values(16, 4)).unwrap();
        for ctx in gpu_util::contexts() {
            let result =
                GpuModel::new(ctx.clone(), &model).unwrap().forward(&x, &RunOptions::default());
            if ctx.loop_budget().is_some() {
                let err = result.unwrap_err().to_string();
                assert!(err.contains("softmax over 20000 units"), "{err}");
            } else {
                result.unwrap();
            }
        }
    }
}

/// Regression: a convolution input texture taller than the device allows
/// failed with a validation error; it now makes the batch run in slices.
#[test]
fn conv_input_texture_taller_than_the_limit_runs_in_batch_slices() {
    let mut model = ModelBuilder::new("tall", None, &[64, 64, 3])
        .layer(Conv2D::new(8, (3, 3)).activation(Activation::Relu))
        .layer(LayerKind::Flatten)
        .layer(Lstm::new(4))
        .build()
        .unwrap();
    random_weights(&mut model, 17);
    let x = Tensor::new(vec![4, 2, 64, 64, 3], values(18, 4 * 2 * 64 * 64 * 3)).unwrap();
    let opts = RunOptions::default();
    let want = reference::forward(&model, &x, &opts).unwrap();
    for ctx in gpu_util::contexts() {
        let backend = format!("{:?}", ctx.adapter_info().backend).to_lowercase();
        let limits = wgpu::Limits { max_texture_dimension_2d: 256, ..ctx.limits().clone() };
        let opts_ctx =
            ContextOptions { backend: Some(backend), limits: Some(limits), ..Default::default() };
        let small = Context::new(&opts_ctx).unwrap();
        let got = GpuModel::new(small.clone(), &model).unwrap().forward(&x, &opts).unwrap();
        let c =
            compare(got.output.data(), want.output.data(), want.output.shape(), Tolerance::GPU_F32);
        assert!(c.is_ok(), "{}: {c}", small.describe());
    }
}
