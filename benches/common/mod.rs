//! Shared set-up of the criterion benches: one GPU context per bench binary,
//! models with Keras default weights, deterministic inputs, and the size
//! switch `CNN_LSTM_BENCH_SMALL=1` that CI uses to smoke-run every bench.
//!
//! Every GPU measurement calls `GpuModel::forward`, which returns only after
//! the outputs were read back, so the clock stops after the GPU finished.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cnn_lstm::gpu::{Context, ContextOptions, GpuModel};
use cnn_lstm::*;
use criterion::Criterion;

/// True when `CNN_LSTM_BENCH_SMALL` is set (to anything but `0`): shapes
/// shrink so that every bench finishes in seconds.
pub fn small() -> bool {
    std::env::var("CNN_LSTM_BENCH_SMALL").is_ok_and(|v| v != "0")
}

/// `(batch, timesteps)` of the benches: 8 x 10 (the article's), or 2 x 3 small.
pub fn bt() -> (usize, usize) {
    if small() {
        (2, 3)
    } else {
        (8, 10)
    }
}

/// Criterion with few samples: one sample of the article model takes seconds.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(if small() { 1 } else { 5 }))
}

/// The GPU context (built once), or `None` with a printed reason when no
/// adapter is present.
pub fn context() -> Option<Arc<Context>> {
    static CTX: OnceLock<Option<Arc<Context>>> = OnceLock::new();
    CTX.get_or_init(|| {
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            let dir = std::env::temp_dir().join("cnn-lstm-xdg");
            let _ = std::fs::create_dir_all(&dir);
            // Set before any thread opens a device.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
        }
        match Context::new(&ContextOptions::from_env()) {
            Ok(ctx) => {
                eprintln!("GPU benches on {}", ctx.describe());
                Some(ctx)
            }
            Err(e) => {
                eprintln!("no GPU adapter, GPU benches skipped: {e}");
                None
            }
        }
    })
    .clone()
}

/// Builds `model` with Keras default weights (seed 1).
pub fn with_weights(builder: ModelBuilder) -> Model {
    let mut model = builder.build().expect("bench model builds");
    init::keras_default_weights(&mut model, 1).expect("default weights");
    model
}

/// Deterministic input `[b, t, ...frame]` in (0, 1].
pub fn input(model: &Model, b: usize, t: usize) -> Tensor {
    let mut shape = vec![b, t];
    shape.extend_from_slice(&model.input().frame);
    let n: usize = shape.iter().product();
    Tensor::new(shape, (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 + 0.001).collect())
        .expect("input tensor")
}

/// Benches `model` on `x` twice in group `name`: the GPU forward (when an
/// adapter exists) and the CPU reference, on the same shapes.
pub fn gpu_and_cpu(c: &mut Criterion, name: &str, model: &Model, x: &Tensor, opts: &RunOptions) {
    let mut group = c.benchmark_group(name);
    if let Some(ctx) = context() {
        let mut gm = GpuModel::new(ctx, model).expect("model uploads");
        gm.forward(x, opts).expect("warm-up forward");
        group.bench_function("gpu", |bench| {
            bench.iter(|| gm.forward(x, opts).expect("gpu forward"))
        });
    }
    group.bench_function("cpu_reference", |bench| {
        bench.iter(|| reference::forward(model, x, opts).expect("cpu forward"))
    });
    group.finish();
}

pub fn conv(filters: usize) -> LayerKind {
    LayerKind::Conv2D(Conv2D {
        filters,
        kernel: (3, 3),
        strides: (1, 1),
        dilation: (1, 1),
        padding: Padding::Valid,
        activation: Activation::Relu,
        use_bias: true,
    })
}

pub fn lstm(units: usize, return_sequences: bool) -> LayerKind {
    LayerKind::Lstm(Lstm {
        units,
        return_sequences,
        zero_output_for_mask: false,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
        use_bias: true,
    })
}
