//! `cnn-lstm demo`, the main job.
//!
//! Part 1: seeded clips of real handwritten digits through the article's
//! Example 1 model at full size with Example 3's Masking in front, untrained
//! (Keras default initialisation), on the GPU and on the CPU reference; the
//! two must agree within the tolerance (and, with `--training`, draw the same
//! dropout masks).
//!
//! Part 2: the Keras-trained digits model of `tests/fixtures/digits_clips` on
//! its 397 test clips; the probabilities must match Keras's within 1e-4 and
//! every predicted class must match.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use cnn_lstm::digits::{render_clips, ClipInfo, ClipStyle, Digits};
use cnn_lstm::keras::{self, StoredTensor};
use cnn_lstm::summary::{summary, thousands};
use cnn_lstm::{rng, Error, Forward, LayerKind, Model, Result, RunOptions, Tensor, Tolerance};

use super::run_device::{self, Gpu, Step};
use super::{say, CliResult, DemoArgs, Device, Failure};

/// The Keras-trained digits model, embedded so the demo runs from any directory.
const TRAINED_JSON: &str = include_str!("../../tests/fixtures/digits_clips/model.json");
const TRAINED_WEIGHTS: &[u8] =
    include_bytes!("../../tests/fixtures/digits_clips/weights.safetensors");
const TRAINED_CLIPS: &[u8] = include_bytes!("../../tests/fixtures/digits_clips/clips.safetensors");
const TRAINED_ORIGIN: &str = "tests/fixtures/digits_clips";

/// Keras's own accuracy on the 397 test clips (fixture README).
const KERAS_CORRECT: usize = 354;

/// Largest |probability - Keras's| accepted on the trained model.
const TRAINED_PROB_TOLERANCE: f32 = 1e-4;

/// Clips per CPU reference call on the trained model, so the progress bar
/// moves; the GPU gets all clips in one call (it slices batches that exceed
/// a device limit itself).
const TRAINED_CPU_CHUNK: usize = 32;

/// The article's Example 1 at full size (64x64x3 frames, any T) with Example
/// 3's `Masking(0.0)` in front: 31,520,330 parameters, zero-initialised.
pub fn article_model() -> Result<Model> {
    cnn_lstm::zoo::article("article_example_1_masked", cnn_lstm::zoo::ArticleSize::FULL, true)
}

