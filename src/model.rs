//! Model description, shape inference, parameter counting and weights.
//!
//! A [`Model`] is a linear stack of [`Layer`]s applied to a batch of
//! sequences `[B, T, ...frame]`. Layers that Keras wraps in
//! `TimeDistributed` are written here without the wrapper: while a time axis
//! exists, every per-frame layer (Conv2D, pooling, Flatten, Reshape, Dense)
//! is applied to each timestep. An LSTM with `return_sequences = false`
//! removes the time axis; the layers after it see `[B, ...]`.
//!
//! [`ModelBuilder::build`] runs shape inference before any GPU work and
//! rejects invalid stacks with an [`Error::Layer`] naming the layer, the
//! shape it got, the shape it needs and what to change.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::tensor::{shape_str, Tensor};

/// An elementwise (or, for softmax, row-wise) activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    /// Row-wise over the last axis; only where Keras allows it (Dense, Conv2D).
    Softmax,
    /// Keras 3's `hard_sigmoid`: `clip(x / 6 + 0.5, 0, 1)`.
    HardSigmoid,
    Elu,
    Selu,
    Softplus,
    Softsign,
    /// `x * sigmoid(x)`; Keras calls it `silu` or `swish`.
    Silu,
    Exponential,
}

impl Activation {
    /// Parses a Keras activation name.
    pub fn from_keras(name: &str) -> Option<Self> {
        Some(match name {
            "linear" | "None" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax,
            "hard_sigmoid" => Activation::HardSigmoid,
            "elu" => Activation::Elu,
            "selu" => Activation::Selu,
            "softplus" => Activation::Softplus,
            "softsign" => Activation::Softsign,
            "silu" | "swish" => Activation::Silu,
            "exponential" => Activation::Exponential,
            _ => return None,
        })
    }

    /// The Keras name.
    pub fn keras_name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::HardSigmoid => "hard_sigmoid",
            Activation::Elu => "elu",
            Activation::Selu => "selu",
            Activation::Softplus => "softplus",
            Activation::Softsign => "softsign",
            Activation::Silu => "silu",
            Activation::Exponential => "exponential",
        }
    }

    /// The code shaders use for this activation (`ACT_*` in `common_act.wgsl`).
    pub fn code(self) -> u32 {
        match self {
            Activation::Linear => 0,
            Activation::Relu => 1,
            Activation::Sigmoid => 2,
            Activation::Tanh => 3,
            Activation::Softmax => 4,
            Activation::HardSigmoid => 5,
            Activation::Elu => 6,
            Activation::Selu => 7,
            Activation::Softplus => 8,
            Activation::Softsign => 9,
            Activation::Silu => 10,
            Activation::Exponential => 11,
        }
    }
}

/// Spatial padding of Conv2D and pooling, Keras's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// No padding: `out = floor((n - dilated_k) / s) + 1`.
    Valid,
    /// `out = ceil(n / s)`; total padding `max((out-1)*s + k - n, 0)`, with
    /// `total / 2` before and the rest (the odd one) after.
    Same,
}

impl Padding {
    /// Output length and padding before, for input `n`, (dilated) window `k`
    /// and stride `s`. `None` when the window does not fit.
    pub fn resolve(self, n: usize, k: usize, s: usize) -> Option<(usize, usize)> {
        match self {
            Padding::Valid => (n >= k).then(|| ((n - k) / s + 1, 0)),
            Padding::Same => {
                let out = n.div_ceil(s);
                let total = ((out - 1) * s + k).saturating_sub(n);
                Some((out, total / 2))
            }
        }
    }
}

/// `TimeDistributed(Conv2D)`: cross-correlation over each frame `[H, W, C]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2D {
    pub filters: usize,
    /// `(kh, kw)`.
    pub kernel: (usize, usize),
    /// `(sh, sw)`.
    pub strides: (usize, usize),
    /// `(dh, dw)`.
    pub dilation: (usize, usize),
    pub padding: Padding,
    pub activation: Activation,
    pub use_bias: bool,
}

impl Conv2D {
    /// `filters` kernels of `kernel` = `(kh, kw)`, with Keras's defaults:
    /// stride 1, no dilation, 'valid' padding, linear activation, a bias.
    pub fn new(filters: usize, kernel: (usize, usize)) -> Self {
        Conv2D {
            filters,
            kernel,
            strides: (1, 1),
            dilation: (1, 1),
            padding: Padding::Valid,
            activation: Activation::Linear,
            use_bias: true,
        }
    }

