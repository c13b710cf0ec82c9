// Common prelude, prepended to every kernel of cnn-lstm (see src/shaders.rs).
// It holds what several kernels share: the activation functions, the dropout
// hash (mirrored bit for bit by src/rng.rs), and the flat-index helper for
// grids laid out in 2-D when one dimension would exceed 65535 workgroups.

// Block length of long loops written as two nested ones. Mesa's llvmpipe
// (lavapipe, GL) ends an invocation's loops after 65535 iterations in all,
// nested or not, so the host keeps each invocation's total work below that
// by splitting dispatches (Context::loop_budget); the nesting only bounds
// each loop's own counter.
const LOOP_BLOCK: u32 = 4096u;

const ACT_LINEAR: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_SIGMOID: u32 = 2u;
const ACT_TANH: u32 = 3u;
const ACT_HARD_SIGMOID: u32 = 5u;
const ACT_ELU: u32 = 6u;
const ACT_SELU: u32 = 7u;
const ACT_SOFTPLUS: u32 = 8u;
const ACT_SOFTSIGN: u32 = 9u;
const ACT_SILU: u32 = 10u;
const ACT_EXPONENTIAL: u32 = 11u;

// Logistic sigmoid that never evaluates exp of a large positive number.
fn sigmoid_stable(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// tanh saturates to +-1 in f32 beyond |x| = 10; some drivers return NaN for
// the builtin at large |x|, so the saturated range is handled here.
fn tanh_stable(x: f32) -> f32 {
    if (abs(x) > 10.0) {
        return sign(x);
    }
    return tanh(x);
}

fn activate(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return max(x, 0.0); }
        case 2u: { return sigmoid_stable(x); }
        case 3u: { return tanh_stable(x); }
        case 5u: { return clamp(x + 3.0, 0.0, 6.0) / 6.0; }
        case 6u: { return select(exp(x) - 1.0, x, x > 0.0); }
        case 7u: {
            return 1.0507009873554805 * select(1.6732632423543772 * (exp(x) - 1.0), x, x > 0.0);
        }
        case 8u: { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
        case 9u: { return x / (1.0 + abs(x)); }
        case 10u: { return x * sigmoid_stable(x); }
        case 11u: { return exp(x); }
        default: { return x; }
    }
}

// PCG-RXS-M-XS output hash of one linear-congruential step (src/rng.rs: pcg_hash).
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Hash of (seed, a, b, c) (src/rng.rs: hash4).
fn hash4(seed: u32, a: u32, b: u32, c: u32) -> u32 {
    return pcg_hash(pcg_hash(pcg_hash(pcg_hash(seed) ^ a) ^ b) ^ c);
}

// True when the unit is kept: the top 24 bits of its hash reach the threshold.
fn keep_unit(seed: u32, threshold: u32, a: u32, b: u32, c: u32) -> bool {
    return (hash4(seed, a, b, c) >> 8u) >= threshold;
}

// Flat invocation index for a dispatch of (groups_x, groups_y, 1) workgroups
// of `wg` invocations each along x.
fn flat_index(gid: vec3<u32>, groups_x: u32, wg: u32) -> u32 {
    return gid.x + gid.y * groups_x * wg;
}
