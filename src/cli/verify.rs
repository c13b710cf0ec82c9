//! `cnn-lstm verify DIR`: runs a Keras fixture folder (`model.json`,
//! `weights.safetensors`, `io.safetensors` holding `input`, `output`,
//! `layer/<name>` and `mask/<name>`) and compares every stored tensor and
//! timestep mask with what cnn-lstm computes, under [`Tolerance::KERAS`].

use cnn_lstm::keras::{read_tensors, StoredTensor};
use cnn_lstm::{Error, RunOptions, Tolerance};

use super::run::{forward, load_model};
use super::run_device;
use super::{say, CliResult, Failure, VerifyArgs};

/// Compares the model output, every stored layer output and mask; fails on
/// any mismatch.
pub fn run(args: &VerifyArgs) -> CliResult {
    let dir = &args.dir;
    let model = load_model(&dir.join("model.json"), Some(&dir.join("weights.safetensors")))?;
    let io_path = dir.join("io.safetensors");
    let mut io = read_tensors(&io_path)?;
    let origin = io_path.display().to_string();
    let input = match io.remove("input") {
        Some(StoredTensor::F32(t)) => t,
        _ => return Err(Error::format(&origin, "no f32 tensor `input`").into()),
    };
    let opts = RunOptions { training: false, seed: 0, capture_layers: true };
    let fwd = forward(&model, &input, &opts, args.device)?;
    let tol = Tolerance::KERAS;
    say!(
        "{} on the {} device, tolerance |got - keras| <= {:e}:",
        dir.display(),
        args.device,
        tol.abs
    );

    let mut checked = 0;
    let mut failed = Vec::new();
    let mut values = vec![("output".to_string(), &fwd.output, None)];
    for layer in &fwd.layers {
        values.push((layer.name.clone(), &layer.value, layer.mask.as_ref()));
    }
    for (name, ours, mask) in values {
        let key = if name == "output" { name.clone() } else { format!("layer/{name}") };
        match io.get(&key) {
            Some(StoredTensor::F32(keras)) => {
                checked += 1;
                let agreement = run_device::compare(ours, keras, tol)?;
                say!(
                    "  {key:<36} max |difference| {:.3e}  {}",
                    agreement.max_abs,
                    if agreement.ok { "ok" } else { "MISMATCH" }
                );
                if !agreement.ok {
                    say!("    {}", agreement.report.replace('\n', "\n    "));
                    failed.push(key.clone());
                }
            }
            _ => say!("  {key:<36} (not stored by Keras)"),
        }
        let mask_key = format!("mask/{name}");
        if let Some(StoredTensor::U8 { data: keras, .. }) = io.get(&mask_key) {
            checked += 1;
            let same = mask.is_some_and(|m| m == keras);
            say!("  {mask_key:<36} {}", if same { "equal" } else { "DIFFERENT" });
            if !same {
                failed.push(mask_key);
            }
        }
    }
    if failed.is_empty() {
        say!("every stored tensor and mask matches ({checked} compared)");
        Ok(())
    } else {
        Err(Failure::Check(format!(
            "{}: {} of {checked} stored tensors differ from Keras: {}",
            dir.display(),
            failed.len(),
            failed.join(", ")
        )))
    }
}
