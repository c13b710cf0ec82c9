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
// textures once. Each invocation computes an 8 x 8 tile of C from 8 + 8
// texel fetches per 4 values of k.
//
// Bindings (group 0):
//   0: uniform SplitKParams
//   1: texture            a    A [M, lda] as texels [M * lda / 4]
//   2: texture            b    one chunk of B [K, N]: texels [k_len * N / 4]
//   3: storage read       bias [N / 4] vec4 (reduce; read when has_bias)
//   4: storage read_write c    [M, N / 4] vec4 (reduce)
//   5: storage read_write part [slices, M, N / 4] vec4 partial sums
//
// `partial` grid: (ceil(N / 8 / WG), ceil(M / 8), slices in this chunk)
// workgroups of WG invocations; invocation lid of workgroup (x, y, z)
// computes columns 8 * (x * WG + lid) .. + 8 of rows 8 * y .. + 8 over the
// chunk rows [z * slice_len, + slice_len) (clipped to the chunk), writing
// partial slice slice_base + z. Rows and columns past the edges are clamped
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

// Stores one row's two column quads of a partial tile, skipping those
// outside C.
fn store_pair(slice: u32, row: u32, q: u32, lo_ok: bool, hi_ok: bool, lo: vec4<f32>,
              hi: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    let o = (slice * p.m + row) * (p.n / 4u) + q;
    if (lo_ok) {
        part[o] = lo;
    }
    if (hi_ok) {
        part[o + 1u] = hi;
    }
}

@compute @workgroup_size(WG)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let nq = p.n / 4u;
    let lq = p.lda / 4u;
    // Column quads of this invocation (clamped: spare invocations load in bounds).
    let q0_raw = (wid.x * WG + lid.x) * 2u;
    let q0 = min(q0_raw, nq - 1u);
    let q1 = min(q0_raw + 1u, nq - 1u);
    let row0 = wid.y * 8u;
    let k_start = wid.z * p.slice_len;
    let k_end = min(k_start + p.slice_len, p.k_len);
    let steps = (k_end - k_start) / 4u;
    let last = p.m - 1u;
    // Texel offsets of the 8 rows of A at the slice start. Written out
    // rather than as arrays: lavapipe keeps private arrays in memory.
    let kq = (p.k_offset + k_start) / 4u;
    let r0 = min(row0 + 0u, last) * lq + kq;
    let r1 = min(row0 + 1u, last) * lq + kq;
    let r2 = min(row0 + 2u, last) * lq + kq;
    let r3 = min(row0 + 3u, last) * lq + kq;
    let r4 = min(row0 + 4u, last) * lq + kq;
    let r5 = min(row0 + 5u, last) * lq + kq;
    let r6 = min(row0 + 6u, last) * lq + kq;
    let r7 = min(row0 + 7u, last) * lq + kq;
    var c0l = vec4<f32>(0.0);
    var c0h = vec4<f32>(0.0);
    var c1l = vec4<f32>(0.0);
    var c1h = vec4<f32>(0.0);
    var c2l = vec4<f32>(0.0);
    var c2h = vec4<f32>(0.0);
    var c3l = vec4<f32>(0.0);
    var c3h = vec4<f32>(0.0);
    var c4l = vec4<f32>(0.0);
    var c4h = vec4<f32>(0.0);
    var c5l = vec4<f32>(0.0);
    var c5h = vec4<f32>(0.0);
    var c6l = vec4<f32>(0.0);
    var c6h = vec4<f32>(0.0);
    var c7l = vec4<f32>(0.0);
    var c7h = vec4<f32>(0.0);
    // Two nested loops: llvmpipe stops any single loop after 65535 iterations.
    for (var s0 = 0u; s0 < steps; s0 = s0 + LOOP_BLOCK) {
    let s1 = min(s0 + LOOP_BLOCK, steps);
    for (var s = s0; s < s1; s = s + 1u) {
        let bi = (k_start + 4u * s) * nq;
        let b0 = texel(b, bi + q0);
        let b1 = texel(b, bi + q1);
        let b2 = texel(b, bi + nq + q0);
        let b3 = texel(b, bi + nq + q1);
        let b4 = texel(b, bi + 2u * nq + q0);
        let b5 = texel(b, bi + 2u * nq + q1);
        let b6 = texel(b, bi + 3u * nq + q0);
        let b7 = texel(b, bi + 3u * nq + q1);
        let a0 = texel(a, r0 + s);
        c0l = c0l + a0.x * b0 + a0.y * b2 + a0.z * b4 + a0.w * b6;
        c0h = c0h + a0.x * b1 + a0.y * b3 + a0.z * b5 + a0.w * b7;
        let a1 = texel(a, r1 + s);
        c1l = c1l + a1.x * b0 + a1.y * b2 + a1.z * b4 + a1.w * b6;
        c1h = c1h + a1.x * b1 + a1.y * b3 + a1.z * b5 + a1.w * b7;
        let a2 = texel(a, r2 + s);
        c2l = c2l + a2.x * b0 + a2.y * b2 + a2.z * b4 + a2.w * b6;
        c2h = c2h + a2.x * b1 + a2.y * b3 + a2.z * b5 + a2.w * b7;
        let a3 = texel(a, r3 + s);
        c3l = c3l + a3.x * b0 + a3.y * b2 + a3.z * b4 + a3.w * b6;
        c3h = c3h + a3.x * b1 + a3.y * b3 + a3.z * b5 + a3.w * b7;
        let a4 = texel(a, r4 + s);
        c4l = c4l + a4.x * b0 + a4.y * b2 + a4.z * b4 + a4.w * b6;
        c4h = c4h + a4.x * b1 + a4.y * b3 + a4.z * b5 + a4.w * b7;
        let a5 = texel(a, r5 + s);
        c5l = c5l + a5.x * b0 + a5.y * b2 + a5.z * b4 + a5.w * b6;
        c5h = c5h + a5.x * b1 + a5.y * b3 + a5.z * b5 + a5.w * b7;
        let a6 = texel(a, r6 + s);
        c6l = c6l + a6.x * b0 + a6.y * b2 + a6.z * b4 + a6.w * b6;
        c6h = c6h + a6.x * b1 + a6.y * b3 + a6.z * b5 + a6.w * b7;
        let a7 = texel(a, r7 + s);
        c7l = c7l + a7.x * b0 + a7.y * b2 + a7.z * b4 + a7.w * b6;
        c7h = c7h + a7.x * b1 + a7.y * b3 + a7.z * b5 + a7.w * b7;
    }
    }
    let slice = p.slice_base + wid.z;
    let lo_ok = q0_raw < nq;
    let hi_ok = q0_raw + 1u < nq;
    store_pair(slice, row0 + 0u, q0_raw, lo_ok, hi_ok, c0l, c0h);
    store_pair(slice, row0 + 1u, q0_raw, lo_ok, hi_ok, c1l, c1h);
    store_pair(slice, row0 + 2u, q0_raw, lo_ok, hi_ok, c2l, c2h);
    store_pair(slice, row0 + 3u, q0_raw, lo_ok, hi_ok, c3l, c3h);
    store_pair(slice, row0 + 4u, q0_raw, lo_ok, hi_ok, c4l, c4h);
    store_pair(slice, row0 + 5u, q0_raw, lo_ok, hi_ok, c5l, c5h);
    store_pair(slice, row0 + 6u, q0_raw, lo_ok, hi_ok, c6l, c6h);
    store_pair(slice, row0 + 7u, q0_raw, lo_ok, hi_ok, c7l, c7h);
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
