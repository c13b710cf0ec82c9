//! Dropout masks and their application, on the crate's stateless hash.
//!
//! Mask generation is separate from mask application so tests (and the GPU
//! path) can check masks bit for bit. `seed` is the layer seed
//! [`crate::rng::layer_seed`]`(run seed, layer index)`; a unit is kept iff
//! [`crate::rng::keep`]`(seed, drop_threshold(rate), ...)`, and kept values are
//! multiplied by [`crate::rng::keep_scale`]`(rate)`. Inference is the identity
//! and does not call these functions.

use crate::model::DropoutMode;
use crate::rng;

/// Keep mask of spatial dropout, 1 = keep.
///
/// - [`DropoutMode::PerTimestep`] (`TimeDistributed(SpatialDropout2D)`):
///   `[B, T, C]`, entry `(b, t, c)` = `keep(seed, thr, b, t, c)`.
/// - [`DropoutMode::PerSample`] (`SpatialDropout3D`): `[B, C]`, entry
///   `(b, c)` = `keep(seed, thr, b, 0, c)`, shared by every timestep.
pub fn spatial_keep_mask(
    seed: u32,
    rate: f64,
    mode: DropoutMode,
    b: usize,
    t: usize,
    c: usize,
) -> Vec<u8> {
    let thr = rng::drop_threshold(rate);
    let steps = match mode {
        DropoutMode::PerTimestep => t,
        DropoutMode::PerSample => 1,
    };
    let mut mask = Vec::with_capacity(b * steps * c);
    for bi in 0..b {
        for ti in 0..steps {
            for ci in 0..c {
                mask.push(u8::from(rng::keep(seed, thr, bi as u32, ti as u32, ci as u32)));
            }
        }
    }
    mask
}

/// Applies a spatial keep mask to `x` = `[B, T, S, C]` (`S = H * W`): value
/// `(b, t, s, c)` becomes `x * scale` if kept, else 0. The mask is `[B, T, C]`
/// for [`DropoutMode::PerTimestep`] and `[B, C]` for [`DropoutMode::PerSample`].
#[allow(clippy::too_many_arguments)]
pub fn apply_spatial(
    x: &mut [f32],
    keep: &[u8],
    mode: DropoutMode,
    b: usize,
    t: usize,
    spatial: usize,
    c: usize,
    scale: f32,
) {
    for bi in 0..b {
        for ti in 0..t {
            let mrow = match mode {
                DropoutMode::PerTimestep => &keep[(bi * t + ti) * c..][..c],
                DropoutMode::PerSample => &keep[bi * c..][..c],
            };
            let frame = &mut x[(bi * t + ti) * spatial * c..][..spatial * c];
            for px in frame.chunks_mut(c) {
                for (v, &k) in px.iter_mut().zip(mrow) {
                    *v = if k == 1 { *v * scale } else { 0.0 };
                }
            }
        }
    }
}

/// Keep mask of element dropout, `[B, T, E]`: entry `(b, t, e)` =
/// `keep(seed, thr, b, t, e)`, where `e` indexes one timestep's values (or
/// one sample's values when there is no time axis; pass `t = 1` then).
pub fn element_keep_mask(seed: u32, rate: f64, b: usize, t: usize, e: usize) -> Vec<u8> {
    let thr = rng::drop_threshold(rate);
    let mut mask = Vec::with_capacity(b * t * e);
    for bi in 0..b {
        for ti in 0..t {
            for ei in 0..e {
                mask.push(u8::from(rng::keep(seed, thr, bi as u32, ti as u32, ei as u32)));
            }
        }
    }
    mask
}

/// Applies an element keep mask of the same length as `x`: kept values are
/// multiplied by `scale`, dropped ones become 0.
pub fn apply_elements(x: &mut [f32], keep: &[u8], scale: f32) {
    for (v, &k) in x.iter_mut().zip(keep) {
        *v = if k == 1 { *v * scale } else { 0.0 };
    }
}
