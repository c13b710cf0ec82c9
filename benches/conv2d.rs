//! Conv2D stage: the article's TimeDistributed Conv2D (32 filters 3x3 relu on
//! 64x64x3 frames; small: 8 filters on 16x16x3) over B x T frames.

mod common;

use cnn_lstm::*;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let (side, filters) = if common::small() { (16, 8) } else { (64, 32) };
    let (b, t) = common::bt();
    let model = common::with_weights(
        ModelBuilder::new("conv2d", None, &[side, side, 3]).layer(common::conv(filters)),
    );
    let x = common::input(&model, b, t);
    let name = format!("conv2d/{side}x{side}x3->{filters}/B{b}T{t}");
    common::gpu_and_cpu(c, &name, &model, &x, &RunOptions::default());
}

criterion_group! { name = benches; config = common::criterion(); targets = bench }
criterion_main!(benches);
