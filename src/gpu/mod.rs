//! The GPU path: context, kernels' host side, and the forward scheduler.

mod context;
pub mod kernels;
mod scheduler;

pub use context::{
    list_adapters, no_adapter_message, parse_backend, Context, ContextOptions, MatmulVariant,
};
pub use scheduler::{GpuModel, LstmRecurrence};
