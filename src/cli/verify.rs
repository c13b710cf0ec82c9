//! `cnn-lstm verify DIR`: runs a Keras fixture directory (`model.json`,
//! `weights.safetensors`, `io.safetensors` with `input`, `output` and
//! `layer/<name>`) and compares every stored tensor with what cnn-lstm computes.

use cnn_lstm::RunOptions;

use super::run::{forward, load_model, read_f32};
use super::run_device;
use super::{say, CliResult, Failure, VerifyArgs};

/// Compares the model output and every stored layer output; fails on any mismatch.
pub fn run(args: &VerifyArgs) -> CliResult {
    let dir = &args.dir;
    let model = load_model(&dir.join("model.json"), Some(&dir.join("weights.safetensors")))?;
    let io = dir.join("io.safetensors");
    let input = read_f32(&io, "input")?;
    let opts = RunOptions { training: false, seed: 0, capture_layers: true };
    let fwd = forward(&model, &input, &opts, args.device)?;

    let mut checked = vec![("output".to_string(), fwd.output.clone())];
    for layer in &fwd.layers {
        checked.push((format!("layer/{}", layer.name), layer.value.clone()));
    }
    let mut failed = Vec::new();
    for (key, ours) in &checked {
        let Ok(keras) = read_f32(&io, key) else {
            say!("  {key:<40} (not stored by Keras)");
            continue;
        };
        let agreement = run_device::compare(ours, &keras)?;
        say!(
            "  {key:<40} max |difference| {:.3e}  {}",
            agreement.max_abs,
            if agreement.ok { "ok" } else { "MISMATCH" }
        );
        if !agreement.ok {
            say!("    {}", agreement.report);
            failed.push(key.clone());
        }
    }
    if failed.is_empty() {
        say!("{}: every stored tensor matches ({} device)", dir.display(), args.device);
        Ok(())
    } else {
        Err(Failure::Check(format!(
            "{}: {} of {} tensors differ from Keras beyond the tolerance: {}",
            dir.display(),
            failed.len(),
            checked.len(),
            failed.join(", ")
        )))
    }
}
