// Split-K GEMM for skinny products (few rows M, long K), such as the LSTM
// input projection [B*T, F] x [F, 4U] with F up to 10^5 and more:
//
//   part[s, m, n] = A[m, slice s of K] x B[slice s of K, n]     (entry `partial`)
//   C[m, n] = act(sum_s part[s, m, n] + bias[n])                (entry `reduce`)
//
// Many workgroups each take one K slice, so the long K loop is spread over
// every core, and a second dispatch adds the slices in a fixed order (the
// result does not depend on scheduling). Needs K and N divisible by 4.
//
// A and B are read from rgba32float textures, four consecutive values of a
// row per texel, texels in row-major order over a texture TEX_W = 2^tex_shift
// texels wide (texel t at (t & (TEX_W - 1), t >> tex_shift)). Why textures:
// on lavapipe every storage-buffer load is a loop over the SIMD lanes with a
// branch per lane, measured at ~150 cycles per vec4 and lane, while a texel
// fetch is a branch-free gather, ~20 cycles. A is copied into its texture by
// the scheduler just before (a plain copy); B, the weight, is uploaded as
// textures once. Each invocation computes a TILE_ROWS x (4 TILE_QUADS) tile
// of C from TILE_ROWS + 4 TILE_QUADS texel fetches per 4 values of k.
//
// Bindings (group 0):
//   0: uniform SplitKParams
//   1: texture            a    A [M, lda] as texels [M * lda / 4]
//   2: texture            b    one chunk of B [K, N]: texels [k_len * N / 4]
//   3: storage read       bias [N / 4] vec4 (reduce; read when has_bias)
//   4: storage read_write c    [M, N / 4] vec4 (reduce)
//   5: storage read_write part [slices, M, N / 4] vec4 partial sums
//
// `partial` grid: (ceil(G * ceil(M / TILE_ROWS) / WG), 1, slices in this
// chunk) workgroups of WG invocations, G = ceil(N / (4 TILE_QUADS)) column
// groups; invocation i = x * WG + lid of workgroup (x, 1, z) computes column
// quads TILE_QUADS * (i % G) .. + TILE_QUADS of rows TILE_ROWS * (i / G) ..
// + TILE_ROWS over the chunk rows [z * slice_len, + slice_len) (clipped to
// the chunk), writing partial slice slice_base + z. Rows and columns past the edges are clamped
// while loading and skipped when storing.
// `reduce` grid: flat over M * N / 4 invocations (flat_index with groups_x).

struct SplitKParams {
    m: u32,
    n: u32,
    lda: u32,
    // Offset of this weight chunk's first row within K (a multiple of 4).
    k_offset: u32,
    // Rows of this chunk.
    k_len: u32,
    // K values per slice (a multiple of 4).
    slice_len: u32,
    // Index of this chunk's first slice in `part`.
    slice_base: u32,
    // Slices over every chunk (reduce).
    slices: u32,
    has_bias: u32,
    act: u32,
    groups_x: u32,
    // log2 of the texture width in texels.
    tex_shift: u32,
}

override WG: u32 = 32u;

@group(0) @binding(0) var<uniform> p: SplitKParams;
@group(0) @binding(1) var a: texture_2d<f32>;
@group(0) @binding(2) var b: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> part: array<vec4<f32>>;

fn texel(t: texture_2d<f32>, i: u32) -> vec4<f32> {
    let mask = (1u << p.tex_shift) - 1u;
    return textureLoad(t, vec2<u32>(i & mask, i >> p.tex_shift), 0);
}

// Rows and column quads of C per invocation (the host's SPLITK_ROWS and
// SPLITK_QUADS).
const TILE_ROWS: u32 = 8u;
const TILE_QUADS: u32 = 4u;

// Stores one column quad of a partial tile, skipping those outside C.
fn store_quad(slice: u32, row: u32, q: u32, v: vec4<f32>) {
    let nq = p.n / 4u;
    if (row < p.m && q < nq) {
        part[(slice * p.m + row) * nq + q] = v;
    }
}

