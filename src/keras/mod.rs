//! Keras interop: load a model from `model.to_json()` text or a `.keras`
//! file, and weights from safetensors or the `.keras` file's HDF5.
//!
//! ```no_run
//! # fn main() -> cnn_lstm::Result<()> {
//! use cnn_lstm::keras;
//! // Architecture from JSON, weights from safetensors:
//! let text = keras::read_text("model.json", keras::MAX_MODEL_JSON_BYTES)?;
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
    read_f32_tensors, read_input_tensors, read_tensors, read_tensors_bytes, serialize_tensors,
    write_tensors, InnerNames, StoredTensor,
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

/// Most bytes read from a source that is not a regular file (a FIFO, process
/// substitution `<(cat file)`, a character device): 1 GiB. Such a source has
/// no size to check up front and may never end (`/dev/zero`), so reading
/// stops one byte past this cap and fails.
pub const MAX_STREAM_BYTES: u64 = 1 << 30;

/// Largest model JSON read (64 MiB, as for a `.keras` archive's
/// `config.json`; Keras writes a few KiB per layer).
pub const MAX_MODEL_JSON_BYTES: u64 = MAX_CONFIG_BYTES;

/// Reads a whole file: at most `max` bytes from a regular file, and at most
/// `max.min(MAX_STREAM_BYTES)` from anything else (see [`MAX_STREAM_BYTES`]).
///
/// Every file cnn-lstm reads goes through here. Fails with [`Error::Io`]
/// when the file cannot be read and [`Error::Format`], naming the path and
/// the cap, when it holds more.
pub fn read_file(path: impl AsRef<Path>, max: u64) -> Result<Vec<u8>> {
    read_file_capped(path, max, MAX_STREAM_BYTES)
}

/// [`read_file`] with the cap for non-regular files given: at most `max`
/// bytes from a regular file, at most `max.min(stream_max)` from anything
/// else.
pub fn read_file_capped(path: impl AsRef<Path>, max: u64, stream_max: u64) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    let regular = meta.is_file();
    let cap = if regular { max } else { max.min(stream_max) };
    let too_large = || {
        let message = if regular {
            format!("holds more than {cap} bytes, the most cnn-lstm reads from this kind of file")
        } else if cap < max {
            format!(
                "is not a regular file (a pipe or a device) and gave more than {cap} bytes, the \
                 most cnn-lstm reads from such a source; save the data to a regular file"
            )
        } else {
            format!(
                "is not a regular file (a pipe or a device) and gave more than {cap} bytes, the \
                 most cnn-lstm reads from this kind of file"
            )
        };
        Error::format(path.display().to_string(), message)
    };
    if regular && meta.len() > cap {
        return Err(too_large());
    }
    let mut out = Vec::new();
    if regular {
        // The size is known: one allocation (the file may still change).
        out.reserve_exact(usize::try_from(meta.len()).unwrap_or(0));
    }
    // One byte past the cap tells a source at the cap from a larger one.
    file.take(cap.saturating_add(1)).read_to_end(&mut out).map_err(|e| Error::io(path, e))?;
    if out.len() as u64 > cap {
        return Err(too_large());
    }
    Ok(out)
}

/// Reads a UTF-8 text file of at most `max` bytes through [`read_file`].
pub fn read_text(path: impl AsRef<Path>, max: u64) -> Result<String> {
    let path = path.as_ref();
    String::from_utf8(read_file(path, max)?)
        .map_err(|e| Error::format(path.display().to_string(), format!("not UTF-8 text: {e}")))
}

/// Largest `model.weights.h5` read from a `.keras` archive (8 GiB).
const MAX_WEIGHTS_BYTES: u64 = 8 << 30;

/// Largest `config.json` read from a `.keras` archive (64 MiB; Keras writes a
/// few KiB per layer), so a small compressed entry cannot expand to gigabytes.
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Loads architecture and weights from a Keras 3 `.keras` file (a zip
/// holding `config.json` and `model.weights.h5`).
pub fn load_keras_file(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let bytes = read_file(path, u64::MAX)?;
    load_keras_bytes(&bytes, &path.display().to_string())
}

/// Like [`load_keras_file`] on the archive's bytes; `source` names it in errors.
pub fn load_keras_bytes(bytes: &[u8], source: &str) -> Result<Model> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::format(source, format!("not a .keras file (a zip archive): {e}")))?;
    let config = read_entry(&mut archive, "config.json", MAX_CONFIG_BYTES, source)?;
    let config = String::from_utf8(config)
        .map_err(|_| Error::format(source, "config.json is not UTF-8 text"))?;
    let (mut model, _) = json::parse_model(&config, &format!("{source}!config.json"))?;
    let weights = read_entry(&mut archive, "model.weights.h5", MAX_WEIGHTS_BYTES, source)?;
    let matched = h5::read_weights_h5(&model, weights, &format!("{source}!model.weights.h5"))?;
    model.set_weights(matched)?;
    Ok(model)
}

fn read_entry(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    limit: u64,
    source: &str,
) -> Result<Vec<u8>> {
    let entry = archive
        .by_name(name)
        .map_err(|e| Error::format(source, format!("no {name} in the .keras archive: {e}")))?;
    let mut out = Vec::new();
    // One byte past the limit tells an entry at the limit from a larger one.
    entry
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::format(source, format!("cannot read {name}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(Error::format(
            source,
            format!(
                "{name} expands to more than {limit} bytes; cnn-lstm refuses larger entries (a \
                 damaged or hostile archive)"
            ),
        ));
    }
    Ok(out)
}
