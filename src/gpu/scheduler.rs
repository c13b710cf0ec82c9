//! The GPU forward pass: weights uploaded once, one plan per input shape,
//! every dispatch of a forward recorded into one encoder and submitted once.
//!
//! Planning works on virtual buffers: each layer output and scratch tensor
//! gets one, with the index of the first and last operation that touches
//! it. Physical buffers are then handed out greedily, reusing a buffer once
//! every virtual buffer assigned to it is dead. When layer outputs are
//! captured they all stay alive to the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wgpu::util::DeviceExt;

use super::context::{Context, MatmulVariant};
use super::kernels::*;
use crate::error::{Error, Result};
use crate::forward::{Forward, LayerOutput, RunOptions, StageTiming};
use crate::model::{
    Activation, DropoutMode, InputSpec, Layer, LayerInfo, LayerKind, Model, PoolKind,
};
use crate::rng;
use crate::shaders::Shader;
use crate::tensor::Tensor;

const F32: u64 = 4;

/// Values one invocation of `masking.wgsl`'s `timestep_mask` scans
/// (`MASK_BLOCK` there); the grid has one invocation per block.
const MASK_BLOCK: usize = 1024;
const RGBA: wgpu::TextureFormat = wgpu::TextureFormat::Rgba32Float;
const R32: wgpu::TextureFormat = wgpu::TextureFormat::R32Float;

/// Workgroup size of the split-K kernels.
const SPLITK_WG: u32 = 8;
/// Rows and column quads of C per split-K invocation (TILE_ROWS and
/// TILE_QUADS of `shaders/matmul_splitk.wgsl`).
const SPLITK_ROWS: usize = 8;
const SPLITK_QUADS: usize = 4;
/// Fewest K values per split-K slice: enough work per workgroup.
const SPLITK_MIN_SLICE: usize = 1024;

/// How an LSTM whose units are a multiple of 4 runs its recurrence (other
/// unit counts always run `lstm_recurrence.wgsl`, one persistent dispatch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LstmRecurrence {
    /// Chosen per shape: [`LstmRecurrence::PerStep`] when a step has at
    /// least 128 gate quads (B x U >= 128) and T <= 4096,
    /// [`LstmRecurrence::Persistent`] otherwise (measured on lavapipe).
    #[default]
    Auto,
    /// `lstm_recurrence_texture.wgsl`: one dispatch for all T steps, one
    /// workgroup per sample.
    Persistent,
    /// `lstm_step_texture.wgsl`: two dispatches per step, each spread over
    /// B x U gate quads (then B x U / 4 unit quads).
    PerStep,
}

/// A model whose weights live on the GPU, ready to run forward passes.
pub struct GpuModel {
    ctx: Arc<Context>,
    input: InputSpec,
    layers: Vec<Layer>,
    infos: Vec<LayerInfo>,
    weights: Vec<LayerWeights>,
    pipelines: HashMap<(Shader, &'static str), wgpu::ComputePipeline>,
    dummy: wgpu::Buffer,
    plans: HashMap<PlanKey, Plan>,
    wg: u32,
    /// Workgroup size of the convolution: output channels per workgroup.
    conv_wg: u32,
    /// log2 of the width in texels of every operand texture.
    tex_shift: u32,
    weight_bytes: u64,
    /// The model with its weights dropped: layer facts and training checks.
    checks: Model,
    /// How LSTM recurrences are dispatched.
    recurrence: LstmRecurrence,
}

#[derive(Default)]
struct LayerWeights {
    /// The kernel, split along its first axis when it exceeds one binding.
    kernel: Vec<Chunk>,
    /// The kernel of a split-K GEMM as rgba32float textures, split likewise;
    /// when present, `kernel` is empty.
    kernel_tex: Vec<TexChunk>,
    /// The LSTM recurrent kernel as a texture (`lstm_recurrence_texture.wgsl`);
    /// when present, `recurrent` is `None`.
    recurrent_tex: Option<TexChunk>,
    recurrent: Option<wgpu::Buffer>,
    bias: Option<wgpu::Buffer>,
}

struct Chunk {
    buffer: wgpu::Buffer,
    k_offset: u32,
    k_len: u32,
}

/// Rows `k_offset .. k_offset + k_len` of a `[K, N]` weight in a texture,
/// four values of a row per texel, texels row-major over the texture width.
struct TexChunk {
    view: wgpu::TextureView,
    k_offset: u32,
    k_len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    batch: usize,
    steps: usize,
    capture: bool,
    training: bool,
    /// The caller passes a timestep mask for the model input.
    masked_input: bool,
}

/// One dispatch, before physical buffers exist.
struct OpDesc {
    stage: usize,
    shader: Shader,
    entry: &'static str,
    /// `(binding, resource)` in binding order.
    bindings: Vec<(u32, Res)>,
    groups: (u32, u32, u32),
    /// Index into `dropouts` when a uniform carries a per-call seed.
    dropout: Option<usize>,
    /// When set, this is no dispatch but a copy of binding 0's buffer into
    /// this virtual texture.
    copy_to: Option<usize>,
}

impl Res {
    /// A uniform holding `params`, a shader's params struct.
    fn uniform<T: bytemuck::Pod>(params: &T) -> Res {
        Res::Uniform(bytemuck::bytes_of(params).to_vec())
    }
}

#[derive(Clone)]
enum Res {
    Uniform(Vec<u8>),
    Virtual(usize),
    Weight {
        layer: usize,
        part: WeightPart,
    },
    /// A weight chunk's texture.
    WeightTex {
        layer: usize,
        chunk: usize,
    },
    /// An LSTM's recurrent kernel texture.
    RecurrentTex {
        layer: usize,
    },
    /// A texture copy of a virtual buffer (index into `Planner::vtex`).
    VirtualTex(usize),
    Dummy,
    Ones,
}

#[derive(Clone, Copy)]
enum WeightPart {
    KernelChunk(usize),
    Recurrent,
    Bias,
}

struct VBuf {
    bytes: u64,
    label: String,
    first: usize,
    last: usize,
}

struct StageDesc {
    name: String,
    flops: u64,
    bytes: u64,
}

struct Readback {
    what: ReadWhat,
    source: usize,
    bytes: u64,
    staging: wgpu::Buffer,
}

enum ReadWhat {
    Output(Vec<usize>),
    Layer(String, Vec<usize>),
    Mask,
}

struct Plan {
    buffers: Vec<wgpu::Buffer>,
    textures: Vec<wgpu::Texture>,
    input: usize,
    /// Physical buffer of the caller's timestep mask, when the plan takes one.
    input_mask: Option<usize>,
    stages: Vec<(StageDesc, Vec<Dispatch>)>,
    dropouts: Vec<(wgpu::Buffer, DropoutParams, usize)>,
    readbacks: Vec<Readback>,
    bytes: u64,
    /// GPU time of each stage, where the device has timestamp queries.
    timestamps: Option<Timestamps>,
    /// Conv2D layers that leave masked frames uncomputed.
    skips_masked: Vec<String>,
}

/// Two timestamps per stage (start, end), resolved and read back with the outputs.
struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
}

enum Dispatch {
    Compute {
        pipeline: (Shader, &'static str),
        bind_group: wgpu::BindGroup,
        groups: (u32, u32, u32),
    },
    /// Whole rows of `width` texels from a buffer into a texture.
    CopyToTexture { buffer: usize, texture: usize, width: u32, row_bytes: u32, rows: u32 },
}

/// What planning recorded: the input's and the input mask's virtual
/// buffers, and what to read back.
struct Built {
    skips_masked: Vec<String>,
    input: usize,
    input_mask: Option<usize>,
    reads: Vec<(ReadWhat, usize)>,
}

/// Builder state while planning one shape.
struct Planner<'a> {
    model: &'a GpuModel,
    batch: usize,
    steps: usize,
    vbufs: Vec<VBuf>,
    ops: Vec<OpDesc>,
    stages: Vec<StageDesc>,
    /// Per-call dropout uniforms: (params, layer index, uniform binding).
    dropouts: Vec<(DropoutParams, usize, u32)>,
    /// Texture copies of virtual buffers: (source, texture rows, format).
    vtex: Vec<(usize, u32, wgpu::TextureFormat)>,
}

impl GpuModel {
    /// Uploads the weights and compiles every pipeline the model needs.
    pub fn new(ctx: Arc<Context>, model: &Model) -> Result<GpuModel> {
        let guard_ctx = Arc::clone(&ctx);
        let _serial = guard_ctx.exclusive();
        model.check_weights()?;
        let limits = ctx.limits().clone();
        // The LSTM recurrence binds 7 storage buffers, the most of any kernel.
        let needs_lstm = model.layers().iter().any(|l| matches!(l.kind, LayerKind::Lstm(_)));
        // The buffer convolution binds 5 (with the timestep mask).
        let needs_conv = model.layers().iter().any(|l| matches!(l.kind, LayerKind::Conv2D(_)));
        let storage_needed = if needs_lstm {
            7
        } else if needs_conv {
            5
        } else {
            4
        };
        if limits.max_storage_buffers_per_shader_stage < storage_needed {
            return Err(Error::LimitExceeded {
                what: "storage buffers bound by one kernel".into(),
                limit: "max_storage_buffers_per_shader_stage".into(),
                needed: u64::from(storage_needed),
                allowed: u64::from(limits.max_storage_buffers_per_shader_stage),
            });
        }
        let wg = 64
            .min(limits.max_compute_invocations_per_workgroup)
            .min(limits.max_compute_workgroup_size_x)
            .max(1);
        if wg < 64 {
            log::warn!("workgroup size reduced to {wg} to fit the device limits");
        }
        let dummy = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("cnn-lstm unused binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let mut gm = GpuModel {
            ctx: Arc::clone(&ctx),
            input: model.input().clone(),
            layers: model.layers().to_vec(),
            infos: model.infos().to_vec(),
            weights: Vec::new(),
            pipelines: HashMap::new(),
            dummy,
            plans: HashMap::new(),
            wg,
            conv_wg: conv_workgroup(&ctx, model, wg),
            tex_shift: (limits.max_texture_dimension_2d.clamp(1, 4096)).ilog2(),
            weight_bytes: 0,
            checks: model.without_weights(),
            recurrence: LstmRecurrence::Auto,
        };
        for (index, layer) in model.layers().iter().enumerate() {
            let w = gm.upload_weights(model, index, layer)?;
            gm.weights.push(w);
        }
        gm.create_pipelines()?;
        Ok(gm)
    }

