//! Whole forward passes: the small model (16x16x3, Conv 8, LSTM 16 then 8,
//! Dense 10) and the article model (64x64x3, Conv 32, LSTM 64 then 32,
//! Dense 10) at B = 8, T = 10; with CNN_LSTM_BENCH_SMALL=1 only the small
//! model, at B = 2, T = 3.

mod common;

use cnn_lstm::bench::article_like;
use cnn_lstm::*;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let (b, t) = common::bt();
    let mut models = vec![article_like("small", 16, 8, (16, 8)).expect("small model")];
    if !common::small() {
        models.push(article_like("article", 64, 32, (64, 32)).expect("article model"));
    }
    for model in &models {
        let x = common::input(model, b, t);
        let name = format!("forward/{}/B{b}T{t}", model.name());
        common::gpu_and_cpu(c, &name, model, &x, &RunOptions::default());
    }
}

criterion_group! { name = benches; config = common::criterion(); targets = bench }
criterion_main!(benches);
