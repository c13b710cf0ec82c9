//! A plain host tensor: f32 values in row-major order with their shape.

use crate::error::{Error, Result};

/// Row-major f32 tensor on the host.
///
/// Model inputs are `[B, T, H, W, C]` (channels last, as Keras); layer
/// outputs are `[B, T, ...]` while a time axis exists and `[B, ...]` after
/// an LSTM that returns only its last output.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Wraps `data` as a tensor of `shape`; fails when the element count differs.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(Error::input(
                "tensor data",
                format!("{expected} values for shape {shape:?}"),
                format!("{} values", data.len()),
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor { shape, data: vec![0.0; n] }
    }

    /// The shape, outermost axis first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable access to the values.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its values.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Same values, new shape of the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Self> {
        Tensor::new(shape, self.data)
    }
}

/// Fails on the first NaN or infinity, naming its index.
///
/// `what` names the tensor; [`Error::Input`] already says "input", so for
/// the model input itself (`what` = `"input"`) the message reads
/// `input value at [0, 1, 4]: expected a finite number ..., got NaN`.
///
/// Model inputs must be finite: WGSL leaves arithmetic on NaN and infinity
/// to the implementation (measured here, Vulkan propagated an infinity as
/// NaN where GL produced finite numbers), so such inputs are rejected on
/// every device rather than giving backend-dependent results.
pub fn check_finite(what: &str, t: &Tensor) -> Result<()> {
    match t.data().iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => {
            let mut rest = i;
            let mut index = vec![0; t.shape().len()];
            for (slot, dim) in index.iter_mut().zip(t.shape()).rev() {
                *slot = rest % dim.max(&1);
                rest /= dim.max(&1);
            }
            let name = if what == "input" { String::new() } else { format!("{what} ") };
            Err(Error::input(
                format!("{name}value at {}", shape_str(&index)),
                "a finite number (NaN and infinity are rejected)",
                t.data()[i].to_string(),
            ))
        }
    }
}

/// Formats a shape the way Keras prints it, `(None, 5, 16)`-style without the
/// `None`: `[3, 5, 16]`.
pub fn shape_str(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}