    /// With this activation.
    pub fn activation(self, activation: Activation) -> Self {
        Conv2D { activation, ..self }
    }

    /// With this padding.
    pub fn padding(self, padding: Padding) -> Self {
        Conv2D { padding, ..self }
    }

    /// With these strides `(sh, sw)`.
    pub fn strides(self, strides: (usize, usize)) -> Self {
        Conv2D { strides, ..self }
    }

    /// With this dilation `(dh, dw)`.
    pub fn dilation(self, dilation: (usize, usize)) -> Self {
        Conv2D { dilation, ..self }
    }
}

impl From<Conv2D> for LayerKind {
    fn from(c: Conv2D) -> Self {
        LayerKind::Conv2D(c)
    }
}

/// Max or average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Average,
}

/// `TimeDistributed(MaxPooling2D | AveragePooling2D)` over each frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool2D {
    pub kind: PoolKind,
    pub pool: (usize, usize),
    pub strides: (usize, usize),
    pub padding: Padding,
}

/// Which units share one spatial-dropout draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropoutMode {
    /// `TimeDistributed(SpatialDropout2D)`: one draw per (sample, timestep, channel).
    PerTimestep,
    /// `SpatialDropout3D` on `[B, T, H, W, C]`: one draw per (sample, channel),
    /// the same channels dropped in every timestep.
    PerSample,
}

/// `Dense` on the last axis (applied per timestep while a time axis exists).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub units: usize,
    pub activation: Activation,
    pub use_bias: bool,
}

impl Dense {
    /// `units` outputs with Keras's defaults: linear activation, a bias.
    pub fn new(units: usize) -> Self {
        Dense { units, activation: Activation::Linear, use_bias: true }
    }

    /// With this activation.
    pub fn activation(self, activation: Activation) -> Self {
        Dense { activation, ..self }
    }
}

impl From<Dense> for LayerKind {
    fn from(d: Dense) -> Self {
        LayerKind::Dense(d)
    }
}

/// `LSTM` with Keras's gate order i, f, c, o and a single bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Lstm {
    pub units: usize,
    pub return_sequences: bool,
    /// Masked steps output zeros instead of repeating the previous output.
    pub zero_output_for_mask: bool,
    /// Cell activation (Keras `activation`, default tanh).
    pub activation: Activation,
    /// Gate activation (Keras `recurrent_activation`, default sigmoid).
    pub recurrent_activation: Activation,
    pub use_bias: bool,
}

impl Lstm {
    /// `units` cells with Keras's defaults: tanh and sigmoid, a bias, only
    /// the last output returned, masked steps repeating the previous output.
    pub fn new(units: usize) -> Self {
        Lstm {
            units,
            return_sequences: false,
            zero_output_for_mask: false,
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
            use_bias: true,
        }
    }

    /// Returning the output of every step (`return_sequences`).
    pub fn sequences(self, return_sequences: bool) -> Self {
        Lstm { return_sequences, ..self }
    }
}

impl From<Lstm> for LayerKind {
    fn from(l: Lstm) -> Self {
        LayerKind::Lstm(l)
    }
}

/// What a layer computes.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// Marks a timestep as padding when every value of its per-timestep
    /// tensor equals `mask_value`; masked timesteps are output as zeros.
    Masking {
        mask_value: f32,
    },
    Conv2D(Conv2D),
    Pool2D(Pool2D),
    /// Drops whole feature maps in training mode; the identity at inference.
    SpatialDropout {
        rate: f64,
        mode: DropoutMode,
    },
    /// Drops single values in training mode; the identity at inference.
    Dropout {
        rate: f64,
    },
    /// Per-timestep flatten of `[H, W, C]` in row-major order (a no-op on the buffer).
    Flatten,
    /// Per-timestep reshape to `target` (same element count).
    Reshape {
        target: Vec<usize>,
    },
    Dense(Dense),
    Lstm(Lstm),
}

