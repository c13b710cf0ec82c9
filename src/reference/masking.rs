//! Timestep masks (Keras `Masking`).
//!
//! Layout: values `[B, T, ...]` read as `B * T` timesteps of `per_step`
//! values each; the mask is `[B * T]` row-major, 1 = valid step, 0 = masked.
//!
//! A timestep is masked iff every one of its values equals `mask_value`
//! exactly (f32 `==`: `-0.0` equals `0.0`, NaN never equals anything, so a
//! NaN keeps its step valid). Masked steps are output as zeros.

/// Computes the `[B * T]` mask of `x` (`steps * per_step` values).
pub fn timestep_mask(x: &[f32], steps: usize, per_step: usize, mask_value: f32) -> Vec<u8> {
    (0..steps)
        .map(|s| {
            let step = &x[s * per_step..][..per_step];
            u8::from(!step.iter().all(|&v| v == mask_value))
        })
        .collect()
}

/// Sets every value of each masked step (mask 0) to zero.
pub fn zero_masked(x: &mut [f32], mask: &[u8], per_step: usize) {
    for (step, &m) in x.chunks_mut(per_step.max(1)).zip(mask) {
        if m == 0 {
            step.fill(0.0);
        }
    }
}
