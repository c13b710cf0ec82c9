//! The CPU reference against hand-computed values, the semantics note, and
//! the Keras fixtures.

use std::collections::BTreeMap;
use std::path::Path;

use cnn_lstm::model::{Activation, Conv2D, Dense, DropoutMode, Lstm, Padding, Pool2D, PoolKind};
use cnn_lstm::reference::{self, activation, conv2d, dropout, lstm, masking, pool2d};
use cnn_lstm::tolerance::{assert_close, compare, Tolerance};
use cnn_lstm::{init, rng, Error, LayerKind, Model, ModelBuilder, RunOptions, Tensor};

// ---------------------------------------------------------------- helpers

fn conv(filters: usize, k: usize, padding: Padding, act: Activation) -> LayerKind {
    LayerKind::Conv2D(Conv2D {
        filters,
        kernel: (k, k),
        strides: (1, 1),
        dilation: (1, 1),
        padding,
        activation: act,
        use_bias: true,
    })
}

fn lstm_layer(units: usize, return_sequences: bool) -> LayerKind {
    LayerKind::Lstm(Lstm {
        units,
        return_sequences,
        zero_output_for_mask: false,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
        use_bias: true,
    })
}

fn dense_layer(units: usize, act: Activation) -> LayerKind {
    LayerKind::Dense(Dense { units, activation: act, use_bias: true })
}

fn spatial(rate: f64) -> LayerKind {
    LayerKind::SpatialDropout { rate, mode: DropoutMode::PerTimestep }
}

fn conv_dims(
    h: usize,
    w: usize,
    k: (usize, usize),
    s: usize,
    dil: usize,
    p: Padding,
) -> conv2d::Conv2dDims {
    conv2d::Conv2dDims {
        n: 1,
        h,
        w,
        cin: 1,
        kh: k.0,
        kw: k.1,
        cout: 1,
        strides: (s, s),
        dilation: (dil, dil),
        padding: p,
    }
}

/// A small deterministic pseudo-random sequence in [-1, 1) (an LCG), for
/// inputs whose exact values do not matter.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

// ---------------------------------------------------------------- conv2d

#[test]
fn conv2d_valid_by_hand() {
    // 3x3 input 1..9, 2x2 kernel [[1, 0], [0, -1]]: y = x[i,j] - x[i+1,j+1] = -4 everywhere.
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let d = conv_dims(3, 3, (2, 2), 1, 1, Padding::Valid);
    let y =
        conv2d::conv2d(&x, &d, &[1.0, 0.0, 0.0, -1.0], Some(&[0.5]), Activation::Linear).unwrap();
    assert_eq!(y, vec![-3.5; 4]);
}

#[test]
fn conv2d_same_odd_total_pad_puts_extra_at_bottom() {
    // n = 15, k = 4, s = 2: out 8, total pad (8-1)*2 + 4 - 15 = 3 -> (1 before, 2 after).
    assert_eq!(Padding::Same.resolve(15, 4, 2), Some((8, 1)));
    // A 15x1 column x[r] = r + 1, kernel 4x1 of ones: y[i] sums rows 2i-1 ..= 2i+2.
    let x: Vec<f32> = (1..=15).map(|v| v as f32).collect();
    let d = conv_dims(15, 1, (4, 1), 2, 1, Padding::Same);
    let y = conv2d::conv2d(&x, &d, &[1.0; 4], None, Activation::Linear).unwrap();
    assert_eq!(y, vec![6.0, 14.0, 22.0, 30.0, 38.0, 46.0, 54.0, 29.0]);
}

#[test]
fn conv2d_stride_by_hand() {
    // 5x5 input x = 5r + c, 3x3 kernel of ones, stride 2: 9 * window centre.
    let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
    let d = conv_dims(5, 5, (3, 3), 2, 1, Padding::Valid);
    let y = conv2d::conv2d(&x, &d, &[1.0; 9], None, Activation::Linear).unwrap();
    assert_eq!(y, vec![54.0, 72.0, 144.0, 162.0]);
}

#[test]
fn conv2d_dilation_by_hand() {
    // 2x2 kernel of ones, dilation 2 on x = 5r + c: x[i,j] + x[i,j+2] + x[i+2,j] + x[i+2,j+2]
    // = 20i + 4j + 24.
    let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
    let d = conv_dims(5, 5, (2, 2), 1, 2, Padding::Valid);
    let y = conv2d::conv2d(&x, &d, &[1.0; 4], None, Activation::Linear).unwrap();
    assert_eq!(y, vec![24.0, 28.0, 32.0, 44.0, 48.0, 52.0, 64.0, 68.0, 72.0]);
}

