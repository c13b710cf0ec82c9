// Time-batched Conv2D reading its input and kernel from textures: the
// variant for CPU adapters (lavapipe), chosen when Cout is a multiple of 4.
// Bias and activation are fused, and a following SpatialDropout in training
// mode (binding 6).
//
// Why textures: lavapipe runs every storage-buffer load as a loop over the
// SIMD lanes with a branch per lane (~150 cycles per vec4 and lane measured),
// a texel fetch as a branch-free gather (~20). Each invocation computes
// PX = 8 neighbouring output pixels of one row x CB output channels in
// registers, from 8 input fetches and CB / 4 kernel fetches per tap: CB = 16
// in entry `main` (Cout a multiple of 16), CB = 8 in `main8` (other Cout).
//
// Bindings (group 0):
//   0: uniform ConvParams
//   1: texture            x      r32float: input [N, H, W, Cin] flat, texel
//                                f at (f & (2^tex_shift - 1), f >> tex_shift)
//   2: texture            kernel rgba32float: [KH, KW, Cin, Cout] flat, four
//                                output channels per texel, same layout
//   3: storage read       bias   [Cout] f32 (ignored when has_bias = 0)
//   4: storage read_write y      [N, OH, OW, Cout] f32, N = B * T frames
//   5: storage read       mask   [N] u32 timestep mask, 1 = valid frame
//                                (read only when skip_masked = 1)
//   6: uniform DropParams: the fused SpatialDropout (training mode)
//
// Grid: flat over N * OH * segs * co_blocks invocations (flat_index with
// groups_x), segs = ceil(OW / 8), co_blocks = ceil(Cout / CB); invocation
// i covers channel block i % co_blocks, pixel segment (i / co_blocks) % segs
// of output row i / (co_blocks * segs) (row = n * OH + oy):
//   y[n, oy, ox, co] = act(bias[co] +
//     sum_{ky,kx,ci} x[n, oy*SH + ky*DH - PT, ox*SW + kx*DW - PL, ci] * kernel[ky, kx, ci, co])
// with taps in the padding contributing zero (Keras's 'same' zero padding).
// With skip_masked = 1, frames whose mask word is 0 are not convolved: their
// outputs are written as 0 (the planner sets it only where no later layer
// can see a masked frame's value; see src/gpu/scheduler.rs).

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
    // ceil(Cout / CB): channel blocks per pixel segment.
    co_blocks: u32,
    // 1: frames whose mask word is 0 are written as zeros, not convolved.
    skip_masked: u32,
    // ceil(OW / 8): pixel segments per output row.
    segs: u32,
    // log2 of the textures' width in texels.
    tex_shift: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

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
@group(0) @binding(1) var x: texture_2d<f32>;
@group(0) @binding(2) var kernel: texture_2d<f32>;
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

fn fetch(t: texture_2d<f32>, i: u32) -> vec4<f32> {
    let mask = (1u << p.tex_shift) - 1u;
    return textureLoad(t, vec2<u32>(i & mask, i >> p.tex_shift), 0);
}

// Input value at row base `xrow` (flat index of (n, iy, 0, 0)) and column
// ix, channel ci; zero in the padding.
fn xval(xrow: u32, row_ok: bool, ix: i32, ci: u32) -> f32 {
    let inside = row_ok && ix >= 0 && ix < i32(p.w);
    let col = u32(clamp(ix, 0, i32(p.w) - 1));
    let v = fetch(x, xrow + col * p.cin + ci).x;
    return select(0.0, v, inside);
}

// Bias of output channel co, zero past Cout or without bias.
fn bias_of(co: u32) -> f32 {
    if (p.has_bias == 0u || co >= p.cout) {
        return 0.0;
    }
    return bias[co];
}

fn bias4(co: u32) -> vec4<f32> {
    return vec4<f32>(bias_of(co), bias_of(co + 1u), bias_of(co + 2u), bias_of(co + 3u));
}

// The fused dropout's keep decisions for channels co .. co + 3 of frame n.
fn kept4(n: u32, co: u32) -> vec4<bool> {
    return vec4<bool>(kept(n, co), kept(n, co + 1u), kept(n, co + 2u), kept(n, co + 3u));
}

fn store(row: u32, ox: u32, co: u32, v: vec4<f32>, k: vec4<bool>) {
    if (ox >= p.ow) {
        return;
    }
    let o = (row * p.ow + ox) * p.cout + co;
    // Cout is a multiple of 4, so a quad is either wholly inside or outside.
    if (co < p.cout) {
        y[o] = epilogue(v.x, k.x);
        y[o + 1u] = epilogue(v.y, k.y);
        y[o + 2u] = epilogue(v.z, k.z);
        y[o + 3u] = epilogue(v.w, k.w);
    }
}

