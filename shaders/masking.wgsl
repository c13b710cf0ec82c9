// Masking: per-timestep mask and zeroing of masked timesteps.
//
// Bindings (group 0):
//   0: uniform MaskParams
//   1: storage read       x     [frames * frame_len] f32, frames = B * T
//   2: storage read_write mask  [frames] u32 (1 = valid step, 0 = masked)
//   3: storage read_write y     [frames * frame_len] f32
//
// Entry `timestep_mask`: one invocation per frame; the frame is masked when
// every one of its values equals mask_value exactly (-0.0 equals 0.0; NaN
// never equals, so a NaN keeps the frame valid).
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
@group(0) @binding(2) var<storage, read_write> mask: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn timestep_mask(@builtin(global_invocation_id) gid: vec3<u32>) {
    let f = flat_index(gid, p.groups_x, WG);
    if (f >= p.frames) {
        return;
    }
    let base = f * p.frame_len;
    var valid = 0u;
    // Two nested loops: llvmpipe stops any single loop after 65535 iterations.
    for (var i0 = 0u; i0 < p.frame_len && valid == 0u; i0 = i0 + LOOP_BLOCK) {
        let i1 = min(i0 + LOOP_BLOCK, p.frame_len);
        for (var i = i0; i < i1; i = i + 1u) {
            // `!=` is true for NaN, as in Keras's not_equal.
            if (x[base + i] != p.mask_value) {
                valid = 1u;
                break;
            }
        }
    }
    mask[f] = valid;
}

@compute @workgroup_size(WG)
fn apply_mask(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_index(gid, p.groups_x, WG);
    if (i >= p.frames * p.frame_len) {
        return;
    }
    let f = i / p.frame_len;
    y[i] = select(0.0, x[i], mask[f] != 0u);
}
