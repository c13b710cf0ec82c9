//! LSTM with Keras's gate order and masking semantics.
//!
//! Layouts: input `x` `[B, T, F]`; kernel `K` `[F, 4U]`; recurrent kernel
//! `R` `[U, 4U]`; bias `b` `[4U]`; column blocks in gate order i, f, c, o.
//! Optional mask `[B * T]` (1 = valid step). Per step, with `h`, `c` the state:
//!
//! ```text
//! z  = x_t @ K + h @ R + b            (f64 accumulation)
//! i  = ra(z_i); f = ra(z_f); g = a(z_c); o = ra(z_o)
//! c' = f * c + i * g
//! h' = o * a(c')
//! ```
//!
//! with `a` the activation (tanh by default) and `ra` the recurrent
//! activation (sigmoid). The state starts at zero. At a masked step h and c
//! carry over unchanged; the step's output is the carried h (which is the
//! previous output, zeros before the first valid step), or zeros when
//! `zero_output_for_mask` is set. State is stored as f32 between steps.

use super::activation::eval;
use super::dense::matmul_f64;
use crate::model::Activation;

/// Sizes and options of one LSTM call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmDims {
    /// Batch size B.
    pub b: usize,
    /// Timesteps T.
    pub t: usize,
    /// Input features per step F.
    pub f: usize,
    /// Units U.
    pub units: usize,
    /// Cell activation `a` (Keras `activation`, default tanh).
    pub activation: Activation,
    /// Gate activation `ra` (Keras `recurrent_activation`, default sigmoid).
    pub recurrent_activation: Activation,
    /// Masked steps output zeros instead of the carried h.
    pub zero_output_for_mask: bool,
}

/// Every step of an LSTM run, each `[B, T, U]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmSequences {
    /// Hidden state after each step.
    pub h: Vec<f32>,
    /// Cell state after each step.
    pub c: Vec<f32>,
    /// The layer's output at each step (differs from `h` only at masked
    /// steps with `zero_output_for_mask`).
    pub output: Vec<f32>,
}

impl LstmSequences {
    /// The last step's output, `[B, U]`: what `return_sequences = false` returns.
    pub fn last_output(&self, d: &LstmDims) -> Vec<f32> {
        let u = d.units;
        (0..d.b).flat_map(|b| &self.output[(b * d.t + d.t - 1) * u..][..u]).copied().collect()
    }
}

/// The input projection for every step at once: `x @ K`, `[B * T, 4U]` in f64.
pub fn input_projection(x: &[f32], d: &LstmDims, kernel: &[f32]) -> Vec<f64> {
    matmul_f64(x, d.b * d.t, d.f, kernel, 4 * d.units)
}

/// Runs the recurrence on a precomputed input projection `xk`
/// (`[B * T, 4U]`, see [`input_projection`]). `on_step(t)` is called before
/// each timestep, for progress reporting.
pub fn recurrence(
    xk: &[f64],
    d: &LstmDims,
    recurrent: &[f32],
    bias: Option<&[f32]>,
    mask: Option<&[u8]>,
    on_step: &mut dyn FnMut(usize),
) -> LstmSequences {
    let u = d.units;
    let g4 = 4 * u;
    let mut seq = LstmSequences {
        h: vec![0.0; d.b * d.t * u],
        c: vec![0.0; d.b * d.t * u],
        output: vec![0.0; d.b * d.t * u],
    };
    let mut h = vec![0.0f32; d.b * u];
    let mut c = vec![0.0f32; d.b * u];
    let mut z = vec![0.0f64; g4];
    for t in 0..d.t {
        on_step(t);
        for b in 0..d.b {
            let step = b * d.t + t;
            let valid = mask.is_none_or(|m| m[step] != 0);
            let hb = &mut h[b * u..][..u];
            let cb = &mut c[b * u..][..u];
            if valid {
                // z = x_t @ K + h @ R + b
                z.copy_from_slice(&xk[step * g4..][..g4]);
                for (j, &hv) in hb.iter().enumerate() {
                    let rrow = &recurrent[j * g4..][..g4];
                    for (zv, &r) in z.iter_mut().zip(rrow) {
                        *zv += f64::from(hv) * f64::from(r);
                    }
                }
                if let Some(bias) = bias {
                    for (zv, &bv) in z.iter_mut().zip(bias) {
                        *zv += f64::from(bv);
                    }
                }
                for k in 0..u {
                    let i = eval(d.recurrent_activation, z[k]);
                    let f = eval(d.recurrent_activation, z[u + k]);
                    let g = eval(d.activation, z[2 * u + k]);
                    let o = eval(d.recurrent_activation, z[3 * u + k]);
                    let c_new = (f * f64::from(cb[k]) + i * g) as f32;
                    cb[k] = c_new;
                    hb[k] = (o * eval(d.activation, f64::from(c_new))) as f32;
                }
            }
            let at = step * u;
            seq.h[at..at + u].copy_from_slice(hb);
            seq.c[at..at + u].copy_from_slice(cb);
            if valid || !d.zero_output_for_mask {
                seq.output[at..at + u].copy_from_slice(hb);
            }
        }
    }
    seq
}

/// The whole LSTM: [`input_projection`] then [`recurrence`].
pub fn lstm(
    x: &[f32],
    d: &LstmDims,
    kernel: &[f32],
    recurrent: &[f32],
    bias: Option<&[f32]>,
    mask: Option<&[u8]>,
) -> LstmSequences {
    let xk = input_projection(x, d, kernel);
    recurrence(&xk, d, recurrent, bias, mask, &mut |_| {})
}
