//! Dense + softmax stage: the article's head, Dense 10 softmax on the last
//! LSTM's 32 outputs, one row per sample and timestep (B x T rows).

mod common;

use cnn_lstm::*;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let (b, t) = common::bt();
    let model = common::with_weights(ModelBuilder::new("head", None, &[32]).layer(
        LayerKind::Dense(Dense { units: 10, activation: Activation::Softmax, use_bias: true }),
    ));
    let x = common::input(&model, b, t);
    let name = format!("dense_softmax/32->10/B{b}T{t}");
    common::gpu_and_cpu(c, &name, &model, &x, &RunOptions::default());
}

criterion_group! { name = benches; config = common::criterion(); targets = bench }
criterion_main!(benches);