#[test]
fn conv2d_channels_bias_activation_by_hand() {
    // 1x1 frame, Cin 2, Cout 2, K[c][o] = [[1, 2], [3, 4]], x = [1, -1], b = [0.5, 3]:
    // o0 = 1 - 3 + 0.5 = -1.5, o1 = 2 - 4 + 3 = 1.
    let mut d = conv_dims(1, 1, (1, 1), 1, 1, Padding::Valid);
    d.cin = 2;
    d.cout = 2;
    let k = [1.0, 2.0, 3.0, 4.0];
    let lin = conv2d::conv2d(&[1.0, -1.0], &d, &k, Some(&[0.5, 3.0]), Activation::Linear);
    assert_eq!(lin.unwrap(), vec![-1.5, 1.0]);
    let relu = conv2d::conv2d(&[1.0, -1.0], &d, &k, Some(&[0.5, 3.0]), Activation::Relu);
    assert_eq!(relu.unwrap(), vec![0.0, 1.0]);
    // Two frames are independent.
    d.n = 2;
    let two = conv2d::conv2d(&[1.0, -1.0, 0.0, 1.0], &d, &k, None, Activation::Linear);
    assert_eq!(two.unwrap(), vec![-2.0, -2.0, 3.0, 4.0]);
}

// ---------------------------------------------------------------- pooling

fn pool_dims(h: usize, w: usize, c: usize, p: usize, padding: Padding) -> pool2d::Pool2dDims {
    pool2d::Pool2dDims { n: 1, h, w, c, pool: (p, p), strides: (p, p), padding }
}

#[test]
fn pool2d_max_and_average_valid() {
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let d = pool_dims(4, 4, 1, 2, Padding::Valid);
    assert_eq!(pool2d::pool2d(&x, &d, PoolKind::Max).unwrap(), vec![6.0, 8.0, 14.0, 16.0]);
    assert_eq!(pool2d::pool2d(&x, &d, PoolKind::Average).unwrap(), vec![3.5, 5.5, 11.5, 13.5]);
}

#[test]
fn pool2d_same_pads_max_with_neg_inf_and_averages_valid_only() {
    // 3x3, pool 2 stride 2 'same': out 2x2, windows rows {0,1}, {2}; cols the same.
    let pos: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let neg: Vec<f32> = pos.iter().map(|v| -v).collect();
    let d = pool_dims(3, 3, 1, 2, Padding::Same);
    assert_eq!(pool2d::pool2d(&pos, &d, PoolKind::Max).unwrap(), vec![5.0, 6.0, 8.0, 9.0]);
    // Zero padding would give 0 in the three padded windows.
    assert_eq!(pool2d::pool2d(&neg, &d, PoolKind::Max).unwrap(), vec![-1.0, -3.0, -7.0, -9.0]);
    assert_eq!(pool2d::pool2d(&pos, &d, PoolKind::Average).unwrap(), vec![3.0, 4.5, 7.5, 9.0]);
}

#[test]
fn pool2d_channels_are_separate() {
    // 2x2x2 frame, channel 0 = 1..4, channel 1 = 10..40.
    let x = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0];
    let d = pool_dims(2, 2, 2, 2, Padding::Valid);
    assert_eq!(pool2d::pool2d(&x, &d, PoolKind::Max).unwrap(), vec![4.0, 40.0]);
    assert_eq!(pool2d::pool2d(&x, &d, PoolKind::Average).unwrap(), vec![2.5, 25.0]);
}

// ---------------------------------------------------------------- activations

#[test]
fn softmax_is_stable() {
    let mut x = [1000.0f32, 1000.0];
    activation::apply(Activation::Softmax, &mut x, 2);
    assert_eq!(x, [0.5, 0.5]);
    let mut y = [400.0f32, -400.0, 0.0, -400.0, 400.0, 400.0];
    activation::apply(Activation::Softmax, &mut y, 3);
    assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
    assert_eq!(&y[..3], &[1.0, 0.0, 0.0]);
    assert_eq!(&y[3..], &[0.0, 0.5, 0.5]);
    // Row-wise over the last axis: [ln 1, ln 3] -> [0.25, 0.75].
    let mut z = [0.0f32, 3f32.ln()];
    activation::apply(Activation::Softmax, &mut z, 2);
    assert_close("softmax", &z, &[0.25, 0.75], &[2], Tolerance::new(1e-7, 0.0));
}

#[test]
fn elementwise_activations_by_hand_and_at_extremes() {
    use Activation::*;
    let e = |a, x: f64| activation::eval(a, x);
    for a in [Sigmoid, Tanh, Softplus, Softsign, Silu, Elu, Selu, HardSigmoid, Relu] {
        for x in [-1000.0, 1000.0] {
            assert!(!e(a, x).is_nan(), "{a:?}({x}) is NaN");
        }
    }
    assert_eq!(e(Sigmoid, 1000.0), 1.0);
    assert_eq!(e(Sigmoid, -1000.0), 0.0);
    assert_eq!(e(Sigmoid, 0.0), 0.5);
    assert_eq!(e(Tanh, -1000.0), -1.0);
    assert_eq!(e(HardSigmoid, 0.0), 0.5);
    assert_eq!(e(HardSigmoid, 1.5), 0.75);
    assert_eq!(e(HardSigmoid, 3.0), 1.0);
    assert_eq!(e(HardSigmoid, -3.5), 0.0);
    assert_eq!(e(Relu, -2.0), 0.0);
    assert_eq!(e(Elu, 2.0), 2.0);
    assert!((e(Elu, -1.0) - (1.0 / std::f64::consts::E - 1.0)).abs() < 1e-15);
    // SELU: scale * x for x > 0, scale * alpha * (e^x - 1) below; saturates at -scale * alpha.
    assert!((e(Selu, 1.0) - 1.050_700_987_355_480_5).abs() < 1e-15);
    assert!((e(Selu, -1000.0) + 1.050_700_987_355_480_5 * 1.673_263_242_354_377_3).abs() < 1e-12);
    assert_eq!(e(Softplus, 1000.0), 1000.0);
    assert_eq!(e(Softplus, -1000.0), 0.0);
    assert!((e(Softplus, 0.0) - 2f64.ln()).abs() < 1e-15);
    assert_eq!(e(Softsign, 3.0), 0.75);
    assert_eq!(e(Silu, 1000.0), 1000.0);
    assert_eq!(e(Silu, -1000.0), 0.0);
    assert_eq!(e(Exponential, 0.0), 1.0);
    assert_eq!(e(Linear, -7.5), -7.5);
}

