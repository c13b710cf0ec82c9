// Dropout in training mode: SpatialDropout2D (per sample, timestep, channel),
// SpatialDropout3D (per sample, channel) and plain Dropout (per element).
//
// Bindings (group 0):
//   0: uniform DropoutParams
//   1: storage read       x [B, T, step_len] f32 (T = 1 when there is no time axis)
//   2: storage read_write y [B, T, step_len] f32
//
// Grid: one invocation per element. For the spatial modes the channel is
// the innermost axis (channels last), c = i % channels. The keep decision
// is keep_unit(seed, threshold, b, t', unit) with t' = 0 for mode 1, the same
// hash as src/rng.rs, so the CPU reference draws the same mask.

struct DropoutParams {
    batch: u32,
    steps: u32,
    step_len: u32,
    channels: u32,
    // 0: per (b, t, channel); 1: per (b, channel); 2: per element.
    mode: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
    groups_x: u32,
    // Index of this slice's first sample in the whole batch (see src/gpu/scheduler.rs).
    sample_offset: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: DropoutParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_index(gid, p.groups_x, WG);
    if (i >= p.batch * p.steps * p.step_len) {
        return;
    }
    let e = i % p.step_len;
    let t = (i / p.step_len) % p.steps;
    let b = i / (p.step_len * p.steps) + p.sample_offset;
    var kept: bool;
    if (p.mode == 0u) {
        kept = keep_unit(p.seed, p.threshold, b, t, e % p.channels);
    } else if (p.mode == 1u) {
        kept = keep_unit(p.seed, p.threshold, b, 0u, e % p.channels);
    } else {
        kept = keep_unit(p.seed, p.threshold, b, t, e);
    }
    y[i] = select(0.0, x[i] * p.scale, kept);
}
