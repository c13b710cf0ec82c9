//! GPU faults come back as errors from the call that meets them, never as
//! panics, hangs or stale numbers.

mod gpu_util;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cnn_lstm::gpu::{Context, ContextOptions, GpuModel};
use cnn_lstm::*;

fn small_model() -> Model {
    let mut model = ModelBuilder::new("small", None, &[6, 6, 1])
        .layer(Conv2D::new(2, (3, 3)).activation(Activation::Relu))
        .layer(LayerKind::Flatten)
        .layer(Lstm::new(3))
        .build()
        .unwrap();
    for (layer, var, shape) in model.weight_specs() {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect();
        model.set_weight(&layer, var, Tensor::new(shape, data).unwrap()).unwrap();
    }
    model
}

fn input(scale: f32) -> Tensor {
    Tensor::new(vec![2, 3, 6, 6, 1], (0..216).map(|i| (i % 5) as f32 * scale).collect()).unwrap()
}

/// A fresh context per test: these tests break their device on purpose.
fn fresh_contexts() -> Vec<Arc<Context>> {
    gpu_util::contexts()
        .iter()
        .map(|c| {
            let backend = format!("{:?}", c.adapter_info().backend).to_lowercase();
            Context::new(&ContextOptions { backend: Some(backend), ..Default::default() }).unwrap()
        })
        .collect()
}

#[test]
fn an_uncaptured_validation_error_is_returned_by_the_next_call_not_panicked() {
    for ctx in fresh_contexts() {
        let model = small_model();
        let mut gm = GpuModel::new(ctx.clone(), &model).unwrap();
        gm.forward(&input(1.0), &RunOptions::default()).unwrap();
        // An application sharing the device makes an invalid call outside
        // any error scope: a storage buffer that is also MAP_READ.
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _bad = ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("deliberately invalid"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::MAP_READ,
                mapped_at_creation: false,
            });
            gm.forward(&input(1.0), &RunOptions::default())
        }));
        let outcome = result.expect("no panic may escape");
        let err = outcome.expect_err("the recorded validation error must be returned");
        assert!(matches!(err, Error::Validation { .. }), "{err}");
        assert!(err.to_string().contains("deliberately invalid"), "{err}");
        // Reported once; the device is still usable afterwards.
        gm.forward(&input(1.0), &RunOptions::default()).unwrap();
    }
}

#[test]
fn after_device_loss_every_call_errors_instead_of_returning_old_buffers() {
    for ctx in fresh_contexts() {
        let model = small_model();
        let mut gm = GpuModel::new(ctx.clone(), &model).unwrap();
        let before = gm.forward(&input(1.0), &RunOptions::default()).unwrap();
        assert!(before.output.data().iter().any(|v| *v != 0.0));
        ctx.device().destroy();
        for _ in 0..2 {
            let result =
                catch_unwind(AssertUnwindSafe(|| gm.forward(&input(2.0), &RunOptions::default())));
            let err = result.expect("no panic").expect_err("a lost device must not return data");
            assert!(matches!(err, Error::DeviceLost(_)), "{err}");
        }
        // A model built on the lost device fails cleanly too.
        let err = catch_unwind(AssertUnwindSafe(|| GpuModel::new(ctx.clone(), &model).err()));
        assert!(err.expect("no panic").is_some());
    }
}

#[test]
fn concurrent_readbacks_on_one_device_never_hang() {
    // Two threads share one device, each with its own model, each waiting
    // for its own readbacks; nobody else polls the device.
    for ctx in fresh_contexts() {
        let started = Instant::now();
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    let mut gm = GpuModel::new(ctx, &small_model()).unwrap();
                    let x = input(1.0 + i as f32);
                    let first = gm.forward(&x, &RunOptions::default()).unwrap();
                    for _ in 0..10 {
                        let again = gm.forward(&x, &RunOptions::default()).unwrap();
                        assert_eq!(again.output.data(), first.output.data());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread panicked");
        }
        assert!(started.elapsed() < Duration::from_secs(120));
    }
}
