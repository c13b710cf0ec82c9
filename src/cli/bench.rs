//! `cnn-lstm bench`: times the demo's model per stage on one device.

use std::time::{Duration, Instant};

use cnn_lstm::digits::{render_clips, ClipStyle, Digits};
use cnn_lstm::{Forward, RunOptions};

use super::run_device::{self, Gpu};
use super::{demo, say, BenchArgs, CliResult, Device};

/// One warm-up run, then `iterations` timed runs; prints the mean per stage.
pub fn run(args: &BenchArgs) -> CliResult {
    let (batch, timesteps) = (args.batch as usize, args.timesteps as usize);
    let digits = Digits::embedded()?;
    let (input, _) = render_clips(&digits, &ClipStyle::default(), batch, timesteps, 1)?;
    let mut model = demo::article_model()?;
    run_device::keras_default_weights(&mut model, 1)?;
    let opts = RunOptions::default();

    let mut gpu = match args.device {
        Device::Gpu => {
            let gpu = Gpu::new()?;
            say!("adapter: {}", gpu.describe());
            Some(gpu.upload(&model)?)
        }
        Device::Cpu => None,
    };
    // `profiled`: per-stage times (the GPU then submits and waits per stage).
    let mut once = |profiled: bool| -> cnn_lstm::Result<Forward> {
        match &mut gpu {
            Some(runner) if profiled => runner.forward_profiled(&input, &opts),
            Some(runner) => runner.forward(&input, &opts),
            None => run_device::cpu_forward(&model, &input, &opts, &mut |_| {}),
        }
    };

    once(false)?;
    let mut walls = Vec::new();
    for _ in 0..args.iterations {
        let started = Instant::now();
        once(false)?;
        walls.push(started.elapsed());
    }
    let stages = once(true)?.timings;

    let n = args.iterations;
    say!("{} device, B={batch}, T={timesteps}, after one warm-up run:", args.device);
    say!("  per stage (one run, each stage timed alone):");
    for s in &stages {
        say!("    {:<30} {:>10.2} ms", s.name, s.time.as_secs_f64() * 1e3);
    }
    let mean = walls.iter().sum::<Duration>().as_secs_f64() / f64::from(n);
    let min = walls.iter().min().copied().unwrap_or_default().as_secs_f64();
    say!(
        "  {:<32} {:>10.2} ms (min {:.2} ms, {n} runs)",
        "forward pass (wall, mean)",
        mean * 1e3,
        min * 1e3
    );
    say!("  {:<32} {:>10.1} clips/s", "throughput", batch as f64 / mean);
    Ok(())
}
