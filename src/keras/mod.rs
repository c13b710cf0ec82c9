//! Keras interop: load a model from `model.to_json()` text or a `.keras`
//! file, and weights from safetensors or the `.keras` file's HDF5.
//!
//! ```no_run
//! # fn main() -> cnn_lstm::Result<()> {
//! use cnn_lstm::keras;
//! // Architecture from JSON, weights from safetensors:
//! let text = std::fs::read_to_string("model.json").unwrap();
//! let mut model = keras::load_model_json(&text, "model.json")?;
//! keras::load_weights_safetensors(&mut model, "weights.safetensors")?;
//! // Or both from one `.keras` file:
//! let model = keras::load_keras_file("model.keras")?;
//! # Ok(()) }
//! ```
//!
//! What loads, and how Keras's quirks are handled, is described in
//! [`json`] (architecture), [`weights`] (safetensors paths) and [`h5`]
//! (the `.keras` weights).

pub mod h5;
pub mod json;
pub mod weights;

use std::io::Read;
use std::path::Path;

pub use weights::{
    read_f32_tensors, read_tensors, read_tensors_bytes, serialize_tensors, write_tensors,
    InnerNames, StoredTensor,
};

use crate::error::{Error, Result};
use crate::model::Model;

/// A model loaded from Keras JSON, with the inner-layer names of its
/// `TimeDistributed` wrappers (needed to read weights saved under those
/// names).
#[derive(Clone, Debug)]
pub struct KerasModel {
    /// The validated model; weights are zero until loaded.
    pub model: Model,
    /// Inner layer name -> wrapper name.
    pub inner: InnerNames,
}

impl KerasModel {
    /// Parses Keras model JSON (`model.to_json()` or a `.keras` file's
    /// `config.json`); `source` names the text in errors.
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let (model, inner) = json::parse_model(text, source)?;
        Ok(KerasModel { model, inner })
    }

    /// Loads weights from a safetensors file keyed by Keras variable paths
    /// (any spelling listed in [`weights`]). Fails, leaving the weights
    /// unchanged, when one is missing, extra or misshapen.
    pub fn load_weights_safetensors(&mut self, path: impl AsRef<Path>) -> Result<()> {
        weights::load_safetensors_into(&mut self.model, &self.inner, path)
    }
}

/// Parses Keras model JSON into a validated [`Model`] whose weights are zero.
///
/// Fails with [`Error::Format`] when the text is not JSON or not a Keras
/// model, [`Error::Unsupported`] for layers and options outside the family,
/// and [`Error::Layer`] when the stack is invalid.
pub fn load_model_json(text: &str, source: &str) -> Result<Model> {
    KerasModel::from_json(text, source).map(|k| k.model)
}

/// Loads weights from a safetensors file into `model`.
///
/// Paths are matched to layers as described in [`weights`]; for the
/// inner-name spelling (`conv2d/kernel`), Keras's default inner names are
/// assumed ([`InnerNames::keras_defaults`]); use
/// [`KerasModel::load_weights_safetensors`] to use the names the JSON gave.
pub fn load_weights_safetensors(model: &mut Model, path: impl AsRef<Path>) -> Result<()> {
    let inner = InnerNames::keras_defaults(model);
    weights::load_safetensors_into(model, &inner, path)
}

/// Largest `config.json` or `model.weights.h5` read from a `.keras` archive.
const MAX_ENTRY_BYTES: u64 = 8 << 30;

/// Loads architecture and weights from a Keras 3 `.keras` file (a zip
/// holding `config.json` and `model.weights.h5`).
pub fn load_keras_file(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    load_keras_bytes(&bytes, &path.display().to_string())
}

/// Like [`load_keras_file`] on the archive's bytes; `source` names it in errors.
pub fn load_keras_bytes(bytes: &[u8], source: &str) -> Result<Model> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::format(source, format!("not a .keras file (a zip archive): {e}")))?;
    let config = read_entry(&mut archive, "config.json", source)?;
    let config = String::from_utf8(config)
        .map_err(|_| Error::format(source, "config.json is not UTF-8 text"))?;
    let (mut model, _) = json::parse_model(&config, &format!("{source}!config.json"))?;
    let weights = read_entry(&mut archive, "model.weights.h5", source)?;
    let matched = h5::read_weights_h5(&model, weights, &format!("{source}!model.weights.h5"))?;
    model.set_weights(matched)?;
    Ok(model)
}

fn read_entry(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    source: &str,
) -> Result<Vec<u8>> {
    let entry = archive
        .by_name(name)
        .map_err(|e| Error::format(source, format!("no {name} in the .keras archive: {e}")))?;
    let mut out = Vec::new();
    entry
        .take(MAX_ENTRY_BYTES)
        .read_to_end(&mut out)
        .map_err(|e| Error::format(source, format!("cannot read {name}: {e}")))?;
    Ok(out)
}
