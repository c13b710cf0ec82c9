//! Dense (a matrix product on the last axis) and the shared f64 matmul.
//!
//! Layouts: `x` is `[M, K]` (all leading axes folded into M rows: `B`, or
//! `B * T` while a time axis exists), kernel `[K, N]`, bias `[N]`, output
//! `[M, N]`: `y[m, n] = act(b[n] + sum_k x[m, k] * W[k, n])`.

use super::activation;
use super::parallel::split_rows;
use crate::model::Activation;

/// Rows of the kernel read per block: a 64 x N block stays in cache while
/// every row of `x` in a thread's chunk uses it.
const K_BLOCK: usize = 64;

/// `x @ w` with f64 accumulation: `x` `[M, K]`, `w` `[K, N]`, result
/// `[M, N]` as f64 (unrounded, so the LSTM can add its other terms first).
///
/// Loop order: kernel rows in blocks of 64, then rows of `x`, then one
/// kernel row at a time accumulated into the output row, so the kernel is
/// streamed from memory about once per core, not once per row.
pub fn matmul_f64(x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; m * n];
    split_rows(&mut out, n, |first, chunk| {
        let rows = chunk.len() / n.max(1);
        for k0 in (0..k).step_by(K_BLOCK) {
            let k1 = (k0 + K_BLOCK).min(k);
            for r in 0..rows {
                let xrow = &x[(first + r) * k..][..k];
                let acc = &mut chunk[r * n..][..n];
                for (kk, &xv) in xrow.iter().enumerate().take(k1).skip(k0) {
                    let wrow = &w[kk * n..][..n];
                    let xv = f64::from(xv);
                    for (a, &wv) in acc.iter_mut().zip(wrow) {
                        *a += xv * f64::from(wv);
                    }
                }
            }
        }
    });
    out
}

/// Dense: returns `[M, N]` as f32, `act(x @ w + b)`; softmax is row-wise over N.
pub fn dense(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    act: Activation,
) -> Vec<f32> {
    let z = matmul_f64(x, m, k, w, n);
    let mut y: Vec<f32> = z
        .iter()
        .enumerate()
        .map(|(i, &v)| (v + bias.map_or(0.0, |b| f64::from(b[i % n]))) as f32)
        .collect();
    activation::apply(act, &mut y, n);
    y
}
