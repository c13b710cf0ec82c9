//! `cnn-lstm verify`: runs a model on the GPU and on the CPU reference and
//! compares every layer's output and timestep mask between them under
//! [`Tolerance::GPU_F32`]. When the input file also holds Keras's outputs
//! (`output`, and any `layer/<name>` and `mask/<name>`, as the fixtures'
//! io.safetensors do), it compares all three pairs: GPU vs CPU, GPU vs Keras
//! and CPU vs Keras, the Keras ones under [`Tolerance::KERAS`].
//!
//! It prints one table row per tensor, in model order (each layer's output,
//! then its mask, then `output`), names the first row that diverges with the
//! pair and the mismatch report, and fails when anything diverges. Masks must
//! match exactly. Without a GPU adapter it fails: it promises both devices.

use std::collections::{BTreeMap, BTreeSet};

use cnn_lstm::keras::{read_input_tensors, StoredTensor};
use cnn_lstm::{Forward, LayerOutput, RunOptions, Tensor, Tolerance};

use super::run::{load_model, mask_tensor, take_f32};
use super::run_device::{self, Gpu};
use super::{say, CliResult, Failure, VerifyArgs};

/// Runs both devices, compares them (and Keras's outputs when present) and
/// fails on the first divergence.
pub fn run(args: &VerifyArgs) -> CliResult {
    let model = load_model(&args.model, args.weights.as_deref())?;
    let origin = args.input.display().to_string();
    let mut stored = read_input_tensors(&args.input)?;
    let input = take_f32(&mut stored, &args.input_key, &origin)?;
    let keras = stored.contains_key("output").then_some(stored);

    // The GPU first: without an adapter this fails before the slower CPU run.
    let gpu = Gpu::new()?;
    say!("GPU: {}", gpu.describe());
    let opts = RunOptions { training: false, seed: 0, capture_layers: true };
    let on_gpu = gpu.upload(&model)?.forward(&input, &opts)?;
    let on_cpu = run_device::cpu_forward(&model, &input, &opts, &mut |_| {})?;

    let rows = compare_all(&on_gpu, &on_cpu, keras.as_ref())?;
    let pairs: &[Pair] = if keras.is_some() { &Pair::ALL } else { &Pair::ALL[..1] };
    print_table(&rows, pairs, keras.is_some(), &origin);

    let compared = rows.iter().flat_map(|r| r.cells.iter().flatten()).count();
    let diverged: Vec<(&Row, Pair, &Cell)> = rows
        .iter()
        .flat_map(|r| {
            Pair::ALL.iter().zip(&r.cells).filter_map(move |(&pair, cell)| match cell {
                Some(c) if !c.ok => Some((r, pair, c)),
                _ => None,
            })
        })
        .collect();
    let Some(&(row, pair, cell)) = diverged.first() else {
        say!("no divergence ({compared} comparisons)");
        return Ok(());
    };
    say!("first divergence: layer {} ({}), {}:", row.layer, row.key, pair.title());
    say!("  {}", cell.report.replace('\n', "\n  "));
    Err(Failure::Check(format!(
        "first divergence at layer {} ({}), {}: {}; {} of {compared} comparisons diverge",
        row.layer,
        row.key,
        pair.title(),
        cell.report,
        diverged.len()
    )))
}

/// The three comparisons, in the order a divergence is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pair {
    GpuCpu,
    GpuKeras,
    CpuKeras,
}

impl Pair {
    const ALL: [Pair; 3] = [Pair::GpuCpu, Pair::GpuKeras, Pair::CpuKeras];

    fn title(self) -> &'static str {
        match self {
            Pair::GpuCpu => "GPU vs CPU",
            Pair::GpuKeras => "GPU vs Keras",
            Pair::CpuKeras => "CPU vs Keras",
        }
    }
}

/// One comparison's outcome.
#[derive(Debug)]
struct Cell {
    /// What the table shows: `1.2e-7 ok`, `MISMATCH`, `equal`, ...
    text: String,
    ok: bool,
    /// The mismatch report (empty when ok).
    report: String,
}

impl Cell {
    fn fail(text: &str, report: String) -> Self {
        Cell { text: text.to_string(), ok: false, report }
    }
}

