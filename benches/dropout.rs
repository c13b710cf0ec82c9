//! SpatialDropout stage in training mode (per timestep), on the article's
//! conv output frames 62x62x32 (small: 14x14x8).

mod common;

use cnn_lstm::*;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let (side, ch) = if common::small() { (14, 8) } else { (62, 32) };
    let (b, t) = common::bt();
    let model = common::with_weights(
        ModelBuilder::new("dropout", None, &[side, side, ch])
            .layer(LayerKind::SpatialDropout { rate: 0.2, mode: DropoutMode::PerTimestep }),
    );
    let x = common::input(&model, b, t);
    let opts = RunOptions { training: true, seed: 7, ..Default::default() };
    let name = format!("spatial_dropout/{side}x{side}x{ch}/B{b}T{t}");
    common::gpu_and_cpu(c, &name, &model, &x, &opts);
}

criterion_group! { name = benches; config = common::criterion(); targets = bench }
criterion_main!(benches);