// ---------------------------------------------------------------- masking

#[test]
fn masking_marks_all_equal_steps_only() {
    // 2 samples x 4 steps x 2 values; mask value 0.
    let x = [
        0.0,
        0.0,
        1.0,
        0.0,
        -0.0,
        -0.0,
        0.0,
        0.0, // sample 0: start, middle (-0.0), end masked
        f32::NAN,
        0.0,
        1e-30,
        0.0,
        0.0,
        0.0,
        5.0,
        5.0, // sample 1: NaN and 1e-30 keep valid
    ];
    let m = masking::timestep_mask(&x, 8, 2, 0.0);
    assert_eq!(m, vec![0, 1, 0, 0, 1, 1, 0, 1]);
    let mut y = x;
    masking::zero_masked(&mut y, &m, 2);
    assert_eq!(&y[..8], &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(y[8].is_nan());
    // Another mask value: [-1, -1] is masked and comes out as 0; [0, 0] and [-1, 2] are not.
    let z = [-1.0, -1.0, 0.0, 0.0, -1.0, 2.0];
    let m = masking::timestep_mask(&z, 3, 2, -1.0);
    assert_eq!(m, vec![0, 1, 1]);
    let mut w = z;
    masking::zero_masked(&mut w, &m, 2);
    assert_eq!(w, [0.0, 0.0, 0.0, 0.0, -1.0, 2.0]);
}

#[test]
fn masking_all_masked_sample_and_frames() {
    // Frames [2, 2, 1] per step, 2 samples x 2 steps; sample 1 is all zeros.
    let mut x = vec![0.0f32; 16];
    x[1] = 3.0; // sample 0, step 0: one nonzero pixel keeps it valid
    let m = masking::timestep_mask(&x, 4, 4, 0.0);
    assert_eq!(m, vec![1, 0, 0, 0]);
}

// ---------------------------------------------------------------- dropout

#[test]
fn spatial_dropout_rate_within_binomial_bounds() {
    let (b, t, c, rate) = (64, 8, 32, 0.25);
    let keep =
        dropout::spatial_keep_mask(rng::layer_seed(7, 1), rate, DropoutMode::PerTimestep, b, t, c);
    assert_eq!(keep.len(), b * t * c);
    let n = keep.len() as f64;
    let dropped = keep.iter().filter(|&&k| k == 0).count() as f64;
    let sd = (n * rate * (1.0 - rate)).sqrt();
    assert!((dropped - n * rate).abs() < 5.0 * sd, "dropped {dropped} of {n}");
    for rate in [0.0, 0.5] {
        let keep = dropout::element_keep_mask(3, rate, 16, 4, 100);
        let n = keep.len() as f64;
        let dropped = keep.iter().filter(|&&k| k == 0).count() as f64;
        let sd = (n * rate * (1.0 - rate)).sqrt();
        assert!((dropped - n * rate).abs() <= 5.0 * sd, "rate {rate}: dropped {dropped}");
    }
}

#[test]
fn spatial_dropout_per_timestep_differs_across_t_and_per_sample_agrees() {
    let (b, t, c, rate) = (32, 6, 16, 0.5);
    let seed = rng::layer_seed(11, 2);
    let per_t = dropout::spatial_keep_mask(seed, rate, DropoutMode::PerTimestep, b, t, c);
    // Independent draws: a (b, c) pair keeps one decision over all 6 steps with
    // probability 2 * 0.5^6 = 1/32; a shared mask would make it 1.
    let same = (0..b)
        .flat_map(|bi| (0..c).map(move |ci| (bi, ci)))
        .filter(|&(bi, ci)| {
            (1..t).all(|ti| per_t[(bi * t + ti) * c + ci] == per_t[bi * t * c + ci])
        })
        .count();
    assert!(same < b * c / 8, "{same} of {} pairs constant over t", b * c);
    // Entry (b, t, c) is the hash decision for exactly those counters.
    let thr = rng::drop_threshold(rate);
    assert_eq!(per_t[(3 * t + 2) * c + 5], u8::from(rng::keep(seed, thr, 3, 2, 5)));

    let per_s = dropout::spatial_keep_mask(seed, rate, DropoutMode::PerSample, b, t, c);
    assert_eq!(per_s.len(), b * c);
    assert_eq!(per_s[4 * c + 7], u8::from(rng::keep(seed, thr, 4, 0, 7)));
    // Applied: every timestep of a sample sees the same channels dropped.
    let (h, w) = (2, 3);
    let mut x = vec![1.0f32; b * t * h * w * c];
    dropout::apply_spatial(&mut x, &per_s, DropoutMode::PerSample, b, t, h * w, c, 2.0);
    for bi in 0..b {
        for ti in 0..t {
            for s in 0..h * w {
                for ci in 0..c {
                    let v = x[((bi * t + ti) * h * w + s) * c + ci];
                    assert_eq!(v, if per_s[bi * c + ci] == 1 { 2.0 } else { 0.0 });
                }
            }
        }
    }
}

#[test]
fn dropout_scales_kept_values_exactly() {
    let rate = 0.2;
    let scale = rng::keep_scale(rate);
    assert_eq!(scale, 1.25);
    let (b, t, hw, c) = (2, 3, 4, 5);
    let x = values(b * t * hw * c, 9);
    let keep = dropout::spatial_keep_mask(1, rate, DropoutMode::PerTimestep, b, t, c);
    let mut y = x.clone();
    dropout::apply_spatial(&mut y, &keep, DropoutMode::PerTimestep, b, t, hw, c, scale);
    for (i, (&xv, &yv)) in x.iter().zip(&y).enumerate() {
        let (ci, bt) = (i % c, i / (hw * c));
        if keep[bt * c + ci] == 1 {
            assert_eq!(yv, xv * 1.25);
        } else {
            assert_eq!(yv, 0.0);
        }
    }
    let keep = dropout::element_keep_mask(1, rate, 1, 1, x.len());
    let mut z = x.clone();
    dropout::apply_elements(&mut z, &keep, scale);
    for ((&xv, &zv), &k) in x.iter().zip(&z).zip(&keep) {
        assert_eq!(zv, if k == 1 { xv * 1.25 } else { 0.0 });
    }
}

fn small_conv_model(mode: DropoutMode) -> Model {
    let mut m = ModelBuilder::new("drop", None, &[6, 6, 2])
        .layer(conv(4, 3, Padding::Valid, Activation::Relu))
        .layer(LayerKind::SpatialDropout { rate: 0.5, mode })
        .layer(LayerKind::Flatten)
        .layer(LayerKind::Dropout { rate: 0.3 })
        .layer(lstm_layer(3, false))
        .layer(dense_layer(2, Activation::Softmax))
        .build()
        .unwrap();
    init::keras_default_weights(&mut m, 5).unwrap();
    m
}

#[test]
fn dropout_inference_is_identity_and_training_follows_the_mask() {
    let m = small_conv_model(DropoutMode::PerTimestep);
    let (b, t) = (3, 4);
    let x = Tensor::new(vec![b, t, 6, 6, 2], values(b * t * 72, 1)).unwrap();
    let opts = RunOptions { training: false, seed: 0, capture_layers: true };
    let f = reference::forward(&m, &x, &opts).unwrap();
    assert_eq!(f.layers[1].value, f.layers[0].value);
    assert_eq!(f.layers[3].value, f.layers[2].value);

    let opts = RunOptions { training: true, seed: 42, capture_layers: true };
    let g = reference::forward(&m, &x, &opts).unwrap();
    let conv_out = g.layers[0].value.data();
    let dropped = g.layers[1].value.data();
    let seed = rng::layer_seed(42, 1);
    let thr = rng::drop_threshold(0.5);
    let c = 4;
    for (i, (&a, &d)) in conv_out.iter().zip(dropped).enumerate() {
        let ci = i % c;
        let bt = i / (16 * c);
        let kept = rng::keep(seed, thr, (bt / t) as u32, (bt % t) as u32, ci as u32);
        assert_eq!(d, if kept { a * 2.0 } else { 0.0 }, "at {i}");
    }
    // Element dropout: e indexes one timestep's 64 features.
    let seed3 = rng::layer_seed(42, 3);
    let thr3 = rng::drop_threshold(0.3);
    let before = g.layers[2].value.data();
    let after = g.layers[3].value.data();
    for (i, (&a, &d)) in before.iter().zip(after).enumerate() {
        let (bt, e) = (i / 64, i % 64);
        let kept = rng::keep(seed3, thr3, (bt / t) as u32, (bt % t) as u32, e as u32);
        assert_eq!(d, if kept { a * rng::keep_scale(0.3) } else { 0.0 });
    }
    // A different seed gives a different mask; the same seed the same output.
    let again = reference::forward(&m, &x, &opts).unwrap();
    assert_eq!(again.output, g.output);
    let other = RunOptions { seed: 43, ..opts };
    assert_ne!(reference::forward(&m, &x, &other).unwrap().layers[1].value, g.layers[1].value);
}

// ---------------------------------------------------------------- LSTM

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One unit, one feature: weights per gate i, f, c, o, written out by hand.
fn lstm1_step(x: f64, h: f64, c: f64, k: [f64; 4], r: [f64; 4], b: [f64; 4]) -> (f64, f64) {
    let z = |g: usize| x * k[g] + h * r[g] + b[g];
    let (i, f, g, o) = (sig(z(0)), sig(z(1)), z(2).tanh(), sig(z(3)));
    let c2 = f * c + i * g;
    (o * c2.tanh(), c2)
}

fn dims(b: usize, t: usize, f: usize, u: usize, zero: bool) -> lstm::LstmDims {
    lstm::LstmDims {
        b,
        t,
        f,
        units: u,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
        zero_output_for_mask: zero,
    }
}

#[test]
fn lstm_two_steps_by_hand() {
    let k = [0.5, -0.25, 0.75, 1.0];
    let r = [0.1, 0.2, -0.3, 0.4];
    let b = [0.0, 1.0, 0.05, -0.1];
    let xs = [1.0, -2.0];
    let (h1, c1) = lstm1_step(xs[0], 0.0, 0.0, k, r, b);
    let (h2, c2) = lstm1_step(xs[1], h1, c1, k, r, b);
    let f32s = |a: [f64; 4]| a.map(|v| v as f32);
    let seq = lstm::lstm(
        &[1.0, -2.0],
        &dims(1, 2, 1, 1, false),
        &f32s(k),
        &f32s(r),
        Some(&f32s(b)),
        None,
    );
    let tol = Tolerance::new(1e-7, 0.0);
    assert_close("h", &seq.h, &[h1 as f32, h2 as f32], &[1, 2, 1], tol);
    assert_close("c", &seq.c, &[c1 as f32, c2 as f32], &[1, 2, 1], tol);
    assert_eq!(seq.output, seq.h);
}

#[test]
fn lstm_gate_blocks_are_i_f_c_o_over_units() {
    // Two units, one feature, no recurrence: unit k of gate g reads column g*U + k.
    // With x = 1 and R = 0: z = K + b. Put distinct values per (gate, unit).
    let k: Vec<f32> = vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
    let seq = lstm::lstm(&[1.0], &dims(1, 1, 1, 2, false), &k, &[0.0; 16], None, None);
    for unit in 0..2 {
        let z = |g: usize| f64::from(k[g * 2 + unit]);
        let c = sig(z(0)) * z(2).tanh(); // f * 0 + i * g
        let h = sig(z(3)) * c.tanh();
        assert!((f64::from(seq.c[unit]) - c).abs() < 1e-7);
        assert!((f64::from(seq.h[unit]) - h).abs() < 1e-7);
    }
}

/// Runs an LSTM(2) on one feature with fixed weights.
fn masked_run(xs: &[f32], mask: Option<&[u8]>, zero: bool) -> lstm::LstmSequences {
    let k = [0.3, -0.2, 0.5, 0.1, 0.7, 0.4, -0.6, 0.2];
    let r: Vec<f32> = values(16, 3).iter().map(|v| v * 0.5).collect();
    let b = [0.0, 0.1, 1.0, 1.0, 0.0, -0.1, 0.2, 0.0];
    lstm::lstm(xs, &dims(1, xs.len(), 1, 2, zero), &k, &r, Some(&b), mask)
}

#[test]
fn lstm_masked_steps_carry_state_and_repeat_output() {
    let xs = [0.9f32, -0.4, 1.3, 0.2];
    for (mask, valid) in [
        ([0u8, 0, 1, 1], vec![2usize, 3]), // leading
        ([1, 0, 0, 1], vec![0, 3]),        // middle
        ([1, 1, 0, 0], vec![0, 1]),        // trailing
        ([0, 0, 0, 0], vec![]),            // all masked
    ] {
        let seq = masked_run(&xs, Some(&mask), false);
        // The same LSTM on the valid steps only.
        let only: Vec<f32> = valid.iter().map(|&t| xs[t]).collect();
        let short = masked_run(&only, None, false);
        let mut last_h = [0.0f32; 2];
        let mut last_c = [0.0f32; 2];
        let mut k = 0;
        for t in 0..4 {
            if mask[t] == 1 {
                last_h.copy_from_slice(&short.h[k * 2..k * 2 + 2]);
                last_c.copy_from_slice(&short.c[k * 2..k * 2 + 2]);
                k += 1;
            }
            assert_eq!(&seq.h[t * 2..t * 2 + 2], &last_h, "mask {mask:?} step {t}");
            assert_eq!(&seq.c[t * 2..t * 2 + 2], &last_c, "mask {mask:?} step {t}");
            assert_eq!(&seq.output[t * 2..t * 2 + 2], &last_h, "mask {mask:?} step {t}");
        }
        // Inputs at masked steps have no effect.
        let scaled: Vec<f32> =
            xs.iter().zip(&mask).map(|(&x, &m)| if m == 0 { x * 100.0 } else { x }).collect();
        assert_eq!(masked_run(&scaled, Some(&mask), false), seq);
    }
}

#[test]
fn lstm_zero_output_for_mask() {
    let xs = [0.9f32, -0.4, 1.3, 0.2];
    let mask = [1u8, 0, 1, 0];
    let carry = masked_run(&xs, Some(&mask), false);
    let zero = masked_run(&xs, Some(&mask), true);
    assert_eq!(zero.h, carry.h);
    assert_eq!(zero.c, carry.c);
    assert_eq!(&zero.output[0..2], &carry.h[0..2]);
    assert_eq!(&zero.output[2..4], &[0.0, 0.0]);
    assert_eq!(&zero.output[4..6], &carry.h[4..6]);
    assert_eq!(&zero.output[6..8], &[0.0, 0.0]);
    assert_ne!(&carry.output[6..8], &[0.0, 0.0]);
}

#[test]
fn model_lstm_last_output_with_trailing_mask() {
    // Masking -> LSTM(return_sequences=False): the last valid h, or 0 with zero_output_for_mask.
    for zero in [false, true] {
        let mut m = ModelBuilder::new("m", None, &[1])
            .layer(LayerKind::Masking { mask_value: 0.0 })
            .layer(LayerKind::Lstm(Lstm {
                units: 2,
                return_sequences: false,
                zero_output_for_mask: zero,
                activation: Activation::Tanh,
                recurrent_activation: Activation::Sigmoid,
                use_bias: true,
            }))
            .build()
            .unwrap();
        init::keras_default_weights(&mut m, 1).unwrap();
        // Sample 0 trailing-masked after step 1; sample 1 all masked.
        let x = Tensor::new(vec![2, 3, 1], vec![0.5, -1.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
        let opts = RunOptions { capture_layers: true, ..Default::default() };
        let f = reference::forward(&m, &x, &opts).unwrap();
        assert_eq!(f.layers[0].mask.as_deref(), Some(&[1u8, 1, 0, 0, 0, 0][..]));
        assert_eq!(f.layers[1].mask, None);
        let d = dims(1, 2, 1, 2, false);
        let (k, r, b) = (
            m.weight(1, "kernel").unwrap(),
            m.weight(1, "recurrent_kernel").unwrap(),
            m.weight(1, "bias").unwrap(),
        );
        let valid = lstm::lstm(&[0.5, -1.0], &d, k.data(), r.data(), Some(b.data()), None);
        let want0: &[f32] = if zero { &[0.0, 0.0] } else { &valid.h[2..4] };
        assert_eq!(&f.output.data()[0..2], want0);
        assert_eq!(&f.output.data()[2..4], &[0.0, 0.0]);
    }
}

// ---------------------------------------------------------------- model building

fn article_example(
    mask: bool,
    spatial_after_flatten: bool,
    second_lstm: bool,
) -> cnn_lstm::Result<Model> {
    let mut m = ModelBuilder::new("article", None, &[64, 64, 3]);
    if mask {
        m = m.layer(LayerKind::Masking { mask_value: 0.0 });
    }
    m = m.layer(conv(32, 3, Padding::Valid, Activation::Relu));
    if spatial_after_flatten {
        m = m.layer(LayerKind::Flatten).layer(spatial(0.2));
    } else {
        m = m.layer(spatial(0.2)).layer(LayerKind::Flatten);
    }
    m = m.layer(lstm_layer(64, second_lstm));
    if second_lstm {
        m = m.layer(lstm_layer(32, false));
    }
    m.layer(dense_layer(10, Activation::Softmax)).build()
}

#[test]
fn article_param_counts() {
    assert_eq!(article_example(false, false, true).unwrap().param_count(), 31_520_330);
    assert_eq!(article_example(true, false, false).unwrap().param_count(), 31_508_234);
}

#[test]
fn article_example2_spatial_dropout_after_flatten_is_rejected() {
    let err = article_example(false, true, true).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Layer { index: 2, .. }), "{text}");
    assert!(text.contains("spatial_dropout2d"), "{text}");
    assert!(text.contains("between the convolution and the Flatten"), "{text}");
}

// ---------------------------------------------------------------- init

#[test]
fn keras_default_init_properties() {
    let mut m = ModelBuilder::new("m", None, &[8, 8, 3])
        .layer(conv(6, 3, Padding::Same, Activation::Relu))
        .layer(LayerKind::Flatten)
        .layer(lstm_layer(5, false))
        .layer(dense_layer(4, Activation::Linear))
        .build()
        .unwrap();
    init::keras_default_weights(&mut m, 17).unwrap();
    // Glorot bounds: conv fan_in 27, fan_out 54; LSTM kernel 384 x 20; dense 5 x 4.
    for (layer, limit) in
        [(0, (6.0f64 / 81.0).sqrt()), (2, (6.0 / 404.0f64).sqrt()), (3, (6.0 / 9.0f64).sqrt())]
    {
        let w = m.weight(layer, "kernel").unwrap().data();
        assert!(w.iter().all(|&v| f64::from(v).abs() <= limit), "layer {layer}");
        let var = w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / w.len() as f64;
        // U(-l, l) has variance l^2 / 3.
        if w.len() > 1000 {
            assert!((var / (limit * limit / 3.0) - 1.0).abs() < 0.1, "layer {layer} var {var}");
        }
    }
    assert!(m.weight(0, "bias").unwrap().data().iter().all(|&v| v == 0.0));
    let b = m.weight(2, "bias").unwrap().data();
    assert_eq!(b, &[[0.0f32; 5], [1.0; 5], [0.0; 5], [0.0; 5]].concat()[..]);
    // Orthogonal recurrent kernel [5, 20]: R R^T = I.
    let r = m.weight(2, "recurrent_kernel").unwrap().data();
    for i in 0..5 {
        for j in 0..5 {
            let dot: f64 =
                (0..20).map(|k| f64::from(r[i * 20 + k]) * f64::from(r[j * 20 + k])).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-6, "({i}, {j}): {dot}");
        }
    }
    // Deterministic for a seed, different across seeds.
    let mut again = m.clone();
    init::keras_default_weights(&mut again, 17).unwrap();
    assert_eq!(again.weight(2, "kernel"), m.weight(2, "kernel"));
    init::keras_default_weights(&mut again, 18).unwrap();
    assert_ne!(again.weight(2, "kernel"), m.weight(2, "kernel"));
}

