//! Benchmark of whole forward passes, per stage, on the GPU or the CPU
//! reference: what `cnn-lstm bench` prints.
//!
//! Method: the first call is timed from the model's upload (pipeline
//! creation included) to the end of the first forward (which plans buffers
//! and bind groups for the shape). Then `iters` plain forwards (one
//! submission each, the clock stopping after the read-back, so after the GPU
//! finished) give the median total. Per-stage times: where the device has
//! timestamp queries, the GPU time of each stage in those plain forwards;
//! elsewhere (software adapters such as lavapipe) the fallback,
//! [`GpuModel::forward_profiled`], which submits each stage on its own and
//! waits for it (wall time, so one submission and wait each: their sum
//! exceeds the plain total). Medians over `iters` runs.
//! Stage GFLOP/s and GB/s come from the stage's FLOP count (multiply-add = 2)
//! and the bytes it must read and write at least once ([`StageTiming`]).
//!
//! With `peak`, the adapter's ceilings are measured too: the best GFLOP/s of
//! a 1024^3 and a skinny 64 x 32768 x 256 GEMM with the kernels the
//! scheduler picks, and the GB/s of a
//! buffer-to-buffer copy; each stage is then shown as a fraction of them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::forward::{RunOptions, StageTiming};
use crate::gpu::{Context, ContextOptions, GpuModel};
use crate::model::{Activation, Dense, LayerKind, Model, ModelBuilder};
use crate::tensor::Tensor;

/// Which model to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchModel {
    /// The article's Example 1 at full size: 64x64x3 frames, Conv2D 32 3x3
    /// relu, SpatialDropout2D, Flatten (123008 features), LSTM 64 with
    /// sequences, LSTM 32, Dense 10 softmax. Keras default initial weights.
    Article,
    /// The same layers at 16x16x3 frames, Conv2D 8, LSTM 16 then 8, Dense 10.
    Small,
    /// A Keras 3 `.keras` file (architecture and weights), or a Keras model
    /// JSON (`.json`, architecture only: Keras default initial weights).
    File(PathBuf),
}

/// Where to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchDevice {
    /// The GPU path on the adapter [`ContextOptions`] choose.
    Gpu,
    /// The plain-Rust CPU reference.
    Cpu,
}

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub model: BenchModel,
    /// Samples per forward (B >= 1).
    pub batch: usize,
    /// Timesteps per sample (T >= 1); a model with a fixed T needs that T.
    pub timesteps: usize,
    /// Timed forwards after the first call (>= 1).
    pub iters: usize,
    pub device: BenchDevice,
    /// Also measure the adapter's GEMM and copy ceilings (GPU only).
    pub peak: bool,
    /// Adapter choice for the GPU.
    pub context: ContextOptions,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            model: BenchModel::Article,
            batch: 8,
            timesteps: 10,
            iters: 5,
            device: BenchDevice::Gpu,
            peak: false,
            context: ContextOptions::from_env(),
        }
    }
}

/// One stage's median time and rates.
#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    /// Stage name: a layer, or a sub-stage such as `lstm/input_projection`.
    pub name: String,
    /// Median wall time in milliseconds.
    pub ms: f64,
    /// FLOP count / median time, in 1e9 per second.
    pub gflops: f64,
    /// Minimal bytes moved / median time, in 1e9 per second.
    pub gbps: f64,
    /// `gflops` as a fraction of the measured GEMM ceiling (with `peak`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of_peak_gflops: Option<f64>,
    /// `gbps` as a fraction of the measured copy ceiling (with `peak`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of_peak_gbps: Option<f64>,
}

/// The adapter's measured ceilings.
#[derive(Clone, Debug, Serialize)]
pub struct PeakReport {
    /// Best GFLOP/s over the GEMMs measured (best of the timed runs each).
    pub gemm_gflops: f64,
    /// The GEMM shape that reached it, `MxKxN`.
    pub gemm_shape: String,
    /// GB/s of a buffer-to-buffer copy (bytes read + bytes written).
    pub copy_gbps: f64,
}

