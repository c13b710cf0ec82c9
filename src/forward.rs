//! What a forward pass takes and returns, shared by the CPU reference and the GPU path.

use std::time::Duration;

use crate::tensor::Tensor;

/// How to run a forward pass.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Training mode: dropout layers draw masks. Inference (false) makes them the identity.
    pub training: bool,
    /// Seed of every dropout mask in training mode. A layer's masks depend on
    /// `(seed, layer index, sample, timestep, channel)` only.
    pub seed: u64,
    /// Also return every layer's output (and mask), not only the model output.
    pub capture_layers: bool,
}

/// One layer's output, returned when [`RunOptions::capture_layers`] is set.
#[derive(Clone, Debug)]
pub struct LayerOutput {
    /// The layer's name, as in Keras (`time_distributed_1`, `lstm`, ...).
    pub name: String,
    /// `[B, T, ...]` while a time axis exists, `[B, ...]` after it.
    pub value: Tensor,
    /// The timestep mask attached to this output, `[B * T]` row-major,
    /// 1 = valid step, 0 = masked; `None` where Keras attaches none.
    pub mask: Option<Vec<u8>>,
}

/// Time spent in one stage of a forward pass.
#[derive(Clone, Debug)]
pub struct StageTiming {
    /// Stage name: the layer name, or a sub-stage such as `lstm/input_projection`.
    pub name: String,
    /// Wall or GPU time of the stage.
    pub time: Duration,
    /// Floating-point operations the stage performs (multiply-add = 2).
    pub flops: u64,
    /// Bytes the stage reads and writes at least once.
    pub bytes: u64,
}

/// The result of a forward pass.
#[derive(Clone, Debug)]
pub struct Forward {
    /// The model output.
    pub output: Tensor,
    /// Every layer's output in order, when requested; otherwise empty.
    pub layers: Vec<LayerOutput>,
    /// Per-stage timings, when the device measured them; otherwise empty.
    pub timings: Vec<StageTiming>,
}