    /// The context this model runs on.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Sets how LSTM recurrences are dispatched (default
    /// [`LstmRecurrence::Auto`]); plans made so far are dropped.
    pub fn set_lstm_recurrence(&mut self, recurrence: LstmRecurrence) {
        if recurrence != self.recurrence {
            self.recurrence = recurrence;
            self.plans.clear();
        }
    }

    /// Bytes of weights on the GPU.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Bytes of activation and scratch buffers the plan for `(batch, steps)`
    /// allocates, once a forward of that shape has run.
    pub fn plan_bytes(&self, batch: usize, steps: usize) -> Option<u64> {
        self.plans.iter().find(|(k, _)| k.batch == batch && k.steps == steps).map(|(_, p)| p.bytes)
    }

    /// Names of the Conv2D layers that leave masked frames uncomputed
    /// (their outputs there are zeros) in the plans for `(batch, steps)`
    /// built so far. A layer does so when a timestep mask exists, layer
    /// outputs are not captured, and only per-frame layers and then an
    /// LSTM follow it, with no Masking layer between.
    pub fn layers_skipping_masked_frames(&self, batch: usize, steps: usize) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (key, plan) in &self.plans {
            if key.batch == batch && key.steps == steps {
                for n in &plan.skips_masked {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
            }
        }
        names
    }

    fn upload_weights(
        &mut self,
        model: &Model,
        index: usize,
        layer: &Layer,
    ) -> Result<LayerWeights> {
        let mut w = LayerWeights::default();
        let kernel_shape = match &layer.kind {
            LayerKind::Conv2D(_) | LayerKind::Dense(_) | LayerKind::Lstm(_) => {
                model.weight(index, "kernel").map(|t| t.shape().to_vec())
            }
            _ => None,
        };
        let Some(kshape) = kernel_shape else { return Ok(w) };
        let kernel = model.weight(index, "kernel").ok_or_else(|| {
            Error::weights(format!("{}/kernel", layer.name), "missing from the model")
        })?;
        let is_gemm = !matches!(layer.kind, LayerKind::Conv2D(_));
        let limit = self.ctx.binding_limit();
        if is_gemm && self.gemm_uses_textures(kshape[0], kshape[1]) {
            let (k, n) = (kshape[0], kshape[1]);
            let label = format!("{}/kernel", layer.name);
            self.upload_texture_chunks(&label, kernel.data(), (k, n), &mut w.kernel_tex)?;
        } else if is_gemm {
            // Split [K, N] into row chunks that each fit one binding.
            let (k, n) = (kshape[0], kshape[1]);
            let row_bytes = n as u64 * F32;
            if row_bytes > limit {
                return Err(Error::LimitExceeded {
                    what: format!("one row of {}/kernel ({n} columns)", layer.name),
                    limit: "max_storage_buffer_binding_size".into(),
                    needed: row_bytes,
                    allowed: limit,
                });
            }
            let mut rows_per_chunk = ((limit / row_bytes) as usize).clamp(1, k.max(1));
            // One register-GEMM invocation loops over its chunk's K rows.
            if let Some(budget) = self.ctx.loop_budget() {
                rows_per_chunk = rows_per_chunk.min(budget - 1024);
            }
            if rows_per_chunk < k && rows_per_chunk >= 4 {
                // Chunk starts stay multiples of 4, as the split-K kernel reads vec4s.
                rows_per_chunk -= rows_per_chunk % 4;
            }
            let mut start = 0;
            while start < k {
                let len = rows_per_chunk.min(k - start);
                let data = &kernel.data()[start * n..(start + len) * n];
                let label = format!("{}/kernel[{start}..{}]", layer.name, start + len);
                let buffer = self.storage_init(&label, bytemuck::cast_slice(data))?;
                w.kernel.push(Chunk { buffer, k_offset: start as u32, k_len: len as u32 });
                start += len;
            }
            if w.kernel.len() > 1 {
                log::debug!("{}/kernel split into {} chunks", layer.name, w.kernel.len());
            }
        } else if conv_uses_textures(&layer.kind) {
            let taps = kernel.data().len() / kshape[3].max(1);
            let label = format!("{}/kernel", layer.name);
            let out = &mut w.kernel_tex;
            self.upload_texture_chunks(&label, kernel.data(), (taps, kshape[3]), out)?;
            if w.kernel_tex.len() != 1 {
                return Err(Error::LimitExceeded {
                    what: format!("{}/kernel {:?} as one texture", layer.name, kshape),
                    limit: "max_storage_buffer_binding_size".into(),
                    needed: kernel.data().len() as u64 * F32,
                    allowed: limit,
                });
            }
        } else {
            let label = format!("{}/kernel", layer.name);
            let buffer = self.storage_checked(&label, bytemuck::cast_slice(kernel.data()))?;
            w.kernel.push(Chunk { buffer, k_offset: 0, k_len: 0 });
        }
        if let Some(r) = model.weight(index, "recurrent_kernel") {
            let label = format!("{}/recurrent_kernel", layer.name);
            if lstm_uses_textures(&layer.kind) {
                let (u, n) = (r.shape()[0], r.shape()[1]);
                let mut out = Vec::new();
                self.upload_texture_chunks(&label, r.data(), (u, n), &mut out)?;
                if out.len() != 1 {
                    return Err(Error::LimitExceeded {
                        what: format!("{label} [{u}, {n}] as one texture"),
                        limit: "max_storage_buffer_binding_size".into(),
                        needed: (u * n) as u64 * F32,
                        allowed: limit,
                    });
                }
                w.recurrent_tex = out.pop();
            } else {
                w.recurrent = Some(self.storage_checked(&label, bytemuck::cast_slice(r.data()))?);
            }
        }
        if let Some(b) = model.weight(index, "bias") {
            let label = format!("{}/bias", layer.name);
            w.bias = Some(self.storage_checked(&label, bytemuck::cast_slice(b.data()))?);
        }
        Ok(w)
    }

    /// True when the GEMM with weight `[k, n]` runs split-K from textures:
    /// K and N multiples of 4 and K >= 1024 (long enough for slices to pay),
    /// or any K with the split-K variant forced.
    fn gemm_uses_textures(&self, k: usize, n: usize) -> bool {
        k.is_multiple_of(4)
            && n.is_multiple_of(4)
            && n > 0
            && (k >= 1024 || self.ctx.matmul_variant() == MatmulVariant::SplitK)
    }

    /// Uploads weight `[k, n]` as rgba32float textures of whole rows, each
    /// chunk within one binding's size and the texture height limit.
    fn upload_texture_chunks(
        &mut self,
        name: &str,
        data: &[f32],
        (k, n): (usize, usize),
        out: &mut Vec<TexChunk>,
    ) -> Result<()> {
        let width = 1usize << self.tex_shift;
        let max_rows = self.ctx.limits().max_texture_dimension_2d as usize;
        let by_binding = (self.ctx.binding_limit() / (n as u64 * F32)) as usize;
        let by_height = max_rows * width * 4 / n;
        let cap = by_binding.min(by_height);
        // Chunk starts stay multiples of 4 (split-K reads A four columns at a time).
        let rows_per_chunk = if cap >= k { k } else { cap / 4 * 4 };
        if rows_per_chunk == 0 {
            return Err(Error::LimitExceeded {
                what: format!("four rows of {name} ({n} columns) in one texture"),
                limit: "max_texture_dimension_2d and max_storage_buffer_binding_size".into(),
                needed: 4 * n as u64 * F32,
                allowed: self.ctx.binding_limit(),
            });
        }
        let mut start = 0;
        while start < k {
            let len = rows_per_chunk.min(k - start);
            let texels = len * n / 4;
            let rows = texels.div_ceil(width);
            let mut padded = vec![0f32; rows * width * 4];
            padded[..len * n].copy_from_slice(&data[start * n..(start + len) * n]);
            let label = format!("{name}[{start}..{}] texture", start + len);
            let bytes = padded.len() as u64 * F32;
            self.weight_bytes += bytes;
            let (device, queue) = (&self.ctx.device, &self.ctx.queue);
            let texture = self.ctx.scoped(&label, bytes, || {
                device.create_texture_with_data(
                    queue,
                    &operand_texture(&label, width as u32, rows as u32, RGBA),
                    wgpu::util::TextureDataOrder::LayerMajor,
                    bytemuck::cast_slice(&padded),
                )
            })?;
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            out.push(TexChunk { view, k_offset: start as u32, k_len: len as u32 });
            start += len;
        }
        log::debug!("{name} uploaded as {} texture chunk(s)", out.len());
        Ok(())
    }

    fn storage_checked(&mut self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let limit = self.ctx.binding_limit();
        if bytes.len() as u64 > limit {
            return Err(Error::LimitExceeded {
                what: label.to_string(),
                limit: "max_storage_buffer_binding_size".into(),
                needed: bytes.len() as u64,
                allowed: limit,
            });
        }
        self.storage_init(label, bytes)
    }