/// One tensor (`layer/<name>`, `mask/<name>` or `output`) and its cells,
/// indexed like [`Pair::ALL`]; `None` where that pair is not compared.
#[derive(Debug)]
struct Row {
    key: String,
    /// The layer the tensor belongs to.
    layer: String,
    cells: [Option<Cell>; 3],
}

/// Every row, in model order: each layer's output, then its mask; then the
/// model output; then Keras tensors naming no layer of the model.
fn compare_all(
    gpu: &Forward,
    cpu: &Forward,
    keras: Option<&BTreeMap<String, StoredTensor>>,
) -> CliResult<Vec<Row>> {
    let gpu_names: Vec<&str> = gpu.layers.iter().map(|l| l.name.as_str()).collect();
    let cpu_names: Vec<&str> = cpu.layers.iter().map(|l| l.name.as_str()).collect();
    if gpu_names != cpu_names {
        return Err(Failure::Check(format!(
            "internal: the GPU captured layers {gpu_names:?} but the CPU {cpu_names:?}"
        )));
    }

    let mut rows = Vec::new();
    let mut used = BTreeSet::new();
    for (g, c) in gpu.layers.iter().zip(&cpu.layers) {
        let key = format!("layer/{}", g.name);
        rows.push(value_row(&key, &g.name, &g.value, &c.value, keras));
        used.insert(key);
        let key = format!("mask/{}", g.name);
        if let Some(row) = mask_row(&key, g, c, keras)? {
            rows.push(row);
        }
        used.insert(key);
    }
    let last = gpu.layers.last().map_or("output", |l| l.name.as_str());
    rows.push(value_row("output", last, &gpu.output, &cpu.output, keras));

    for key in keras.into_iter().flat_map(|k| k.keys()) {
        let layer = key.strip_prefix("layer/").or_else(|| key.strip_prefix("mask/"));
        if let (Some(layer), false) = (layer, used.contains(key)) {
            let report = format!("Keras stored {key} but the model has no layer {layer}");
            rows.push(Row {
                key: key.clone(),
                layer: layer.to_string(),
                cells: [
                    None,
                    Some(Cell::fail("NO LAYER", report.clone())),
                    Some(Cell::fail("NO LAYER", report)),
                ],
            });
        }
    }
    Ok(rows)
}

/// A layer output (or the model output): GPU vs CPU always, each device vs
/// Keras where Keras stored `key`.
fn value_row(
    key: &str,
    layer: &str,
    gpu: &Tensor,
    cpu: &Tensor,
    keras: Option<&BTreeMap<String, StoredTensor>>,
) -> Row {
    let gpu_cpu = Some(compare_values(gpu, cpu, Tolerance::GPU_F32));
    let (gpu_keras, cpu_keras) = match keras.and_then(|k| k.get(key)) {
        None => (None, None),
        Some(StoredTensor::F32(want)) => (
            Some(compare_values(gpu, want, Tolerance::KERAS)),
            Some(compare_values(cpu, want, Tolerance::KERAS)),
        ),
        Some(other) => {
            let report = format!("Keras stored {key} as {}, expected F32", other.dtype_name());
            (Some(Cell::fail("DTYPE", report.clone())), Some(Cell::fail("DTYPE", report)))
        }
    };
    Row { key: key.to_string(), layer: layer.to_string(), cells: [gpu_cpu, gpu_keras, cpu_keras] }
}

/// A layer's timestep mask: GPU vs CPU, and each device vs Keras where Keras
/// stored `key`; `None` when no side has a mask for this layer.
fn mask_row(
    key: &str,
    gpu: &LayerOutput,
    cpu: &LayerOutput,
    keras: Option<&BTreeMap<String, StoredTensor>>,
) -> CliResult<Option<Row>> {
    let gpu_mask = mask_tensor(gpu)?;
    let cpu_mask = mask_tensor(cpu)?;
    let gpu_cpu = compare_masks(gpu_mask.as_ref(), cpu_mask.as_ref(), "GPU", "CPU");
    let (gpu_keras, cpu_keras) = match keras.and_then(|k| k.get(key)) {
        None => (None, None),
        Some(want) => (
            compare_masks(gpu_mask.as_ref(), Some(want), "GPU", "Keras"),
            compare_masks(cpu_mask.as_ref(), Some(want), "CPU", "Keras"),
        ),
    };
    let cells = [gpu_cpu, gpu_keras, cpu_keras];
    Ok(cells.iter().any(Option::is_some).then(|| Row {
        key: key.to_string(),
        layer: gpu.name.clone(),
        cells,
    }))
}