/// Runs the demo; fails when a check does not pass.
pub fn run(args: &DemoArgs) -> CliResult {
    let (batch, timesteps) = (args.batch as usize, args.timesteps as usize);
    let mut failures: Vec<String> = Vec::new();

    say!("cnn-lstm demo: the article's CNN-LSTM on clips of real handwritten digits");
    say!("");

    // The clips.
    let digits = Digits::embedded()?;
    let style = ClipStyle::default();
    let (input, clips) = render_clips(&digits, &style, batch, timesteps, args.seed)?;
    say!(
        "Input: {batch} clips x {timesteps} frames of {0}x{0}x{1} (seed {2}); each shows one \
         8x8 digit of the UCI handwritten digits (CC BY 4.0) upscaled {3}x, moving and \
         bouncing; '#' real frame, '.' all-zero frame (padding or gap, masked):",
        style.side,
        style.channels,
        args.seed,
        style.scale
    );
    for (i, clip) in clips.iter().enumerate() {
        say!(
            "  clip {i:>2}: digit {} (image {:>4}) {}",
            clip.label,
            clip.image_index,
            pattern(clip)
        );
    }
    say!("");

    // The model.
    let mut model = article_model()?;
    run_device::keras_default_weights(&mut model, args.seed)?;
    say!("{}", summary(&model).trim_end());
    let checked = match args.device {
        Device::Gpu => {
            "What is checked is that the GPU and the CPU reference compute the same thing."
        }
        Device::Cpu => {
            "With --device cpu only the CPU reference runs, so nothing is compared in this part \
             (--device gpu checks the GPU against it)."
        }
    };
    say!(
        "The weights are Keras's default initialisation (seed {}), not trained: the predicted \
         classes below are not meaningful. {checked}",
        args.seed
    );
    say!("");

    let dropout_index = model
        .layers()
        .iter()
        .position(|l| matches!(l.kind, LayerKind::SpatialDropout { .. }))
        .ok_or_else(|| Error::Unsupported("the demo model has no spatial dropout".into()))?;
    let opts =
        RunOptions { training: args.training, seed: args.seed, capture_layers: args.training };
    say!(
        "Mode: {}",
        if args.training {
            "training (SpatialDropout2D rate 0.2 drops channels per (clip, frame, channel))"
        } else {
            "inference (dropout is the identity)"
        }
    );

    let gpu = match args.device {
        Device::Gpu => {
            let gpu = Gpu::new()?;
            say!("Adapter: {}", gpu.describe());
            Some(gpu)
        }
        Device::Cpu => {
            say!("Device: CPU reference only (no GPU, no comparison)");
            None
        }
    };

    let gpu_fwd = match &gpu {
        Some(gpu) => {
            let started = Instant::now();
            let mut runner = gpu.upload(&model)?;
            let upload = started.elapsed();
            let started = Instant::now();
            let fwd = runner.forward(&input, &opts)?;
            let wall = started.elapsed();
            say!("");
            if fwd.timings.iter().any(|s| s.name != "total") {
                say!(
                    "GPU forward pass (weights uploaded, pipelines built in {}); per stage from \
                     GPU timestamp queries:",
                    ms(upload)
                );
                print_timings(&fwd, wall);
            } else {
                // No timestamp queries on this device: time each stage in a
                // second run that waits for every stage.
                let profiled = runner.forward_profiled(&input, &opts)?;
                say!(
                    "GPU forward pass (weights uploaded, pipelines built in {}); per stage from a \
                     second run that submits and waits for each stage alone (no timestamp \
                     queries on this device):",
                    ms(upload)
                );
                print_timings(&profiled, wall);
            }
            Some(fwd)
        }
        None => None,
    };

    let started = Instant::now();
    let cpu_fwd = with_progress("CPU reference", |progress| {
        run_device::cpu_forward(&model, &input, &opts, progress)
    })?;
    let cpu_wall = started.elapsed();
    say!("");
    say!("CPU reference forward pass:");
    print_timings(&cpu_fwd, cpu_wall);
    say!("");

    if let Some(gpu_fwd) = &gpu_fwd {
        let agreement = run_device::compare(&gpu_fwd.output, &cpu_fwd.output, Tolerance::GPU_F32)?;
        say!(
            "GPU vs CPU: max |difference| {:.3e} over {} output values; tolerance \
             |gpu - cpu| <= {:e} + {:e} * |cpu| (Tolerance::GPU_F32): {}",
            agreement.max_abs,
            gpu_fwd.output.len(),
            Tolerance::GPU_F32.abs,
            Tolerance::GPU_F32.rel,
            if agreement.ok { "agree" } else { "DISAGREE" }
        );
        if !agreement.ok {
            say!("  {}", agreement.report.replace('\n', "\n  "));
            failures.push(format!(
                "GPU and CPU outputs differ by up to {:.3e}, beyond the tolerance {}",
                agreement.max_abs, agreement.tolerance
            ));
        }
        say!("");
    }

    if args.training {
        let name = &model.layers()[dropout_index].name;
        let check =
            check_dropout_masks(&model, dropout_index, args.seed, gpu_fwd.as_ref(), &cpu_fwd)?;
        say!(
            "Dropout masks ({name}): {} (clip, frame, channel) maps, {} all zero on the CPU; \
             of the {} whose input is not all zero, the hash drops {} ({:.1}%, rate 20%) and \
             the CPU zeroed exactly those for {} of them",
            check.maps,
            check.cpu_zero,
            check.decidable,
            check.hash_dropped,
            100.0 * check.hash_dropped as f64 / check.decidable.max(1) as f64,
            check.cpu_hash_agree
        );
        let mut ok = check.cpu_hash_agree == check.decidable;
        if let Some((same_zero, gpu_hash_agree)) = check.gpu {
            say!(
                "  GPU: the same all-zero maps as the CPU for {same_zero} of {}, and exactly \
                 the hash's drops for {gpu_hash_agree} of {}",
                check.maps,
                check.decidable
            );
            ok &= same_zero == check.maps && gpu_hash_agree == check.decidable;
        }
        if !ok {
            failures.push(format!(
                "dropout masks of {name} differ from the dropout hash or between GPU and CPU \
                 (see the lines above)"
            ));
        }
        say!("");
    }

    print_predictions(&clips, gpu_fwd.as_ref(), &cpu_fwd)?;
    say!("");

    if !args.no_trained {
        if let Err(msg) = trained_model(args.device, gpu.as_ref())? {
            failures.push(msg);
        }
        say!("");
    }

    if failures.is_empty() {
        say!(
            "Result: OK{}",
            if gpu.is_some() { " (GPU and CPU agree within the tolerance)" } else { "" }
        );
        Ok(())
    } else {
        say!("Result: FAILED");
        Err(Failure::Check(failures.join("; ")))
    }
}

