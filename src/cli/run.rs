//! `cnn-lstm run`: a model file, its weights and an input file in, the output
//! file out.

use std::path::Path;

use cnn_lstm::keras::{self, StoredTensor};
use cnn_lstm::{Error, Forward, Model, Result, RunOptions, Tensor};

use super::run_device::{self, Gpu};
use super::{say, CliResult, Device, RunArgs};

/// Runs the model and writes `output` (and `layer/<name>` with `--capture`).
pub fn run(args: &RunArgs) -> CliResult {
    let model = load_model(&args.model, args.weights.as_deref())?;
    let input = read_f32(&args.input, &args.input_key)?;
    let opts =
        RunOptions { training: args.training, seed: args.seed, capture_layers: args.capture };
    let fwd = forward(&model, &input, &opts, args.device)?;

    let mut tensors = vec![("output".to_string(), StoredTensor::F32(fwd.output))];
    for layer in fwd.layers {
        tensors.push((format!("layer/{}", layer.name), StoredTensor::F32(layer.value)));
    }
    let shape = tensors[0].1.shape().to_vec();
    keras::write_tensors(&args.output, &tensors)?;
    say!("wrote {} ({} tensors; output shape {:?})", args.output.display(), tensors.len(), shape);
    Ok(())
}

/// Loads a Keras model file and, when given, its weights file.
pub fn load_model(model: &Path, weights: Option<&Path>) -> Result<Model> {
    let mut model = run_device::model_from_file(model)?;
    if let Some(path) = weights {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
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
    let origin = path.display().to_string();
    let mut tensors = keras::read_tensors(path)?;
    match tensors.remove(key) {
        Some(StoredTensor::F32(t)) => Ok(t),
        Some(other) => Err(Error::format(
            &origin,
            format!(
                "tensor {key:?} is {}; cnn-lstm reads F32 inputs (convert it to float32 first, \
                 e.g. frames / 255)",
                other.dtype_name()
            ),
        )),
        None => {
            let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
            Err(Error::format(
                &origin,
                format!("no tensor {key:?}; the file holds: {}", names.join(", ")),
            ))
        }
    }
}
