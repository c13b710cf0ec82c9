// Time-batched Conv2D: all B * T frames in one dispatch, bias and activation fused.
//
// Bindings (group 0):
//   0: uniform ConvParams
//   1: storage read       x      [N, H, W, Cin] f32, N = B * T frames
//   2: storage read       kernel [KH, KW, Cin, Cout] f32 (Keras layout)
//   3: storage read       bias   [Cout] f32 (ignored when has_bias = 0)
//   4: storage read_write y      [N, OH, OW, Cout] f32
//
// Grid: one invocation per output element, flat index over N*OH*OW*Cout,
// laid out over (groups_x, groups_y) workgroups of WG invocations.
// One invocation computes y[n, oy, ox, co] = act(bias[co] +
//   sum_{ky,kx,ci} x[n, oy*SH + ky*DH - PT, ox*SW + kx*DW - PL, ci] * kernel[ky, kx, ci, co]),
// skipping taps that fall in the padding (Keras's 'same' zero padding).

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
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = flat_index(gid, p.groups_x, WG);
    let total = p.n * p.oh * p.ow * p.cout;
    if (idx >= total) {
        return;
    }
    let co = idx % p.cout;
    let pix = idx / p.cout;
    let ox = pix % p.ow;
    let oy = (pix / p.ow) % p.oh;
    let n = pix / (p.ow * p.oh);

    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        // Signed arithmetic: taps above or left of the frame are padding.
        let iy = i32(oy * p.sh + ky * p.dh) - i32(p.pad_top);
        if (iy < 0 || iy >= i32(p.h)) {
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            let ix = i32(ox * p.sw + kx * p.dw) - i32(p.pad_left);
            if (ix < 0 || ix >= i32(p.w)) {
                continue;
            }
            let xbase = ((n * p.h + u32(iy)) * p.w + u32(ix)) * p.cin;
            let kbase = ((ky * p.kw + kx) * p.cin) * p.cout + co;
            for (var ci = 0u; ci < p.cin; ci = ci + 1u) {
                acc = acc + x[xbase + ci] * kernel[kbase + ci * p.cout];
            }
        }
    }
    if (p.has_bias != 0u) {
        acc = acc + bias[co];
    }
    y[idx] = activate(acc, p.act);
}
