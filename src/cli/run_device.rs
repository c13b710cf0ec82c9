//! The CLI's one door to the library's devices and loaders: the GPU context
//! and model, the CPU reference, Keras default initialisation and the Keras
//! loaders. The subcommands call only these functions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cnn_lstm::tolerance::{self, Tolerance};
use cnn_lstm::{gpu, init, reference, Error, Forward, Model, Result, RunOptions, Tensor};

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
    ctx: Arc<gpu::Context>,
}

impl Gpu {
    /// Opens the adapter the environment selects (default: the best one).
    pub fn new() -> Result<Self> {
        Ok(Gpu { ctx: gpu::Context::new(&gpu::ContextOptions::from_env())? })
    }

    /// The adapter in use: name, backend, device type.
    pub fn describe(&self) -> String {
        self.ctx.describe()
    }

    /// Uploads `model`'s weights and prepares its pipelines.
    pub fn upload(&self, model: &Model) -> Result<GpuRunner> {
        Ok(GpuRunner { model: gpu::GpuModel::new(self.ctx.clone(), model)? })
    }
}

/// A model ready to run on the GPU.
pub struct GpuRunner {
    model: gpu::GpuModel,
}

impl GpuRunner {
    /// One forward pass on the GPU, recorded as one submission;
    /// `Forward::timings` holds its total only.
    pub fn forward(&mut self, input: &Tensor, opts: &RunOptions) -> Result<Forward> {
        self.model.forward(input, opts)
    }

    /// A forward pass that submits and waits for each stage apart, so
    /// `Forward::timings` holds the time of every stage. Slower.
    pub fn forward_profiled(&mut self, input: &Tensor, opts: &RunOptions) -> Result<Forward> {
        self.model.forward_profiled(input, opts)
    }
}

/// Every adapter wgpu finds, one description each.
pub fn list_adapters() -> Result<Vec<String>> {
    Ok(gpu::list_adapters())
}

/// The CPU reference forward pass, calling `progress` as it goes.
pub fn cpu_forward(
    model: &Model,
    input: &Tensor,
    opts: &RunOptions,
    progress: &mut dyn FnMut(Step),
) -> Result<Forward> {
    reference::forward_with_progress(model, input, opts, &mut |p: reference::Progress<'_>| {
        let within = p.timestep.map_or(0.0, |(t, n)| t as f64 / n.max(1) as f64);
        progress(Step {
            stage: p.name.to_string(),
            fraction: (p.layer as f64 + within) / p.layers.max(1) as f64,
        })
    })
}

/// Fills every weight with Keras's default initialiser, seeded.
pub fn keras_default_weights(model: &mut Model, seed: u64) -> Result<()> {
    init::keras_default_weights(model, seed)
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

/// Compares a GPU output with the CPU reference's under
/// [`Tolerance::GPU_F32`].
pub fn compare(gpu: &Tensor, cpu: &Tensor) -> Result<Agreement> {
    if gpu.shape() != cpu.shape() {
        return Err(Error::input(
            "GPU output",
            format!("the CPU output's shape {:?}", cpu.shape()),
            format!("{:?}", gpu.shape()),
        ));
    }
    let tol = Tolerance::GPU_F32;
    let c = tolerance::compare(gpu.data(), cpu.data(), cpu.shape(), tol);
    Ok(Agreement {
        max_abs: c.max_abs as f32,
        tolerance: format!("|gpu - cpu| <= {:e} + {:e} * |cpu|", tol.abs, tol.rel),
        ok: c.is_ok(),
        report: c.to_string(),
    })
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