impl LayerKind {
    /// Keras class name, for summaries and messages.
    pub fn class_name(&self) -> &'static str {
        match self {
            LayerKind::Masking { .. } => "Masking",
            LayerKind::Conv2D(_) => "Conv2D",
            LayerKind::Pool2D(p) if p.kind == PoolKind::Max => "MaxPooling2D",
            LayerKind::Pool2D(_) => "AveragePooling2D",
            LayerKind::SpatialDropout { mode: DropoutMode::PerTimestep, .. } => "SpatialDropout2D",
            LayerKind::SpatialDropout { .. } => "SpatialDropout3D",
            LayerKind::Dropout { .. } => "Dropout",
            LayerKind::Flatten => "Flatten",
            LayerKind::Reshape { .. } => "Reshape",
            LayerKind::Dense(_) => "Dense",
            LayerKind::Lstm(_) => "LSTM",
        }
    }
}

/// One layer: a name (Keras's top-level layer name) and what it computes.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    pub name: String,
    pub kind: LayerKind,
}

impl Layer {
    /// A layer with an explicit name.
    pub fn new(name: impl Into<String>, kind: LayerKind) -> Self {
        Layer { name: name.into(), kind }
    }
}

/// The shape of one sample at some point in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleShape {
    /// True while the tensor has a time axis (`[B, T, ...dims]`).
    pub timed: bool,
    /// Per-timestep dims (or per-sample dims once the time axis is gone).
    pub dims: Vec<usize>,
}

impl SampleShape {
    /// Elements per timestep (or per sample when untimed).
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// The full shape for a batch of `b` samples of `t` timesteps.
    pub fn with_batch(&self, b: usize, t: usize) -> Vec<usize> {
        let mut s = vec![b];
        if self.timed {
            s.push(t);
        }
        s.extend_from_slice(&self.dims);
        s
    }

    /// Keras-style text, `(None, None, 62, 62, 32)`, with `t` for a fixed T.
    pub fn keras_str(&self, t: Option<usize>) -> String {
        let mut parts = vec!["None".to_string()];
        if self.timed {
            parts.push(t.map_or("None".to_string(), |t| t.to_string()));
        }
        parts.extend(self.dims.iter().map(|d| d.to_string()));
        format!("({})", parts.join(", "))
    }
}

/// The model input: frames `[H, W, C]` (or feature vectors `[F]`) per
/// timestep, with a fixed or free number of timesteps.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    /// `Some(T)` when the model declares a fixed T; `None` accepts any T.
    pub time_steps: Option<usize>,
    /// Per-timestep dims, `[H, W, C]` or `[F]`.
    pub frame: Vec<usize>,
}

/// What shape inference learned about one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    pub input: SampleShape,
    pub output: SampleShape,
    /// True when a timestep mask reaches this layer's output (Keras attaches
    /// one) — from a Masking layer up to the LSTM that drops the time axis.
    pub has_mask: bool,
    /// Trainable parameter count.
    pub params: usize,
    /// Shapes of the weight variables this layer needs, by Keras variable name.
    pub weights: Vec<(&'static str, Vec<usize>)>,
}

/// Collects layers; [`ModelBuilder::build`] validates them.
#[derive(Clone, Debug)]
pub struct ModelBuilder {
    name: String,
    input: InputSpec,
    layers: Vec<Layer>,
}

impl ModelBuilder {
    /// Starts a model on inputs of `[B, T, ...frame]`.
    pub fn new(name: impl Into<String>, time_steps: Option<usize>, frame: &[usize]) -> Self {
        ModelBuilder {
            name: name.into(),
            input: InputSpec { time_steps, frame: frame.to_vec() },
            layers: Vec::new(),
        }
    }

    /// Appends a layer; names default to Keras's (`conv2d`, `conv2d_1`, ...).
    pub fn layer(mut self, kind: impl Into<LayerKind>) -> Self {
        let kind = kind.into();
        let base = default_name(&kind);
        let n = self.layers.iter().filter(|l| default_name(&l.kind) == base).count();
        let name = if n == 0 { base.to_string() } else { format!("{base}_{n}") };
        self.layers.push(Layer { name, kind });
        self
    }

    /// Appends a named layer.
    pub fn named_layer(mut self, name: impl Into<String>, kind: LayerKind) -> Self {
        self.layers.push(Layer::new(name, kind));
        self
    }

