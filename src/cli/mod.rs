//! The `cnn-lstm` command line: argument parsing, logging and error reporting.
//!
//! Error contract, for every subcommand: a failure exits with code 1 and
//! exactly one line on stderr starting `error:`; bad usage exits with code 2
//! (clap's usage message). Results go to stdout.

mod bench;
mod demo;
mod devices;
mod run;
mod run_device;
mod summary;
mod verify;

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use cnn_lstm::Error;

/// Runs Keras-style CNN-LSTM models on any GPU through wgpu, checked against a
/// CPU reference. Without a subcommand it runs `demo`.
#[derive(Debug, Parser)]
#[command(name = "cnn-lstm", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render clips of handwritten digits, run the article's model on the GPU
    /// and the CPU reference, compare them; then run the Keras-trained digits
    /// model on its 397 test clips (the default command).
    Demo(DemoArgs),
    /// Run a model on an input file and write the output file.
    Run(RunArgs),
    /// Run a model on the GPU and on the CPU reference and compare them layer
    /// by layer, and with Keras's outputs when the input file holds them.
    Verify(VerifyArgs),
    /// Print a Keras-style summary of a model (default: the demo's model).
    Summary(SummaryArgs),
    /// Time the forward pass of the demo's model per stage.
    Bench(BenchArgs),
    /// List the GPU adapters wgpu finds and the one that would be used.
    Devices,
}

/// Where a forward pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The GPU through wgpu (adapter chosen by CNN_LSTM_BACKEND / CNN_LSTM_ADAPTER).
    Gpu,
    /// The plain-Rust CPU reference.
    Cpu,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Gpu => "gpu",
            Device::Cpu => "cpu",
        })
    }
}

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// `gpu`: run on the GPU and on the CPU reference and compare;
    /// `cpu`: the CPU reference only (no comparison).
    #[arg(long, value_enum, default_value_t = Device::Gpu)]
    device: Device,
    /// Clips per batch.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch: u32,
    /// Frames per clip (T).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=64))]
    timesteps: u32,
    /// Seed of the clips, the weights and the dropout masks.
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// Training mode: dropout on; the GPU and CPU dropout masks are compared.
    #[arg(long)]
    training: bool,
    /// Skip the second part (the Keras-trained digits model).
    #[arg(long)]
    no_trained: bool,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Keras model: `model.json` (from `model.to_json()`) or `model.keras`
    /// (which holds its weights).
    #[arg(long)]
    model: PathBuf,
    /// Weights (safetensors, keyed by Keras variable path); needed with a
    /// `.json` model, and replaces a `.keras` file's own weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Input safetensors file holding an f32 tensor `[B, T, ...frame]`.
    #[arg(long)]
    input: PathBuf,
    /// Name of the input tensor in the input file.
    #[arg(long, default_value = "input")]
    input_key: String,
    /// Output safetensors file; gets `output`, and with --layers
    /// `layer/<name>` and `mask/<name>`. Written only once the forward pass
    /// has succeeded.
    #[arg(long)]
    output: PathBuf,
    /// Also write every layer's output as `layer/<name>` and, where a layer
    /// carries a timestep mask, the mask as `mask/<name>` (U8 `[B, T]`,
    /// 1 = valid step), as in the Keras fixtures' io.safetensors.
    #[arg(long)]
    layers: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = Device::Gpu)]
    device: Device,
    /// Training mode (dropout on).
    #[arg(long)]
    training: bool,
    /// Seed of the dropout masks (default 0); needs --training.
    #[arg(long, requires = "training")]
    seed: Option<u64>,
}

/// Options of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Keras model: `model.json` or `model.keras` (which holds its weights).
    #[arg(long)]
    model: PathBuf,
    /// Weights (safetensors); needed with a `.json` model, and replaces a
    /// `.keras` file's own weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Safetensors file holding the f32 input and, optionally, Keras's
    /// outputs: `output`, `layer/<name>`, `mask/<name>` (as the fixtures'
    /// io.safetensors).
    #[arg(long)]
    input: PathBuf,
    /// Name of the input tensor in the input file.
    #[arg(long, default_value = "input")]
    input_key: String,
}

/// Options of `summary`.
#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Keras `model.json` or `model.keras`; without it, the demo's model.
    model: Option<PathBuf>,
}

