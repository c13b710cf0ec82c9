//! LSTM recurrence stage: an LSTM of 64 units with sequences over T steps
//! (small: 16 units), on 4 input features so that the input projection is
//! negligible beside the recurrence (one persistent dispatch over all steps).

mod common;

use cnn_lstm::*;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let u = if common::small() { 16 } else { 64 };
    let (b, t) = common::bt();
    let model = common::with_weights(
        ModelBuilder::new("recurrence", None, &[4]).layer(common::lstm(u, true)),
    );
    let x = common::input(&model, b, t);
    let name = format!("lstm_recurrence/U{u}/B{b}T{t}");
    common::gpu_and_cpu(c, &name, &model, &x, &RunOptions::default());
}

criterion_group! { name = benches; config = common::criterion(); targets = bench }
criterion_main!(benches);
