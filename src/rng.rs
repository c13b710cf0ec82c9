//! The stateless counter-based hash behind every dropout mask.
//!
//! The same functions exist in WGSL (`shaders/common_rng.wgsl`, included in
//! each dropout-drawing shader). A mask bit depends only on
//! `(layer seed, sample, timestep, channel)`, never on the dispatch layout,
//! so the CPU reference reproduces GPU masks bit for bit.
//!
//! The hash is the PCG-RXS-M-XS 32-bit output permutation applied to a
//! linear-congruential step; counters are folded in one at a time.

/// One round of the 32-bit PCG output hash.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// Hash of `(seed, a, b, c)`: each counter is xor-ed in and re-hashed.
pub fn hash4(seed: u32, a: u32, b: u32, c: u32) -> u32 {
    pcg_hash(pcg_hash(pcg_hash(pcg_hash(seed) ^ a) ^ b) ^ c)
}

/// The seed of one dropout layer, derived from the run seed and the layer's
/// index in the model, so layers draw independent masks.
pub fn layer_seed(run_seed: u64, layer_index: usize) -> u32 {
    let lo = run_seed as u32;
    let hi = (run_seed >> 32) as u32;
    pcg_hash(pcg_hash(lo ^ pcg_hash(hi)) ^ (layer_index as u32).wrapping_mul(0x9E37_79B9))
}

/// The integer threshold for a drop rate: a unit is dropped when the top 24
/// bits of its hash are below it. Integer comparison keeps CPU and GPU equal.
pub fn drop_threshold(rate: f64) -> u32 {
    (rate.clamp(0.0, 1.0) * f64::from(1u32 << 24)).round() as u32
}

/// The scale of kept values, `float32(1 / (1 - rate))` as Keras computes it.
pub fn keep_scale(rate: f64) -> f32 {
    if rate >= 1.0 {
        0.0
    } else {
        (1.0 / (1.0 - rate)) as f32
    }
}

/// True when the unit with hash inputs `(seed, a, b, c)` is kept.
pub fn keep(seed: u32, threshold: u32, a: u32, b: u32, c: u32) -> bool {
    (hash4(seed, a, b, c) >> 8) >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_matches_rate() {
        assert_eq!(drop_threshold(0.0), 0);
        assert_eq!(drop_threshold(1.0), 1 << 24);
        assert_eq!(drop_threshold(0.25), 1 << 22);
    }

    #[test]
    fn keep_scale_is_keras_float32() {
        assert_eq!(keep_scale(0.2), 1.25);
        assert_eq!(keep_scale(0.25), 1.333_333_4);
    }
}
