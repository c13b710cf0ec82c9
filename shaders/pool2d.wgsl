// MaxPooling2D / AveragePooling2D over all B * T frames in one dispatch.
//
// Bindings (group 0):
//   0: uniform PoolParams
//   1: storage read       x [N, H, W, C] f32
//   2: storage read_write y [N, OH, OW, C] f32
//
// Grid: one invocation per output element (flat over N*OH*OW*C).
// Max pooling ignores padded taps (Keras pads with -inf); average pooling
// divides by the number of taps inside the frame (padding is not counted).

struct PoolParams {
    n: u32,
    h: u32,
    w: u32,
    c: u32,
    oh: u32,
    ow: u32,
    ph: u32,
    pw: u32,
    sh: u32,
    sw: u32,
    pad_top: u32,
    pad_left: u32,
    is_max: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = flat_index(gid, p.groups_x, WG);
    if (idx >= p.n * p.oh * p.ow * p.c) {
        return;
    }
    let ch = idx % p.c;
    let pix = idx / p.c;
    let ox = pix % p.ow;
    let oy = (pix / p.ow) % p.oh;
    let n = pix / (p.ow * p.oh);

    var best = 0.0;
    var sum = 0.0;
    var count = 0u;
    for (var ky = 0u; ky < p.ph; ky = ky + 1u) {
        let iy = i32(oy * p.sh + ky) - i32(p.pad_top);
        if (iy < 0 || iy >= i32(p.h)) {
            continue;
        }
        for (var kx = 0u; kx < p.pw; kx = kx + 1u) {
            let ix = i32(ox * p.sw + kx) - i32(p.pad_left);
            if (ix < 0 || ix >= i32(p.w)) {
                continue;
            }
            let v = x[((n * p.h + u32(iy)) * p.w + u32(ix)) * p.c + ch];
            if (count == 0u || v > best) {
                best = v;
            }
            sum = sum + v;
            count = count + 1u;
        }
    }
    if (p.is_max != 0u) {
        y[idx] = best;
    } else {
        y[idx] = sum / f32(max(count, 1u));
    }
}