/// The result of [`run_bench`].
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Adapter name, or `cpu reference`.
    pub adapter: String,
    /// wgpu backend (`Vulkan`, `Gl`, ...), or `cpu`.
    pub backend: String,
    pub model: String,
    pub batch: usize,
    pub timesteps: usize,
    /// Model upload, pipeline creation, planning and the first forward.
    pub first_call_ms: f64,
    /// Median of the plain forwards (one submission each).
    pub median_ms: f64,
    /// Per-stage medians (profiled forwards).
    pub stages: Vec<StageReport>,
    /// Bytes of GPU memory allocated: weights plus the plan's buffers and
    /// textures (0 on the CPU).
    pub gpu_bytes: u64,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
    /// Bytes of the plan's activation buffers and textures.
    pub plan_bytes: u64,
    /// What memory must at least hold: the model's weights plus its two
    /// largest layer outputs at this batch and T, as f32.
    pub weights_plus_two_largest_bytes: u64,
    /// Forwards timed for the medians.
    pub iters: usize,
    /// The adapter's ceilings, with `peak`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak: Option<PeakReport>,
}

impl BenchReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::format("bench report", format!("JSON encoding failed: {e}")))
    }

    /// The report as aligned text lines.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} on {} ({}), B={} T={}, {} timed forwards\n",
            self.model, self.adapter, self.backend, self.batch, self.timesteps, self.iters
        );
        let what = if self.gpu_bytes > 0 {
            "upload, pipelines, plan, forward"
        } else {
            "the first forward"
        };
        s += &format!("first call   {:10.1} ms ({what})\n", self.first_call_ms);
        s += &format!("forward      {:10.1} ms median (one submission)\n", self.median_ms);
        if let Some(p) = &self.peak {
            s += &format!(
                "ceilings     GEMM {:.2} GFLOP/s ({}), copy {:.2} GB/s\n",
                p.gemm_gflops, p.gemm_shape, p.copy_gbps
            );
        }
        s += "stage                               ms     GFLOP/s     GB/s";
        if self.peak.is_some() {
            s += "   of GEMM   of copy";
        }
        s += "\n";
        for st in &self.stages {
            s += &format!("{:30} {:9.2} {:10.2} {:9.2}", st.name, st.ms, st.gflops, st.gbps);
            if let (Some(f), Some(b)) = (st.of_peak_gflops, st.of_peak_gbps) {
                s += &format!(" {:8.1}% {:8.1}%", 100.0 * f, 100.0 * b);
            }
            s += "\n";
        }
        if self.gpu_bytes > 0 {
            s += &format!(
                "GPU memory   {:.1} MiB (weights {:.1} MiB + plan {:.1} MiB); weights + two \
                 largest activations {:.1} MiB\n",
                mib(self.gpu_bytes),
                mib(self.weight_bytes),
                mib(self.plan_bytes),
                mib(self.weights_plus_two_largest_bytes)
            );
        }
        s
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// The article's Example 1 layers on `side x side x 3` frames, with Keras
/// default initial weights (seed 1).
pub fn article_like(
    name: &str,
    side: usize,
    filters: usize,
    units: (usize, usize),
) -> Result<Model> {
    let size = crate::zoo::ArticleSize { side, filters, units };
    let mut model = crate::zoo::article(name, size, false)?;
    crate::init::keras_default_weights(&mut model, 1)?;
    Ok(model)
}

fn load_model(which: &BenchModel) -> Result<(Model, String)> {
    match which {
        BenchModel::Article => Ok((article_like("article", 64, 32, (64, 32))?, "article".into())),
        BenchModel::Small => Ok((article_like("small", 16, 8, (16, 8))?, "small".into())),
        BenchModel::File(path) => {
            let shown = path.display().to_string();
            let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
            let model = if is_json {
                let text = crate::keras::read_text(path, crate::keras::MAX_MODEL_JSON_BYTES)?;
                let mut m = crate::keras::load_model_json(&text, &shown)?;
                crate::init::keras_default_weights(&mut m, 1)?;
                m
            } else {
                crate::keras::load_keras_file(path)?
            };
            Ok((model, shown))
        }
    }
}

/// Deterministic input values in [0, 1) for `[b, t, ...frame]`.
fn bench_input(model: &Model, b: usize, t: usize) -> Result<Tensor> {
    let mut shape = vec![b, t];
    shape.extend_from_slice(&model.input().frame);
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 + 0.001).collect();
    Tensor::new(shape, data)
}

