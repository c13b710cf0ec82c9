// Row-wise softmax over the last axis, in place.
//
// Bindings (group 0):
//   0: uniform SoftmaxParams
//   1: storage read_write y [rows, cols] f32
//
// Grid: one invocation per row. Subtracting the row maximum keeps exp in
// range, so logits of magnitude 1000 give no overflow and no NaN.

struct SoftmaxParams {
    rows: u32,
    cols: u32,
    groups_x: u32,
    _pad0: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: SoftmaxParams;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = flat_index(gid, p.groups_x, WG);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var m = y[base];
    for (var j = 1u; j < p.cols; j = j + 1u) {
        m = max(m, y[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        let e = exp(y[base + j] - m);
        y[base + j] = e;
        s = s + e;
    }
    for (var j = 0u; j < p.cols; j = j + 1u) {
        y[base + j] = y[base + j] / s;
    }
}
