//! `cnn-lstm run`: a model file, its weights and an input file in, the output
//! file out. The output file is written (atomically) only after the forward
//! pass has succeeded, so a failed run leaves no file behind.

use std::collections::BTreeMap;
use std::path::Path;

use cnn_lstm::keras::{self, StoredTensor};
use cnn_lstm::{Error, Forward, LayerOutput, Model, Result, RunOptions, Tensor};

use super::run_device::{self, Gpu};
use super::{say, CliResult, Device, RunArgs};

/// Runs the model and writes `output` (and, with `--layers`, `layer/<name>`
/// for every layer and `mask/<name>` where a layer carries a mask).
pub fn run(args: &RunArgs) -> CliResult {
    let model = load_model(&args.model, args.weights.as_deref())?;
    let input = read_f32(&args.input, &args.input_key)?;
    let opts = RunOptions {
        training: args.training,
        seed: args.seed.unwrap_or(0),
        capture_layers: args.layers,
    };
    let fwd = forward(&model, &input, &opts, args.device)?;

    let shape = fwd.output.shape().to_vec();
    let mut tensors = vec![("output".to_string(), StoredTensor::F32(fwd.output))];
    for layer in fwd.layers {
        if let Some(mask) = mask_tensor(&layer)? {
            tensors.push((format!("mask/{}", layer.name), mask));
        }
        tensors.push((format!("layer/{}", layer.name), StoredTensor::F32(layer.value)));
    }
    keras::write_tensors(&args.output, &tensors)?;
    say!("wrote {} ({} tensors; output shape {:?})", args.output.display(), tensors.len(), shape);
    Ok(())
}

/// A layer's timestep mask as stored in the fixtures: U8 `[B, T]`, 1 = valid
/// step, with B and T the first two axes of the layer's output; `None` when
/// the layer carries no mask.
pub fn mask_tensor(layer: &LayerOutput) -> Result<Option<StoredTensor>> {
    let Some(mask) = &layer.mask else { return Ok(None) };
    let shape = layer.value.shape();
    match shape {
        [b, t, ..] if b * t == mask.len() => {
            Ok(Some(StoredTensor::U8 { shape: vec![*b, *t], data: mask.clone() }))
        }
        _ => Err(Error::input(
            format!("timestep mask of layer {}", layer.name),
            format!("B * T values for the output shape {shape:?}"),
            format!("{} values (a bug in cnn-lstm; please report it)", mask.len()),
        )),
    }
}

/// Loads a Keras model file and, when given, its weights file.
pub fn load_model(model: &Path, weights: Option<&Path>) -> Result<Model> {
    let mut model = run_device::model_from_file(model)?;
    if let Some(path) = weights {
        let bytes = keras::read_file(path, u64::MAX)?;
        run_device::load_weights(&mut model, &bytes, &path.display().to_string())?;
    }
    Ok(model.model)
}

/// One forward pass on `device`.
pub fn forward(
    model: &Model,
    input: &Tensor,
    opts: &RunOptions,
    device: Device,
) -> Result<Forward> {
    match device {
        Device::Gpu => Gpu::new()?.upload(model)?.forward(input, opts),
        Device::Cpu => run_device::cpu_forward(model, input, opts, &mut |_| {}),
    }
}

/// Reads the f32 tensor `key` of a safetensors file.
pub fn read_f32(path: &Path, key: &str) -> Result<Tensor> {
    let mut tensors = keras::read_input_tensors(path)?;
    take_f32(&mut tensors, key, &path.display().to_string())
}

/// Removes the f32 tensor `key` from `tensors` (read from `origin`).
pub fn take_f32(
    tensors: &mut BTreeMap<String, StoredTensor>,
    key: &str,
    origin: &str,
) -> Result<Tensor> {
    match tensors.remove(key) {
        Some(StoredTensor::F32(t)) => Ok(t),
        Some(other) => Err(Error::format(
            origin,
            format!(
                "tensor {key:?} is {}; cnn-lstm reads F32 inputs (convert it to float32 first, \
                 e.g. frames / 255)",
                other.dtype_name()
            ),
        )),
        None => {
            let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
            Err(Error::format(
                origin,
                format!("no tensor {key:?}; the file holds: {}", names.join(", ")),
            ))
        }
    }
}
