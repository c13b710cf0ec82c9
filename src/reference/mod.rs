//! The plain-Rust CPU reference: every layer, and the whole model.
//!
//! This is the ground truth the GPU path is checked against, and the
//! `--device cpu` backend. Each stage lives in its own file as functions on
//! flat f32 slices plus their dims, written loop for loop like the math, with
//! f64 accumulation for long sums (convolution, Dense, LSTM gates). It shares
//! nothing with the GPU code but the dropout hash in [`crate::rng`].
//!
//! Layouts through the model: the input is `[B, T, H, W, C]`; per-frame
//! layers see `[N, H, W, C]` with `N = B * T`, channels last; Flatten and
//! Reshape are no-ops on the row-major buffer; Dense applies to the last
//! axis over all leading rows; the LSTM sees `[B, T, F]` and returns
//! `[B, T, U]` or `[B, U]`. Timestep masks are `[B * T]`, 1 = valid.

pub mod activation;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod lstm;
pub mod masking;
pub mod parallel;
pub mod pool2d;

use std::time::Instant;

use crate::error::{Error, Result};
use crate::forward::{Forward, LayerOutput, RunOptions, StageTiming};
use crate::model::{LayerKind, Model};
use crate::rng;
use crate::tensor::{shape_str, Tensor};

/// Where a forward pass is, for progress bars over long work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress<'a> {
    /// Index of the layer about to run.
    pub layer: usize,
    /// Number of layers in the model.
    pub layers: usize,
    /// The layer's name.
    pub name: &'a str,
    /// For an LSTM: `Some((t, T))` before timestep `t` of `T`; `None` when
    /// the layer starts.
    pub timestep: Option<(usize, usize)>,
}

/// Runs `model` on `input` (`[B, T, ...frame]`) on the CPU.
pub fn forward(model: &Model, input: &Tensor, opts: &RunOptions) -> Result<Forward> {
    forward_with_progress(model, input, opts, &mut |_| {})
}