@compute @workgroup_size(WG)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let nq = p.n / 4u;
    let lq = p.lda / 4u;
    // Invocations run over (column group, row block), column groups fastest,
    // so that no lane idles when N is narrow. Spare invocations load clamped
    // rows and columns in bounds and store nothing.
    let col_groups = (nq + TILE_QUADS - 1u) / TILE_QUADS;
    let inv = wid.x * WG + lid.x;
    let rb = inv / col_groups;
    let qb = (inv - rb * col_groups) * TILE_QUADS;
    let q0 = min(qb + 0u, nq - 1u);
    let q1 = min(qb + 1u, nq - 1u);
    let q2 = min(qb + 2u, nq - 1u);
    let q3 = min(qb + 3u, nq - 1u);
    let row0 = rb * TILE_ROWS;
    let k_start = wid.z * p.slice_len;
    let k_end = min(k_start + p.slice_len, p.k_len);
    let steps = (k_end - k_start) / 4u;
    let last = p.m - 1u;
    // Texel offsets of the rows of A at the slice start. Written out rather
    // than as arrays: lavapipe keeps private arrays in memory.
    let kq = (p.k_offset + k_start) / 4u;
    let r0 = min(row0 + 0u, last) * lq + kq;
    let r1 = min(row0 + 1u, last) * lq + kq;
    let r2 = min(row0 + 2u, last) * lq + kq;
    let r3 = min(row0 + 3u, last) * lq + kq;
    let r4 = min(row0 + 4u, last) * lq + kq;
    let r5 = min(row0 + 5u, last) * lq + kq;
    let r6 = min(row0 + 6u, last) * lq + kq;
    let r7 = min(row0 + 7u, last) * lq + kq;
    var c0_0 = vec4<f32>(0.0);
    var c0_1 = vec4<f32>(0.0);
    var c0_2 = vec4<f32>(0.0);
    var c0_3 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0);
    var c1_1 = vec4<f32>(0.0);
    var c1_2 = vec4<f32>(0.0);
    var c1_3 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0);
    var c2_1 = vec4<f32>(0.0);
    var c2_2 = vec4<f32>(0.0);
    var c2_3 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0);
    var c3_1 = vec4<f32>(0.0);
    var c3_2 = vec4<f32>(0.0);
    var c3_3 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0);
    var c4_1 = vec4<f32>(0.0);
    var c4_2 = vec4<f32>(0.0);
    var c4_3 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0);
    var c5_1 = vec4<f32>(0.0);
    var c5_2 = vec4<f32>(0.0);
    var c5_3 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0);
    var c6_1 = vec4<f32>(0.0);
    var c6_2 = vec4<f32>(0.0);
    var c6_3 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0);
    var c7_1 = vec4<f32>(0.0);
    var c7_2 = vec4<f32>(0.0);
    var c7_3 = vec4<f32>(0.0);
    // Two nested loops: llvmpipe stops any single loop after 65535 iterations.
    for (var s0 = 0u; s0 < steps; s0 = s0 + LOOP_BLOCK) {
    let s1 = min(s0 + LOOP_BLOCK, steps);
    for (var s = s0; s < s1; s = s + 1u) {
        // B rows k .. k + 3 of this invocation's column quads.
        let bi = (k_start + 4u * s) * nq;
        let b0_0 = texel(b, bi + q0);
        let b0_1 = texel(b, bi + q1);
        let b0_2 = texel(b, bi + q2);
        let b0_3 = texel(b, bi + q3);
        let b1_0 = texel(b, bi + nq + q0);
        let b1_1 = texel(b, bi + nq + q1);
        let b1_2 = texel(b, bi + nq + q2);
        let b1_3 = texel(b, bi + nq + q3);
        let b2_0 = texel(b, bi + 2u * nq + q0);
        let b2_1 = texel(b, bi + 2u * nq + q1);
        let b2_2 = texel(b, bi + 2u * nq + q2);
        let b2_3 = texel(b, bi + 2u * nq + q3);
        let b3_0 = texel(b, bi + 3u * nq + q0);
        let b3_1 = texel(b, bi + 3u * nq + q1);
        let b3_2 = texel(b, bi + 3u * nq + q2);
        let b3_3 = texel(b, bi + 3u * nq + q3);
        let a0 = texel(a, r0 + s);
        c0_0 = c0_0 + a0.x * b0_0 + a0.y * b1_0 + a0.z * b2_0 + a0.w * b3_0;
        c0_1 = c0_1 + a0.x * b0_1 + a0.y * b1_1 + a0.z * b2_1 + a0.w * b3_1;
        c0_2 = c0_2 + a0.x * b0_2 + a0.y * b1_2 + a0.z * b2_2 + a0.w * b3_2;
        c0_3 = c0_3 + a0.x * b0_3 + a0.y * b1_3 + a0.z * b2_3 + a0.w * b3_3;
        let a1 = texel(a, r1 + s);
        c1_0 = c1_0 + a1.x * b0_0 + a1.y * b1_0 + a1.z * b2_0 + a1.w * b3_0;
        c1_1 = c1_1 + a1.x * b0_1 + a1.y * b1_1 + a1.z * b2_1 + a1.w * b3_1;
        c1_2 = c1_2 + a1.x * b0_2 + a1.y * b1_2 + a1.z * b2_2 + a1.w * b3_2;
        c1_3 = c1_3 + a1.x * b0_3 + a1.y * b1_3 + a1.z * b2_3 + a1.w * b3_3;
        let a2 = texel(a, r2 + s);
        c2_0 = c2_0 + a2.x * b0_0 + a2.y * b1_0 + a2.z * b2_0 + a2.w * b3_0;
        c2_1 = c2_1 + a2.x * b0_1 + a2.y * b1_1 + a2.z * b2_1 + a2.w * b3_1;
        c2_2 = c2_2 + a2.x * b0_2 + a2.y * b1_2 + a2.z * b2_2 + a2.w * b3_2;
        c2_3 = c2_3 + a2.x * b0_3 + a2.y * b1_3 + a2.z * b2_3 + a2.w * b3_3;
        let a3 = texel(a, r3 + s);
        c3_0 = c3_0 + a3.x * b0_0 + a3.y * b1_0 + a3.z * b2_0 + a3.w * b3_0;
        c3_1 = c3_1 + a3.x * b0_1 + a3.y * b1_1 + a3.z * b2_1 + a3.w * b3_1;
        c3_2 = c3_2 + a3.x * b0_2 + a3.y * b1_2 + a3.z * b2_2 + a3.w * b3_2;
        c3_3 = c3_3 + a3.x * b0_3 + a3.y * b1_3 + a3.z * b2_3 + a3.w * b3_3;
        let a4 = texel(a, r4 + s);
        c4_0 = c4_0 + a4.x * b0_0 + a4.y * b1_0 + a4.z * b2_0 + a4.w * b3_0;
        c4_1 = c4_1 + a4.x * b0_1 + a4.y * b1_1 + a4.z * b2_1 + a4.w * b3_1;
        c4_2 = c4_2 + a4.x * b0_2 + a4.y * b1_2 + a4.z * b2_2 + a4.w * b3_2;
        c4_3 = c4_3 + a4.x * b0_3 + a4.y * b1_3 + a4.z * b2_3 + a4.w * b3_3;
        let a5 = texel(a, r5 + s);
        c5_0 = c5_0 + a5.x * b0_0 + a5.y * b1_0 + a5.z * b2_0 + a5.w * b3_0;
        c5_1 = c5_1 + a5.x * b0_1 + a5.y * b1_1 + a5.z * b2_1 + a5.w * b3_1;
        c5_2 = c5_2 + a5.x * b0_2 + a5.y * b1_2 + a5.z * b2_2 + a5.w * b3_2;
        c5_3 = c5_3 + a5.x * b0_3 + a5.y * b1_3 + a5.z * b2_3 + a5.w * b3_3;
        let a6 = texel(a, r6 + s);
        c6_0 = c6_0 + a6.x * b0_0 + a6.y * b1_0 + a6.z * b2_0 + a6.w * b3_0;
        c6_1 = c6_1 + a6.x * b0_1 + a6.y * b1_1 + a6.z * b2_1 + a6.w * b3_1;
        c6_2 = c6_2 + a6.x * b0_2 + a6.y * b1_2 + a6.z * b2_2 + a6.w * b3_2;
        c6_3 = c6_3 + a6.x * b0_3 + a6.y * b1_3 + a6.z * b2_3 + a6.w * b3_3;
        let a7 = texel(a, r7 + s);
        c7_0 = c7_0 + a7.x * b0_0 + a7.y * b1_0 + a7.z * b2_0 + a7.w * b3_0;
        c7_1 = c7_1 + a7.x * b0_1 + a7.y * b1_1 + a7.z * b2_1 + a7.w * b3_1;
        c7_2 = c7_2 + a7.x * b0_2 + a7.y * b1_2 + a7.z * b2_2 + a7.w * b3_2;
        c7_3 = c7_3 + a7.x * b0_3 + a7.y * b1_3 + a7.z * b2_3 + a7.w * b3_3;
    }
    }
    let slice = p.slice_base + wid.z;
    store_quad(slice, row0 + 0u, qb + 0u, c0_0);
    store_quad(slice, row0 + 0u, qb + 1u, c0_1);
    store_quad(slice, row0 + 0u, qb + 2u, c0_2);
    store_quad(slice, row0 + 0u, qb + 3u, c0_3);
    store_quad(slice, row0 + 1u, qb + 0u, c1_0);
    store_quad(slice, row0 + 1u, qb + 1u, c1_1);
    store_quad(slice, row0 + 1u, qb + 2u, c1_2);
    store_quad(slice, row0 + 1u, qb + 3u, c1_3);
    store_quad(slice, row0 + 2u, qb + 0u, c2_0);
    store_quad(slice, row0 + 2u, qb + 1u, c2_1);
    store_quad(slice, row0 + 2u, qb + 2u, c2_2);
    store_quad(slice, row0 + 2u, qb + 3u, c2_3);
    store_quad(slice, row0 + 3u, qb + 0u, c3_0);
    store_quad(slice, row0 + 3u, qb + 1u, c3_1);
    store_quad(slice, row0 + 3u, qb + 2u, c3_2);
    store_quad(slice, row0 + 3u, qb + 3u, c3_3);
    store_quad(slice, row0 + 4u, qb + 0u, c4_0);
    store_quad(slice, row0 + 4u, qb + 1u, c4_1);
    store_quad(slice, row0 + 4u, qb + 2u, c4_2);
    store_quad(slice, row0 + 4u, qb + 3u, c4_3);
    store_quad(slice, row0 + 5u, qb + 0u, c5_0);
    store_quad(slice, row0 + 5u, qb + 1u, c5_1);
    store_quad(slice, row0 + 5u, qb + 2u, c5_2);
    store_quad(slice, row0 + 5u, qb + 3u, c5_3);
    store_quad(slice, row0 + 6u, qb + 0u, c6_0);
    store_quad(slice, row0 + 6u, qb + 1u, c6_1);
    store_quad(slice, row0 + 6u, qb + 2u, c6_2);
    store_quad(slice, row0 + 6u, qb + 3u, c6_3);
    store_quad(slice, row0 + 7u, qb + 0u, c7_0);
    store_quad(slice, row0 + 7u, qb + 1u, c7_1);
    store_quad(slice, row0 + 7u, qb + 2u, c7_2);
    store_quad(slice, row0 + 7u, qb + 3u, c7_3);
}

@compute @workgroup_size(WG)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = flat_index(gid, p.groups_x, WG);
    let nq = p.n / 4u;
    let total = p.m * nq;
    if (idx >= total) {
        return;
    }
    var v = vec4<f32>(0.0);
    for (var s = 0u; s < p.slices; s = s + 1u) {
        v = v + part[s * total + idx];
    }
    if (p.has_bias != 0u) {
        v = v + bias[idx % nq];
    }
    c[idx] = vec4<f32>(
        activate(v.x, p.act),
        activate(v.y, p.act),
        activate(v.z, p.act),
        activate(v.w, p.act),
    );
}
