// GEMM with 16x16 tiles staged in workgroup memory: the variant for real GPUs.
//
//   C[M, N] (=|+=) A[M, k_offset .. k_offset + k_len] x B[k_len, N] (+ bias), act on the last chunk
//
// Bindings (group 0): the same as matmul_register.wgsl.
//   0: uniform MatmulParams
//   1: storage read       a    [M, lda] f32
//   2: storage read       b    [k_len, N] f32
//   3: storage read       bias [N] f32
//   4: storage read_write c    [M, N] f32
//
// Grid: (ceil(N/16), ceil(M/16)) workgroups of 16x16 invocations; one
// invocation computes one element of C. groups_x is unused here (the grid
// is 2-D by construction; callers split M when it exceeds the limit).

struct MatmulParams {
    m: u32,
    n: u32,
    lda: u32,
    k_offset: u32,
    k_len: u32,
    first_chunk: u32,
    last_chunk: u32,
    has_bias: u32,
    act: u32,
    groups_x: u32,
    row_offset: u32,
    _pad1: u32,
}

const TILE: u32 = 16u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> tile_a: array<array<f32, 16>, 16>;
var<workgroup> tile_b: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row = p.row_offset + wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    var acc = 0.0;
    let tiles = (p.k_len + TILE - 1u) / TILE;
    // Two nested loops: llvmpipe stops any single loop after 65535 iterations.
    for (var t0 = 0u; t0 < tiles; t0 = t0 + LOOP_BLOCK) {
    let t1 = min(t0 + LOOP_BLOCK, tiles);
    for (var t = t0; t < t1; t = t + 1u) {
        let ka = t * TILE + lid.x;
        let kb = t * TILE + lid.y;
        var av = 0.0;
        if (row < p.m && ka < p.k_len) {
            av = a[row * p.lda + p.k_offset + ka];
        }
        var bv = 0.0;
        if (col < p.n && kb < p.k_len) {
            bv = b[kb * p.n + col];
        }
        tile_a[lid.y][lid.x] = av;
        tile_b[lid.y][lid.x] = bv;
        workgroupBarrier();
        for (var k = 0u; k < TILE; k = k + 1u) {
            acc = acc + tile_a[lid.y][k] * tile_b[k][lid.x];
        }
        workgroupBarrier();
    }
    }
    if (row >= p.m || col >= p.n) {
        return;
    }
    let o = row * p.n + col;
    var v = acc;
    if (p.first_chunk != 0u) {
        if (p.has_bias != 0u) {
            v = v + bias[col];
        }
    } else {
        v = v + c[o];
    }
    if (p.last_chunk != 0u) {
        v = activate(v, p.act);
    }
    c[o] = v;
}
