//! `cnn-lstm devices`: the adapters wgpu finds and the one cnn-lstm would use.

use cnn_lstm::Error;

use super::run_device::{self, Gpu};
use super::{say, CliResult};

/// Lists the adapters; fails when there is none.
pub fn run() -> CliResult {
    let adapters = run_device::list_adapters()?;
    if adapters.is_empty() {
        return Err(Error::NoAdapter(
            "wgpu found no adapter; on Debian/Ubuntu install a Vulkan driver (apt-get install \
             mesa-vulkan-drivers) or a GL one"
                .into(),
        )
        .into());
    }
    say!("Adapters:");
    for adapter in &adapters {
        say!("  {adapter}");
    }
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| "(unset)".into());
    say!(
        "CNN_LSTM_BACKEND={} CNN_LSTM_ADAPTER={}",
        env("CNN_LSTM_BACKEND"),
        env("CNN_LSTM_ADAPTER")
    );
    let gpu = Gpu::new()?;
    say!("Selected: {}", gpu.describe());
    Ok(())
}
