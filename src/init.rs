//! Keras's default weight initialisers, seeded and deterministic.
//!
//! - Conv2D kernel `[KH, KW, Cin, Cout]`, Dense kernel `[In, Out]` and LSTM
//!   kernel `[F, 4U]`: glorot uniform, `U(-l, l)` with
//!   `l = sqrt(6 / (fan_in + fan_out))`; for Conv2D `fan_in = KH*KW*Cin`,
//!   `fan_out = KH*KW*Cout`, for 2-D kernels the two dimensions.
//! - LSTM recurrent kernel `[U, 4U]`: orthogonal, i.e. its U rows are
//!   orthonormal: seeded standard-normal draws orthonormalised by modified
//!   Gram-Schmidt in f64 (Keras uses a QR factorisation of normal draws; both
//!   give a random orthogonal matrix, not the same numbers).
//! - Biases: zeros, except the LSTM's forget-gate block, which is 1
//!   (`unit_forget_bias = True`): `[0]*U + [1]*U + [0]*2U`.
//!
//! The numbers come from `rand`'s `StdRng` seeded with `seed`, drawn layer
//! by layer in model order, so one seed gives one set of weights.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::{Error, Result};
use crate::model::{LayerKind, Model};
use crate::tensor::Tensor;

/// Replaces every weight of `model` with Keras's default initialisation (see
/// the module docs), drawn from `seed`.
pub fn keras_default_weights(model: &mut Model, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    for index in 0..model.layers().len() {
        let name = model.layers()[index].name.clone();
        let kind = model.layers()[index].kind.clone();
        let weights = model.infos()[index].weights.clone();
        for (variable, shape) in weights {
            let n: usize = shape.iter().product();
            let data = match (variable, &kind) {
                ("bias", LayerKind::Lstm(l)) => {
                    let u = l.units;
                    (0..4 * u).map(|k| if (u..2 * u).contains(&k) { 1.0 } else { 0.0 }).collect()
                }
                ("bias", _) => vec![0.0; n],
                ("recurrent_kernel", _) => orthogonal_rows(&mut rng, shape[0], shape[1])?,
                _ => {
                    let (fan_in, fan_out) = fans(&shape);
                    glorot_uniform(&mut rng, n, fan_in, fan_out)
                }
            };
            model.set_weight(&name, variable, Tensor::new(shape, data)?)?;
        }
    }
    Ok(())
}

/// Keras's fans: for a kernel `[..receptive, in, out]`, `fan_in = receptive * in`
/// and `fan_out = receptive * out`.
fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [rest @ .., i, o] => {
            let receptive: usize = rest.iter().product();
            (receptive * i, receptive * o)
        }
    }
}

/// `n` draws from `U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))`.
pub fn glorot_uniform(rng: &mut StdRng, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    (0..n).map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * limit) as f32).collect()
}

/// One standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A `[rows, cols]` matrix (row-major) with orthonormal rows when
/// `rows <= cols`, or orthonormal columns when `rows > cols`.
pub fn orthogonal_rows(rng: &mut StdRng, rows: usize, cols: usize) -> Result<Vec<f32>> {
    // Orthonormalise the shorter side's vectors, each as long as the longer side.
    let (count, len) = if rows <= cols { (rows, cols) } else { (cols, rows) };
    let mut v: Vec<Vec<f64>> = Vec::with_capacity(count);
    for _ in 0..count {
        let mut w: Vec<f64> = (0..len).map(|_| normal(rng)).collect();
        // Two passes of modified Gram-Schmidt keep orthogonality at f64 precision.
        for _ in 0..2 {
            for q in &v {
                let dot: f64 = w.iter().zip(q).map(|(a, b)| a * b).sum();
                for (a, b) in w.iter_mut().zip(q) {
                    *a -= dot * b;
                }
            }
        }
        let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm < 1e-6 {
            return Err(Error::Unsupported(format!(
                "orthogonal initialisation of a [{rows}, {cols}] matrix drew a degenerate \
                 vector; use another seed"
            )));
        }
        w.iter_mut().for_each(|a| *a /= norm);
        v.push(w);
    }
    let mut out = vec![0.0f32; rows * cols];
    for (k, q) in v.iter().enumerate() {
        for (j, &a) in q.iter().enumerate() {
            if rows <= cols {
                out[k * cols + j] = a as f32;
            } else {
                out[j * cols + k] = a as f32;
            }
        }
    }
    Ok(out)
}