/// `##..###...`: `#` for a real frame, `.` for an all-zero one, with the
/// clip length and any gap.
fn pattern(clip: &ClipInfo) -> String {
    let frames: String = clip.valid.iter().map(|&v| if v { '#' } else { '.' }).collect();
    let gap = match clip.gap {
        Some((first, n)) => format!(", gap of {n} after frame {first}"),
        None => String::new(),
    };
    format!("{frames}  length {}{gap}", clip.length)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Prints the per-stage times of a forward pass, their sum, and the wall
/// time of the whole pass.
fn print_timings(fwd: &Forward, wall: Duration) {
    let stages: Vec<_> = fwd.timings.iter().filter(|s| s.name != "total").collect();
    if stages.is_empty() {
        say!("  (no per-stage times measured)");
    }
    for stage in &stages {
        let secs = stage.time.as_secs_f64();
        let rate = if secs > 0.0 && stage.flops > 0 {
            format!("{:>8.2} GFLOP/s", stage.flops as f64 / secs / 1e9)
        } else {
            String::new()
        };
        say!("  {:<32} {:>12} {rate}", stage.name, ms(stage.time));
    }
    let sum: Duration = stages.iter().map(|s| s.time).sum();
    say!("  {:<32} {:>12}", "sum of stages", ms(sum));
    say!("  {:<32} {:>12}", "total (one forward pass, wall)", ms(wall));
}

/// Runs `f`, showing its progress on stderr when stderr is a terminal.
fn with_progress<T>(what: &str, f: impl FnOnce(&mut dyn FnMut(Step)) -> T) -> T {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = String::new();
    let mut show = |step: Step| {
        if !tty {
            return;
        }
        let pct = (step.fraction.clamp(0.0, 1.0) * 100.0).round() as usize;
        let bar = "#".repeat(pct / 5) + &".".repeat(20 - pct / 5);
        let line = format!("{what}: [{bar}] {pct:>3}% {}", step.stage);
        if line != last {
            let secs = started.elapsed().as_secs_f64();
            let _ = write!(std::io::stderr(), "\r\x1b[K{line} ({secs:.1} s)");
            last = line;
        }
    };
    let out = f(&mut show);
    if tty {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
    out
}

/// Argmax and its value of each row of a `[B, K]` tensor.
fn argmax_rows(t: &Tensor) -> Result<Vec<(usize, f32)>> {
    let k = match t.shape() {
        [_, k] if *k > 0 => *k,
        s => return Err(Error::input("model output", "[B, classes]", format!("{s:?}"))),
    };
    Ok(t.data()
        .chunks_exact(k)
        .map(|row| {
            row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 {
                    (i, v)
                } else {
                    best
                }
            })
        })
        .collect())
}

fn print_predictions(clips: &[ClipInfo], gpu: Option<&Forward>, cpu: &Forward) -> Result<()> {
    let cpu_pred = argmax_rows(&cpu.output)?;
    let gpu_pred = gpu.map(|g| argmax_rows(&g.output)).transpose()?;
    say!("Predicted class per clip (untrained model: not meaningful):");
    match &gpu_pred {
        Some(gpu_pred) => {
            say!("  clip  length  true digit  GPU class (prob)  CPU class");
            for (i, clip) in clips.iter().enumerate() {
                let (class, prob) = gpu_pred[i];
                say!(
                    "  {i:>4}  {:>6}  {:>10}  {:>9} ({prob:.4})  {:>9}",
                    clip.length,
                    clip.label,
                    class,
                    cpu_pred[i].0
                );
            }
        }
        None => {
            say!("  clip  length  true digit  CPU class (prob)");
            for (i, clip) in clips.iter().enumerate() {
                let (class, prob) = cpu_pred[i];
                say!("  {i:>4}  {:>6}  {:>10}  {:>9} ({prob:.4})", clip.length, clip.label, class);
            }
        }
    }
    Ok(())
}

/// What the dropout-mask check found.
struct MaskCheck {
    /// (clip, frame, channel) maps.
    maps: usize,
    /// Maps all zero in the CPU's dropout output.
    cpu_zero: usize,
    /// Maps whose dropout input is not all zero, so a drop is visible.
    decidable: usize,
    /// Of those, the maps the dropout hash drops.
    hash_dropped: usize,
    /// Of those, maps where "zeroed by the CPU" equals "dropped by the hash".
    cpu_hash_agree: usize,
    /// With a GPU run: maps whose all-zero state is the same as the CPU's,
    /// and decidable maps where "zeroed by the GPU" equals "dropped by the hash".
    gpu: Option<(usize, usize)>,
}

