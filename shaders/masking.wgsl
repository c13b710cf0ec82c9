// Masking: per-timestep mask and zeroing of masked timesteps.
//
// Bindings (group 0):
//   0: uniform MaskParams
//   1: storage read       x     [frames * frame_len] f32, frames = B * T
//   2: storage read_write mask  [frames] u32 (1 = valid step, 0 = masked)
//   3: storage read_write y     [frames * frame_len] f32
//
// Entry `clear_mask`: one invocation per frame, zeroes its mask word.
// Entry `timestep_mask`: one invocation per block of MASK_BLOCK values of a
// frame; a value differing from mask_value sets the frame valid (atomicOr).
// A frame stays masked when every value equals mask_value exactly (-0.0
// equals 0.0; NaN never equals, so a NaN keeps the frame valid).
// Entry `apply_mask`: one invocation per element; masked frames become 0.

struct MaskParams {
    frames: u32,
    frame_len: u32,
    mask_value: f32,
    groups_x: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MaskParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mask: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Values one invocation of `timestep_mask` scans: frames are split into
// blocks so no invocation loops long (llvmpipe ends an invocation's loops
// after 65535 iterations in all) and long frames spread over many lanes.
const MASK_BLOCK: u32 = 1024u;

@compute @workgroup_size(WG)
fn clear_mask(@builtin(global_invocation_id) gid: vec3<u32>) {
    let f = flat_index(gid, p.groups_x, WG);
    if (f >= p.frames) {
        return;
    }
    atomicStore(&mask[f], 0u);
}

@compute @workgroup_size(WG)
fn timestep_mask(@builtin(global_invocation_id) gid: vec3<u32>) {
    let blocks = (p.frame_len + MASK_BLOCK - 1u) / MASK_BLOCK;
    let i = flat_index(gid, p.groups_x, WG);
    if (i >= p.frames * blocks) {
        return;
    }
    let f = i / blocks;
    let start = f * p.frame_len + (i % blocks) * MASK_BLOCK;
    let end = min(start + MASK_BLOCK, (f + 1u) * p.frame_len);
    for (var k = start; k < end; k = k + 1u) {
        // `!=` is true for NaN, as in Keras's not_equal.
        if (x[k] != p.mask_value) {
            atomicOr(&mask[f], 1u);
            break;
        }
    }
}

@compute @workgroup_size(WG)
fn apply_mask(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_index(gid, p.groups_x, WG);
    if (i >= p.frames * p.frame_len) {
        return;
    }
    let f = i / p.frame_len;
    y[i] = select(0.0, x[i], atomicLoad(&mask[f]) != 0u);
}