    /// Runs shape inference. The weights start unset: set them
    /// ([`Model::set_weights`], a Keras loader) or initialise them
    /// ([`crate::init::keras_default_weights`]) before running the model.
    pub fn build(self) -> Result<Model> {
        let infos = infer(&self.input, &self.layers)?;
        let weights = infos
            .iter()
            .map(|info| {
                info.weights
                    .iter()
                    .map(|(name, shape)| Slot {
                        name: name.to_string(),
                        shape: shape.clone(),
                        value: None,
                    })
                    .collect()
            })
            .collect();
        Ok(Model {
            name: self.name,
            input: self.input,
            layers: self.layers,
            infos,
            weights,
            training_unsupported: Vec::new(),
        })
    }
}

/// One weight variable of a layer: its Keras name, its shape, its value once set.
#[derive(Clone, Debug)]
struct Slot {
    name: String,
    shape: Vec<usize>,
    value: Option<Tensor>,
}

fn default_name(kind: &LayerKind) -> &'static str {
    match kind {
        LayerKind::Masking { .. } => "masking",
        LayerKind::Conv2D(_) => "conv2d",
        LayerKind::Pool2D(p) if p.kind == PoolKind::Max => "max_pooling2d",
        LayerKind::Pool2D(_) => "average_pooling2d",
        LayerKind::SpatialDropout { mode: DropoutMode::PerTimestep, .. } => "spatial_dropout2d",
        LayerKind::SpatialDropout { .. } => "spatial_dropout3d",
        LayerKind::Dropout { .. } => "dropout",
        LayerKind::Flatten => "flatten",
        LayerKind::Reshape { .. } => "reshape",
        LayerKind::Dense(_) => "dense",
        LayerKind::Lstm(_) => "lstm",
    }
}

/// A validated model with its weights.
#[derive(Clone, Debug)]
pub struct Model {
    name: String,
    input: InputSpec,
    layers: Vec<Layer>,
    infos: Vec<LayerInfo>,
    /// Per layer, its weight variables in Keras order (kernel,
    /// [recurrent_kernel,] bias); unset until loaded or initialised.
    weights: Vec<Vec<Slot>>,
    /// Why training mode cannot run (options that act only in training).
    training_unsupported: Vec<String>,
}

impl Model {
    /// Marks training mode as unsupported for this model, with the reason
    /// (an option that acts only in training, such as LSTM dropout).
    pub fn forbid_training(&mut self, reason: impl Into<String>) {
        self.training_unsupported.push(reason.into());
    }

    /// Fails with [`Error::Unsupported`] when `training` is requested but
    /// the model cannot train.
    pub fn check_training(&self, training: bool) -> Result<()> {
        match self.training_unsupported.first() {
            Some(reason) if training => Err(Error::Unsupported(format!("training mode: {reason}"))),
            _ => Ok(()),
        }
    }

