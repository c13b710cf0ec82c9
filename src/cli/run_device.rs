//! The CLI's one door to the library's devices and loaders: the GPU context
//! and model, the CPU reference, Keras default initialisation and the Keras
//! loaders. The subcommands call only these functions.

use std::path::Path;
use std::time::Duration;

use cnn_lstm::{Error, Forward, Model, Result, RunOptions, Tensor};

/// Progress of a CPU reference run, for the indicator on stderr.
#[derive(Clone, Debug)]
pub struct Step {
    /// The stage running now (a layer name).
    pub stage: String,
    /// Fraction of the whole forward pass done, `0.0..=1.0`.
    pub fraction: f64,
}

/// A GPU context: the adapter chosen by `CNN_LSTM_BACKEND` / `CNN_LSTM_ADAPTER`.
pub struct Gpu {
    _private: (),
}

impl Gpu {
    /// Opens the adapter the environment selects (default: the best one).
    pub fn new() -> Result<Self> {
        Err(not_built("the GPU path (cnn_lstm::gpu)"))
    }

    /// The adapter in use: name, backend, device type.
    pub fn describe(&self) -> String {
        String::new()
    }

    /// Uploads `model`'s weights and prepares its pipelines.
    pub fn upload(&self, _model: &Model) -> Result<GpuRunner> {
        Err(not_built("the GPU path (cnn_lstm::gpu)"))
    }
}

/// A model ready to run on the GPU.
pub struct GpuRunner {
    _private: (),
}

impl GpuRunner {
    /// One forward pass on the GPU.
    pub fn forward(&self, _input: &Tensor, _opts: &RunOptions) -> Result<Forward> {
        Err(not_built("the GPU path (cnn_lstm::gpu)"))
    }
}

/// Every adapter wgpu finds, one description each.
pub fn list_adapters() -> Result<Vec<String>> {
    Err(not_built("the GPU path (cnn_lstm::gpu)"))
}

/// The CPU reference forward pass, calling `progress` as it goes.
pub fn cpu_forward(
    _model: &Model,
    _input: &Tensor,
    _opts: &RunOptions,
    _progress: &mut dyn FnMut(Step),
) -> Result<Forward> {
    Err(not_built("the CPU reference (cnn_lstm::reference)"))
}

/// Fills every weight with Keras's default initialiser, seeded.
pub fn keras_default_weights(_model: &mut Model, _seed: u64) -> Result<()> {
    Err(not_built("Keras default initialisation (cnn_lstm::init)"))
}

/// Loads a model from Keras `model.json` text; `origin` names it in errors.
pub fn model_from_json(_json: &str, _origin: &str) -> Result<Model> {
    Err(not_built("the Keras loader (cnn_lstm::keras)"))
}

/// Loads a model from a `model.json` or `model.keras` file.
pub fn model_from_file(_path: &Path) -> Result<Model> {
    Err(not_built("the Keras loader (cnn_lstm::keras)"))
}

/// Sets the model's weights from safetensors bytes; `origin` names them in errors.
pub fn load_weights(_model: &mut Model, _bytes: &[u8], _origin: &str) -> Result<()> {
    Err(not_built("the Keras loader (cnn_lstm::keras)"))
}

/// The tolerance of a whole-model GPU vs CPU comparison, described, and
/// whether `gpu` is within it of `cpu`; also returns the max abs difference.
pub fn compare(gpu: &Tensor, cpu: &Tensor) -> Result<Agreement> {
    if gpu.shape() != cpu.shape() {
        return Err(Error::input(
            "GPU output",
            format!("the CPU output's shape {:?}", cpu.shape()),
            format!("{:?}", gpu.shape()),
        ));
    }
    Err(not_built("the tolerance module (cnn_lstm::tolerance)"))
}

/// The outcome of a GPU vs CPU comparison.
#[derive(Clone, Debug)]
pub struct Agreement {
    /// Largest |gpu - cpu|.
    pub max_abs: f32,
    /// The tolerance applied, as text (preset and formula).
    pub tolerance: String,
    /// True when every value is within the tolerance.
    pub ok: bool,
    /// The comparison report when not ok (count, worst values, first indices).
    pub report: String,
}

/// Sum of the stage times of a forward pass.
pub fn total_time(fwd: &Forward) -> Duration {
    fwd.timings.iter().map(|s| s.time).sum()
}

fn not_built(what: &str) -> Error {
    Error::Unsupported(format!("{what} is not part of this build of cnn-lstm"))
}
