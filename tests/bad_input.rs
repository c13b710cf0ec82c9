//! Inputs that do not fit the model are refused with an error naming what
//! was expected and what came, on the CPU and on every GPU adapter.

mod gpu_util;

use cnn_lstm::gpu::GpuModel;
use cnn_lstm::*;

fn model() -> Model {
    let mut model = ModelBuilder::new("m", None, &[8, 8, 3])
        .layer(Conv2D::new(2, (3, 3)).activation(Activation::Relu))
        .layer(LayerKind::Flatten)
        .layer(Lstm::new(3))
        .build()
        .unwrap();
    init::keras_default_weights(&mut model, 1).unwrap();
    model
}

#[test]
fn a_model_whose_weights_were_never_set_is_refused_by_every_device() {
    let model = ModelBuilder::new("m", None, &[8, 8, 3])
        .layer(Conv2D::new(2, (3, 3)))
        .layer(LayerKind::Flatten)
        .build()
        .unwrap();
    let x = Tensor::zeros(vec![1, 2, 8, 8, 3]);
    let err = reference::forward(&model, &x, &RunOptions::default()).unwrap_err().to_string();
    assert!(
        err.contains("conv2d/kernel") && err.contains("not set") && err.contains("[3, 3, 3, 2]"),
        "{err}"
    );
    for ctx in gpu_util::contexts() {
        let err = GpuModel::new(ctx, &model).err().unwrap().to_string();
        assert!(err.contains("conv2d/kernel") && err.contains("not set"), "{err}");
    }
}

/// Every device's error for `shape`.
fn errors(model: &Model, shape: &[usize]) -> Vec<String> {
    let x = Tensor::zeros(shape.to_vec());
    let opts = RunOptions::default();
    let mut out = vec![reference::forward(model, &x, &opts).unwrap_err()];
    for ctx in gpu_util::contexts() {
        out.push(GpuModel::new(ctx, model).unwrap().forward(&x, &opts).unwrap_err());
    }
    out.into_iter()
        .map(|e| {
            assert!(matches!(e, Error::Input { .. }), "{e}");
            e.to_string()
        })
        .collect()
}

#[test]
fn frames_without_a_time_axis_are_refused() {
    for e in errors(&model(), &[2, 8, 8, 3]) {
        assert!(e.contains("[B, T, 8, 8, 3]") && e.contains("[2, 8, 8, 3]"), "{e}");
    }
}

#[test]
fn frames_without_a_channel_axis_are_refused() {
    for e in errors(&model(), &[2, 4, 8, 8]) {
        assert!(e.contains("[B, T, 8, 8, 3]") && e.contains("[2, 4, 8, 8]"), "{e}");
    }
}

#[test]
fn wrong_frame_size_or_channel_count_is_refused() {
    for shape in [[2, 4, 9, 8, 3], [2, 4, 8, 8, 1]] {
        for e in errors(&model(), &shape) {
            assert!(e.contains("[B, T, 8, 8, 3]"), "{e}");
        }
    }
}

#[test]
fn empty_batch_or_zero_timesteps_are_refused() {
    for shape in [[0, 4, 8, 8, 3], [2, 0, 8, 8, 3]] {
        for e in errors(&model(), &shape) {
            assert!(e.contains("B >= 1 and T >= 1"), "{e}");
        }
    }
}

#[test]
fn a_fixed_time_dimension_is_enforced() {
    let fixed =
        ModelBuilder::new("fixed", Some(5), &[4]).layer(LayerKind::Flatten).build().unwrap();
    for e in errors(&fixed, &[1, 3, 4]) {
        assert!(e.contains("T = 5") && e.contains("T = 3"), "{e}");
    }
}

#[test]
fn tensor_data_must_match_its_shape() {
    let err = Tensor::new(vec![2, 3], vec![0.0; 5]).unwrap_err().to_string();
    assert!(err.contains("6 values") && err.contains("5 values"), "{err}");
}