    /// The same model with every weight emptied, for holders that need its
    /// structure but not its (possibly large) weights.
    pub fn without_weights(&self) -> Model {
        Model {
            name: self.name.clone(),
            input: self.input.clone(),
            layers: self.layers.clone(),
            infos: self.infos.clone(),
            weights: self
                .weights
                .iter()
                .map(|slots| {
                    slots
                        .iter()
                        .map(|s| Slot { name: s.name.clone(), shape: s.shape.clone(), value: None })
                        .collect()
                })
                .collect(),
            training_unsupported: self.training_unsupported.clone(),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The input specification.
    pub fn input(&self) -> &InputSpec {
        &self.input
    }

    /// The layers in order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Shape-inference results, one per layer.
    pub fn infos(&self) -> &[LayerInfo] {
        &self.infos
    }

    /// Total trainable parameters.
    pub fn param_count(&self) -> usize {
        self.infos.iter().map(|i| i.params).sum()
    }

    /// The output shape of one sample.
    pub fn output_shape(&self) -> SampleShape {
        self.infos.last().map_or_else(
            || SampleShape { timed: true, dims: self.input.frame.clone() },
            |i| i.output.clone(),
        )
    }

    /// The weight `variable` (`kernel`, `recurrent_kernel`, `bias`) of layer `index`.
    pub fn weight(&self, index: usize, variable: &str) -> Option<&Tensor> {
        self.weights.get(index)?.iter().find(|s| s.name == variable)?.value.as_ref()
    }

    /// Names and shapes of every weight the model needs, as
    /// `(layer name, variable name, shape)`.
    pub fn weight_specs(&self) -> Vec<(String, &'static str, Vec<usize>)> {
        self.layers
            .iter()
            .zip(&self.infos)
            .flat_map(|(l, i)| i.weights.iter().map(|(v, s)| (l.name.clone(), *v, s.clone())))
            .collect()
    }

    /// Sets one weight, checking its shape.
    pub fn set_weight(&mut self, layer: &str, variable: &str, value: Tensor) -> Result<()> {
        let full = format!("{layer}/{variable}");
        let index = self
            .layers
            .iter()
            .position(|l| l.name == layer)
            .ok_or_else(|| Error::weights(&full, "the model has no layer of that name"))?;
        let slot =
            self.weights[index].iter_mut().find(|s| s.name == variable).ok_or_else(|| {
                Error::weights(&full, format!("layer {layer} has no variable {variable}"))
            })?;
        if slot.shape != value.shape() {
            return Err(Error::weights(
                &full,
                format!(
                    "expected shape {}, got {}",
                    shape_str(&slot.shape),
                    shape_str(value.shape())
                ),
            ));
        }
        slot.value = Some(value);
        Ok(())
    }

    /// Sets every weight at once from `(layer, variable) -> tensor`. Fails,
    /// leaving the model unchanged, when one is missing, extra or misshapen.
    pub fn set_weights(&mut self, mut weights: BTreeMap<(String, String), Tensor>) -> Result<()> {
        // Check everything first, then move the tensors in: no copy of the
        // model's weights is made, and a failure changes nothing.
        for (layer, slots) in self.layers.iter().zip(&self.weights) {
            for slot in slots {
                let full = format!("{}/{}", layer.name, slot.name);
                let key = (layer.name.clone(), slot.name.clone());
                let value = weights.get(&key).ok_or_else(|| {
                    Error::weights(
                        &full,
                        format!("missing (expected shape {})", shape_str(&slot.shape)),
                    )
                })?;
                if value.shape() != slot.shape {
                    return Err(Error::weights(
                        &full,
                        format!(
                            "expected shape {}, got {}",
                            shape_str(&slot.shape),
                            shape_str(value.shape())
                        ),
                    ));
                }
            }
        }
        let used: usize = self.weights.iter().map(Vec::len).sum();
        if weights.len() > used {
            let extra =
                weights.iter().find(|((layer, variable), _)| {
                    !self.layers.iter().zip(&self.weights).any(|(l, slots)| {
                        &l.name == layer && slots.iter().any(|s| &s.name == variable)
                    })
                });
            if let Some(((layer, variable), t)) = extra {
                return Err(Error::weights(
                    format!("{layer}/{variable}"),
                    format!("shape {} is not used by any layer of the model", shape_str(t.shape())),
                ));
            }
        }
        for (layer, slots) in self.layers.iter().zip(self.weights.iter_mut()) {
            for slot in slots.iter_mut() {
                if let Some(value) = weights.remove(&(layer.name.clone(), slot.name.clone())) {
                    slot.value = Some(value);
                }
            }
        }
        Ok(())
    }

    /// Fails on the first weight that was never set, naming it and its shape.
    pub fn check_weights(&self) -> Result<()> {
        for (layer, slots) in self.layers.iter().zip(&self.weights) {
            if let Some(slot) = slots.iter().find(|s| s.value.is_none()) {
                return Err(Error::weights(
                    format!("{}/{}", layer.name, slot.name),
                    format!(
                        "not set (shape {}); load trained weights (a .keras file, --weights, \
                         keras::load_weights_safetensors, Model::set_weights) or initialise \
                         them (init::keras_default_weights)",
                        shape_str(&slot.shape)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks an input tensor `[B, T, ...frame]` against the model and
    /// returns `(B, T)`.
    pub fn check_input(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let frame = &self.input.frame;
        let want = format!(
            "[B, T, {}]",
            frame.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        );
        if shape.len() != frame.len() + 2 {
            return Err(Error::input(
                "shape",
                format!("rank {} {want}", frame.len() + 2),
                format!("rank {} {}", shape.len(), shape_str(shape)),
            ));
        }
        if &shape[2..] != frame.as_slice() {
            return Err(Error::input("frame shape", want, shape_str(shape)));
        }
        let (b, t) = (shape[0], shape[1]);
        if b == 0 || t == 0 {
            return Err(Error::input("batch and time", "B >= 1 and T >= 1", shape_str(shape)));
        }
        if let Some(fixed) = self.input.time_steps {
            if fixed != t {
                return Err(Error::input(
                    "timesteps",
                    format!(
                        "T = {fixed} (the model declares a fixed T; declare None to accept any)"
                    ),
                    format!("T = {t}"),
                ));
            }
        }
        Ok((b, t))
    }
}

/// Checks an explicit timestep mask against the batch: `[B * T]` values.
pub fn check_mask(mask: &[u8], b: usize, t: usize) -> Result<()> {
    if mask.len() != b * t {
        return Err(Error::input(
            "timestep mask",
            format!("B x T = {b} x {t} = {} values, row-major (1 = valid step)", b * t),
            format!("{} values", mask.len()),
        ));
    }
    Ok(())
}

/// Shape inference over a stack. Public for loaders that want to validate
/// before building.
pub fn infer(input: &InputSpec, layers: &[Layer]) -> Result<Vec<LayerInfo>> {
    if input.frame.is_empty() || input.frame.contains(&0) {
        return Err(Error::input(
            "model input",
            "per-timestep dims [H, W, C] or [F], all >= 1",
            shape_str(&input.frame),
        ));
    }
    let mut shape = SampleShape { timed: true, dims: input.frame.clone() };
    let mut mask = false;
    let mut infos = Vec::with_capacity(layers.len());
    for (index, layer) in layers.iter().enumerate() {
        let err = |msg: String| Error::layer(index, &layer.name, msg);
        let got = shape.keras_str(input.time_steps);
        let frame_needed = |what: &str, fix: &str| -> Result<(usize, usize, usize)> {
            if !shape.timed || shape.dims.len() != 3 {
                return Err(err(format!(
                    "{what} needs frames [B, T, H, W, C] (rank 5), got {got}; {fix}"
                )));
            }
            Ok((shape.dims[0], shape.dims[1], shape.dims[2]))
        };
        let mut weights = Vec::new();
        let input_shape = shape.clone();
        match &layer.kind {
            LayerKind::Masking { .. } => {
                if !shape.timed {
                    return Err(err(format!(
                        "Masking needs a time axis, got {got}; put Masking before the LSTM that \
                         returns only its last output"
                    )));
                }
                mask = true;
            }
            LayerKind::Conv2D(c) => {
                let (h, w, cin) = frame_needed(
                    "Conv2D",
                    "put convolutions before Flatten and wrap them in TimeDistributed",
                )?;
                if c.filters == 0 || c.kernel.0 == 0 || c.kernel.1 == 0 {
                    return Err(err(
                        "Conv2D needs filters >= 1 and a kernel of at least 1x1".into()
                    ));
                }
                if c.strides.0 == 0 || c.strides.1 == 0 || c.dilation.0 == 0 || c.dilation.1 == 0 {
                    return Err(err("Conv2D strides and dilation must be >= 1".into()));
                }
                if (c.strides.0 > 1 || c.strides.1 > 1) && (c.dilation.0 > 1 || c.dilation.1 > 1) {
                    return Err(err(
                        "Conv2D with both strides > 1 and dilation > 1 is rejected by Keras; \
                         use one of them"
                            .into(),
                    ));
                }
                if c.activation == Activation::Softmax {
                    return Err(Error::Unsupported(format!(
                        "layer {index} ({}): Conv2D with softmax activation; use a linear \
                         Conv2D followed by Dense(softmax)",
                        layer.name
                    )));
                }
                let kh = (c.kernel.0 - 1) * c.dilation.0 + 1;
                let kw = (c.kernel.1 - 1) * c.dilation.1 + 1;
                let (oh, _) = c.padding.resolve(h, kh, c.strides.0).ok_or_else(|| {
                    err(format!(
                        "Conv2D kernel {}x{} (dilated {kh}x{kw}) is larger than the {h}x{w} \
                         frame with 'valid' padding; use padding='same' or a smaller kernel",
                        c.kernel.0, c.kernel.1
                    ))
                })?;
                let (ow, _) = c.padding.resolve(w, kw, c.strides.1).ok_or_else(|| {
                    err(format!(
                        "Conv2D kernel width {kw} is larger than the frame width {w} with \
                         'valid' padding; use padding='same' or a smaller kernel"
                    ))
                })?;
                weights.push(("kernel", vec![c.kernel.0, c.kernel.1, cin, c.filters]));
                if c.use_bias {
                    weights.push(("bias", vec![c.filters]));
                }
                shape.dims = vec![oh, ow, c.filters];
            }
            LayerKind::Pool2D(p) => {
                let (h, w, ch) = frame_needed(
                    layer.kind.class_name(),
                    "put pooling between the convolution and Flatten",
                )?;
                if p.pool.0 == 0 || p.pool.1 == 0 || p.strides.0 == 0 || p.strides.1 == 0 {
                    return Err(err("pool size and strides must be >= 1".into()));
                }
                let too_big = || {
                    err(format!(
                        "pool {}x{} is larger than the {h}x{w} frame with 'valid' padding; use \
                         padding='same' or a smaller pool",
                        p.pool.0, p.pool.1
                    ))
                };
                let (oh, _) = p.padding.resolve(h, p.pool.0, p.strides.0).ok_or_else(too_big)?;
                let (ow, _) = p.padding.resolve(w, p.pool.1, p.strides.1).ok_or_else(too_big)?;
                shape.dims = vec![oh, ow, ch];
            }
            LayerKind::SpatialDropout { rate, mode } => {
                let fix = match mode {
                    DropoutMode::PerTimestep => {
                        "SpatialDropout2D drops whole feature maps of a frame [H, W, C]: put it \
                         between the convolution and the Flatten"
                    }
                    DropoutMode::PerSample => {
                        "SpatialDropout3D drops whole channels of [B, T, H, W, C]: put it \
                         between the convolution and the Flatten"
                    }
                };
                frame_needed(layer.kind.class_name(), fix)?;
                check_rate(*rate).map_err(err)?;
            }
            LayerKind::Dropout { rate } => check_rate(*rate).map_err(err)?,
            LayerKind::Flatten => shape.dims = vec![shape.elements()],
            LayerKind::Reshape { target } => {
                let n: usize = target.iter().product();
                if target.is_empty() || n != shape.elements() {
                    return Err(err(format!(
                        "Reshape to {} holds {n} values per {}, but its input {got} holds {}; \
                         choose a target shape with {} values",
                        shape_str(target),
                        if shape.timed { "timestep" } else { "sample" },
                        shape.elements(),
                        shape.elements()
                    )));
                }
                shape.dims = target.clone();
            }
            LayerKind::Dense(d) => {
                if d.units == 0 {
                    return Err(err("Dense needs units >= 1".into()));
                }
                let fan_in = *shape.dims.last().unwrap_or(&1);
                weights.push(("kernel", vec![fan_in, d.units]));
                if d.use_bias {
                    weights.push(("bias", vec![d.units]));
                }
                if let Some(last) = shape.dims.last_mut() {
                    *last = d.units;
                }
            }
            LayerKind::Lstm(l) => {
                if !shape.timed || shape.dims.len() != 1 {
                    let fix = if shape.timed {
                        "add TimeDistributed(Flatten()) before the LSTM"
                    } else {
                        "set return_sequences=True on the LSTM before this one"
                    };
                    return Err(err(format!(
                        "LSTM needs a sequence of feature vectors [B, T, F] (rank 3), got \
                         {got}; {fix}"
                    )));
                }
                if l.units == 0 {
                    return Err(err("LSTM needs units >= 1".into()));
                }
                for (what, a) in
                    [("activation", l.activation), ("recurrent_activation", l.recurrent_activation)]
                {
                    if a == Activation::Softmax {
                        return Err(Error::Unsupported(format!(
                            "layer {index} ({}): LSTM {what}='softmax'; use tanh, sigmoid or \
                             another elementwise activation",
                            layer.name
                        )));
                    }
                }
                let f = shape.dims[0];
                weights.push(("kernel", vec![f, 4 * l.units]));
                weights.push(("recurrent_kernel", vec![l.units, 4 * l.units]));
                if l.use_bias {
                    weights.push(("bias", vec![4 * l.units]));
                }
                shape = SampleShape { timed: l.return_sequences, dims: vec![l.units] };
                if !l.return_sequences {
                    mask = false;
                }
            }
        }
        let params = weights.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        infos.push(LayerInfo {
            input: input_shape,
            output: shape.clone(),
            has_mask: mask,
            params,
            weights,
        });
    }
    Ok(infos)
}

fn check_rate(rate: f64) -> std::result::Result<(), String> {
    if (0.0..1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("dropout rate must lie in [0, 1), got {rate}"))
    }
}
