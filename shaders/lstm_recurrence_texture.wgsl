// Masked LSTM recurrence over all timesteps in one persistent dispatch,
// reading the recurrent kernel from a texture and everything else as vec4:
// the variant for U a multiple of 4. Same semantics as lstm_recurrence.wgsl:
//   z = xproj[b, t] + h @ R;  i = ra(z_i), f = ra(z_f), g = act(z_c), o = ra(z_o)
//   c' = f * c + i * g;  h' = o * act(c')
// with Keras's gate order i, f, c, o. At a masked step (mask[b, t] = 0) h and
// c carry over and the output repeats the previous output (zeros before the
// first valid step), or is zero when zero_output_for_mask is set.
//
// Why: on lavapipe each storage load is a loop over the SIMD lanes (~150
// cycles per vec4 and lane, about as much for a scalar), a texel fetch a
// gather (~20). Here an invocation handles four gate columns at once: per
// step it reads h four units per load and R one texel (four gate columns of
// one row) per unit, instead of two scalar loads per unit and column.
//
// Bindings (group 0):
//   0: uniform LstmTexParams
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
// Grid: one workgroup of WG invocations per sample; the invocations split
// the U gate quads, then the U / 4 unit quads, with a barrier between phases.

struct LstmTexParams {
    batch: u32,
    steps: u32,
    units: u32,
    act: u32,
    rec_act: u32,
    zero_output_for_mask: u32,
    write_seq: u32,
    tex_shift: u32,
}

// The timesteps this dispatch covers, and the grid width in workgroups.
// Long sequences run as several dispatches over consecutive windows:
// llvmpipe ends a shader invocation's loops after 65535 iterations in all.
struct TimeWindow {
    t_begin: u32,
    t_end: u32,
    groups_x: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: LstmTexParams;
@group(0) @binding(1) var<storage, read> xproj: array<vec4<f32>>;
@group(0) @binding(2) var rkern: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> seq: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> last: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> cseq: array<vec4<f32>>;
@group(0) @binding(8) var<uniform> win: TimeWindow;

fn rtexel(i: u32) -> vec4<f32> {
    let m = (1u << p.tex_shift) - 1u;
    return textureLoad(rkern, vec2<u32>(i & m, i >> p.tex_shift), 0);
}

fn act4(v: vec4<f32>, a: u32) -> vec4<f32> {
    return vec4<f32>(activate(v.x, a), activate(v.y, a), activate(v.z, a), activate(v.w, a));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = wid.x + wid.y * win.groups_x;
    if (b >= p.batch) {
        return;
    }
    let u = p.units;
    let uq = u / 4u;
    let sbase = b * 7u * uq;
    let h_at = sbase;
    let c_at = sbase + uq;
    let z_at = sbase + 2u * uq;
    let y_at = sbase + 6u * uq;

    if (win.t_begin == 0u) {
        for (var j = lid.x; j < uq; j = j + WG) {
            state[h_at + j] = vec4<f32>(0.0);
            state[c_at + j] = vec4<f32>(0.0);
            state[y_at + j] = vec4<f32>(0.0);
        }
    }
    storageBarrier();

    for (var t = win.t_begin; t < win.t_end; t = t + 1u) {
        let bt = b * p.steps + t;
        let valid = mask[bt] != 0u;
        if (valid) {
            // Gate quad g: columns 4g .. 4g + 3 of z (U quads in all).
            for (var g = lid.x; g < u; g = g + WG) {
                var acc = xproj[bt * u + g];
                for (var k4 = 0u; k4 < uq; k4 = k4 + 1u) {
                    let hv = state[h_at + k4];
                    let r = 4u * k4 * u + g;
                    acc = acc + hv.x * rtexel(r) + hv.y * rtexel(r + u) + hv.z * rtexel(r + 2u * u)
                        + hv.w * rtexel(r + 3u * u);
                }
                state[z_at + g] = acc;
            }
        }
        // Every invocation has read h before any writes the new h.
        storageBarrier();
        for (var j = lid.x; j < uq; j = j + WG) {
            if (valid) {
                let ig = act4(state[z_at + j], p.rec_act);
                let fg = act4(state[z_at + uq + j], p.rec_act);
                let gg = act4(state[z_at + 2u * uq + j], p.act);
                let og = act4(state[z_at + 3u * uq + j], p.rec_act);
                let c_new = fg * state[c_at + j] + ig * gg;
                let h_new = og * act4(c_new, p.act);
                state[c_at + j] = c_new;
                state[h_at + j] = h_new;
                state[y_at + j] = h_new;
            } else if (p.zero_output_for_mask != 0u) {
                state[y_at + j] = vec4<f32>(0.0);
            }
            let o = bt * uq + j;
            if (p.write_seq != 0u) {
                seq[o] = state[y_at + j];
            }
            cseq[o] = state[c_at + j];
        }
        storageBarrier();
    }
    for (var j = lid.x; j < uq; j = j + WG) {
        last[b * uq + j] = state[y_at + j];
    }
}
