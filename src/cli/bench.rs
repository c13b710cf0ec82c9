//! `cnn-lstm bench`: first-call time, median forward, per-stage times and
//! rates, GPU memory and optionally the adapter's ceilings, from
//! [`cnn_lstm::bench::run_bench`] (its documentation describes the method).

use std::path::PathBuf;

use cnn_lstm::bench::{run_bench, BenchDevice, BenchModel, BenchOptions};

use super::{say, BenchArgs, CliResult, Device};

/// Runs the benchmark and prints its report as text or JSON.
pub fn run(args: &BenchArgs) -> CliResult {
    let model = match args.model.as_str() {
        "article" => BenchModel::Article,
        "small" => BenchModel::Small,
        path => BenchModel::File(PathBuf::from(path)),
    };
    let opts = BenchOptions {
        model,
        batch: args.batch as usize,
        timesteps: args.timesteps as usize,
        iters: args.iters as usize,
        device: match args.device {
            Device::Gpu => BenchDevice::Gpu,
            Device::Cpu => BenchDevice::Cpu,
        },
        peak: args.peak,
        ..Default::default()
    };
    let report = run_bench(&opts)?;
    if args.json {
        say!("{}", report.to_json()?);
    } else {
        say!("{}", report.to_text().trim_end());
    }
    Ok(())
}
