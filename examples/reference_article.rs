//! Times the CPU reference on the article's model at full size: B = 8,
//! T = 10, 64x64x3 frames, Keras default weights.
//!
//! `cargo run --release --example reference_article`

use std::time::Instant;

use cnn_lstm::{init, reference, zoo, RunOptions, Tensor};

fn main() -> cnn_lstm::Result<()> {
    let mut model = zoo::article("article", zoo::ArticleSize::FULL, true)?;
    let start = Instant::now();
    init::keras_default_weights(&mut model, 1)?;
    println!("init {} params: {:.2?}", model.param_count(), start.elapsed());

    let (b, t) = (8, 10);
    let n = b * t * 64 * 64 * 3;
    // Deterministic pixel values in [0, 1); the last two steps of sample 0 are padding.
    let mut data: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    data[8 * 64 * 64 * 3..10 * 64 * 64 * 3].fill(0.0);
    let input = Tensor::new(vec![b, t, 64, 64, 3], data)?;

    let start = Instant::now();
    let f = reference::forward(&model, &input, &RunOptions::default())?;
    println!("forward: {:.2?}", start.elapsed());
    for s in &f.timings {
        let gflops = s.flops as f64 / s.time.as_secs_f64().max(1e-9) / 1e9;
        println!("  {:<20} {:>10.2?} {:>8.2} GFLOP/s", s.name, s.time, gflops);
    }
    println!("output[0] = {:?}", &f.output.data()[..10]);
    Ok(())
}
