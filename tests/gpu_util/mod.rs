//! GPU test harness: one context per adapter wgpu finds (here Vulkan on
//! lavapipe and GL on llvmpipe), so every GPU test runs on every backend.
//!
//! Outside CI a machine without adapters skips GPU tests with a printed
//! reason; under CI (`CI` set) a missing adapter fails the test, because CI
//! machines have software adapters and a silent skip would hide a failure.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use cnn_lstm::gpu::{Context, ContextOptions, MatmulVariant};

fn ensure_runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("cnn-lstm-xdg");
        let _ = std::fs::create_dir_all(&dir);
        // Set once, before any thread of this test binary opens a device.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
    }
}

/// One context per backend present, each with its default GEMM variant.
pub fn contexts() -> Vec<Arc<Context>> {
    static CONTEXTS: OnceLock<Vec<Arc<Context>>> = OnceLock::new();
    CONTEXTS.get_or_init(|| open_all(None)).clone()
}

/// Contexts with the GEMM variant forced, so both variants are tested on
/// every backend whatever the adapter type.
pub fn contexts_with_matmul(variant: MatmulVariant) -> Vec<Arc<Context>> {
    static REG: OnceLock<Vec<Arc<Context>>> = OnceLock::new();
    static TILED: OnceLock<Vec<Arc<Context>>> = OnceLock::new();
    static SPLITK: OnceLock<Vec<Arc<Context>>> = OnceLock::new();
    let cell = match variant {
        MatmulVariant::Register => &REG,
        MatmulVariant::Tiled => &TILED,
        MatmulVariant::SplitK => &SPLITK,
    };
    cell.get_or_init(|| open_all(Some(variant))).clone()
}

fn open_all(matmul: Option<MatmulVariant>) -> Vec<Arc<Context>> {
    ensure_runtime_dir();
    let mut out = Vec::new();
    let mut reasons = Vec::new();
    for backend in ["vulkan", "gl"] {
        let opts = ContextOptions { backend: Some(backend.into()), matmul, ..Default::default() };
        match Context::new(&opts) {
            Ok(ctx) => out.push(ctx),
            Err(e) => reasons.push(format!("{backend}: {e}")),
        }
    }
    if std::env::var_os("CI").is_some() {
        assert!(
            reasons.is_empty(),
            "CI must run GPU tests on every software adapter, but: {}",
            reasons.join("; ")
        );
    } else if !reasons.is_empty() {
        eprintln!("GPU adapters missing, those backends are skipped: {}", reasons.join("; "));
    }
    out
}