#[test]
fn forward_rejects_bad_input_and_reports_progress() {
    let m = small_conv_model(DropoutMode::PerSample);
    let bad = Tensor::zeros(vec![1, 2, 6, 5, 2]);
    assert!(matches!(
        reference::forward(&m, &bad, &RunOptions::default()),
        Err(Error::Input { .. })
    ));
    let x = Tensor::new(vec![1, 3, 6, 6, 2], values(216, 4)).unwrap();
    let mut seen = Vec::new();
    let f = reference::forward_with_progress(&m, &x, &RunOptions::default(), &mut |p| {
        seen.push((p.layer, p.timestep))
    })
    .unwrap();
    assert_eq!(f.timings.len(), 6);
    assert!(f.layers.is_empty());
    assert_eq!(f.output.shape(), &[1, 2]);
    assert_eq!(seen.iter().filter(|(l, ts)| *l == 4 && ts.is_some()).count(), 3);
    assert_eq!(seen.iter().filter(|(_, ts)| ts.is_none()).count(), 6);
    let sum: f32 = f.output.data().iter().sum();
    assert!((sum - 1.0).abs() < 1e-6);
}

// ---------------------------------------------------------------- Keras fixtures

struct Fixture {
    weights: BTreeMap<(String, String), Tensor>,
    io: BTreeMap<String, (Vec<usize>, Vec<u8>)>,
}

