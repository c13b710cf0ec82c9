//! Max and average pooling over a batch of frames.
//!
//! Layouts: input `[N, H, W, C]`, output `[N, OH, OW, C]`, `N = B * T`.
//! Output size and padding follow [`Padding::resolve`] with the pool size as
//! the window. Padded positions never contribute: for max pooling they act
//! as `-inf` (Keras pads with -inf); for average pooling the mean is over the
//! in-frame positions of the window only (TensorFlow's `avg_pool` with SAME
//! padding divides by the count of valid positions, not the window size).

use crate::model::{Padding, PoolKind};

/// Sizes of one pooling call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dDims {
    /// Frames (`B * T`).
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels (pooled separately).
    pub c: usize,
    /// Pool size `(ph, pw)`.
    pub pool: (usize, usize),
    /// Strides `(sh, sw)`.
    pub strides: (usize, usize),
    /// 'valid' or 'same' (Keras's rule, see [`Padding::resolve`]).
    pub padding: Padding,
}

impl Pool2dDims {
    /// `(OH, OW, pad_top, pad_left)`; `None` when the pool does not fit a 'valid' frame.
    pub fn output(&self) -> Option<(usize, usize, usize, usize)> {
        let (oh, pt) = self.padding.resolve(self.h, self.pool.0, self.strides.0)?;
        let (ow, pl) = self.padding.resolve(self.w, self.pool.1, self.strides.1)?;
        Some((oh, ow, pt, pl))
    }
}

/// Pools `x`; returns `[N, OH, OW, C]`, or `None` when the pool does not fit.
pub fn pool2d(x: &[f32], d: &Pool2dDims, kind: PoolKind) -> Option<Vec<f32>> {
    let (oh, ow, pt, pl) = d.output()?;
    let mut out = Vec::with_capacity(d.n * oh * ow * d.c);
    for n in 0..d.n {
        let xf = &x[n * d.h * d.w * d.c..][..d.h * d.w * d.c];
        for i in 0..oh {
            for j in 0..ow {
                for c in 0..d.c {
                    let mut max = f32::NEG_INFINITY;
                    let mut sum = 0.0f64;
                    let mut count = 0usize;
                    for di in 0..d.pool.0 {
                        let r = (i * d.strides.0 + di) as isize - pt as isize;
                        if r < 0 || r >= d.h as isize {
                            continue;
                        }
                        for dj in 0..d.pool.1 {
                            let s = (j * d.strides.1 + dj) as isize - pl as isize;
                            if s < 0 || s >= d.w as isize {
                                continue;
                            }
                            let v = xf[(r as usize * d.w + s as usize) * d.c + c];
                            // NaN propagates through max, as in TensorFlow.
                            if v.is_nan() || v > max {
                                max = v;
                            }
                            sum += f64::from(v);
                            count += 1;
                        }
                    }
                    out.push(match kind {
                        PoolKind::Max => max,
                        PoolKind::Average => (sum / count.max(1) as f64) as f32,
                    });
                }
            }
        }
    }
    Some(out)
}
