//! LSTM input projection stage: the GEMM [B*T, F] x [F, 4U] + bias, measured
//! as a Dense layer of 4U units on timed input (the same kernel and shape the
//! scheduler records for an LSTM's projection). Article: F = 123008
//! (62x62x32 flattened), U = 64; small: F = 1568, U = 16.

mod common;

use cnn_lstm::*;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let (f, u) = if common::small() { (1568, 16) } else { (123008, 64) };
    let (b, t) = common::bt();
    let model = common::with_weights(ModelBuilder::new("projection", None, &[f]).layer(
        LayerKind::Dense(Dense { units: 4 * u, activation: Activation::Linear, use_bias: true }),
    ));
    let x = common::input(&model, b, t);
    let name = format!("lstm_input_projection/M{}xK{f}xN{}", b * t, 4 * u);
    common::gpu_and_cpu(c, &name, &model, &x, &RunOptions::default());
}

criterion_group! { name = benches; config = common::criterion(); targets = bench }
criterion_main!(benches);
