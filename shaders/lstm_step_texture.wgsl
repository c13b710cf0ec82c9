// Masked LSTM recurrence, one timestep per pair of dispatches: `gates` then
// `cell`, recorded T times. The variant beside the persistent
// lstm_recurrence_texture.wgsl for small batches: there one workgroup runs
// each sample's whole sequence, so B = 1 keeps one core (lavapipe) or one
// multiprocessor busy; here every step spreads B x U gate quads over many
// workgroups, at the price of two dispatches per step. Same semantics:
//   z = xproj[b, t] + h @ R;  i = ra(z_i), f = ra(z_f), g = act(z_c), o = ra(z_o)
//   c' = f * c + i * g;  h' = o * act(c')
// with Keras's gate order i, f, c, o. At a masked step (mask[b, t] = 0) h and
// c carry over and the output repeats the previous output (zeros before the
// first valid step), or is zero when zero_output_for_mask is set. U is a
// multiple of 4.
//
// Bindings (group 0; `gates` uses 0-4, `cell` 0 and 3-7):
//   0: uniform LstmStepParams (one per dispatch: `step` is the timestep)
//   1: storage read       xproj  [B, T, U] vec4 (the [B, T, 4U] f32 projection)
//   2: texture            rkern  rgba32float: Keras recurrent_kernel [U, 4U] as
//                                U x U texels row-major, texel t at
//                                (t & (2^tex_shift - 1), t >> tex_shift)
//   3: storage read       mask   [B, T] u32 (1 = valid)
//   4: storage read_write state  [B, 7U / 4] vec4: h (U), c (U), z (4U), y (U)
//   5: storage read_write seq    [B, T, U / 4] vec4 outputs per step
//   6: storage read_write last   [B, U / 4] vec4 final output
//   7: storage read_write cseq   [B, T, U / 4] vec4 cell state per step
//
// Grid: `gates` one invocation per (sample, gate quad), B * U in all;
// `cell` one per (sample, unit quad), B * U / 4; both flat (flat_index with
// groups_x). At step 0 the state is not read: h, c and y start at zero.

struct LstmStepParams {
    batch: u32,
    steps: u32,
    units: u32,
    act: u32,
    rec_act: u32,
    zero_output_for_mask: u32,
    write_seq: u32,
    tex_shift: u32,
    step: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: LstmStepParams;
@group(0) @binding(1) var<storage, read> xproj: array<vec4<f32>>;
@group(0) @binding(2) var rkern: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> seq: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> last: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> cseq: array<vec4<f32>>;

fn rtexel(i: u32) -> vec4<f32> {
    let m = (1u << p.tex_shift) - 1u;
    return textureLoad(rkern, vec2<u32>(i & m, i >> p.tex_shift), 0);
}

fn act4(v: vec4<f32>, a: u32) -> vec4<f32> {
    return vec4<f32>(activate(v.x, a), activate(v.y, a), activate(v.z, a), activate(v.w, a));
}

// z[b, 4g .. 4g + 3] = xproj[b, step, 4g .. 4g + 3] + h[b] @ R[:, 4g .. 4g + 3].
@compute @workgroup_size(WG)
fn gates(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_index(gid, p.groups_x, WG);
    let u = p.units;
    if (i >= p.batch * u) {
        return;
    }
    let b = i / u;
    let g = i - b * u;
    let bt = b * p.steps + p.step;
    if (mask[bt] == 0u) {
        // The cell update ignores z at a masked step.
        return;
    }
    let uq = u / 4u;
    let h_at = b * 7u * uq;
    var acc = xproj[bt * u + g];
    if (p.step > 0u) {
        for (var k4 = 0u; k4 < uq; k4 = k4 + 1u) {
            let hv = state[h_at + k4];
            let r = 4u * k4 * u + g;
            acc = acc + hv.x * rtexel(r) + hv.y * rtexel(r + u) + hv.z * rtexel(r + 2u * u)
                + hv.w * rtexel(r + 3u * u);
        }
    }
    state[h_at + 2u * uq + g] = acc;
}

// The cell update of unit quad j of sample b at this step.
@compute @workgroup_size(WG)
fn cell(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_index(gid, p.groups_x, WG);
    let uq = p.units / 4u;
    if (i >= p.batch * uq) {
        return;
    }
    let b = i / uq;
    let j = i - b * uq;
    let bt = b * p.steps + p.step;
    let h_at = b * 7u * uq + j;
    let c_at = h_at + uq;
    let z_at = b * 7u * uq + 2u * uq + j;
    let y_at = h_at + 6u * uq;
    let zero = vec4<f32>(0.0);
    let first = p.step == 0u;
    var h = select(state[h_at], zero, first);
    var c = select(state[c_at], zero, first);
    var y = select(state[y_at], zero, first);
    if (mask[bt] != 0u) {
        let ig = act4(state[z_at], p.rec_act);
        let fg = act4(state[z_at + uq], p.rec_act);
        let gg = act4(state[z_at + 2u * uq], p.act);
        let og = act4(state[z_at + 3u * uq], p.rec_act);
        c = fg * c + ig * gg;
        h = og * act4(c, p.act);
        y = h;
    } else if (p.zero_output_for_mask != 0u) {
        y = zero;
    }
    state[h_at] = h;
    state[c_at] = c;
    state[y_at] = y;
    let o = bt * uq + j;
    if (p.write_seq != 0u) {
        seq[o] = y;
    }
    cseq[o] = c;
    if (p.step + 1u == p.steps) {
        last[b * uq + j] = y;
    }
}
