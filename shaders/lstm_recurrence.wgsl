// Masked LSTM recurrence over all timesteps in one persistent dispatch.
//
// The input projection x_t @ kernel + bias for every timestep was computed
// before by one GEMM ([B*T, F] x [F, 4U]); this kernel adds h_{t-1} @ R and
// applies the cell, step after step, with Keras's gate order i, f, c, o:
//   z = xproj[b, t] + h @ R;  i = ra(z_i), f = ra(z_f), g = act(z_c), o = ra(z_o)
//   c' = f * c + i * g;  h' = o * act(c')
// where act is the cell activation (tanh) and ra the recurrent one (sigmoid).
// At a masked step (mask[b, t] = 0) h and c carry over and the output
// repeats the previous output (zeros before the first valid step), or is
// zero when zero_output_for_mask is set.
//
// Bindings (group 0):
//   0: uniform LstmParams
//   1: storage read       xproj  [B, T, 4U] f32
//   2: storage read       rkern  [U, 4U] f32 (Keras recurrent_kernel)
//   3: storage read       mask   [B, T] u32 (1 = valid)
//   4: storage read_write state  [B, 7U] f32: h (U), c (U), z (4U), y (U)
//   5: storage read_write seq    [B, T, U] f32 outputs per step (return_sequences)
//   6: storage read_write last   [B, U] f32 final output
//   7: storage read_write cseq   [B, T, U] f32 cell state per step (for verification)
//   8: uniform TimeWindow: the steps of this dispatch (state is zeroed at t = 0)
//
// Grid: one workgroup of WG invocations per sample; the invocations split
// the 4U gate columns, then the U units, with a barrier between phases.
// Samples are independent, so no synchronisation crosses workgroups.

struct LstmParams {
    batch: u32,
    steps: u32,
    units: u32,
    act: u32,
    rec_act: u32,
    zero_output_for_mask: u32,
    write_seq: u32,
    _pad0: u32,
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

@group(0) @binding(0) var<uniform> p: LstmParams;
@group(0) @binding(1) var<storage, read> xproj: array<f32>;
@group(0) @binding(2) var<storage, read> rkern: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> seq: array<f32>;
@group(0) @binding(6) var<storage, read_write> last: array<f32>;
@group(0) @binding(7) var<storage, read_write> cseq: array<f32>;
@group(0) @binding(8) var<uniform> win: TimeWindow;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = wid.x + wid.y * win.groups_x;
    if (b >= p.batch) {
        return;
    }
    let u = p.units;
    let g4 = 4u * u;
    let sbase = b * 7u * u;
    let h_at = sbase;
    let c_at = sbase + u;
    let z_at = sbase + 2u * u;
    let y_at = sbase + 6u * u;

    if (win.t_begin == 0u) {
        for (var j = lid.x; j < u; j = j + WG) {
            state[h_at + j] = 0.0;
            state[c_at + j] = 0.0;
            state[y_at + j] = 0.0;
        }
    }
    storageBarrier();

    for (var t = win.t_begin; t < win.t_end; t = t + 1u) {
        let bt = b * p.steps + t;
        let valid = mask[bt] != 0u;
        if (valid) {
            let xbase = bt * g4;
            for (var j = lid.x; j < g4; j = j + WG) {
                var acc = xproj[xbase + j];
                for (var k = 0u; k < u; k = k + 1u) {
                    acc = acc + state[h_at + k] * rkern[k * g4 + j];
                }
                state[z_at + j] = acc;
            }
        }
        // Every invocation has read h before any writes the new h.
        storageBarrier();
        for (var j = lid.x; j < u; j = j + WG) {
            if (valid) {
                let ig = activate(state[z_at + j], p.rec_act);
                let fg = activate(state[z_at + u + j], p.rec_act);
                let gg = activate(state[z_at + 2u * u + j], p.act);
                let og = activate(state[z_at + 3u * u + j], p.rec_act);
                let c_new = fg * state[c_at + j] + ig * gg;
                let h_new = og * activate(c_new, p.act);
                state[c_at + j] = c_new;
                state[h_at + j] = h_new;
                state[y_at + j] = h_new;
            } else if (p.zero_output_for_mask != 0u) {
                state[y_at + j] = 0.0;
            }
            let o = bt * u + j;
            if (p.write_seq != 0u) {
                seq[o] = state[y_at + j];
            }
            cseq[o] = state[c_at + j];
        }
        storageBarrier();
    }
    for (var j = lid.x; j < u; j = j + WG) {
        last[b * u + j] = state[y_at + j];
    }
}
