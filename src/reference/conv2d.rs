//! Conv2D over a batch of frames (Keras `TimeDistributed(Conv2D)`).
//!
//! Layouts: input frames `[N, H, W, Cin]` with `N = B * T`, channels last;
//! kernel `[KH, KW, Cin, Cout]`; bias `[Cout]`; output `[N, OH, OW, Cout]`.
//! The layer is a cross-correlation:
//!
//! ```text
//! y[n, i, j, o] = act(b[o] + sum_{di, dj, c} x[n, i*sh + di*dh - pt, j*sw + dj*dw - pl, c]
//!                                             * K[di, dj, c, o])
//! ```
//!
//! where out-of-frame positions read as zero and `pt`, `pl` are the padding
//! before (top, left) from [`Padding::resolve`] ('same' puts the odd extra row
//! and column at the bottom and right, as Keras). Sums are accumulated in f64.

use super::activation;
use super::parallel::split_rows;
use crate::model::{Activation, Padding};

/// Sizes of one Conv2D call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
    /// Frames (`B * T`).
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub cin: usize,
    /// Kernel height (undilated).
    pub kh: usize,
    /// Kernel width (undilated).
    pub kw: usize,
    /// Filters (output channels).
    pub cout: usize,
    /// Strides `(sh, sw)`.
    pub strides: (usize, usize),
    /// Dilation `(dh, dw)`.
    pub dilation: (usize, usize),
    /// 'valid' or 'same' (Keras's rule, see [`Padding::resolve`]).
    pub padding: Padding,
}

/// The output geometry: `(OH, OW, pad_top, pad_left)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOut {
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Zero rows above the frame (the bottom gets the rest of the total).
    pub pad_top: usize,
    /// Zero columns left of the frame (the right gets the rest of the total).
    pub pad_left: usize,
}

impl Conv2dDims {
    /// Output height/width and padding before; `None` when the (dilated)
    /// kernel does not fit a 'valid' frame.
    pub fn output(&self) -> Option<Conv2dOut> {
        let ekh = (self.kh - 1) * self.dilation.0 + 1;
        let ekw = (self.kw - 1) * self.dilation.1 + 1;
        let (oh, pad_top) = self.padding.resolve(self.h, ekh, self.strides.0)?;
        let (ow, pad_left) = self.padding.resolve(self.w, ekw, self.strides.1)?;
        Some(Conv2dOut { oh, ow, pad_top, pad_left })
    }
}

/// Runs the convolution; returns `[N, OH, OW, Cout]` or `None` when the
/// kernel does not fit (see [`Conv2dDims::output`]). `x`, `kernel` and
/// `bias` must hold exactly the sizes the layout above implies.
pub fn conv2d(
    x: &[f32],
    d: &Conv2dDims,
    kernel: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Option<Vec<f32>> {
    let o = d.output()?;
    let frame_in = d.h * d.w * d.cin;
    let frame_out = o.oh * o.ow * d.cout;
    let mut out = vec![0.0f32; d.n * frame_out];
    split_rows(&mut out, frame_out, |first, chunk| {
        let mut acc = vec![0.0f64; d.cout];
        for (k, y) in chunk.chunks_mut(frame_out).enumerate() {
            let xf = &x[(first + k) * frame_in..][..frame_in];
            conv_frame(xf, d, &o, kernel, bias, &mut acc, y);
        }
    });
    activation::apply(act, &mut out, d.cout);
    Some(out)
}

/// One frame: `xf` is `[H, W, Cin]`, `y` is `[OH, OW, Cout]`.
fn conv_frame(
    xf: &[f32],
    d: &Conv2dDims,
    o: &Conv2dOut,
    kernel: &[f32],
    bias: Option<&[f32]>,
    acc: &mut [f64],
    y: &mut [f32],
) {
    for i in 0..o.oh {
        for j in 0..o.ow {
            acc.fill(0.0);
            for di in 0..d.kh {
                // Input row, as a signed offset so top padding reads as "outside".
                let r = (i * d.strides.0 + di * d.dilation.0) as isize - o.pad_top as isize;
                if r < 0 || r >= d.h as isize {
                    continue;
                }
                for dj in 0..d.kw {
                    let s = (j * d.strides.1 + dj * d.dilation.1) as isize - o.pad_left as isize;
                    if s < 0 || s >= d.w as isize {
                        continue;
                    }
                    let px = &xf[(r as usize * d.w + s as usize) * d.cin..][..d.cin];
                    for (c, &xv) in px.iter().enumerate() {
                        let krow = &kernel[((di * d.kw + dj) * d.cin + c) * d.cout..][..d.cout];
                        let xv = f64::from(xv);
                        for (a, &kv) in acc.iter_mut().zip(krow) {
                            *a += xv * f64::from(kv);
                        }
                    }
                }
            }
            let yrow = &mut y[(i * o.ow + j) * d.cout..][..d.cout];
            for (oc, (v, a)) in yrow.iter_mut().zip(acc.iter()).enumerate() {
                let b = bias.map_or(0.0, |b| f64::from(b[oc]));
                *v = (a + b) as f32;
            }
        }
    }
}
