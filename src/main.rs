//! The `cnn-lstm` binary; `cargo run --release` with no arguments runs the demo.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