/// [`forward`], calling `progress` as each layer starts and before each LSTM timestep.
pub fn forward_with_progress(
    model: &Model,
    input: &Tensor,
    opts: &RunOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Forward> {
    run(model, input, None, opts, progress)
}

/// [`forward`] with an explicit timestep mask `[B * T]` (1 = valid step),
/// as Keras's `model(x, mask=m)`: it reaches every layer until a Masking
/// layer replaces it or an LSTM without sequences drops it.
pub fn forward_with_mask(
    model: &Model,
    input: &Tensor,
    mask: &[u8],
    opts: &RunOptions,
) -> Result<Forward> {
    run(model, input, Some(mask), opts, &mut |_| {})
}

fn run(
    model: &Model,
    input: &Tensor,
    initial_mask: Option<&[u8]>,
    opts: &RunOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Forward> {
    let (b, t) = model.check_input(input.shape())?;
    model.check_weights()?;
    model.check_training(opts.training)?;
    crate::tensor::check_finite("input", input)?;
    if let Some(m) = initial_mask {
        crate::model::check_mask(m, b, t)?;
    }
    let mut x = input.data().to_vec();
    let mut mask: Option<Vec<u8>> =
        initial_mask.map(|m| m.iter().map(|&v| u8::from(v != 0)).collect());
    let mut layers = Vec::new();
    let mut timings = Vec::with_capacity(model.layers().len());
    let count = model.layers().len();

    for (index, (layer, info)) in model.layers().iter().zip(model.infos()).enumerate() {
        progress(Progress { layer: index, layers: count, name: &layer.name, timestep: None });
        let start = Instant::now();
        let in_elems = x.len();
        // Rows of the per-timestep (or per-sample) tensor: B * T while timed, else B.
        let rows = if info.input.timed { b * t } else { b };
        let per_row = info.input.elements();
        let weight = |variable: &str| -> Result<&[f32]> {
            model.weight(index, variable).map(|w| w.data()).ok_or_else(|| {
                Error::weights(
                    format!("{}/{variable}", layer.name),
                    "missing; set it with Model::set_weight",
                )
            })
        };
        let bias_of = |use_bias: bool| -> Result<Option<&[f32]>> {
            if use_bias {
                weight("bias").map(Some)
            } else {
                Ok(None)
            }
        };
        let mut flops = 0u64;
        let mut weight_elems = 0usize;

        match &layer.kind {
            LayerKind::Masking { mask_value } => {
                let m = masking::timestep_mask(&x, rows, per_row, *mask_value);
                masking::zero_masked(&mut x, &m, per_row);
                mask = Some(m);
                flops = in_elems as u64;
            }
            LayerKind::Conv2D(c) => {
                let dims = conv2d::Conv2dDims {
                    n: rows,
                    h: info.input.dims[0],
                    w: info.input.dims[1],
                    cin: info.input.dims[2],
                    kh: c.kernel.0,
                    kw: c.kernel.1,
                    cout: c.filters,
                    strides: c.strides,
                    dilation: c.dilation,
                    padding: c.padding,
                };
                let kernel = weight("kernel")?;
                let bias = bias_of(c.use_bias)?;
                weight_elems = kernel.len() + bias.map_or(0, <[f32]>::len);
                x = conv2d::conv2d(&x, &dims, kernel, bias, c.activation).ok_or_else(|| {
                    Error::layer(index, &layer.name, "the kernel does not fit the frame")
                })?;
                flops = 2 * (x.len() * dims.kh * dims.kw * dims.cin) as u64;
            }
            LayerKind::Pool2D(p) => {
                let dims = pool2d::Pool2dDims {
                    n: rows,
                    h: info.input.dims[0],
                    w: info.input.dims[1],
                    c: info.input.dims[2],
                    pool: p.pool,
                    strides: p.strides,
                    padding: p.padding,
                };
                x = pool2d::pool2d(&x, &dims, p.kind).ok_or_else(|| {
                    Error::layer(index, &layer.name, "the pool does not fit the frame")
                })?;
                flops = (x.len() * p.pool.0 * p.pool.1) as u64;
            }
            LayerKind::SpatialDropout { rate, mode } => {
                if opts.training {
                    let seed = rng::layer_seed(opts.seed, index);
                    let c = info.input.dims[2];
                    let spatial = info.input.dims[0] * info.input.dims[1];
                    let keep = dropout::spatial_keep_mask(seed, *rate, *mode, b, t, c);
                    let scale = rng::keep_scale(*rate);
                    dropout::apply_spatial(&mut x, &keep, *mode, b, t, spatial, c, scale);
                    flops = in_elems as u64;
                }
            }
            LayerKind::Dropout { rate } => {
                if opts.training {
                    let seed = rng::layer_seed(opts.seed, index);
                    let steps = if info.input.timed { t } else { 1 };
                    let keep = dropout::element_keep_mask(seed, *rate, b, steps, per_row);
                    dropout::apply_elements(&mut x, &keep, rng::keep_scale(*rate));
                    flops = in_elems as u64;
                }
            }
            LayerKind::Flatten | LayerKind::Reshape { .. } => {}
            LayerKind::Dense(d) => {
                let k = *info.input.dims.last().unwrap_or(&1);
                let m = in_elems / k.max(1);
                let kernel = weight("kernel")?;
                let bias = bias_of(d.use_bias)?;
                weight_elems = kernel.len() + bias.map_or(0, <[f32]>::len);
                x = dense::dense(&x, m, k, kernel, bias, d.units, d.activation);
                flops = 2 * (m * k * d.units) as u64;
            }
            LayerKind::Lstm(l) => {
                let dims = lstm::LstmDims {
                    b,
                    t,
                    f: per_row,
                    units: l.units,
                    activation: l.activation,
                    recurrent_activation: l.recurrent_activation,
                    zero_output_for_mask: l.zero_output_for_mask,
                };
                let kernel = weight("kernel")?;
                let recurrent = weight("recurrent_kernel")?;
                let bias = bias_of(l.use_bias)?;
                weight_elems = kernel.len() + recurrent.len() + bias.map_or(0, <[f32]>::len);
                let xk = lstm::input_projection(&x, &dims, kernel);
                let name = layer.name.as_str();
                let seq =
                    lstm::recurrence(&xk, &dims, recurrent, bias, mask.as_deref(), &mut |step| {
                        progress(Progress {
                            layer: index,
                            layers: count,
                            name,
                            timestep: Some((step, t)),
                        })
                    });
                x = if l.return_sequences { seq.output } else { seq.last_output(&dims) };
                let g4 = 4 * l.units;
                flops = 2 * (b * t * (per_row + l.units) * g4) as u64 + (b * t * g4 * 4) as u64;
            }
        }

        if info.has_mask && mask.is_none() {
            return Err(Error::layer(
                index,
                &layer.name,
                "shape inference attached a mask but none was computed",
            ));
        }
        if !info.output.timed {
            mask = None;
        }
        let shape = info.output.with_batch(b, t);
        if shape.iter().product::<usize>() != x.len() {
            return Err(Error::layer(
                index,
                &layer.name,
                format!("produced {} values for shape {}", x.len(), shape_str(&shape)),
            ));
        }
        let identity = matches!(layer.kind, LayerKind::Flatten | LayerKind::Reshape { .. })
            || (!opts.training
                && matches!(
                    layer.kind,
                    LayerKind::SpatialDropout { .. } | LayerKind::Dropout { .. }
                ));
        let bytes = if identity { 0 } else { 4 * (in_elems + x.len() + weight_elems) as u64 };
        timings.push(StageTiming { name: layer.name.clone(), time: start.elapsed(), flops, bytes });
        if opts.capture_layers {
            let value = Tensor::new(shape, x.clone())?;
            layers.push(LayerOutput { name: layer.name.clone(), value, mask: mask.clone() });
        }
    }

    let shape = model.output_shape().with_batch(b, t);
    let output = Tensor::new(shape, x)?;
    Ok(Forward { output, layers, timings })
}