// True when frame n is masked and skipped: its CB channels of pixels
// ox0 .. ox0 + 7 of row `row` are then written as zeros.
fn skipped(n: u32, row: u32, ox0: u32, co0: u32, cb: u32) -> bool {
    if (p.skip_masked == 0u || mask[n] != 0u) {
        return false;
    }
    for (var q = 0u; q < 8u; q = q + 1u) {
        let ox = ox0 + q;
        if (ox < p.ow) {
            let o = (row * p.ow + ox) * p.cout;
            for (var c = co0; c < min(co0 + cb, p.cout); c = c + 1u) {
                y[o + c] = 0.0;
            }
        }
    }
    return true;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = flat_index(gid, p.groups_x, WG);
    let per_row = p.co_blocks * p.segs;
    let row = idx / per_row;
    if (row >= p.n * p.oh) {
        return;
    }
    let rest = idx - row * per_row;
    let seg = rest / p.co_blocks;
    let cb = rest - seg * p.co_blocks;
    let oy = row % p.oh;
    let n = row / p.oh;
    let ox0 = seg * 8u;
    let co0 = cb * 16u;
    if (skipped(n, row, ox0, co0, 16u)) {
        return;
    }
    let cq = p.cout / 4u;
    // Kernel texel of channel quad j: clamped so spare quads fetch in bounds.
    let kq0 = min(co0 / 4u + 0u, cq - 1u);
    let kq1 = min(co0 / 4u + 1u, cq - 1u);
    let kq2 = min(co0 / 4u + 2u, cq - 1u);
    let kq3 = min(co0 / 4u + 3u, cq - 1u);
    let bias0 = bias4(co0 + 0u);
    let bias1 = bias4(co0 + 4u);
    let bias2 = bias4(co0 + 8u);
    let bias3 = bias4(co0 + 12u);
    var a0_0 = bias0;
    var a0_1 = bias1;
    var a0_2 = bias2;
    var a0_3 = bias3;
    var a1_0 = bias0;
    var a1_1 = bias1;
    var a1_2 = bias2;
    var a1_3 = bias3;
    var a2_0 = bias0;
    var a2_1 = bias1;
    var a2_2 = bias2;
    var a2_3 = bias3;
    var a3_0 = bias0;
    var a3_1 = bias1;
    var a3_2 = bias2;
    var a3_3 = bias3;
    var a4_0 = bias0;
    var a4_1 = bias1;
    var a4_2 = bias2;
    var a4_3 = bias3;
    var a5_0 = bias0;
    var a5_1 = bias1;
    var a5_2 = bias2;
    var a5_3 = bias3;
    var a6_0 = bias0;
    var a6_1 = bias1;
    var a6_2 = bias2;
    var a6_3 = bias3;
    var a7_0 = bias0;
    var a7_1 = bias1;
    var a7_2 = bias2;
    var a7_3 = bias3;
    // Input column of pixel q at tap kx: ix0 + q * sw + kx * dw.
    let ix0 = i32(ox0 * p.sw) - i32(p.pad_left);
    let sw = i32(p.sw);
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.pad_top);
        let row_ok = iy >= 0 && iy < i32(p.h);
        let xrow = (n * p.h + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w * p.cin;
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            let ixk = ix0 + i32(kx * p.dw);
            for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
                let kt = ((ky * p.kw + kx) * p.cin + ci) * cq;
                let w0 = fetch(kernel, kt + kq0);
                let w1 = fetch(kernel, kt + kq1);
                let w2 = fetch(kernel, kt + kq2);
                let w3 = fetch(kernel, kt + kq3);
                let x0 = xval(xrow, row_ok, ixk + 0 * sw, ci);
                let x1 = xval(xrow, row_ok, ixk + 1 * sw, ci);
                let x2 = xval(xrow, row_ok, ixk + 2 * sw, ci);
                let x3 = xval(xrow, row_ok, ixk + 3 * sw, ci);
                let x4 = xval(xrow, row_ok, ixk + 4 * sw, ci);
                let x5 = xval(xrow, row_ok, ixk + 5 * sw, ci);
                let x6 = xval(xrow, row_ok, ixk + 6 * sw, ci);
                let x7 = xval(xrow, row_ok, ixk + 7 * sw, ci);
                a0_0 = a0_0 + x0 * w0;
                a0_1 = a0_1 + x0 * w1;
                a0_2 = a0_2 + x0 * w2;
                a0_3 = a0_3 + x0 * w3;
                a1_0 = a1_0 + x1 * w0;
                a1_1 = a1_1 + x1 * w1;
                a1_2 = a1_2 + x1 * w2;
                a1_3 = a1_3 + x1 * w3;
                a2_0 = a2_0 + x2 * w0;
                a2_1 = a2_1 + x2 * w1;
                a2_2 = a2_2 + x2 * w2;
                a2_3 = a2_3 + x2 * w3;
                a3_0 = a3_0 + x3 * w0;
                a3_1 = a3_1 + x3 * w1;
                a3_2 = a3_2 + x3 * w2;
                a3_3 = a3_3 + x3 * w3;
                a4_0 = a4_0 + x4 * w0;
                a4_1 = a4_1 + x4 * w1;
                a4_2 = a4_2 + x4 * w2;
                a4_3 = a4_3 + x4 * w3;
                a5_0 = a5_0 + x5 * w0;
                a5_1 = a5_1 + x5 * w1;
                a5_2 = a5_2 + x5 * w2;
                a5_3 = a5_3 + x5 * w3;
                a6_0 = a6_0 + x6 * w0;
                a6_1 = a6_1 + x6 * w1;
                a6_2 = a6_2 + x6 * w2;
                a6_3 = a6_3 + x6 * w3;
                a7_0 = a7_0 + x7 * w0;
                a7_1 = a7_1 + x7 * w1;
                a7_2 = a7_2 + x7 * w2;
                a7_3 = a7_3 + x7 * w3;
            }
        }
    }
    let k0 = kept4(n, co0 + 0u);
    let k1 = kept4(n, co0 + 4u);
    let k2 = kept4(n, co0 + 8u);
    let k3 = kept4(n, co0 + 12u);
    store(row, ox0 + 0u, co0 + 0u, a0_0, k0);
    store(row, ox0 + 0u, co0 + 4u, a0_1, k1);
    store(row, ox0 + 0u, co0 + 8u, a0_2, k2);
    store(row, ox0 + 0u, co0 + 12u, a0_3, k3);
    store(row, ox0 + 1u, co0 + 0u, a1_0, k0);
    store(row, ox0 + 1u, co0 + 4u, a1_1, k1);
    store(row, ox0 + 1u, co0 + 8u, a1_2, k2);
    store(row, ox0 + 1u, co0 + 12u, a1_3, k3);
    store(row, ox0 + 2u, co0 + 0u, a2_0, k0);
    store(row, ox0 + 2u, co0 + 4u, a2_1, k1);
    store(row, ox0 + 2u, co0 + 8u, a2_2, k2);
    store(row, ox0 + 2u, co0 + 12u, a2_3, k3);
    store(row, ox0 + 3u, co0 + 0u, a3_0, k0);
    store(row, ox0 + 3u, co0 + 4u, a3_1, k1);
    store(row, ox0 + 3u, co0 + 8u, a3_2, k2);
    store(row, ox0 + 3u, co0 + 12u, a3_3, k3);
    store(row, ox0 + 4u, co0 + 0u, a4_0, k0);
    store(row, ox0 + 4u, co0 + 4u, a4_1, k1);
    store(row, ox0 + 4u, co0 + 8u, a4_2, k2);
    store(row, ox0 + 4u, co0 + 12u, a4_3, k3);
    store(row, ox0 + 5u, co0 + 0u, a5_0, k0);
    store(row, ox0 + 5u, co0 + 4u, a5_1, k1);
    store(row, ox0 + 5u, co0 + 8u, a5_2, k2);
    store(row, ox0 + 5u, co0 + 12u, a5_3, k3);
    store(row, ox0 + 6u, co0 + 0u, a6_0, k0);
    store(row, ox0 + 6u, co0 + 4u, a6_1, k1);
    store(row, ox0 + 6u, co0 + 8u, a6_2, k2);
    store(row, ox0 + 6u, co0 + 12u, a6_3, k3);
    store(row, ox0 + 7u, co0 + 0u, a7_0, k0);
    store(row, ox0 + 7u, co0 + 4u, a7_1, k1);
    store(row, ox0 + 7u, co0 + 8u, a7_2, k2);
    store(row, ox0 + 7u, co0 + 12u, a7_3, k3);
}

