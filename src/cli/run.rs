//! `cnn-lstm run`: a model file, its weights and an input file in, the output
//! file out.

use std::collections::BTreeMap;
use std::path::Path;

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

    let mut tensors = vec![("output".to_string(), fwd.output.clone())];
    for layer in &fwd.layers {
        tensors.push((format!("layer/{}", layer.name), layer.value.clone()));
    }
    write_f32(&args.output, &tensors)?;
    say!(
        "wrote {} ({} tensors; output shape {:?})",
        args.output.display(),
        tensors.len(),
        fwd.output.shape()
    );
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
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let origin = path.display().to_string();
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(&origin, format!("not a safetensors file: {e}")))?;
    let view = file.tensor(key).map_err(|_| {
        let names = file.names().join(", ");
        Error::format(&origin, format!("no tensor {key:?}; the file holds: {names}"))
    })?;
    if view.dtype() != safetensors::Dtype::F32 {
        return Err(Error::format(
            &origin,
            format!("tensor {key:?} is {:?}; cnn-lstm reads F32 tensors", view.dtype()),
        ));
    }
    let data =
        view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Tensor::new(view.shape().to_vec(), data)
}

/// Writes f32 tensors to a safetensors file.
pub fn write_f32(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let origin = path.display().to_string();
    let bytes: BTreeMap<&str, Vec<u8>> = tensors
        .iter()
        .map(|(name, t)| (name.as_str(), t.data().iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let data = bytes.get(name.as_str()).map_or(&[][..], |b| b.as_slice());
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape().to_vec(), data)
                .map_err(|e| Error::format(&origin, format!("tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let out = safetensors::serialize(views, None)
        .map_err(|e| Error::format(&origin, format!("cannot serialize: {e}")))?;
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}
