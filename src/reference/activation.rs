//! Activations, evaluated in f64 and stored as f32.
//!
//! Elementwise activations act on every value; softmax acts on each row of
//! the last axis. Every formula is written in a form that stays finite where
//! the true value is finite (|x| = 1000 gives no NaN).

use crate::model::Activation;

/// SELU's alpha, as Keras.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// SELU's scale, as Keras.
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

/// The logistic sigmoid `1 / (1 + e^-x)`, with no overflow for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// One elementwise activation of `x`. [`Activation::Softmax`] is not
/// elementwise; here it returns `x` unchanged (use [`apply`]).
pub fn eval(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Linear | Activation::Softmax => x,
        // `x < 0` is false for NaN, so NaN passes through as in TensorFlow.
        Activation::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::HardSigmoid => (x / 6.0 + 0.5).clamp(0.0, 1.0),
        Activation::Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        Activation::Selu => {
            if x > 0.0 {
                SELU_SCALE * x
            } else {
                SELU_SCALE * SELU_ALPHA * x.exp_m1()
            }
        }
        // log(1 + e^x) = max(x, 0) + log(1 + e^-|x|).
        Activation::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        Activation::Softsign => x / (1.0 + x.abs()),
        Activation::Silu => x * sigmoid(x),
        Activation::Exponential => x.exp(),
    }
}

/// Applies `act` in place to `data`, read as rows of `last` values (the
/// last axis). Softmax is computed per row as `e^(x - max) / sum`, in f64;
/// the other activations ignore `last`.
pub fn apply(act: Activation, data: &mut [f32], last: usize) {
    match act {
        Activation::Linear => {}
        Activation::Softmax => {
            if last == 0 {
                return;
            }
            for row in data.chunks_mut(last) {
                softmax_row(row);
            }
        }
        _ => {
            for v in data.iter_mut() {
                *v = eval(act, f64::from(*v)) as f32;
            }
        }
    }
}

/// Softmax of one row in place: subtracting the row maximum keeps every
/// exponent <= 0, so no term overflows.
pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let exps: Vec<f64> = row.iter().map(|&v| (f64::from(v) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    for (v, e) in row.iter_mut().zip(exps) {
        *v = (e / sum) as f32;
    }
}