// The same with 8 output channels per invocation, for Cout = 8, 24, ...
@compute @workgroup_size(WG)
fn main8(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = flat_index(gid, p.groups_x, WG);
    let per_row = p.co_blocks * p.segs;
    let row = idx / per_row;
    if (row >= p.n * p.oh) {
        return;
    }
    let rest = idx - row * per_row;
    let seg = rest / p.co_blocks;
    let cb = rest - seg * p.co_blocks;
    let oy = row % p.oh;
    let n = row / p.oh;
    let ox0 = seg * 8u;
    let co0 = cb * 8u;
    if (skipped(n, row, ox0, co0, 8u)) {
        return;
    }
    let cq = p.cout / 4u;
    // Kernel texel of channel quad j: clamped so spare quads fetch in bounds.
    let kq0 = min(co0 / 4u + 0u, cq - 1u);
    let kq1 = min(co0 / 4u + 1u, cq - 1u);
    let bias0 = bias4(co0 + 0u);
    let bias1 = bias4(co0 + 4u);
    var a0_0 = bias0;
    var a0_1 = bias1;
    var a1_0 = bias0;
    var a1_1 = bias1;
    var a2_0 = bias0;
    var a2_1 = bias1;
    var a3_0 = bias0;
    var a3_1 = bias1;
    var a4_0 = bias0;
    var a4_1 = bias1;
    var a5_0 = bias0;
    var a5_1 = bias1;
    var a6_0 = bias0;
    var a6_1 = bias1;
    var a7_0 = bias0;
    var a7_1 = bias1;
    // Input column of pixel q at tap kx: ix0 + q * sw + kx * dw.
    let ix0 = i32(ox0 * p.sw) - i32(p.pad_left);
    let sw = i32(p.sw);
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.pad_top);
        let row_ok = iy >= 0 && iy < i32(p.h);
        let xrow = (n * p.h + u32(clamp(iy, 0, i32(p.h) - 1))) * p.w * p.cin;
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            let ixk = ix0 + i32(kx * p.dw);
            for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
                let kt = ((ky * p.kw + kx) * p.cin + ci) * cq;
                let w0 = fetch(kernel, kt + kq0);
                let w1 = fetch(kernel, kt + kq1);
                let x0 = xval(xrow, row_ok, ixk + 0 * sw, ci);
                let x1 = xval(xrow, row_ok, ixk + 1 * sw, ci);
                let x2 = xval(xrow, row_ok, ixk + 2 * sw, ci);
                let x3 = xval(xrow, row_ok, ixk + 3 * sw, ci);
                let x4 = xval(xrow, row_ok, ixk + 4 * sw, ci);
                let x5 = xval(xrow, row_ok, ixk + 5 * sw, ci);
                let x6 = xval(xrow, row_ok, ixk + 6 * sw, ci);
                let x7 = xval(xrow, row_ok, ixk + 7 * sw, ci);
                a0_0 = a0_0 + x0 * w0;
                a0_1 = a0_1 + x0 * w1;
                a1_0 = a1_0 + x1 * w0;
                a1_1 = a1_1 + x1 * w1;
                a2_0 = a2_0 + x2 * w0;
                a2_1 = a2_1 + x2 * w1;
                a3_0 = a3_0 + x3 * w0;
                a3_1 = a3_1 + x3 * w1;
                a4_0 = a4_0 + x4 * w0;
                a4_1 = a4_1 + x4 * w1;
                a5_0 = a5_0 + x5 * w0;
                a5_1 = a5_1 + x5 * w1;
                a6_0 = a6_0 + x6 * w0;
                a6_1 = a6_1 + x6 * w1;
                a7_0 = a7_0 + x7 * w0;
                a7_1 = a7_1 + x7 * w1;
            }
        }
    }
    let k0 = kept4(n, co0 + 0u);
    let k1 = kept4(n, co0 + 4u);
    store(row, ox0 + 0u, co0 + 0u, a0_0, k0);
    store(row, ox0 + 0u, co0 + 4u, a0_1, k1);
    store(row, ox0 + 1u, co0 + 0u, a1_0, k0);
    store(row, ox0 + 1u, co0 + 4u, a1_1, k1);
    store(row, ox0 + 2u, co0 + 0u, a2_0, k0);
    store(row, ox0 + 2u, co0 + 4u, a2_1, k1);
    store(row, ox0 + 3u, co0 + 0u, a3_0, k0);
    store(row, ox0 + 3u, co0 + 4u, a3_1, k1);
    store(row, ox0 + 4u, co0 + 0u, a4_0, k0);
    store(row, ox0 + 4u, co0 + 4u, a4_1, k1);
    store(row, ox0 + 5u, co0 + 0u, a5_0, k0);
    store(row, ox0 + 5u, co0 + 4u, a5_1, k1);
    store(row, ox0 + 6u, co0 + 0u, a6_0, k0);
    store(row, ox0 + 6u, co0 + 4u, a6_1, k1);
    store(row, ox0 + 7u, co0 + 0u, a7_0, k0);
    store(row, ox0 + 7u, co0 + 4u, a7_1, k1);
}