/// Weights plus the two largest layer outputs (or the input), as f32 bytes.
fn weights_plus_two_largest(model: &Model, b: usize, t: usize) -> u64 {
    let weights: usize =
        model.weight_specs().iter().map(|(_, _, s)| s.iter().product::<usize>()).sum();
    let mut sizes: Vec<usize> =
        model.infos().iter().map(|i| i.output.with_batch(b, t).iter().product::<usize>()).collect();
    sizes.push(b * t * model.input().frame.iter().product::<usize>());
    sizes.sort_unstable_by(|x, y| y.cmp(x));
    ((weights + sizes.iter().take(2).sum::<usize>()) * 4) as u64
}

/// Per-stage medians from several runs' timings (matched by position).
fn stage_medians(runs: &[Vec<StageTiming>]) -> Vec<StageReport> {
    let Some(first) = runs.first() else { return Vec::new() };
    first
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let times: Vec<f64> =
                runs.iter().filter_map(|r| r.get(i)).map(|t| t.time.as_secs_f64()).collect();
            let secs = median(times).max(1e-9);
            StageReport {
                name: st.name.clone(),
                ms: secs * 1e3,
                gflops: st.flops as f64 / secs / 1e9,
                gbps: st.bytes as f64 / secs / 1e9,
                of_peak_gflops: None,
                of_peak_gbps: None,
            }
        })
        .collect()
}

fn check_options(opts: &BenchOptions) -> Result<()> {
    if opts.batch == 0 || opts.timesteps == 0 || opts.iters == 0 {
        return Err(Error::input(
            "bench options",
            "--batch, --timesteps and --iters of at least 1",
            format!("batch {}, timesteps {}, iters {}", opts.batch, opts.timesteps, opts.iters),
        ));
    }
    if opts.peak && opts.device == BenchDevice::Cpu {
        return Err(Error::Unsupported(
            "peak measures the GPU adapter's ceilings, so it needs the GPU device, not the CPU \
             reference (--peak needs --device gpu)"
                .into(),
        ));
    }
    Ok(())
}

/// Runs the benchmark `opts` describes. See the module documentation for the method.
pub fn run_bench(opts: &BenchOptions) -> Result<BenchReport> {
    check_options(opts)?;
    let (model, name) = load_model(&opts.model)?;
    let (b, t) = (opts.batch, opts.timesteps);
    let x = bench_input(&model, b, t)?;
    let floor = weights_plus_two_largest(&model, b, t);
    let plain = RunOptions::default();
    match opts.device {
        BenchDevice::Cpu => {
            let started = Instant::now();
            crate::reference::forward(&model, &x, &plain)?;
            let first_call_ms = ms(started.elapsed());
            let mut totals = Vec::new();
            let mut runs = Vec::new();
            for _ in 0..opts.iters {
                let t0 = Instant::now();
                let f = crate::reference::forward(&model, &x, &plain)?;
                totals.push(ms(t0.elapsed()));
                runs.push(f.timings);
            }
            Ok(BenchReport {
                adapter: "cpu reference".into(),
                backend: "cpu".into(),
                model: name,
                batch: b,
                timesteps: t,
                first_call_ms,
                median_ms: median(totals),
                stages: stage_medians(&runs),
                gpu_bytes: 0,
                weight_bytes: 0,
                plan_bytes: 0,
                weights_plus_two_largest_bytes: floor,
                iters: opts.iters,
                peak: None,
            })
        }
        BenchDevice::Gpu => {
            let ctx = Context::new(&opts.context)?;
            let started = Instant::now();
            let mut gm = GpuModel::new(Arc::clone(&ctx), &model)?;
            gm.forward(&x, &plain)?;
            let first_call_ms = ms(started.elapsed());
            let mut totals = Vec::new();
            let mut runs = Vec::new();
            for _ in 0..opts.iters {
                let t0 = Instant::now();
                let f = gm.forward(&x, &plain)?;
                totals.push(ms(t0.elapsed()));
                runs.push(f.timings);
            }
            // With timestamp queries the plain forwards carry GPU time per
            // stage; otherwise profiled forwards time each stage's submission.
            let per_stage = runs.first().is_some_and(|t| t.len() > 1);
            if !per_stage {
                runs.clear();
                for _ in 0..opts.iters {
                    runs.push(gm.forward_profiled(&x, &plain)?.timings);
                }
            }
            let mut stages = stage_medians(&runs);
            let peak = if opts.peak { Some(measure_peak(&opts.context)?) } else { None };
            if let Some(p) = &peak {
                for st in &mut stages {
                    st.of_peak_gflops = Some(st.gflops / p.gemm_gflops.max(1e-12));
                    st.of_peak_gbps = Some(st.gbps / p.copy_gbps.max(1e-12));
                }
            }
            let weight_bytes = gm.weight_bytes();
            let plan_bytes = gm.plan_bytes(b, t).unwrap_or(0);
            let info = ctx.adapter_info();
            Ok(BenchReport {
                adapter: info.name.clone(),
                backend: format!("{:?}", info.backend),
                model: name,
                batch: b,
                timesteps: t,
                first_call_ms,
                median_ms: median(totals),
                stages,
                gpu_bytes: weight_bytes + plan_bytes,
                weight_bytes,
                plan_bytes,
                weights_plus_two_largest_bytes: floor,
                iters: opts.iters,
                peak,
            })
        }
    }
}