    fn storage_init(&mut self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        self.weight_bytes += bytes.len() as u64;
        let device = &self.ctx.device;
        self.ctx.scoped(label, bytes.len() as u64, || {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE,
            })
        })
    }

    fn create_pipelines(&mut self) -> Result<()> {
        let mut wanted: Vec<(Shader, &'static str)> = Vec::new();
        let matmul = match self.ctx.matmul_variant() {
            MatmulVariant::Register | MatmulVariant::SplitK => Shader::MatmulRegister,
            MatmulVariant::Tiled => Shader::MatmulTiled,
        };
        for layer in &self.layers {
            match &layer.kind {
                LayerKind::Masking { .. } => {
                    wanted.push((Shader::Masking, "clear_mask"));
                    wanted.push((Shader::Masking, "timestep_mask"));
                    wanted.push((Shader::Masking, "apply_mask"));
                }
                LayerKind::Conv2D(c) if conv_uses_textures(&layer.kind) => {
                    wanted.push((Shader::Conv2DTexture, conv_texture_entry(c.filters).0))
                }
                LayerKind::Conv2D(_) => wanted.push((Shader::Conv2D, "main")),
                LayerKind::Pool2D(_) => wanted.push((Shader::Pool2D, "main")),
                LayerKind::SpatialDropout { .. } | LayerKind::Dropout { .. } => {
                    wanted.push((Shader::Dropout, "main"))
                }
                LayerKind::Dense(d) => {
                    wanted.push((matmul, "main"));
                    wanted.push((Shader::MatmulSplitK, "partial"));
                    wanted.push((Shader::MatmulSplitK, "reduce"));
                    if d.activation == Activation::Softmax {
                        wanted.push((Shader::Softmax, "main"));
                    }
                }
                LayerKind::Lstm(_) => {
                    if lstm_uses_textures(&layer.kind) {
                        wanted.push((Shader::LstmRecurrenceTexture, "main"));
                        wanted.push((Shader::LstmStepTexture, "gates"));
                        wanted.push((Shader::LstmStepTexture, "cell"));
                    } else {
                        wanted.push((Shader::LstmRecurrence, "main"));
                    }
                    wanted.push((matmul, "main"));
                    wanted.push((Shader::MatmulSplitK, "partial"));
                    wanted.push((Shader::MatmulSplitK, "reduce"));
                }
                LayerKind::Flatten | LayerKind::Reshape { .. } => {}
            }
        }
        for key in wanted {
            if self.pipelines.contains_key(&key) {
                continue;
            }
            let pipeline = self.create_pipeline(key.0, key.1)?;
            self.pipelines.insert(key, pipeline);
        }
        Ok(())
    }

    fn create_pipeline(
        &self,
        shader: Shader,
        entry: &'static str,
    ) -> Result<wgpu::ComputePipeline> {
        let device = &self.ctx.device;
        let label = format!("{}::{entry}", shader.name());
        let source = shader.source();
        let module = self
            .ctx
            .scoped(&label, 0, || {
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name()),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                })
            })
            .map_err(|e| Error::ShaderCompilation {
                shader: label.clone(),
                message: e.to_string(),
            })?;
        log::trace!("compiled shader {label}");
        let constants: Vec<(&str, f64)> = match shader {
            Shader::MatmulTiled => Vec::new(),
            Shader::Conv2D => vec![("WG", f64::from(self.conv_wg))],
            Shader::MatmulSplitK => vec![("WG", f64::from(SPLITK_WG.min(self.wg)))],
            _ => vec![("WG", f64::from(self.wg))],
        };
        self.ctx.scoped(&label, 0, || {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })
    }

    /// Runs the model on `input` `[B, T, ...frame]`.
    ///
    /// The first call for a shape plans buffers and bind groups; later calls
    /// with the same `(B, T)` allocate nothing and record one submission.
    pub fn forward(&mut self, input: &Tensor, opts: &RunOptions) -> Result<Forward> {
        self.run(input, opts, false)
    }

    /// Like [`GpuModel::forward`], but submits each stage separately and
    /// waits for it, so `Forward::timings` holds the wall time of each stage
    /// (the fallback where timestamp queries are unavailable). Slower.
    pub fn forward_profiled(&mut self, input: &Tensor, opts: &RunOptions) -> Result<Forward> {
        self.run(input, opts, true)
    }

    /// [`GpuModel::forward`] with an explicit timestep mask `[B * T]`
    /// (1 = valid step), as Keras's `model(x, mask=m)`: it reaches every
    /// layer until a Masking layer replaces it or an LSTM without sequences
    /// drops it.
    pub fn forward_with_mask(
        &mut self,
        input: &Tensor,
        mask: &[u8],
        opts: &RunOptions,
    ) -> Result<Forward> {
        let (batch, steps) = check_input(&self.input, input.shape())?;
        crate::model::check_mask(mask, batch, steps)?;
        self.run_masked(input, Some(mask), opts, false)
    }

    fn run(&mut self, input: &Tensor, opts: &RunOptions, profile: bool) -> Result<Forward> {
        self.run_masked(input, None, opts, profile)
    }

    fn run_masked(
        &mut self,
        input: &Tensor,
        mask: Option<&[u8]>,
        opts: &RunOptions,
        profile: bool,
    ) -> Result<Forward> {
        let ctx = Arc::clone(&self.ctx);
        let _serial = ctx.exclusive();
        let (batch, steps) = check_input(&self.input, input.shape())?;
        self.checks.check_training(opts.training)?;
        crate::tensor::check_finite("input", input)?;
        let masked = mask.is_some();
        let slice = self.batch_slice(batch, steps, opts, masked)?;
        if slice == batch {
            let key = self.plan_for(batch, steps, opts, masked)?;
            let plan = &self.plans[&key];
            return execute(&self.ctx, &self.pipelines, plan, input, mask, opts, 0, profile);
        }
        // Samples are independent in every layer, so a batch whose tensors
        // exceed one storage binding runs as consecutive slices of samples.
        log::debug!("batch of {batch} runs in slices of {slice} samples to fit the bindings");
        let per_sample = input.len() / batch;
        let mut parts: Vec<Forward> = Vec::new();
        let mut start = 0;
        while start < batch {
            let n = slice.min(batch - start);
            let mut shape = input.shape().to_vec();
            shape[0] = n;
            let data = input.data()[start * per_sample..(start + n) * per_sample].to_vec();
            let part = Tensor::new(shape, data)?;
            let part_mask = mask.map(|m| &m[start * steps..(start + n) * steps]);
            let key = self.plan_for(n, steps, opts, masked)?;
            let plan = &self.plans[&key];
            let fwd =
                execute(&self.ctx, &self.pipelines, plan, &part, part_mask, opts, start, profile)?;
            parts.push(fwd);
            start += n;
        }
        concat_batches(parts)
    }

    /// The largest number of samples, at most `batch`, whose tensors all fit
    /// the device's bindings; an error naming the tensor when one sample
    /// does not fit.
    fn batch_slice(
        &self,
        batch: usize,
        steps: usize,
        opts: &RunOptions,
        masked_input: bool,
    ) -> Result<usize> {
        let fits = |b: usize| -> Result<bool> {
            let key = PlanKey {
                batch: b,
                steps,
                capture: opts.capture_layers,
                training: opts.training,
                masked_input,
            };
            if self.plans.contains_key(&key) {
                return Ok(true);
            }
            match self.planner(key).build(key) {
                Ok(_) => Ok(true),
                Err(Error::LimitExceeded { .. }) if b > 1 => Ok(false),
                Err(e) => Err(e),
            }
        };
        let mut b = batch;
        while !fits(b)? {
            b = b.div_ceil(2);
        }
        Ok(b)
    }

    /// Plans `(batch, steps)` unless a plan exists; returns its key.
    fn plan_for(
        &mut self,
        batch: usize,
        steps: usize,
        opts: &RunOptions,
        masked_input: bool,
    ) -> Result<PlanKey> {
        let key = PlanKey {
            batch,
            steps,
            capture: opts.capture_layers,
            training: opts.training,
            masked_input,
        };
        if !self.plans.contains_key(&key) {
            let plan = self.plan(key)?;
            log::debug!(
                "plan for B={batch} T={steps}: {} stages, {} dispatches, {} buffers, {} bytes",
                plan.stages.len(),
                plan.stages.iter().map(|s| s.1.len()).sum::<usize>(),
                plan.buffers.len(),
                plan.bytes
            );
            self.plans.insert(key, plan);
        }
        Ok(key)
    }

    fn planner(&self, key: PlanKey) -> Planner<'_> {
        Planner {
            model: self,
            batch: key.batch,
            steps: key.steps,
            vbufs: Vec::new(),
            ops: Vec::new(),
            stages: Vec::new(),
            dropouts: Vec::new(),
            vtex: Vec::new(),
        }
    }

    fn plan(&self, key: PlanKey) -> Result<Plan> {
        let mut p = self.planner(key);
        let built = p.build(key)?;
        p.materialize(built)
    }
}

/// Joins forward results of consecutive batch slices along the batch axis.
fn concat_batches(parts: Vec<Forward>) -> Result<Forward> {
    let join = |tensors: Vec<&Tensor>| -> Result<Tensor> {
        let mut shape = tensors[0].shape().to_vec();
        shape[0] = tensors.iter().map(|t| t.shape()[0]).sum();
        let data = tensors.iter().flat_map(|t| t.data().iter().copied()).collect();
        Tensor::new(shape, data)
    };
    let output = join(parts.iter().map(|p| &p.output).collect())?;
    let mut layers = Vec::new();
    for (i, first) in parts[0].layers.iter().enumerate() {
        let value = join(parts.iter().map(|p| &p.layers[i].value).collect())?;
        let mask = first.mask.as_ref().map(|_| {
            parts.iter().flat_map(|p| p.layers[i].mask.iter().flatten().copied()).collect()
        });
        layers.push(LayerOutput { name: first.name.clone(), value, mask });
    }
    let mut timings: Vec<StageTiming> = Vec::new();
    for part in &parts {
        for t in &part.timings {
            match timings.iter_mut().find(|s| s.name == t.name) {
                Some(s) => {
                    s.time += t.time;
                    s.flops += t.flops;
                    s.bytes += t.bytes;
                }
                None => timings.push(t.clone()),
            }
        }
    }
    Ok(Forward { output, layers, timings })
}

/// True when a Conv2D runs `conv2d_texture.wgsl` (output channels a
/// multiple of 4); `conv2d.wgsl` otherwise.
fn conv_uses_textures(kind: &LayerKind) -> bool {
    matches!(kind, LayerKind::Conv2D(c) if c.filters.is_multiple_of(4))
}

/// True when the values of masked frames of layer `li`'s output can never
/// be seen, so the layer may leave them uncomputed: the next layers are
/// per-frame ones (every layer but Masking and LSTM acts on each frame
/// alone while a time axis exists) up to an LSTM, which skips masked
/// steps. A Masking layer first would recompute the mask from the values;
/// no LSTM would let the values reach the output.
fn masked_frames_unseen(layers: &[Layer], li: usize) -> bool {
    for layer in layers.iter().skip(li + 1) {
        match layer.kind {
            LayerKind::Lstm(_) => return true,
            LayerKind::Masking { .. } => return false,
            _ => {}
        }
    }
    false
}

/// True when [`LstmRecurrence::Auto`] runs an LSTM recurrence of `units`
/// (a multiple of 4) for `batch` samples and `steps` timesteps as two
/// dispatches per step rather than one persistent dispatch: when a step
/// has at least 128 gate quads (B x U), two workgroups' worth. Measured on
/// lavapipe (2 cores, T = 10 and 30): per-step was faster from B x U = 128
/// on (U = 128, B = 1: 6.4 -> 4.5 ms at T = 30; U = 256, B = 8: 254 -> 211
/// ms; U = 32, B = 8: 11.2 -> 7.6 ms), slower below (U = 32, B = 1: 0.84 ->
/// 1.56 ms), where the two dispatches per step cost more than they spread.
/// Beyond 4096 steps the persistent kernel is kept, bounding the plan's
/// uniforms and bind groups (two per step).
fn per_step_recurrence(batch: usize, steps: usize, units: usize) -> bool {
    batch * units >= 128 && steps <= 4096
}