/// Checks the spatial-dropout masks. Per (b, t, c), a map is zeroed when the
/// dropout layer's output map is all zero; where the layer's input map is
/// not all zero (so a drop is visible), the zeroed maps must be exactly the
/// channels the dropout hash drops (`rng::keep` with the layer's seed, the
/// crate's documented convention), on the CPU and on the GPU; and the GPU
/// must zero the same maps as the CPU.
fn check_dropout_masks(
    model: &Model,
    index: usize,
    seed: u64,
    gpu: Option<&Forward>,
    cpu: &Forward,
) -> Result<MaskCheck> {
    let layer = &model.layers()[index];
    let rate = match layer.kind {
        LayerKind::SpatialDropout { rate, .. } => rate,
        _ => return Err(Error::layer(index, &layer.name, "is not a spatial dropout layer")),
    };
    let find = |fwd: &Forward, name: &str, device: &str| -> Result<Tensor> {
        fwd.layers.iter().find(|l| l.name == name).map(|l| l.value.clone()).ok_or_else(|| {
            Error::Unsupported(format!("the {device} run did not capture layer {name}"))
        })
    };
    let before_name = match index.checked_sub(1).and_then(|i| model.layers().get(i)) {
        Some(l) => &l.name,
        None => return Err(Error::layer(index, &layer.name, "has no layer before it to compare")),
    };
    let before = find(cpu, before_name, "CPU")?;
    let cpu_out = find(cpu, &layer.name, "CPU")?;
    let gpu_out = gpu.map(|g| find(g, &layer.name, "GPU")).transpose()?;
    let shape = cpu_out.shape().to_vec();
    let gpu_shape = gpu_out.as_ref().map_or(shape.as_slice(), |g| g.shape());
    if shape.len() != 5 || gpu_shape != shape.as_slice() || before.shape() != shape {
        return Err(Error::input(
            format!("captured output of {}", layer.name),
            format!("[B, T, H, W, C] equal on GPU and CPU, got CPU {shape:?}"),
            format!("GPU {gpu_shape:?}, input {:?}", before.shape()),
        ));
    }
    let (b_n, t_n, hw, c_n) = (shape[0], shape[1], shape[2] * shape[3], shape[4]);
    let zero_map = |t: &Tensor, b: usize, s: usize, c: usize| {
        let base = (b * t_n + s) * hw * c_n;
        (0..hw).all(|p| t.data()[base + p * c_n + c] == 0.0)
    };
    let layer_seed = rng::layer_seed(seed, index);
    let thr = rng::drop_threshold(rate);
    let mut check = MaskCheck {
        maps: b_n * t_n * c_n,
        cpu_zero: 0,
        decidable: 0,
        hash_dropped: 0,
        cpu_hash_agree: 0,
        gpu: gpu_out.as_ref().map(|_| (0, 0)),
    };
    for b in 0..b_n {
        for s in 0..t_n {
            for c in 0..c_n {
                let cz = zero_map(&cpu_out, b, s, c);
                let gz = gpu_out.as_ref().map(|g| zero_map(g, b, s, c));
                check.cpu_zero += usize::from(cz);
                let decidable = !zero_map(&before, b, s, c);
                let dropped = !rng::keep(layer_seed, thr, b as u32, s as u32, c as u32);
                if decidable {
                    check.decidable += 1;
                    check.hash_dropped += usize::from(dropped);
                    check.cpu_hash_agree += usize::from(cz == dropped);
                }
                if let (Some((same, hash)), Some(gz)) = (check.gpu.as_mut(), gz) {
                    *same += usize::from(gz == cz);
                    *hash += usize::from(decidable && gz == dropped);
                }
            }
        }
    }
    Ok(check)
}

/// The 397 test clips of the trained fixture and Keras's outputs.
struct TrainedClips {
    /// `[397, 10, 32, 32, 1]`, `f32::from(u8) / 255`.
    input: Tensor,
    labels: Vec<i32>,
    /// `[397, 10]`.
    keras_probs: Vec<f32>,
}