/// Measures the adapter's ceilings: the best GFLOP/s of two GEMMs, 1024^3
/// and a skinny 64 x 32768 x 256 (the LSTM projection's shape class), each
/// a Dense layer without bias run with the kernel the scheduler picks (best
/// of 5 after a warm-up), and a 64 MiB buffer-to-buffer copy (median of 3
/// after a warm-up).
pub fn measure_peak(context: &ContextOptions) -> Result<PeakReport> {
    let ctx = Context::new(context)?;
    let mut best = (0.0f64, String::new());
    for (m, k, n) in [(1024, 1024, 1024), (64, 32768, 256)] {
        let mut model = ModelBuilder::new("gemm", None, &[k])
            .layer(LayerKind::Dense(Dense {
                units: n,
                activation: Activation::Linear,
                use_bias: false,
            }))
            .build()?;
        crate::init::keras_default_weights(&mut model, 1)?;
        let x = bench_input(&model, 1, m)?;
        let mut gm = GpuModel::new(Arc::clone(&ctx), &model)?;
        gm.forward(&x, &RunOptions::default())?;
        // A ceiling: the best of 5 runs (the least disturbed by other work).
        let mut fastest = f64::INFINITY;
        for _ in 0..5 {
            let t0 = Instant::now();
            gm.forward(&x, &RunOptions::default())?;
            fastest = fastest.min(t0.elapsed().as_secs_f64());
        }
        let gflops = 2.0 * (m * k * n) as f64 / fastest.max(1e-9) / 1e9;
        if gflops > best.0 {
            best = (gflops, format!("{m}x{k}x{n}"));
        }
    }
    let copy_gbps = measure_copy(&ctx)?;
    Ok(PeakReport { gemm_gflops: best.0, gemm_shape: best.1, copy_gbps })
}

/// GB/s (read + written) of copying 64 MiB between two device buffers.
fn measure_copy(ctx: &Context) -> Result<f64> {
    const BYTES: u64 = 64 << 20;
    let device = ctx.device();
    let make = |label: &str, usage: wgpu::BufferUsages| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: BYTES,
            usage,
            mapped_at_creation: false,
        })
    };
    let src = make("peak copy source", wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
    let dst = make("peak copy destination", wgpu::BufferUsages::COPY_DST);
    ctx.queue().write_buffer(&src, 0, &vec![1u8; BYTES as usize]);
    let mut times = Vec::new();
    for i in 0..4 {
        let t0 = Instant::now();
        let mut encoder = device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("peak copy") });
        encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, BYTES);
        ctx.queue().submit([encoder.finish()]);
        device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(Duration::from_secs(60)),
            })
            .map_err(|e| Error::Map(format!("peak copy: waiting for the GPU failed: {e}")))?;
        ctx.check_faults("peak copy")?;
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(2.0 * BYTES as f64 / median(times).max(1e-9) / 1e9)
}