/// True when an LSTM's recurrence runs `lstm_recurrence_texture.wgsl`
/// (units a multiple of 4); `lstm_recurrence.wgsl` otherwise.
fn lstm_uses_textures(kind: &LayerKind) -> bool {
    matches!(kind, LayerKind::Lstm(l) if l.units.is_multiple_of(4))
}

/// The entry of `conv2d_texture.wgsl` for `filters` output channels and its
/// channels per invocation: 16 when they divide `filters`, else 8 (fewer
/// idle channels for Cout = 8, 24, ...).
fn conv_texture_entry(filters: usize) -> (&'static str, usize) {
    if filters.is_multiple_of(16) {
        ("main", 16)
    } else {
        ("main8", 8)
    }
}

/// A texture `width x rows` (rgba32float or r32float) that compute kernels read with
/// `textureLoad`.
fn operand_texture(
    label: &str,
    width: u32,
    rows: u32,
    format: wgpu::TextureFormat,
) -> wgpu::TextureDescriptor<'_> {
    wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d { width, height: rows.max(1), depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    }
}

/// Workgroup size of the convolution: the widest layer's output channels
/// rounded up to 8 (one SIMD row of lavapipe) and at most `wg`; at least 32
/// (a warp) on GPUs. Invocations of one workgroup share an output row.
fn conv_workgroup(ctx: &Context, model: &Model, wg: u32) -> u32 {
    let widest = model
        .layers()
        .iter()
        .filter_map(|l| match &l.kind {
            LayerKind::Conv2D(c) => Some(c.filters),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let floor = if ctx.adapter_info().device_type == wgpu::DeviceType::Cpu { 8 } else { 32 };
    (widest.next_multiple_of(8) as u32).clamp(floor, 64).min(wg)
}

fn check_input(spec: &InputSpec, shape: &[usize]) -> Result<(usize, usize)> {
    let frame = &spec.frame;
    if shape.len() != frame.len() + 2 || shape[2..] != frame[..] {
        return Err(Error::input(
            "shape",
            format!(
                "[B, T, {}]",
                frame.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
            crate::tensor::shape_str(shape),
        ));
    }
    if shape[0] == 0 || shape[1] == 0 {
        return Err(Error::input(
            "batch and time",
            "B >= 1 and T >= 1",
            crate::tensor::shape_str(shape),
        ));
    }
    if let Some(t) = spec.time_steps {
        if t != shape[1] {
            return Err(Error::input("timesteps", format!("T = {t}"), format!("T = {}", shape[1])));
        }
    }
    Ok((shape[0], shape[1]))
}

impl Planner<'_> {
    fn vbuf(&mut self, label: String, elements: usize) -> Result<usize> {
        let bytes = (elements.max(1) as u64) * F32;
        let allowed = self.model.ctx.binding_limit();
        if bytes > allowed {
            return Err(Error::LimitExceeded {
                what: format!("{label} for batch {} x {} timesteps", self.batch, self.steps),
                limit: "max_storage_buffer_binding_size".into(),
                needed: bytes,
                allowed,
            });
        }
        let at = self.ops.len();
        self.vbufs.push(VBuf { bytes, label, first: at, last: at });
        Ok(self.vbufs.len() - 1)
    }

    fn stage(&mut self, name: String, flops: u64, bytes: u64) -> usize {
        self.stages.push(StageDesc { name, flops, bytes });
        self.stages.len() - 1
    }

    /// Grid for `n` invocations of a flat kernel: `(gx, gy, groups_x)`.
    fn grid(&self, n: usize, what: &str) -> Result<(u32, u32, u32)> {
        let wg = self.model.wg as usize;
        self.workgroups(n.div_ceil(wg), what)
    }

    /// Grid for `groups` workgroups laid out flat over x then y: `(gx, gy, groups_x)`.
    fn workgroups(&self, groups: usize, what: &str) -> Result<(u32, u32, u32)> {
        let n = groups;
        let max = u64::from(self.model.ctx.limits().max_compute_workgroups_per_dimension).max(1);
        let groups = (groups as u64).max(1);
        let gx = groups.min(max);
        let gy = groups.div_ceil(gx);
        if gy > max {
            return Err(Error::LimitExceeded {
                what: format!("{what}: {n} workgroups"),
                limit: "max_compute_workgroups_per_dimension squared".into(),
                needed: groups,
                allowed: max * max,
            });
        }
        Ok((gx as u32, gy as u32, gx as u32))
    }

    fn op(
        &mut self,
        stage: usize,
        shader: Shader,
        entry: &'static str,
        bindings: Vec<(u32, Res)>,
        groups: (u32, u32, u32),
    ) {
        let at = self.ops.len();
        for (_, r) in &bindings {
            if let Res::Virtual(v) = r {
                self.vbufs[*v].last = at;
            }
        }
        self.ops.push(OpDesc {
            stage,
            shader,
            entry,
            bindings,
            groups,
            dropout: None,
            copy_to: None,
        });
    }

    /// Records `c[m, n] = act(a[m, k] x kernel + bias)` for layer `layer`,
    /// one dispatch per weight chunk (and per row block on the tiled variant).
    fn matmul(
        &mut self,
        stage: usize,
        layer: usize,
        (a, c): (usize, usize),
        (m, k, n): (usize, usize, usize),
        act: Activation,
    ) -> Result<()> {
        let chunks = self.model.weights[layer].kernel.len();
        let has_bias = self.model.weights[layer].bias.is_some();
        let variant = self.model.ctx.matmul_variant();
        if !self.model.weights[layer].kernel_tex.is_empty() {
            return self.matmul_splitk(stage, layer, (a, c), (m, k, n), act);
        }
        let tiled = variant == MatmulVariant::Tiled;
        for (ci, chunk) in self.model.weights[layer].kernel.iter().enumerate() {
            let base = MatmulParams {
                m: m as u32,
                n: n as u32,
                lda: k as u32,
                k_offset: chunk.k_offset,
                k_len: chunk.k_len,
                first_chunk: u32::from(ci == 0),
                last_chunk: u32::from(ci + 1 == chunks),
                has_bias: u32::from(has_bias),
                act: act.code(),
                groups_x: 0,
                row_offset: 0,
                _pad: 0,
            };
            let bias =
                if has_bias { Res::Weight { layer, part: WeightPart::Bias } } else { Res::Dummy };
            let weight = Res::Weight { layer, part: WeightPart::KernelChunk(ci) };
            if tiled {
                let max = self.model.ctx.limits().max_compute_workgroups_per_dimension as usize;
                let gx = n.div_ceil(16);
                if gx > max {
                    return Err(Error::LimitExceeded {
                        what: format!("GEMM with {n} output columns"),
                        limit: "max_compute_workgroups_per_dimension".into(),
                        needed: gx as u64,
                        allowed: max as u64,
                    });
                }
                let rows_per = max.max(1) * 16;
                let mut row = 0;
                while row < m {
                    let rows = rows_per.min(m - row);
                    let params = MatmulParams { row_offset: row as u32, ..base };
                    let bindings = vec![
                        (0, Res::uniform(&params)),
                        (1, Res::Virtual(a)),
                        (2, weight.clone()),
                        (3, bias.clone()),
                        (4, Res::Virtual(c)),
                    ];
                    self.op(
                        stage,
                        Shader::MatmulTiled,
                        "main",
                        bindings,
                        (gx as u32, rows.div_ceil(16) as u32, 1),
                    );
                    row += rows;
                }
            } else {
                let tiles = m.div_ceil(4) * n.div_ceil(4);
                let (gx, gy, groups_x) = self.grid(tiles, "GEMM")?;
                let params = MatmulParams { groups_x, ..base };
                let bindings = vec![
                    (0, Res::uniform(&params)),
                    (1, Res::Virtual(a)),
                    (2, weight),
                    (3, bias),
                    (4, Res::Virtual(c)),
                ];
                self.op(stage, Shader::MatmulRegister, "main", bindings, (gx, gy, 1));
            }
        }
        Ok(())
    }

    /// Records a copy of virtual buffer `v` into a new texture of `rows`
    /// whole rows of the texture width; pads `v` to whole rows. Returns the
    /// texture's index.
    fn texture_copy(
        &mut self,
        stage: usize,
        v: usize,
        rows: usize,
        format: wgpu::TextureFormat,
    ) -> Result<usize> {
        let max_rows = self.model.ctx.limits().max_texture_dimension_2d as usize;
        if rows > max_rows {
            // LimitExceeded lets the batch run in slices of samples.
            return Err(Error::LimitExceeded {
                what: format!(
                    "texture copy of {} for batch {} x {} timesteps ({rows} rows)",
                    self.vbufs[v].label, self.batch, self.steps
                ),
                limit: "max_texture_dimension_2d".into(),
                needed: rows as u64,
                allowed: max_rows as u64,
            });
        }
        let texel = if format == RGBA { 16 } else { 4 };
        let padded = (rows << self.model.tex_shift) as u64 * texel;
        self.vbufs[v].bytes = self.vbufs[v].bytes.max(padded);
        self.vtex.push((v, rows as u32, format));
        let t = self.vtex.len() - 1;
        self.op(stage, Shader::MatmulSplitK, "copy", vec![(0, Res::Virtual(v))], (0, 0, 0));
        if let Some(op) = self.ops.last_mut() {
            op.copy_to = Some(t);
        }
        Ok(t)
    }

    /// Records a split-K GEMM whose weight is in textures: a copy of A into
    /// a texture, per weight chunk one `partial` dispatch over (column
    /// blocks, row blocks of 8, K slices), then one `reduce`.
    fn matmul_splitk(
        &mut self,
        stage: usize,
        layer: usize,
        (a, c): (usize, usize),
        (m, k, n): (usize, usize, usize),
        act: Activation,
    ) -> Result<()> {
        let model = self.model;
        let weights = &model.weights[layer];
        let has_bias = weights.bias.is_some();
        let name = self.stages[stage].name.clone();
        // Partial sums [slices, m, n] must fit one binding; slices also bound
        // the reduce loop (<= 4096 < 65535 iterations) and the z grid.
        let limit = model.ctx.binding_limit() as usize;
        let cap = (limit / (m * n * F32 as usize).max(1)).clamp(1, 4096);
        let ranges: Vec<(u32, u32)> =
            weights.kernel_tex.iter().map(|c| (c.k_offset, c.k_len)).collect();
        let mut slice_len = k.div_ceil(cap).max(SPLITK_MIN_SLICE).next_multiple_of(4);
        let count =
            |len: usize| -> usize { ranges.iter().map(|r| (r.1 as usize).div_ceil(len)).sum() };
        while count(slice_len) > cap {
            slice_len *= 2;
        }
        let slices = count(slice_len);
        let wg = SPLITK_WG.min(model.wg) as usize;
        let part = self.vbuf(format!("{name}/partial_sums"), slices * m * n)?;

        // A as a texture: whole rows of the texture width, so the buffer
        // behind A is padded to whole rows.
        let width = 1usize << model.tex_shift;
        let rows = (m * k / 4).div_ceil(width);
        let max_rows = model.ctx.limits().max_texture_dimension_2d as usize;
        if rows > max_rows {
            return Err(Error::LimitExceeded {
                what: format!("{name}: input [{m}, {k}] as a texture {width} texels wide"),
                limit: "max_texture_dimension_2d".into(),
                needed: rows as u64,
                allowed: max_rows as u64,
            });
        }
        let a_tex = self.texture_copy(stage, a, rows, RGBA)?;

        let base = SplitKParams {
            m: m as u32,
            n: n as u32,
            lda: k as u32,
            k_offset: 0,
            k_len: 0,
            slice_len: slice_len as u32,
            slice_base: 0,
            slices: slices as u32,
            has_bias: u32::from(has_bias),
            act: act.code(),
            groups_x: 0,
            tex_shift: model.tex_shift,
        };
        let col_groups = n.div_ceil(4 * SPLITK_QUADS);
        let groups = (col_groups * m.div_ceil(SPLITK_ROWS)).div_ceil(wg);
        let max = model.ctx.limits().max_compute_workgroups_per_dimension as usize;
        if groups > max || slices > max {
            // LimitExceeded lets the batch run in slices of samples (fewer rows).
            return Err(Error::LimitExceeded {
                what: format!("{name}: split-K grid of {groups} x {slices} workgroups"),
                limit: "max_compute_workgroups_per_dimension".into(),
                needed: groups.max(slices) as u64,
                allowed: max as u64,
            });
        }
        let gx = groups as u32;
        let gy = 1;
        let mut slice_base = 0;
        for (ci, (k_offset, k_len)) in ranges.iter().copied().enumerate() {
            let here = (k_len as usize).div_ceil(slice_len);
            let params = SplitKParams { k_offset, k_len, slice_base: slice_base as u32, ..base };
            self.op(
                stage,
                Shader::MatmulSplitK,
                "partial",
                vec![
                    (0, Res::uniform(&params)),
                    (1, Res::VirtualTex(a_tex)),
                    (2, Res::WeightTex { layer, chunk: ci }),
                    (5, Res::Virtual(part)),
                ],
                (gx, gy, here as u32),
            );
            slice_base += here;
        }
        let groups = (m * n / 4).div_ceil(wg);
        let (rx, ry, groups_x) = self.workgroups(groups, &name)?;
        let params = SplitKParams { groups_x, ..base };
        let bias =
            if has_bias { Res::Weight { layer, part: WeightPart::Bias } } else { Res::Dummy };
        self.op(
            stage,
            Shader::MatmulSplitK,
            "reduce",
            vec![
                (0, Res::uniform(&params)),
                (3, bias),
                (4, Res::Virtual(c)),
                (5, Res::Virtual(part)),
            ],
            (rx, ry, 1),
        );
        Ok(())
    }

    /// Records every layer. Returns the output virtual buffer and what to read back.
    fn build(&mut self, key: PlanKey) -> Result<Built> {
        let (b, t) = (self.batch, self.steps);
        let frame_len: usize = self.model.input.frame.iter().product();
        let mut value = self.vbuf("input".into(), b * t * frame_len)?;
        let input = value;
        let input_mask =
            if key.masked_input { Some(self.vbuf("input mask".into(), b * t)?) } else { None };
        let mut mask: Option<usize> = input_mask;
        let mut reads: Vec<(ReadWhat, usize)> = Vec::new();
        let mut skips_masked = Vec::new();
        // The SpatialDropout layer a conv applies in its epilogue.
        let mut fused_dropout: Option<usize> = None;
        let model = self.model;
        for (li, (layer, info)) in model.layers.iter().zip(&model.infos).enumerate() {
            let steps = if info.input.timed { t } else { 1 };
            let in_len = info.input.elements();
            let out_steps = if info.output.timed { t } else { 1 };
            let name = layer.name.clone();
            match &layer.kind {
                LayerKind::Masking { mask_value } => {
                    let stage = self.stage(
                        name.clone(),
                        (b * t * in_len) as u64,
                        (2 * b * t * in_len) as u64 * F32,
                    );
                    let m = self.vbuf(format!("{name}/mask"), b * t)?;
                    let y = self.vbuf(format!("{name}/output"), b * t * in_len)?;
                    let (gx, gy, groups_x) = self.grid(b * t, &name)?;
                    let params = MaskParams {
                        frames: (b * t) as u32,
                        frame_len: in_len as u32,
                        mask_value: *mask_value,
                        groups_x,
                    };
                    self.op(
                        stage,
                        Shader::Masking,
                        "clear_mask",
                        vec![(0, Res::uniform(&params)), (2, Res::Virtual(m))],
                        (gx, gy, 1),
                    );
                    let blocks = in_len.div_ceil(MASK_BLOCK);
                    let (gx, gy, groups_x) = self.grid(b * t * blocks, &name)?;
                    let scan = MaskParams { groups_x, ..params };
                    self.op(
                        stage,
                        Shader::Masking,
                        "timestep_mask",
                        vec![
                            (0, Res::uniform(&scan)),
                            (1, Res::Virtual(value)),
                            (2, Res::Virtual(m)),
                        ],
                        (gx, gy, 1),
                    );
                    let (gx, gy, groups_x) = self.grid(b * t * in_len, &name)?;
                    let params = MaskParams { groups_x, ..params };
                    self.op(
                        stage,
                        Shader::Masking,
                        "apply_mask",
                        vec![
                            (0, Res::uniform(&params)),
                            (1, Res::Virtual(value)),
                            (2, Res::Virtual(m)),
                            (3, Res::Virtual(y)),
                        ],
                        (gx, gy, 1),
                    );
                    mask = Some(m);
                    value = y;
                }
                LayerKind::Conv2D(c) => {
                    let (h, w, cin) = (info.input.dims[0], info.input.dims[1], info.input.dims[2]);
                    let (oh, ow) = (info.output.dims[0], info.output.dims[1]);
                    let kh = (c.kernel.0 - 1) * c.dilation.0 + 1;
                    let kw = (c.kernel.1 - 1) * c.dilation.1 + 1;
                    let (_, pt) = c.padding.resolve(h, kh, c.strides.0).unwrap_or((0, 0));
                    let (_, pl) = c.padding.resolve(w, kw, c.strides.1).unwrap_or((0, 0));
                    let n = b * t;
                    let outputs = n * oh * ow * c.filters;
                    let flops = 2 * outputs as u64 * (c.kernel.0 * c.kernel.1 * cin) as u64;
                    let bytes = (n * (h * w * cin + oh * ow * c.filters)) as u64 * F32;
                    let stage = self.stage(name.clone(), flops, bytes);
                    let y = self.vbuf(format!("{name}/output"), outputs)?;
                    let tex = conv_uses_textures(&layer.kind);
                    // Buffer variant: one workgroup per (output row, block of
                    // conv_wg channels). Texture variant: one invocation per
                    // (output row, segment of 8 pixels, block of 16 or 8 channels).
                    let (entry, block) = conv_texture_entry(c.filters);
                    let (co_blocks, segs) = if tex {
                        (c.filters.div_ceil(block), ow.div_ceil(8))
                    } else {
                        (c.filters.div_ceil(self.model.conv_wg as usize), 1)
                    };
                    let (gx, gy, groups_x) = if tex {
                        self.grid(n * oh * segs * co_blocks, &name)?
                    } else {
                        self.workgroups(n * oh * co_blocks, &name)?
                    };
                    // Masked frames need no convolution when nothing can
                    // see their values: outputs not captured and only
                    // per-frame layers, then an LSTM (which skips masked
                    // steps), with no Masking layer recomputing the mask.
                    let skip_mask = match mask {
                        Some(m) if !key.capture && masked_frames_unseen(&model.layers, li) => {
                            log::debug!("{name}: convolution skips masked frames");
                            skips_masked.push(name.clone());
                            Some(m)
                        }
                        _ => None,
                    };
                    let mask_res = skip_mask.map_or(Res::Ones, Res::Virtual);
                    // A SpatialDropout right after, in training mode, runs in
                    // the conv's epilogue unless its input is captured.
                    let drop = match model.layers.get(li + 1).map(|l| &l.kind) {
                        Some(LayerKind::SpatialDropout { rate, mode })
                            if key.training && !key.capture =>
                        {
                            log::debug!(
                                "{name}: {} fused into the convolution",
                                model.layers[li + 1].name
                            );
                            fused_dropout = Some(li + 1);
                            DropoutParams {
                                batch: b as u32,
                                steps: t as u32,
                                step_len: (oh * ow * c.filters) as u32,
                                channels: c.filters as u32,
                                mode: match mode {
                                    DropoutMode::PerTimestep => 0,
                                    DropoutMode::PerSample => 1,
                                },
                                seed: 0,
                                threshold: rng::drop_threshold(*rate),
                                scale: rng::keep_scale(*rate),
                                groups_x: 0,
                                sample_offset: 0,
                                _pad: [0; 2],
                            }
                        }
                        // Threshold 0: the kernel applies no dropout.
                        _ => DropoutParams { scale: 1.0, ..bytemuck::Zeroable::zeroed() },
                    };
                    let drop_res = Res::uniform(&drop);
                    let params = ConvParams {
                        n: n as u32,
                        h: h as u32,
                        w: w as u32,
                        cin: cin as u32,
                        oh: oh as u32,
                        ow: ow as u32,
                        cout: c.filters as u32,
                        kh: c.kernel.0 as u32,
                        kw: c.kernel.1 as u32,
                        sh: c.strides.0 as u32,
                        sw: c.strides.1 as u32,
                        dh: c.dilation.0 as u32,
                        dw: c.dilation.1 as u32,
                        pad_top: pt as u32,
                        pad_left: pl as u32,
                        act: c.activation.code(),
                        has_bias: u32::from(c.use_bias),
                        groups_x,
                        co_blocks: co_blocks as u32,
                        skip_masked: u32::from(skip_mask.is_some()),
                    };
                    let bias = if c.use_bias {
                        Res::Weight { layer: li, part: WeightPart::Bias }
                    } else {
                        Res::Dummy
                    };
                    if tex {
                        let width = 1usize << self.model.tex_shift;
                        let x_tex = self.texture_copy(
                            stage,
                            value,
                            (n * h * w * cin).div_ceil(width),
                            R32,
                        )?;
                        let params = ConvTexParams {
                            conv: params,
                            segs: segs as u32,
                            tex_shift: self.model.tex_shift,
                            _pad: [0; 2],
                        };
                        self.op(
                            stage,
                            Shader::Conv2DTexture,
                            entry,
                            vec![
                                (0, Res::uniform(&params)),
                                (1, Res::VirtualTex(x_tex)),
                                (2, Res::WeightTex { layer: li, chunk: 0 }),
                                (3, bias),
                                (4, Res::Virtual(y)),
                                (5, mask_res),
                                (6, drop_res),
                            ],
                            (gx, gy, 1),
                        );
                    } else {
                        self.op(
                            stage,
                            Shader::Conv2D,
                            "main",
                            vec![
                                (0, Res::uniform(&params)),
                                (1, Res::Virtual(value)),
                                (2, Res::Weight { layer: li, part: WeightPart::KernelChunk(0) }),
                                (3, bias),
                                (4, Res::Virtual(y)),
                                (5, mask_res),
                                (6, drop_res),
                            ],
                            (gx, gy, 1),
                        );
                    }
                    if fused_dropout == Some(li + 1) {
                        self.dropouts.push((drop, li + 1, 6));
                        if let Some(op) = self.ops.last_mut() {
                            op.dropout = Some(self.dropouts.len() - 1);
                        }
                    }
                    value = y;
                }
                LayerKind::Pool2D(pl) => {
                    let (h, w, ch) = (info.input.dims[0], info.input.dims[1], info.input.dims[2]);
                    let (oh, ow) = (info.output.dims[0], info.output.dims[1]);
                    let (_, pt) = pl.padding.resolve(h, pl.pool.0, pl.strides.0).unwrap_or((0, 0));
                    let (_, pleft) =
                        pl.padding.resolve(w, pl.pool.1, pl.strides.1).unwrap_or((0, 0));
                    let n = b * t;
                    let outputs = n * oh * ow * ch;
                    let stage = self.stage(
                        name.clone(),
                        (outputs * pl.pool.0 * pl.pool.1) as u64,
                        (n * h * w * ch + outputs) as u64 * F32,
                    );
                    let y = self.vbuf(format!("{name}/output"), outputs)?;
                    let (gx, gy, groups_x) = self.grid(outputs, &name)?;
                    let params = PoolParams {
                        n: n as u32,
                        h: h as u32,
                        w: w as u32,
                        c: ch as u32,
                        oh: oh as u32,
                        ow: ow as u32,
                        ph: pl.pool.0 as u32,
                        pw: pl.pool.1 as u32,
                        sh: pl.strides.0 as u32,
                        sw: pl.strides.1 as u32,
                        pad_top: pt as u32,
                        pad_left: pleft as u32,
                        is_max: u32::from(pl.kind == PoolKind::Max),
                        groups_x,
                        _pad: [0; 2],
                    };
                    self.op(
                        stage,
                        Shader::Pool2D,
                        "main",
                        vec![
                            (0, Res::uniform(&params)),
                            (1, Res::Virtual(value)),
                            (2, Res::Virtual(y)),
                        ],
                        (gx, gy, 1),
                    );
                    value = y;
                }
                LayerKind::SpatialDropout { .. } if fused_dropout == Some(li) => {
                    // Applied by the conv before it: the value is aliased.
                }
                LayerKind::SpatialDropout { rate, mode } if key.training => {
                    let channels = *info.input.dims.last().unwrap_or(&1);
                    let mode = match mode {
                        DropoutMode::PerTimestep => 0,
                        DropoutMode::PerSample => 1,
                    };
                    value =
                        self.dropout(li, &name, value, b, steps, in_len, channels, mode, *rate)?;
                }
                LayerKind::Dropout { rate } if key.training => {
                    value = self.dropout(li, &name, value, b, steps, in_len, 1, 2, *rate)?;
                }
                LayerKind::SpatialDropout { .. }
                | LayerKind::Dropout { .. }
                | LayerKind::Flatten
                | LayerKind::Reshape { .. } => {
                    // The identity on the buffer: the value is aliased.
                }
                LayerKind::Dense(d) => {
                    let k = *info.input.dims.last().unwrap_or(&1);
                    let rows = b * steps * (in_len / k.max(1));
                    let stage = self.stage(
                        name.clone(),
                        2 * (rows * k * d.units) as u64,
                        ((rows * k) + k * d.units + rows * d.units) as u64 * F32,
                    );
                    let y = self.vbuf(format!("{name}/output"), rows * d.units)?;
                    let act = if d.activation == Activation::Softmax {
                        Activation::Linear
                    } else {
                        d.activation
                    };
                    self.matmul(stage, li, (value, y), (rows, k, d.units), act)?;
                    if d.activation == Activation::Softmax {
                        // One invocation makes three passes over a row.
                        if let Some(budget) = self.model.ctx.loop_budget() {
                            if 3 * d.units + 4 > budget {
                                return Err(Error::LimitExceeded {
                                    what: format!(
                                        "{name}: softmax over {} units on a CPU adapter",
                                        d.units
                                    ),
                                    limit: "loop iterations per invocation (llvmpipe)".into(),
                                    needed: (3 * d.units + 4) as u64,
                                    allowed: budget as u64,
                                });
                            }
                        }
                        let (gx, gy, groups_x) = self.grid(rows, &name)?;
                        let params = SoftmaxParams {
                            rows: rows as u32,
                            cols: d.units as u32,
                            groups_x,
                            _pad: 0,
                        };
                        self.op(
                            stage,
                            Shader::Softmax,
                            "main",
                            vec![(0, Res::uniform(&params)), (1, Res::Virtual(y))],
                            (gx, gy, 1),
                        );
                    }
                    value = y;
                }
                LayerKind::Lstm(l) => {
                    let f = in_len;
                    let u = l.units;
                    let rows = b * t;
                    let proj = self.stage(
                        format!("{name}/input_projection"),
                        2 * (rows * f * 4 * u) as u64,
                        (rows * f + f * 4 * u + rows * 4 * u) as u64 * F32,
                    );
                    let xproj = self.vbuf(format!("{name}/xproj"), rows * 4 * u)?;
                    self.matmul(proj, li, (value, xproj), (rows, f, 4 * u), Activation::Linear)?;
                    let rec = self.stage(
                        format!("{name}/recurrence"),
                        2 * (rows * u * 4 * u) as u64,
                        (u * 4 * u + rows * 5 * u) as u64 * F32,
                    );
                    let state = self.vbuf(format!("{name}/state"), b * 7 * u)?;
                    let seq = self.vbuf(format!("{name}/sequence"), rows * u)?;
                    let last = self.vbuf(format!("{name}/last"), b * u)?;
                    let cseq = self.vbuf(format!("{name}/cell_states"), rows * u)?;
                    let params = LstmParams {
                        batch: b as u32,
                        steps: t as u32,
                        units: u as u32,
                        act: l.activation.code(),
                        rec_act: l.recurrent_activation.code(),
                        zero_output_for_mask: u32::from(l.zero_output_for_mask),
                        write_seq: u32::from(l.return_sequences),
                        _pad: 0,
                    };
                    let mask_res = mask.map_or(Res::Ones, Res::Virtual);
                    let tex = lstm_uses_textures(&layer.kind);
                    let (shader, uniform, recurrent) = if tex {
                        let p = LstmTexParams {
                            batch: params.batch,
                            steps: params.steps,
                            units: params.units,
                            act: params.act,
                            rec_act: params.rec_act,
                            zero_output_for_mask: params.zero_output_for_mask,
                            write_seq: params.write_seq,
                            tex_shift: self.model.tex_shift,
                        };
                        let bytes = bytemuck::bytes_of(&p).to_vec();
                        (Shader::LstmRecurrenceTexture, bytes, Res::RecurrentTex { layer: li })
                    } else {
                        let bytes = bytemuck::bytes_of(&params).to_vec();
                        let r = Res::Weight { layer: li, part: WeightPart::Recurrent };
                        (Shader::LstmRecurrence, bytes, r)
                    };
                    let per_step = tex
                        && match self.model.recurrence {
                            LstmRecurrence::Auto => per_step_recurrence(b, t, u),
                            LstmRecurrence::Persistent => false,
                            LstmRecurrence::PerStep => true,
                        };
                    if per_step {
                        log::debug!("{name}: recurrence in 2 dispatches per step (B={b}, U={u})");
                        let tex_params = LstmTexParams {
                            batch: params.batch,
                            steps: params.steps,
                            units: params.units,
                            act: params.act,
                            rec_act: params.rec_act,
                            zero_output_for_mask: params.zero_output_for_mask,
                            write_seq: params.write_seq,
                            tex_shift: self.model.tex_shift,
                        };
                        let (gx, gy, gates_x) = self.grid(b * u, &name)?;
                        let (cx, cy, cell_x) = self.grid(b * u / 4, &name)?;
                        for step in 0..t as u32 {
                            let p = LstmStepParams {
                                tex: tex_params,
                                step,
                                groups_x: gates_x,
                                _pad: [0; 2],
                            };
                            self.op(
                                rec,
                                Shader::LstmStepTexture,
                                "gates",
                                vec![
                                    (0, Res::uniform(&p)),
                                    (1, Res::Virtual(xproj)),
                                    (2, Res::RecurrentTex { layer: li }),
                                    (3, mask_res.clone()),
                                    (4, Res::Virtual(state)),
                                ],
                                (gx, gy, 1),
                            );
                            let p = LstmStepParams { groups_x: cell_x, ..p };
                            self.op(
                                rec,
                                Shader::LstmStepTexture,
                                "cell",
                                vec![
                                    (0, Res::uniform(&p)),
                                    (3, mask_res.clone()),
                                    (4, Res::Virtual(state)),
                                    (5, Res::Virtual(seq)),
                                    (6, Res::Virtual(last)),
                                    (7, Res::Virtual(cseq)),
                                ],
                                (cx, cy, 1),
                            );
                        }
                    } else {
                        // Loop iterations of one invocation per step: the gate
                        // columns it owns times U, the units it owns, barriers.
                        let wg = self.model.wg as usize;
                        let per_step = (4 * u).div_ceil(wg) * u + u.div_ceil(wg) + 4;
                        let window = match self.model.ctx.loop_budget() {
                            Some(budget) if per_step > budget => {
                                return Err(Error::LimitExceeded {
                                    what: format!(
                                        "{name}: one LSTM step of {u} units on a CPU adapter \
                                         ({per_step} loop iterations per invocation)"
                                    ),
                                    limit: "loop iterations per invocation (llvmpipe)".into(),
                                    needed: per_step as u64,
                                    allowed: budget as u64,
                                });
                            }
                            Some(budget) => (budget / per_step).max(1),
                            None => t,
                        };
                        let max = self.model.ctx.limits().max_compute_workgroups_per_dimension;
                        let gx = (b as u32).min(max.max(1));
                        let gy = (b as u32).div_ceil(gx);
                        let mut t0 = 0;
                        while t0 < t {
                            let t1 = (t0 + window).min(t);
                            let win = TimeWindow {
                                t_begin: t0 as u32,
                                t_end: t1 as u32,
                                groups_x: gx,
                                _pad: 0,
                            };
                            self.op(
                                rec,
                                shader,
                                "main",
                                vec![
                                    (0, Res::Uniform(uniform.clone())),
                                    (1, Res::Virtual(xproj)),
                                    (2, recurrent.clone()),
                                    (3, mask_res.clone()),
                                    (4, Res::Virtual(state)),
                                    (5, Res::Virtual(seq)),
                                    (6, Res::Virtual(last)),
                                    (7, Res::Virtual(cseq)),
                                    (8, Res::uniform(&win)),
                                ],
                                (gx, gy, 1),
                            );
                            t0 = t1;
                        }
                    }
                    value = if l.return_sequences { seq } else { last };
                    if !l.return_sequences {
                        mask = None;
                    }
                }
            }
            if key.capture {
                reads.push((
                    ReadWhat::Layer(name.clone(), info.output.with_batch(b, out_steps)),
                    value,
                ));
                // A mask reaches every timed output after a Masking layer
                // (or from the caller) until an LSTM drops the time axis.
                if let (true, Some(m)) = (info.output.timed, mask) {
                    reads.push((ReadWhat::Mask, m));
                }
            }
        }
        let shape = match model.infos.last() {
            Some(i) => i.output.with_batch(b, t),
            None => {
                let mut s = vec![b, t];
                s.extend_from_slice(&model.input.frame);
                s
            }
        };
        reads.push((ReadWhat::Output(shape), value));
        let _ = input;
        Ok(Built { skips_masked, input, input_mask, reads })
    }

    #[allow(clippy::too_many_arguments)]
    fn dropout(
        &mut self,
        li: usize,
        name: &str,
        x: usize,
        b: usize,
        steps: usize,
        step_len: usize,
        channels: usize,
        mode: u32,
        rate: f64,
    ) -> Result<usize> {
        let n = b * steps * step_len;
        let stage = self.stage(name.to_string(), n as u64, 2 * n as u64 * F32);
        let y = self.vbuf(format!("{name}/output"), n)?;
        let (gx, gy, groups_x) = self.grid(n, name)?;
        let params = DropoutParams {
            batch: b as u32,
            steps: steps as u32,
            step_len: step_len as u32,
            channels: channels as u32,
            mode,
            seed: 0,
            threshold: rng::drop_threshold(rate),
            scale: rng::keep_scale(rate),
            groups_x,
            sample_offset: 0,
            _pad: [0; 2],
        };
        self.op(
            stage,
            Shader::Dropout,
            "main",
            vec![(0, Res::uniform(&params)), (1, Res::Virtual(x)), (2, Res::Virtual(y))],
            (gx, gy, 1),
        );
        self.dropouts.push((params, li, 0));
        if let Some(op) = self.ops.last_mut() {
            op.dropout = Some(self.dropouts.len() - 1);
        }
        Ok(y)
    }

    /// Assigns physical buffers and creates bind groups and staging buffers.
    fn materialize(mut self, built: Built) -> Result<Plan> {
        let Built { skips_masked, input, input_mask, reads } = built;
        let model = self.model;
        let ctx = &model.ctx;
        let device = &ctx.device;
        // Values read back live to the end; so does the input (written first).
        let end = self.ops.len();
        for (_, v) in &reads {
            self.vbufs[*v].last = end;
        }
        self.vbufs[input].first = 0;
        if let Some(m) = input_mask {
            self.vbufs[m].first = 0;
        }

        // Greedy assignment: a physical buffer is free once its last virtual
        // buffer is dead. Best fit by size, else a new buffer.
        let mut phys_size: Vec<u64> = Vec::new();
        let mut phys_free_at: Vec<usize> = Vec::new();
        let mut assign = vec![0usize; self.vbufs.len()];
        let mut order: Vec<usize> = (0..self.vbufs.len()).collect();
        order.sort_by_key(|&v| self.vbufs[v].first);
        for v in order {
            let vb = &self.vbufs[v];
            let candidate = (0..phys_size.len())
                .filter(|&p| phys_free_at[p] < vb.first && phys_size[p] >= vb.bytes)
                .min_by_key(|&p| phys_size[p]);
            let p = match candidate {
                Some(p) => p,
                None => {
                    phys_size.push(vb.bytes);
                    phys_free_at.push(0);
                    phys_size.len() - 1
                }
            };
            phys_free_at[p] = vb.last;
            assign[v] = p;
        }
        let total: u64 = phys_size.iter().sum();
        let mut buffers = Vec::with_capacity(phys_size.len());
        for (p, size) in phys_size.iter().enumerate() {
            let names: Vec<&str> = self
                .vbufs
                .iter()
                .zip(&assign)
                .filter(|(_, a)| **a == p)
                .map(|(v, _)| v.label.as_str())
                .collect();
            let label = format!("activations {p} ({})", names.join(", "));
            let buffer = ctx.scoped(&label, *size, || {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&label),
                    size: *size,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_DST
                        | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })
            })?;
            buffers.push(buffer);
        }
        let ones_len = self.batch * self.steps;
        let ones = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("all-valid timestep mask"),
            contents: bytemuck::cast_slice(&vec![1u32; ones_len]),
            usage: wgpu::BufferUsages::STORAGE,
        });

        let width = 1u32 << model.tex_shift;
        let mut textures = Vec::with_capacity(self.vtex.len());
        let mut views = Vec::with_capacity(self.vtex.len());
        let mut total = total;
        for (i, (source, rows, format)) in self.vtex.iter().enumerate() {
            let label = format!("texture {i} ({})", self.vbufs[*source].label);
            let texel = if *format == RGBA { 16 } else { 4 };
            let bytes = u64::from(width) * u64::from(*rows) * texel;
            let texture = ctx.scoped(&label, bytes, || {
                device.create_texture(&operand_texture(&label, width, *rows, *format))
            })?;
            total += bytes;
            views.push(texture.create_view(&wgpu::TextureViewDescriptor::default()));
            textures.push(texture);
        }

        let mut dropout_uniforms = Vec::new();
        let mut stages: Vec<(StageDesc, Vec<Dispatch>)> =
            self.stages.drain(..).map(|s| (s, Vec::new())).collect();
        for op in &self.ops {
            if let (Some(t), Some((_, Res::Virtual(v)))) = (op.copy_to, op.bindings.first()) {
                let (_, rows, format) = self.vtex[t];
                let texel = if format == RGBA { 16 } else { 4 };
                stages[op.stage].1.push(Dispatch::CopyToTexture {
                    buffer: assign[*v],
                    texture: t,
                    width,
                    row_bytes: width * texel,
                    rows,
                });
                continue;
            }
            let label = format!("{} {}", stages[op.stage].0.name, op.shader.name());
            let pipeline =
                model.pipelines.get(&(op.shader, op.entry)).ok_or_else(|| Error::Validation {
                    label: label.clone(),
                    message: "pipeline was not created".into(),
                })?;
            let layout = pipeline.get_bind_group_layout(0);
            let mut uniforms: Vec<(u32, wgpu::Buffer)> = Vec::new();
            for (binding, r) in &op.bindings {
                if let Res::Uniform(bytes) = r {
                    let usage = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
                    let buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some(&label),
                        contents: bytes,
                        usage,
                    });
                    uniforms.push((*binding, buf));
                }
            }
            let mut entries = Vec::new();
            for (binding, r) in &op.bindings {
                let view = match r {
                    Res::VirtualTex(t) => views.get(*t),
                    Res::WeightTex { layer, chunk } => {
                        model.weights[*layer].kernel_tex.get(*chunk).map(|c| &c.view)
                    }
                    Res::RecurrentTex { layer } => {
                        model.weights[*layer].recurrent_tex.as_ref().map(|c| &c.view)
                    }
                    _ => None,
                };
                if let Some(view) = view {
                    entries.push(wgpu::BindGroupEntry {
                        binding: *binding,
                        resource: wgpu::BindingResource::TextureView(view),
                    });
                    continue;
                }
                let buffer: &wgpu::Buffer = match r {
                    Res::Uniform(_) => match uniforms.iter().find(|(b, _)| b == binding) {
                        Some((_, buf)) => buf,
                        None => continue,
                    },
                    Res::Virtual(v) => &buffers[assign[*v]],
                    Res::Dummy => &model.dummy,
                    Res::Ones => &ones,
                    Res::VirtualTex(_) | Res::WeightTex { .. } | Res::RecurrentTex { .. } => {
                        return Err(Error::Validation {
                            label: label.clone(),
                            message: "texture binding missing".into(),
                        })
                    }
                    Res::Weight { layer, part } => {
                        let w = &model.weights[*layer];
                        let found = match part {
                            WeightPart::KernelChunk(c) => w.kernel.get(*c).map(|c| &c.buffer),
                            WeightPart::Recurrent => w.recurrent.as_ref(),
                            WeightPart::Bias => w.bias.as_ref(),
                        };
                        found.ok_or_else(|| Error::Validation {
                            label: label.clone(),
                            message: "weight buffer missing".into(),
                        })?
                    }
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: buffer.as_entire_binding(),
                });
            }
            let bind_group = ctx.scoped(&label, 0, || {
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&label),
                    layout: &layout,
                    entries: &entries,
                })
            })?;
            if let Some(d) = op.dropout {
                let (params, layer, binding) = self.dropouts[d];
                if let Some((_, buf)) = uniforms.iter().find(|(b, _)| *b == binding) {
                    dropout_uniforms.push((buf.clone(), params, layer));
                }
            }
            stages[op.stage].1.push(Dispatch::Compute {
                pipeline: (op.shader, op.entry),
                bind_group,
                groups: op.groups,
            });
        }

        let mut readbacks = Vec::new();
        for (what, v) in reads {
            let bytes = self.vbufs[v].bytes;
            let staging = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            readbacks.push(Readback { what, source: assign[v], bytes, staging });
        }
        let timestamps = if ctx.has_timestamps() && !stages.is_empty() {
            let count = 2 * stages.len() as u32;
            let bytes = u64::from(count) * 8;
            let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("stage timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let resolve = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("stage timestamps resolved"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("stage timestamps readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            Some(Timestamps { set, resolve, staging })
        } else {
            None
        };
        Ok(Plan {
            timestamps,
            buffers,
            textures,
            input: assign[input],
            input_mask: input_mask.map(|m| assign[m]),
            stages,
            dropouts: dropout_uniforms,
            readbacks,
            bytes: total,
            skips_masked,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn execute(
    ctx: &Context,
    pipelines: &HashMap<(Shader, &'static str), wgpu::ComputePipeline>,
    plan: &Plan,
    input: &Tensor,
    mask: Option<&[u8]>,
    opts: &RunOptions,
    sample_offset: usize,
    profile: bool,
) -> Result<Forward> {
    ctx.check_faults("forward")?;
    let started = Instant::now();
    ctx.queue.write_buffer(&plan.buffers[plan.input], 0, bytemuck::cast_slice(input.data()));
    if let (Some(m), Some(buffer)) = (mask, plan.input_mask) {
        let words: Vec<u32> = m.iter().map(|&v| u32::from(v != 0)).collect();
        ctx.queue.write_buffer(&plan.buffers[buffer], 0, bytemuck::cast_slice(&words));
    }
    for (buf, params, layer) in &plan.dropouts {
        let p = DropoutParams {
            seed: rng::layer_seed(opts.seed, *layer),
            sample_offset: sample_offset as u32,
            ..*params
        };
        ctx.queue.write_buffer(buf, 0, bytemuck::bytes_of(&p));
    }

    let mut timings = Vec::new();
    // Timestamps bracket each stage in the single-submission path: the
    // beginning on its first compute pass, the end on its last (a stage is
    // split into several passes around its buffer-to-texture copies).
    let stamps = if profile { None } else { plan.timestamps.as_ref() };
    let record =
        |encoder: &mut wgpu::CommandEncoder, i: usize, stage: &(StageDesc, Vec<Dispatch>)| {
            let mut rest = &stage.1[..];
            let mut first = true;
            while !rest.is_empty() {
                // Dispatches up to the next copy share one compute pass.
                let run = rest.iter().take_while(|d| matches!(d, Dispatch::Compute { .. })).count();
                if run > 0 {
                    let last = run == rest.len();
                    let timestamp_writes = stamps.and_then(|t| {
                        (first || last).then_some(wgpu::ComputePassTimestampWrites {
                            query_set: &t.set,
                            beginning_of_pass_write_index: first.then_some(2 * i as u32),
                            end_of_pass_write_index: last.then_some(2 * i as u32 + 1),
                        })
                    });
                    first = false;
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&stage.0.name),
                        timestamp_writes,
                    });
                    for d in &rest[..run] {
                        if let Dispatch::Compute { pipeline, bind_group, groups } = d {
                            if let Some(p) = pipelines.get(pipeline) {
                                pass.set_pipeline(p);
                                pass.set_bind_group(0, bind_group, &[]);
                                pass.dispatch_workgroups(groups.0, groups.1, groups.2);
                            }
                        }
                    }
                }
                if let Some(Dispatch::CopyToTexture { buffer, texture, width, row_bytes, rows }) =
                    rest.get(run)
                {
                    encoder.copy_buffer_to_texture(
                        wgpu::TexelCopyBufferInfo {
                            buffer: &plan.buffers[*buffer],
                            layout: wgpu::TexelCopyBufferLayout {
                                offset: 0,
                                bytes_per_row: Some(*row_bytes),
                                rows_per_image: None,
                            },
                        },
                        plan.textures[*texture].as_image_copy(),
                        wgpu::Extent3d { width: *width, height: *rows, depth_or_array_layers: 1 },
                    );
                    rest = &rest[run + 1..];
                } else {
                    rest = &rest[run..];
                }
            }
        };
    let new_encoder = |label: &str| {
        ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    };
    let copy_out = |encoder: &mut wgpu::CommandEncoder| {
        for r in &plan.readbacks {
            encoder.copy_buffer_to_buffer(&plan.buffers[r.source], 0, &r.staging, 0, r.bytes);
        }
    };
    if profile {
        for (i, stage) in plan.stages.iter().enumerate() {
            let t0 = Instant::now();
            ctx.scoped(&stage.0.name, 0, || {
                let mut encoder = new_encoder(&stage.0.name);
                record(&mut encoder, i, stage);
                ctx.queue.submit([encoder.finish()]);
            })?;
            ctx.wait(&stage.0.name)?;
            timings.push(timing(&stage.0, t0.elapsed()));
        }
        let mut encoder = new_encoder("readback");
        copy_out(&mut encoder);
        ctx.scoped("readback", 0, || ctx.queue.submit([encoder.finish()]))?;
    } else {
        ctx.scoped("forward", 0, || {
            let mut encoder = new_encoder("forward");
            for (i, stage) in plan.stages.iter().enumerate() {
                record(&mut encoder, i, stage);
            }
            copy_out(&mut encoder);
            if let Some(t) = stamps {
                encoder.resolve_query_set(&t.set, 0..2 * plan.stages.len() as u32, &t.resolve, 0);
                encoder.copy_buffer_to_buffer(&t.resolve, 0, &t.staging, 0, t.staging.size());
            }
            ctx.queue.submit([encoder.finish()]);
        })?;
    }
    let mut staging: Vec<&wgpu::Buffer> = plan.readbacks.iter().map(|r| &r.staging).collect();
    if let Some(t) = stamps {
        staging.push(&t.staging);
    }
    let mut raw = read_back(ctx, &staging)?;
    let stamp_bytes = if stamps.is_some() { raw.pop() } else { None };
    if let Some(bytes) = stamp_bytes {
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let period = f64::from(ctx.queue.get_timestamp_period());
        for (i, stage) in plan.stages.iter().enumerate() {
            let ns = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
            timings.push(timing(&stage.0, Duration::from_nanos(ns as u64)));
        }
    }
    let values: Vec<Vec<f32>> =
        raw.iter().map(|b| bytemuck::pod_collect_to_vec::<u8, f32>(b)).collect();
    if !profile {
        timings.push(StageTiming {
            name: "total".into(),
            time: started.elapsed(),
            flops: plan.stages.iter().map(|s| s.0.flops).sum(),
            bytes: plan.stages.iter().map(|s| s.0.bytes).sum(),
        });
    }

    let mut output = None;
    let mut layers: Vec<LayerOutput> = Vec::new();
    for (r, data) in plan.readbacks.iter().zip(values) {
        match &r.what {
            ReadWhat::Output(shape) => output = Some(to_tensor(shape, data)?),
            ReadWhat::Layer(name, shape) => layers.push(LayerOutput {
                name: name.clone(),
                value: to_tensor(shape, data)?,
                mask: None,
            }),
            ReadWhat::Mask => {
                if let Some(last) = layers.last_mut() {
                    let n = last.value.shape()[0] * last.value.shape().get(1).copied().unwrap_or(1);
                    let words: Vec<u32> = data.iter().take(n).map(|v| v.to_bits()).collect();
                    last.mask = Some(words.iter().map(|w| u8::from(*w != 0)).collect());
                }
            }
        }
    }
    let output = output.ok_or_else(|| Error::Map("the output was not read back".into()))?;
    Ok(Forward { output, layers, timings })
}

fn timing(stage: &StageDesc, time: Duration) -> StageTiming {
    StageTiming { name: stage.name.clone(), time, flops: stage.flops, bytes: stage.bytes }
}

fn to_tensor(shape: &[usize], mut data: Vec<f32>) -> Result<Tensor> {
    data.truncate(shape.iter().product());
    Tensor::new(shape.to_vec(), data)
}

/// Maps every staging buffer, waits once, copies the bytes out.
fn read_back(ctx: &Context, staging: &[&wgpu::Buffer]) -> Result<Vec<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, buffer) in staging.iter().enumerate() {
        let tx = tx.clone();
        buffer.slice(..).map_async(wgpu::MapMode::Read, move |res| {
            let _ = tx.send((i, res));
        });
    }
    drop(tx);
    let unmap_all = || {
        for buffer in staging {
            buffer.unmap();
        }
    };
    // Every path out leaves the staging buffers unmapped, so the cached plan
    // stays usable after a failure.
    if let Err(e) = ctx.wait("readback") {
        unmap_all();
        return Err(e);
    }
    let mut failed = None;
    for _ in 0..staging.len() {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((_, Ok(()))) => {}
            Ok((i, Err(e))) => failed = Some(format!("buffer {i}: {e}")),
            Err(_) => failed = Some("a map callback never ran".into()),
        }
    }
    if let Some(message) = failed {
        unmap_all();
        ctx.check_faults("readback")?;
        return Err(Error::Map(message));
    }
    let mut out = Vec::with_capacity(staging.len());
    for buffer in staging {
        let bytes = match buffer.slice(..).get_mapped_range() {
            Ok(view) => view.to_vec(),
            Err(e) => {
                unmap_all();
                return Err(Error::Map(e.to_string()));
            }
        };
        out.push(bytes);
    }
    unmap_all();
    Ok(out)
}
