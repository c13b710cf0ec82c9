//! The CLI's one door to the library's devices and loaders: the GPU context
//! and model, the CPU reference, Keras default initialisation and the Keras
//! loaders. The subcommands call only these functions.

use std::path::Path;
use std::sync::Arc;

use cnn_lstm::tolerance::{self, Tolerance};
use cnn_lstm::{gpu, init, keras, reference, Error, Forward, Model, Result, RunOptions, Tensor};

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

/// A Keras model from `model.json` text, with the inner-layer names its
/// weights may be saved under; `origin` names it in errors.
pub fn model_from_json(json: &str, origin: &str) -> Result<keras::KerasModel> {
    keras::KerasModel::from_json(json, origin)
}

/// Loads a model from a `model.json` (weights zero until loaded) or a
/// `.keras` file (with its weights).
pub fn model_from_file(path: &Path) -> Result<keras::KerasModel> {
    let is_keras = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("keras"));
    if is_keras {
        let model = keras::load_keras_file(path)?;
        let inner = keras::InnerNames::keras_defaults(&model);
        return Ok(keras::KerasModel { model, inner });
    }
    let text = keras::read_text(path, keras::MAX_MODEL_JSON_BYTES)?;
    keras::KerasModel::from_json(&text, &path.display().to_string())
}

/// Sets the model's weights from safetensors bytes keyed by Keras variable
/// paths; `origin` names them in errors.
pub fn load_weights(model: &mut keras::KerasModel, bytes: &[u8], origin: &str) -> Result<()> {
    let tensors = keras::read_tensors_bytes(bytes, origin)?
        .into_iter()
        .map(|(name, t)| match t {
            keras::StoredTensor::F32(t) => Ok((name, t)),
            other => Err(Error::format(
                origin,
                format!("tensor {name} is {}, expected F32 weights", other.dtype_name()),
            )),
        })
        .collect::<Result<_>>()?;
    let matched = keras::weights::match_paths(&model.model, &model.inner, tensors)?;
    model.model.set_weights(matched)
}

/// Compares `got` with `want` under `tol` (see [`cnn_lstm::tolerance`]).
pub fn compare(got: &Tensor, want: &Tensor, tol: Tolerance) -> Result<Agreement> {
    if got.shape() != want.shape() {
        return Err(Error::input(
            "tensor under test",
            format!("the expected shape {:?}", want.shape()),
            format!("{:?}", got.shape()),
        ));
    }
    let c = tolerance::compare(got.data(), want.data(), want.shape(), tol);
    Ok(Agreement {
        max_abs: c.max_abs as f32,
        tolerance: format!("|got - want| <= {:e} + {:e} * |want|", tol.abs, tol.rel),
        ok: c.is_ok(),
        report: c.to_string(),
    })
}

/// The outcome of a comparison.
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