/// Values within `tol`; a shape difference is a divergence too.
fn compare_values(got: &Tensor, want: &Tensor, tol: Tolerance) -> Cell {
    match run_device::compare(got, want, tol) {
        Ok(a) if a.ok => {
            Cell { text: format!("{:.2e} ok", a.max_abs), ok: true, report: "".into() }
        }
        Ok(a) => Cell::fail(&format!("{:.2e} MISMATCH", a.max_abs), a.report),
        Err(_) => {
            Cell::fail("SHAPE", format!("shape {:?}, expected {:?}", got.shape(), want.shape()))
        }
    }
}

/// Two masks (U8 `[B, T]`, 1 = valid step), exactly; `None` when neither
/// side has one.
fn compare_masks(
    got: Option<&StoredTensor>,
    want: Option<&StoredTensor>,
    got_name: &str,
    want_name: &str,
) -> Option<Cell> {
    let (got, want) = match (got, want) {
        (None, None) => return None,
        (Some(_), None) => {
            let report = format!("{got_name} carries a timestep mask here, {want_name} none");
            return Some(Cell::fail("MISSING", report));
        }
        (None, Some(_)) => {
            let report = format!("{want_name} carries a timestep mask here, {got_name} none");
            return Some(Cell::fail("MISSING", report));
        }
        (Some(g), Some(w)) => (g, w),
    };
    let (StoredTensor::U8 { shape: gs, data: gd }, StoredTensor::U8 { shape: ws, data: wd }) =
        (got, want)
    else {
        let report = format!(
            "{want_name}'s mask is {} {:?}, expected U8 [B, T]",
            want.dtype_name(),
            want.shape()
        );
        return Some(Cell::fail("DTYPE", report));
    };
    if gs != ws {
        let report = format!("{got_name}'s mask has shape {gs:?}, {want_name}'s {ws:?}");
        return Some(Cell::fail("SHAPE", report));
    }
    let differ: Vec<usize> = (0..gd.len()).filter(|&i| gd[i] != wd[i]).collect();
    let Some(&first) = differ.first() else {
        return Some(Cell { text: "equal".into(), ok: true, report: "".into() });
    };
    let steps = gs.get(1).copied().unwrap_or(1).max(1);
    let report = format!(
        "{} of {} steps differ (1 = valid); first at (b, t) = ({}, {}): {got_name} {}, \
         {want_name} {}",
        differ.len(),
        gd.len(),
        first / steps,
        first % steps,
        gd[first],
        wd[first]
    );
    Some(Cell::fail("DIFFERENT", report))
}

/// The table: one row per tensor, one column per compared pair.
fn print_table(rows: &[Row], pairs: &[Pair], with_keras: bool, origin: &str) {
    let gpu = Tolerance::GPU_F32;
    say!("{origin}: GPU vs CPU within |a - b| <= {:e} + {:e} * |b|", gpu.abs, gpu.rel);
    if with_keras {
        let k = Tolerance::KERAS;
        say!("  each device vs Keras within |a - keras| <= {:e} + {:e} * |keras|", k.abs, k.rel);
    } else {
        say!("  (no `output` in the file: no Keras comparison)");
    }
    say!("  masks must be equal; cells show the largest |difference|");
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0).max(6);
    let mut header = format!("  {:<width$}", "tensor");
    for pair in pairs {
        header.push_str(&format!("  {:<18}", pair.title()));
    }
    say!("{}", header.trim_end());
    for row in rows {
        let mut line = format!("  {:<width$}", row.key);
        for (_, cell) in pairs.iter().zip(&row.cells) {
            let text = cell.as_ref().map_or("-", |c| c.text.as_str());
            line.push_str(&format!("  {text:<18}"));
        }
        say!("{}", line.trim_end());
    }
}
