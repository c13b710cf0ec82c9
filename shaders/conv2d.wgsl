// Time-batched Conv2D: all B * T frames in one dispatch, bias and activation
// fused, and a following SpatialDropout in training mode (binding 6).
//
// Bindings (group 0):
//   0: uniform ConvParams
//   1: storage read       x      [N, H, W, Cin] f32, N = B * T frames
//   2: storage read       kernel [KH, KW, Cin, Cout] f32 (Keras layout)
//   3: storage read       bias   [Cout] f32 (ignored when has_bias = 0)
//   4: storage read_write y      [N, OH, OW, Cout] f32
//   5: storage read       mask   [N] u32 timestep mask, 1 = valid frame
//                                (read only when skip_masked = 1)
//   6: uniform DropParams: the fused SpatialDropout (training mode)
//
// Grid: one workgroup per (output row, block of WG output channels), flat
// over (groups_x, groups_y) workgroups: workgroup f covers channel block
// f % co_blocks of output row f / co_blocks (row = n * OH + oy). Invocation
// lid computes channel co = block * WG + lid for every pixel of the row, PX
// pixels at a time in registers:
//   y[n, oy, ox, co] = act(bias[co] +
//     sum_{ky,kx,ci} x[n, oy*SH + ky*DH - PT, ox*SW + kx*DW - PL, ci] * kernel[ky, kx, ci, co])
// with taps in the padding contributing zero (Keras's 'same' zero padding).
// With skip_masked = 1, frames whose mask word is 0 are not convolved: their
// outputs are written as 0 (the planner sets it only where no later layer
// can see a masked frame's value; see src/gpu/scheduler.rs).
//
// Why this shape: on CPU adapters (lavapipe) a load whose address is the
// same for every invocation of a workgroup is one scalar load, while one
// that differs per invocation is a gather. Here the input address depends
// only on the workgroup (the row) and the loop counters, so input values
// are broadcast; the kernel address differs per invocation but is loaded
// once per tap and reused for PX pixels. On GPUs the kernel loads are
// coalesced across invocations and the input loads are broadcasts.
// Row segments whose taps all lie inside the frame take a path without
// bounds checks; only segments touching the padding check each tap.

struct ConvParams {
    n: u32,
    h: u32,
    w: u32,
    cin: u32,
    oh: u32,
    ow: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    pad_top: u32,
    pad_left: u32,
    act: u32,
    has_bias: u32,
    groups_x: u32,
    // ceil(cout / WG): channel blocks per output row.
    co_blocks: u32,
    // 1: frames whose mask word is 0 are written as zeros, not convolved.
    skip_masked: u32,
}

// Output pixels per invocation held in registers.
const PX: u32 = 8u;

override WG: u32 = 32u;

// The fused SpatialDropout of a conv followed by one in training mode
// (DropoutParams of src/gpu/kernels.rs, as in dropout.wgsl): channel co of
// frame n = b * steps + t is kept iff keep_unit(seed, threshold,
// b + sample_offset, t (0 when mode = 1), co), kept values times scale.
// threshold = 0 (no dropout fused) leaves the values untouched.
struct DropParams {
    batch: u32,
    steps: u32,
    step_len: u32,
    channels: u32,
    mode: u32,
    seed: u32,
    threshold: u32,
    scale: f32,
    groups_x: u32,
    sample_offset: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> mask: array<u32>;
@group(0) @binding(6) var<uniform> d: DropParams;

// True when the fused dropout keeps channel co of frame n.
fn kept(n: u32, co: u32) -> bool {
    if (d.threshold == 0u) {
        return true;
    }
    let t = select(n % d.steps, 0u, d.mode == 1u);
    return keep_unit(d.seed, d.threshold, n / d.steps + d.sample_offset, t, co);
}

// Activation, then the fused dropout's scale or zero.
fn epilogue(v: f32, keep: bool) -> f32 {
    let a = activate(v, p.act);
    if (d.threshold == 0u) {
        return a;
    }
    return select(0.0, a * d.scale, keep);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let flat = wid.x + wid.y * p.groups_x;
    let row = flat / p.co_blocks;
    if (row >= p.n * p.oh) {
        return;
    }
    let co_raw = (flat % p.co_blocks) * WG + lid.x;
    let co_ok = co_raw < p.cout;
    // Clamped so that the loads of spare invocations stay in bounds.
    let co = min(co_raw, p.cout - 1u);
    let oy = row % p.oh;
    let n = row / p.oh;
    if (p.skip_masked != 0u && mask[n] == 0u) {
        if (co_ok) {
            let ybase = row * p.ow * p.cout + co;
            for (var ox = 0u; ox < p.ow; ox = ox + 1u) {
                y[ybase + ox * p.cout] = 0.0;
            }
        }
        return;
    }

    let keep = kept(n, co);
    var b0 = 0.0;
    if (p.has_bias != 0u) {
        b0 = bias[co];
    }
    let cin = p.cin;
    let cout = p.cout;
    // Input step between neighbouring output pixels, and between kx taps.
    let px_step = p.sw * cin;
    let kx_step = p.dw * cin;
    let frame = n * p.h;
    // First output column whose taps lie right of the left padding, and the
    // last + 1 whose taps end inside the frame.
    let ox_lo = (p.pad_left + p.sw - 1u) / p.sw;
    let reach = (p.kw - 1u) * p.dw;
    var ox_hi = 0u;
    if (p.w + p.pad_left >= reach + 1u) {
        ox_hi = min((p.w + p.pad_left - reach - 1u) / p.sw + 1u, p.ow);
    }

    for (var ox0 = 0u; ox0 < p.ow; ox0 = ox0 + PX) {
        var acc: array<f32, 8>;
        for (var q = 0u; q < PX; q = q + 1u) {
            acc[q] = b0;
        }
        let interior = ox0 >= ox_lo && ox0 + PX <= ox_hi;
        for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
            // Signed arithmetic: taps above the frame are padding.
            let iy = i32(oy * p.sh + ky * p.dh) - i32(p.pad_top);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            let xrow = (frame + u32(iy)) * p.w;
            if (interior) {
                // Every tap of these PX pixels is inside the frame.
                var xb = (xrow + ox0 * p.sw - p.pad_left) * cin;
                var kb = (ky * p.kw) * cin * cout + co;
                for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
                    for (var ci = 0u; ci < cin; ci = ci + 1u) {
                        let wv = kernel[kb + ci * cout];
                        let xa = xb + ci;
                        for (var q = 0u; q < PX; q = q + 1u) {
                            acc[q] = acc[q] + x[xa + q * px_step] * wv;
                        }
                    }
                    xb = xb + kx_step;
                    kb = kb + cin * cout;
                }
            } else {
                for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
                    let kb = ((ky * p.kw + kx) * cin) * cout + co;
                    for (var q = 0u; q < PX; q = q + 1u) {
                        let ix = i32((ox0 + q) * p.sw + kx * p.dw) - i32(p.pad_left);
                        if (ix < 0 || ix >= i32(p.w)) {
                            continue;
                        }
                        let xa = (xrow + u32(ix)) * cin;
                        var s = 0.0;
                        for (var ci = 0u; ci < cin; ci = ci + 1u) {
                            s = s + x[xa + ci] * kernel[kb + ci * cout];
                        }
                        acc[q] = acc[q] + s;
                    }
                }
            }
        }
        if (co_ok) {
            let ybase = (row * p.ow + ox0) * cout + co;
            for (var q = 0u; q < PX; q = q + 1u) {
                if (ox0 + q < p.ow) {
                    y[ybase + q * cout] = epilogue(acc[q], keep);
                }
            }
        }
    }
}