fn trained_clips() -> Result<TrainedClips> {
    let origin = format!("{TRAINED_ORIGIN}/clips.safetensors");
    let mut file = keras::read_tensors_bytes(TRAINED_CLIPS, &origin)?;
    let mut take = |name: &str| {
        file.remove(name).ok_or_else(|| Error::format(&origin, format!("no tensor {name}")))
    };
    let wrong = |name: &str, t: &StoredTensor, want: &str| {
        Error::format(&origin, format!("{name} is {}, expected {want}", t.dtype_name()))
    };
    let input = match take("frames")? {
        StoredTensor::U8 { shape, data } => {
            Tensor::new(shape, data.iter().map(|&u| f32::from(u) / 255.0_f32).collect())?
        }
        other => return Err(wrong("frames", &other, "U8")),
    };
    let labels = match take("labels")? {
        StoredTensor::I32 { data, .. } => data,
        other => return Err(wrong("labels", &other, "I32")),
    };
    let keras_probs = match take("keras_probs")? {
        StoredTensor::F32(t) => t.into_data(),
        other => return Err(wrong("keras_probs", &other, "F32")),
    };
    Ok(TrainedClips { input, labels, keras_probs })
}

/// Part 2: the Keras-trained model on its test clips. `Ok(Err(msg))` when
/// it runs but does not reproduce Keras.
fn trained_model(device: Device, gpu: Option<&Gpu>) -> Result<std::result::Result<(), String>> {
    let mut keras_model = run_device::model_from_json(TRAINED_JSON, TRAINED_ORIGIN)?;
    run_device::load_weights(
        &mut keras_model,
        TRAINED_WEIGHTS,
        &format!("{TRAINED_ORIGIN}/weights.safetensors"),
    )?;
    let model = keras_model.model;
    let clips = trained_clips()?;
    let shape = clips.input.shape().to_vec();
    let (n, per_clip) = (shape[0], shape[1..].iter().product::<usize>());
    let classes = model.output_shape().elements();
    if clips.keras_probs.len() != n * classes || clips.labels.len() != n {
        return Err(Error::format(
            TRAINED_ORIGIN,
            format!("clips.safetensors holds {n} clips but not {n} labels and {n}x{classes} probs"),
        ));
    }

    say!(
        "Part 2: a CNN-LSTM trained in Keras 3.15.1 on moving digits ({TRAINED_ORIGIN}, \
         {} parameters), on its {n} test clips of unseen digits ({}):",
        thousands(model.param_count()),
        match device {
            Device::Gpu => "GPU",
            Device::Cpu => "CPU reference",
        }
    );
    let mut gpu_runner = gpu.map(|g| g.upload(&model)).transpose()?;
    let opts = RunOptions::default();
    let started = Instant::now();
    let mut probs = Vec::with_capacity(n * classes);
    let data = clips.input.data();
    let mut done = 0;
    while done < n {
        let chunk_len = if gpu_runner.is_some() { n } else { TRAINED_CPU_CHUNK };
        let count = chunk_len.min(n - done);
        let mut chunk_shape = shape.clone();
        chunk_shape[0] = count;
        let chunk =
            Tensor::new(chunk_shape, data[done * per_clip..(done + count) * per_clip].to_vec())?;
        let fwd = match &mut gpu_runner {
            Some(runner) => runner.forward(&chunk, &opts)?,
            None => {
                let label = format!("digits model, clips {done}..{}", done + count);
                with_progress(&label, |p| run_device::cpu_forward(&model, &chunk, &opts, p))?
            }
        };
        probs.extend_from_slice(fwd.output.data());
        done += count;
    }
    let wall = started.elapsed();

    let ours = argmax_rows(&Tensor::new(vec![n, classes], probs.clone())?)?;
    let keras = argmax_rows(&Tensor::new(vec![n, classes], clips.keras_probs.clone())?)?;
    // NaN never wins f32::max, so non-finite outputs are checked apart below.
    let max_diff =
        probs.iter().zip(&clips.keras_probs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let correct = ours.iter().zip(&clips.labels).filter(|((c, _), &l)| *c as i32 == l).count();
    let same_class = ours.iter().zip(&keras).filter(|(a, b)| a.0 == b.0).count();
    say!(
        "  accuracy {correct}/{n} = {:.2}% (Keras: {KERAS_CORRECT}/{n} = {:.2}%), in {}",
        100.0 * correct as f64 / n as f64,
        100.0 * KERAS_CORRECT as f64 / n as f64,
        ms(wall)
    );
    say!(
        "  vs Keras's probabilities: max |difference| {max_diff:.3e} (tolerance \
         {TRAINED_PROB_TOLERANCE:.0e}); same predicted class on {same_class}/{n} clips"
    );
    let finite = probs.iter().all(|p| p.is_finite());
    if !finite || max_diff > TRAINED_PROB_TOLERANCE || same_class != n {
        return Ok(Err(format!(
            "the trained digits model does not reproduce Keras: max probability difference \
             {max_diff:.3e} (tolerance {TRAINED_PROB_TOLERANCE:.0e}), {same_class}/{n} classes \
             match"
        )));
    }
    Ok(Ok(()))
}
