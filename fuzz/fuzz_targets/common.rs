//! What every target does once a model has loaded: the steps a user takes
//! next, bounded so the fuzzer spends its time in the loaders.

use cnn_lstm::model::LayerKind;
use cnn_lstm::{reference, Model, RunOptions, Tensor};

/// Most multiply-adds (roughly) a forward pass may cost before it is skipped.
const MAX_WORK: u64 = 20_000_000;

/// A rough, overflow-free upper bound on one timestep's forward cost.
fn work(model: &Model) -> u64 {
    let mut total = model.input().frame.iter().map(|&d| d as u64).product::<u64>();
    for (layer, info) in model.layers().iter().zip(model.infos()) {
        let out = info.output.elements() as u64;
        let last = info.output.dims.last().copied().unwrap_or(1).max(1) as u64;
        let per_out = match &layer.kind {
            LayerKind::Pool2D(p) => (p.pool.0 as u64).saturating_mul(p.pool.1 as u64),
            _ => info.params as u64 / last + 1,
        };
        let lstm = info.params as u64; // an LSTM touches every weight per step
        total = total.saturating_add(out.saturating_mul(per_out)).saturating_add(lstm);
    }
    total
}

/// Runs what follows a successful load: the summary accessors, and when the
/// model is small a reference forward pass on zeros (B = 2, T = 2 or the
/// fixed T), in inference and training mode with capture.
pub fn exercise(model: &Model) {
    let _ = model.param_count();
    let _ = model.output_shape().keras_str(model.input().time_steps);
    let _ = model.weight_specs();
    let t = model.input().time_steps.unwrap_or(2);
    if t > 4 || work(model).saturating_mul(2 * t as u64) > MAX_WORK {
        return;
    }
    let mut shape = vec![2, t];
    shape.extend_from_slice(&model.input().frame);
    let input = Tensor::zeros(shape);
    // A model loaded from JSON alone has no weights yet: running it must be
    // refused, and with default weights it must run.
    let mut owned;
    let model = if model.check_weights().is_err() {
        assert!(reference::forward(model, &input, &RunOptions::default()).is_err());
        owned = model.clone();
        cnn_lstm::init::keras_default_weights(&mut owned, 1).expect("default weights");
        &owned
    } else {
        model
    };
    let out = reference::forward(model, &input, &RunOptions::default())
        .expect("a loaded model must run on an input of its own shape");
    assert_eq!(out.output.shape(), model.output_shape().with_batch(2, t).as_slice());
    let opts = RunOptions { training: true, seed: 7, capture_layers: true };
    if model.check_training(true).is_err() {
        assert!(reference::forward(model, &input, &opts).is_err());
        return;
    }
    let out = reference::forward(model, &input, &opts).expect("training mode must run too");
    assert_eq!(out.layers.len(), model.layers().len());
}