fn load_fixture(name: &str) -> Fixture {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras").join(name);
    let wbytes = std::fs::read(dir.join("weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&wbytes).unwrap();
    let mut weights = BTreeMap::new();
    for (key, view) in st.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{key}");
        // Keys are `[sequential/]<layer>/[<inner>/]<variable>`; the layer is the
        // top-level name, the variable the last segment.
        let parts: Vec<&str> = key.split('/').collect();
        let parts = if parts[0] == "sequential" { &parts[1..] } else { &parts[..] };
        let layer = parts[0].to_string();
        let variable = parts[parts.len() - 1].to_string();
        weights.insert(
            (layer, variable),
            Tensor::new(view.shape().to_vec(), f32s(view.data())).unwrap(),
        );
    }
    let iobytes = std::fs::read(dir.join("io.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&iobytes).unwrap();
    let io = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.shape().to_vec(), v.data().to_vec())))
        .collect();
    Fixture { weights, io }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn check_fixture(name: &str, mut model: Model) {
    let fx = load_fixture(name);
    model.set_weights(fx.weights).unwrap();
    let (shape, bytes) = &fx.io["input"];
    let input = Tensor::new(shape.clone(), f32s(bytes)).unwrap();
    let opts = RunOptions { capture_layers: true, ..Default::default() };
    let f = reference::forward(&model, &input, &opts).unwrap();
    assert_eq!(f.layers.len(), model.layers().len());
    for out in &f.layers {
        let (shape, bytes) = &fx.io[&format!("layer/{}", out.name)];
        assert_eq!(out.value.shape(), &shape[..], "{}", out.name);
        assert_close(&out.name, out.value.data(), &f32s(bytes), shape, Tolerance::KERAS);
        let keras_mask = fx.io.get(&format!("mask/{}", out.name)).map(|(_, m)| m.clone());
        assert_eq!(out.mask, keras_mask, "mask of {}", out.name);
    }
    let (shape, bytes) = &fx.io["output"];
    let c = compare(f.output.data(), &f32s(bytes), shape, Tolerance::KERAS);
    assert!(c.is_ok(), "output: {c}");
}

#[test]
fn keras_fixture_article_small() {
    let m = ModelBuilder::new("article_small", Some(5), &[16, 16, 3])
        .named_layer("time_distributed", conv(8, 3, Padding::Valid, Activation::Relu))
        .named_layer("time_distributed_1", spatial(0.2))
        .named_layer("time_distributed_2", LayerKind::Flatten)
        .named_layer("lstm", lstm_layer(16, true))
        .named_layer("lstm_1", lstm_layer(8, false))
        .named_layer("dense", dense_layer(10, Activation::Softmax))
        .build()
        .unwrap();
    assert_eq!(m.param_count(), 102_554);
    check_fixture("article_small", m);
}

#[test]
fn keras_fixture_mask_trailing_middle() {
    let m = ModelBuilder::new("mask_trailing_middle", Some(6), &[12, 12, 3])
        .named_layer("time_distributed", LayerKind::Flatten)
        .named_layer("masking", LayerKind::Masking { mask_value: 0.0 })
        .named_layer("time_distributed_1", LayerKind::Reshape { target: vec![12, 12, 3] })
        .named_layer("time_distributed_2", conv(8, 3, Padding::Valid, Activation::Relu))
        .named_layer("time_distributed_3", spatial(0.2))
        .named_layer("time_distributed_4", LayerKind::Flatten)
        .named_layer("lstm", lstm_layer(16, true))
        .named_layer("lstm_1", lstm_layer(8, false))
        .named_layer("dense", dense_layer(3, Activation::Softmax))
        .build()
        .unwrap();
    check_fixture("mask_trailing_middle", m);
}

#[test]
fn masking_directly_on_frames_matches_the_keras_flatten_recipe() {
    // The crate's documented deviation: Masking on 5-D frames masks a step iff
    // its whole frame equals the mask value, the same as Flatten -> Masking -> Reshape.
    let fx = load_fixture("mask_trailing_middle");
    let m = ModelBuilder::new("direct", Some(6), &[12, 12, 3])
        .named_layer("masking", LayerKind::Masking { mask_value: 0.0 })
        .named_layer("time_distributed_2", conv(8, 3, Padding::Valid, Activation::Relu))
        .named_layer("time_distributed_3", spatial(0.2))
        .named_layer("time_distributed_4", LayerKind::Flatten)
        .named_layer("lstm", lstm_layer(16, true))
        .named_layer("lstm_1", lstm_layer(8, false))
        .named_layer("dense", dense_layer(3, Activation::Softmax))
        .build()
        .unwrap();
    let mut m = m;
    m.set_weights(fx.weights).unwrap();
    let (shape, bytes) = &fx.io["input"];
    let input = Tensor::new(shape.clone(), f32s(bytes)).unwrap();
    let f = reference::forward(&m, &input, &RunOptions::default()).unwrap();
    let (shape, bytes) = &fx.io["output"];
    assert_close("output", f.output.data(), &f32s(bytes), shape, Tolerance::KERAS);
}

fn strided_conv(filters: usize, k: usize, s: usize, padding: Padding) -> LayerKind {
    LayerKind::Conv2D(Conv2D {
        filters,
        kernel: (k, k),
        strides: (s, s),
        dilation: (1, 1),
        padding,
        activation: Activation::Relu,
        use_bias: true,
    })
}

fn max_pool(p: usize) -> LayerKind {
    LayerKind::Pool2D(Pool2D {
        kind: PoolKind::Max,
        pool: (p, p),
        strides: (p, p),
        padding: Padding::Valid,
    })
}

#[test]
fn keras_fixture_same_stride2_even_kernel() {
    let m = ModelBuilder::new("same_stride2_even_kernel", Some(4), &[15, 15, 2])
        .named_layer("time_distributed", strided_conv(6, 4, 2, Padding::Same))
        .named_layer("time_distributed_1", spatial(0.1))
        .named_layer("time_distributed_2", LayerKind::Flatten)
        .named_layer("lstm", lstm_layer(12, false))
        .named_layer("dense", dense_layer(4, Activation::Softmax))
        .build()
        .unwrap();
    check_fixture("same_stride2_even_kernel", m);
}

#[test]
fn keras_fixture_two_conv_maxpool() {
    let m = ModelBuilder::new("two_conv_maxpool", Some(4), &[20, 20, 1])
        .named_layer("time_distributed", strided_conv(8, 3, 1, Padding::Same))
        .named_layer("time_distributed_1", max_pool(2))
        .named_layer("time_distributed_2", strided_conv(12, 3, 1, Padding::Valid))
        .named_layer("time_distributed_3", max_pool(2))
        .named_layer("time_distributed_4", spatial(0.3))
        .named_layer("time_distributed_5", LayerKind::Flatten)
        .named_layer("lstm", lstm_layer(16, false))
        .named_layer("dense", dense_layer(5, Activation::Softmax))
        .build()
        .unwrap();
    check_fixture("two_conv_maxpool", m);
}

#[test]
fn keras_fixture_dense_relu_head() {
    let m = ModelBuilder::new("dense_relu_head", Some(5), &[12, 12, 3])
        .named_layer("time_distributed", strided_conv(8, 3, 2, Padding::Valid))
        .named_layer("time_distributed_1", spatial(0.2))
        .named_layer("time_distributed_2", LayerKind::Flatten)
        .named_layer("lstm", lstm_layer(24, true))
        .named_layer("lstm_1", lstm_layer(12, false))
        .named_layer("dense", dense_layer(32, Activation::Relu))
        .named_layer("dense_1", dense_layer(10, Activation::Softmax))
        .build()
        .unwrap();
    check_fixture("dense_relu_head", m);
}

#[test]
fn keras_fixture_batch1_sigmoid() {
    let m = ModelBuilder::new("batch1_sigmoid", Some(6), &[14, 14, 2])
        .named_layer("time_distributed", strided_conv(4, 3, 1, Padding::Valid))
        .named_layer("time_distributed_1", spatial(0.2))
        .named_layer("time_distributed_2", LayerKind::Flatten)
        .named_layer("lstm", lstm_layer(10, false))
        .named_layer("dense", dense_layer(1, Activation::Sigmoid))
        .build()
        .unwrap();
    check_fixture("batch1_sigmoid", m);
}

#[test]
fn keras_fixture_seq_out_td_dense_dyn_t() {
    let m = ModelBuilder::new("seq_out_td_dense_dynT", None, &[10, 10, 3])
        .named_layer("time_distributed", strided_conv(6, 3, 1, Padding::Same))
        .named_layer("time_distributed_1", spatial(0.2))
        .named_layer("time_distributed_2", LayerKind::Flatten)
        .named_layer("lstm", lstm_layer(16, true))
        .named_layer("time_distributed_3", dense_layer(6, Activation::Softmax))
        .build()
        .unwrap();
    check_fixture("seq_out_td_dense_dynT", m);
}