/// Options of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// `article` (64x64x3 frames, Conv 32, LSTM 64 and 32, Dense 10), `small`
    /// (16x16x3, Conv 8, LSTM 16 and 8, Dense 10), or a `.keras` / model
    /// `.json` file.
    #[arg(long, default_value = "article")]
    model: String,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = Device::Gpu)]
    device: Device,
    /// Clips per batch.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch: u32,
    /// Frames per clip.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=64))]
    timesteps: u32,
    /// Timed forwards after the first call (medians over them).
    #[arg(
        long,
        alias = "iterations",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    iters: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also measure the adapter's GEMM and copy ceilings and show each stage
    /// as a fraction of them (GPU only).
    #[arg(long)]
    peak: bool,
}

/// Why a command failed: a library error, or a check that did not pass.
#[derive(Debug)]
pub enum Failure {
    /// An error from the library (bad file, no adapter, GPU fault...).
    Lib(Error),
    /// The command ran but a check failed (GPU and CPU disagree, ...).
    Check(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Lib(e) => write!(f, "{e}"),
            Failure::Check(msg) => f.write_str(msg),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Lib(e)
    }
}

/// Result of a subcommand.
pub type CliResult<T = ()> = std::result::Result<T, Failure>;

/// Prints one line to stdout; a closed stdout (e.g. `| head`) is not an error
/// worth a panic, so write failures are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use say;

/// The whole program: parse, run, report.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    check_usage(&cli);
    init_logging();
    ensure_runtime_dir();
    std::panic::set_hook(Box::new(|info| {
        let msg = one_line(&info.to_string());
        let _ = writeln!(std::io::stderr(), "error: internal error (a bug in cnn-lstm): {msg}");
    }));

    let result = std::panic::catch_unwind(|| dispatch(cli.command));
    let _ = std::io::stdout().flush();
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => {
            let _ = writeln!(std::io::stderr(), "error: {}", one_line(&failure.to_string()));
            ExitCode::from(1)
        }
        // The panic hook already printed the one `error:` line.
        Err(_) => ExitCode::from(1),
    }
}

/// Usage rules clap's attributes cannot state (a flag that conflicts with
/// one value of another option, which has a default): exits with code 2 and
/// clap's usage message, like any other bad usage.
fn check_usage(cli: &Cli) {
    if let Some(Command::Bench(args)) = &cli.command {
        if args.peak && args.device == Device::Cpu {
            let mut cmd = Cli::command();
            let bench = cmd.find_subcommand_mut("bench").map(|b| b.clone());
            let mut bench = bench.unwrap_or(cmd).bin_name("cnn-lstm bench");
            bench
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--peak measures the GPU adapter's ceilings and cannot be used with \
                     --device cpu; drop --peak or use --device gpu",
                )
                .exit();
        }
    }
}

fn dispatch(command: Option<Command>) -> CliResult {
    match command {
        // No subcommand: exactly `cnn-lstm demo` with its defaults.
        None => match Cli::parse_from(["cnn-lstm", "demo"]).command {
            Some(Command::Demo(args)) => demo::run(&args),
            _ => Err(Failure::Check("internal: the default command is not demo".into())),
        },
        Some(Command::Demo(args)) => demo::run(&args),
        Some(Command::Run(args)) => run::run(&args),
        Some(Command::Verify(args)) => verify::run(&args),
        Some(Command::Summary(args)) => summary::run(&args),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Devices) => devices::run(),
    }
}

/// `RUST_LOG` selects what is logged (to stderr); by default only the
/// crate's warnings.
fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("cnn_lstm=warn");
    let _ = env_logger::Builder::from_env(env).format_timestamp(None).try_init();
}

/// Mesa's GL and Vulkan loaders warn (and EGL can fail) without
/// `XDG_RUNTIME_DIR`; on a bare machine, point it at a private temporary
/// directory. Runs before any thread exists, so setting the variable is sound.
fn ensure_runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("cnn-lstm-xdg");
        if std::fs::create_dir_all(&dir).is_ok() {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}

/// Joins a multi-line message into one line, so stderr holds exactly one
/// `error:` line.
fn one_line(msg: &str) -> String {
    msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}
