// GEMM with a register tile and no workgroup barriers: the variant for CPU
// adapters (lavapipe, llvmpipe), where barriers are expensive.
//
//   C[M, N] (=|+=) A[M, k_offset .. k_offset + k_len] x B[k_len, N] (+ bias), act on the last chunk
//
// Bindings (group 0):
//   0: uniform MatmulParams
//   1: storage read       a    [M, lda] f32 (row-major; lda = full K)
//   2: storage read       b    [k_len, N] f32 (one chunk of the [K, N] weight)
//   3: storage read       bias [N] f32 (read when first_chunk and has_bias)
//   4: storage read_write c    [M, N] f32
//
// Grid: one invocation per 4x4 tile of C, flat over ceil(M/4) * ceil(N/4)
// tiles (column tiles innermost). Out-of-range rows and columns are clamped
// while loading, so the inner loop has no branches, and skipped when storing.
// A weight larger than one storage binding is split into K chunks, one
// dispatch each: the first writes, later ones accumulate, the last activates.

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
    // Unused here (the flat grid covers every row); shared with matmul_tiled.wgsl.
    row_offset: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = flat_index(gid, p.groups_x, WG);
    let tiles_n = (p.n + 3u) / 4u;
    let tiles_m = (p.m + 3u) / 4u;
    if (tile >= tiles_m * tiles_n) {
        return;
    }
    let row0 = (tile / tiles_n) * 4u;
    let col0 = (tile % tiles_n) * 4u;

    // Clamped row bases into A and column indices into B.
    var arow: array<u32, 4>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        arow[i] = min(row0 + i, p.m - 1u) * p.lda + p.k_offset;
    }
    let c0 = min(col0, p.n - 1u);
    let c1 = min(col0 + 1u, p.n - 1u);
    let c2 = min(col0 + 2u, p.n - 1u);
    let c3 = min(col0 + 3u, p.n - 1u);

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Two nested loops: llvmpipe stops any single loop after 65535 iterations.
    for (var k0 = 0u; k0 < p.k_len; k0 = k0 + LOOP_BLOCK) {
        let k1 = min(k0 + LOOP_BLOCK, p.k_len);
        for (var k = k0; k < k1; k = k + 1u) {
            let bk = k * p.n;
            let bv = vec4<f32>(b[bk + c0], b[bk + c1], b[bk + c2], b[bk + c3]);
            acc0 = acc0 + a[arow[0] + k] * bv;
            acc1 = acc1 + a[arow[1] + k] * bv;
            acc2 = acc2 + a[arow[2] + k] * bv;
            acc3 = acc3 + a[arow[3] + k] * bv;
        }
    }

    var accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + i;
        if (row >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + j;
            if (col >= p.n) {
                break;
            }
            let o = row * p.n + col;
            var v = accs[i][j];
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
    }
}
