//! Safetensors files: reading and writing tensors, and matching Keras
//! variable paths to a model's weights.
//!
//! Keras variable paths change when a model is reloaded, so a weight is
//! identified by (top-level layer name, variable name). Every spelling Keras
//! produces is accepted:
//!
//! | how the model was made | path |
//! | --- | --- |
//! | Sequential, as built | `sequential/time_distributed/conv2d/kernel` |
//! | Functional, as built | `time_distributed_2/conv2d/kernel` |
//! | rebuilt from JSON or `.keras` | `conv2d/kernel` (the inner layer's name) |
//! | LSTM, any of the above | `lstm/lstm_cell/kernel` |
//!
//! The inner-name spelling drops the `TimeDistributed` wrapper's name, so it
//! is mapped back to the wrapper through the inner names the JSON declared
//! ([`InnerNames`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::model::{LayerKind, Model};
use crate::tensor::{shape_str, Tensor};

/// One tensor of a safetensors file, in one of the element types cnn-lstm
/// reads and writes. Values are row-major in `shape`.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredTensor {
    /// 32-bit floats (weights, inputs, outputs).
    F32(Tensor),
    /// Bytes, e.g. a timestep mask `(B, T)` with 1 = valid step, or 8-bit frames.
    U8 { shape: Vec<usize>, data: Vec<u8> },
    /// 32-bit signed integers, e.g. labels.
    I32 { shape: Vec<usize>, data: Vec<i32> },
}

impl StoredTensor {
    /// The shape, outermost axis first.
    pub fn shape(&self) -> &[usize] {
        match self {
            StoredTensor::F32(t) => t.shape(),
            StoredTensor::U8 { shape, .. } | StoredTensor::I32 { shape, .. } => shape,
        }
    }

    /// The element type's safetensors name (`F32`, `U8`, `I32`).
    pub fn dtype_name(&self) -> &'static str {
        match self {
            StoredTensor::F32(_) => "F32",
            StoredTensor::U8 { .. } => "U8",
            StoredTensor::I32 { .. } => "I32",
        }
    }
}

/// Reads every tensor of a safetensors file, by key.
///
/// Fails with [`Error::Format`] when the header is malformed or lies about
/// sizes, or a tensor has an element type other than F32, U8 or I32.
pub fn read_tensors(path: impl AsRef<Path>) -> Result<BTreeMap<String, StoredTensor>> {
    read_tensors_as(path.as_ref(), "convert it to float32")
}

/// Like [`read_tensors`] for a file holding a model input: a tensor of
/// another element type is reported as an input that must be float32.
pub fn read_input_tensors(path: impl AsRef<Path>) -> Result<BTreeMap<String, StoredTensor>> {
    read_tensors_as(
        path.as_ref(),
        "model inputs must be float32: convert the input, e.g. x.astype('float32'), and save \
         it again",
    )
}

/// [`read_tensors`] with `fix` said after an unsupported element type.
fn read_tensors_as(path: &Path, fix: &str) -> Result<BTreeMap<String, StoredTensor>> {
    let bytes = super::read_file(path, u64::MAX)?;
    parse_tensors(&bytes, &path.display().to_string(), fix)
}

/// Like [`read_tensors`] on bytes in memory; `source` names them in errors.
pub fn read_tensors_bytes(bytes: &[u8], source: &str) -> Result<BTreeMap<String, StoredTensor>> {
    parse_tensors(bytes, source, "convert it to float32")
}

fn parse_tensors(bytes: &[u8], source: &str, fix: &str) -> Result<BTreeMap<String, StoredTensor>> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(source, format!("not a valid safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let tensor = match view.dtype() {
            Dtype::F32 => {
                let values =
                    data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                StoredTensor::F32(Tensor::new(shape, values.collect())?)
            }
            Dtype::U8 => StoredTensor::U8 { shape, data: data.to_vec() },
            Dtype::I32 => {
                let values =
                    data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                StoredTensor::I32 { shape, data: values.collect() }
            }
            other => {
                return Err(Error::format(
                    source,
                    format!(
                        "tensor {name} has dtype {other:?}; cnn-lstm reads F32, U8 and I32 \
                         tensors ({fix})"
                    ),
                ))
            }
        };
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Reads the f32 tensors of a safetensors file; fails naming any tensor of
/// another element type.
pub fn read_f32_tensors(path: impl AsRef<Path>) -> Result<BTreeMap<String, Tensor>> {
    let path = path.as_ref();
    let source = path.display().to_string();
    read_tensors_as(path, "save weights as float32")?
        .into_iter()
        .map(|(name, t)| match t {
            StoredTensor::F32(t) => Ok((name, t)),
            other => Err(Error::format(
                &source,
                format!("tensor {name} is {}, expected F32", other.dtype_name()),
            )),
        })
        .collect()
}

/// Writes tensors to a safetensors file.
///
/// The file is written beside `path` under a temporary name and renamed
/// over `path` only when complete, so a failure never leaves a half-written
/// file at `path`. Because the rename replaces whatever `path` names, an
/// existing `path` that is not a regular file (a directory, a symlink, a
/// FIFO, a device, a socket) is refused with [`Error::Format`] and left as
/// it is.
pub fn write_tensors(path: impl AsRef<Path>, tensors: &[(String, StoredTensor)]) -> Result<()> {
    let path = path.as_ref();
    check_replaceable(path)?;
    let bytes = serialize_tensors(tensors, &path.display().to_string())?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Best effort: the temporary file may not exist if creation failed.
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Fails unless `path` is absent or a regular file, which the atomic rename
/// of [`write_tensors`] may replace.
fn check_replaceable(path: &Path) -> Result<()> {
    // symlink_metadata: a symlink is judged itself, not by its target.
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    let shown = path.display().to_string();
    if ft.is_dir() {
        return Err(Error::format(shown, "is a directory; give a file path"));
    }
    let kind = if ft.is_symlink() { "a symbolic link" } else { special_kind(&ft) };
    Err(Error::format(
        shown,
        format!(
            "is {kind}, not a regular file; cnn-lstm writes its output to a new file and \
             renames it over the path, which would replace the {kind} itself; give the path \
             of a regular file (or of one that does not exist yet)"
        ),
    ))
}

/// Names a file type that is neither a regular file, a directory nor a symlink.
#[cfg(unix)]
fn special_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Names a file type that is neither a regular file, a directory nor a symlink.
#[cfg(not(unix))]
fn special_kind(_ft: &std::fs::FileType) -> &'static str {
    "a special file"
}

/// Serializes tensors to safetensors bytes; `source` names the target in errors.
pub fn serialize_tensors(tensors: &[(String, StoredTensor)], source: &str) -> Result<Vec<u8>> {
    let raw: Vec<(&str, Dtype, &[usize], Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, bytes) = match t {
                StoredTensor::F32(t) => {
                    (Dtype::F32, t.data().iter().flat_map(|v| v.to_le_bytes()).collect())
                }
                StoredTensor::U8 { data, .. } => (Dtype::U8, data.clone()),
                StoredTensor::I32 { data, .. } => {
                    (Dtype::I32, data.iter().flat_map(|v| v.to_le_bytes()).collect())
                }
            };
            (name.as_str(), dtype, t.shape(), bytes)
        })
        .collect();
    let mut views = Vec::with_capacity(raw.len());
    for (name, dtype, shape, bytes) in &raw {
        let view = TensorView::new(*dtype, shape.to_vec(), bytes).map_err(|e| {
            Error::format(source, format!("tensor {name} {}: {e}", shape_str(shape)))
        })?;
        views.push((*name, view));
    }
    safetensors::serialize(views, None)
        .map_err(|e| Error::format(source, format!("cannot serialize tensors: {e}")))
}

/// Names of the layers Keras wraps in `TimeDistributed`, as the model JSON
/// declares them: inner layer name -> top-level (wrapper) layer name.
///
/// Needed to read weights saved by a model that Keras rebuilt from JSON,
/// whose paths name the inner layer only (`conv2d/kernel`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InnerNames {
    /// Inner layer name -> wrapper (top-level) layer name.
    pub to_wrapper: BTreeMap<String, String>,
}

impl InnerNames {
    /// Keras's default inner names for a model that did not come from JSON:
    /// the k-th layer of a class named `time_distributed*` is taken to wrap
    /// an inner layer called `conv2d`, `conv2d_1`, ... (`dense`, ... for
    /// Dense), which is what Keras names them in a fresh process.
    pub fn keras_defaults(model: &Model) -> Self {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut to_wrapper = BTreeMap::new();
        for layer in model.layers() {
            let base = match &layer.kind {
                LayerKind::Conv2D(_) => "conv2d",
                LayerKind::Dense(_) => "dense",
                _ => continue,
            };
            let n = counts.entry(base).or_insert(0);
            let inner = if *n == 0 { base.to_string() } else { format!("{base}_{n}") };
            *n += 1;
            if layer.name.starts_with("time_distributed") {
                to_wrapper.insert(inner, layer.name.clone());
            }
        }
        InnerNames { to_wrapper }
    }
}

/// Sub-scopes Keras puts between a layer's name and its variables.
const CELL_SCOPES: [&str; 3] = ["lstm_cell", "cell", "layer"];

/// Maps Keras variable paths to `(layer name, variable)` keys of `model`.
///
/// A path matches layer `L` when one of its scope segments is `L` (a
/// top-level name) or an inner name that `inner` maps to `L`; the segments
/// after it may only be the inner name or a cell scope (`lstm_cell`). Paths
/// that name no layer of the model are kept under their full path so that
/// [`Model::set_weights`] reports them as extra.
pub fn match_paths(
    model: &Model,
    inner: &InnerNames,
    tensors: BTreeMap<String, Tensor>,
) -> Result<BTreeMap<(String, String), Tensor>> {
    let mut out: BTreeMap<(String, String), Tensor> = BTreeMap::new();
    let mut origin: BTreeMap<(String, String), String> = BTreeMap::new();
    for (path, tensor) in tensors {
        let key = match_path(model, inner, &path).unwrap_or_else(|| (path.clone(), String::new()));
        let key = if key.1.is_empty() {
            // Unmatched: keep the full path so the extra weight is named.
            match path.rsplit_once('/') {
                Some((scope, var)) => (scope.to_string(), var.to_string()),
                None => (String::new(), path.clone()),
            }
        } else {
            key
        };
        if let Some(first) = origin.get(&key) {
            return Err(Error::weights(
                format!("{}/{}", key.0, key.1),
                format!(
                    "given twice, as {first} and as {path}; keep one spelling of each variable"
                ),
            ));
        }
        origin.insert(key.clone(), path);
        out.insert(key, tensor);
    }
    Ok(out)
}

fn match_path(model: &Model, inner: &InnerNames, path: &str) -> Option<(String, String)> {
    let segments: Vec<&str> = path.split('/').collect();
    let (variable, scopes) = segments.split_last()?;
    for (i, seg) in scopes.iter().enumerate() {
        let layer = if model.layers().iter().any(|l| l.name == *seg) {
            seg.to_string()
        } else if let Some(wrapper) = inner.to_wrapper.get(*seg) {
            wrapper.clone()
        } else {
            continue;
        };
        let inner_name =
            inner.to_wrapper.iter().find(|(_, w)| **w == layer).map(|(i, _)| i.as_str());
        let rest_ok =
            scopes[i + 1..].iter().all(|s| CELL_SCOPES.contains(s) || Some(*s) == inner_name);
        if rest_ok {
            return Some((layer, variable.to_string()));
        }
    }
    None
}

/// Loads weights from a safetensors file into `model`, matching Keras
/// variable paths as described in the module docs, with `inner` mapping
/// inner layer names to their `TimeDistributed` wrappers.
///
/// Fails, leaving the model unchanged, when a weight is missing, extra or
/// misshapen ([`Error::Weights`] names it and both shapes).
pub fn load_safetensors_into(
    model: &mut Model,
    inner: &InnerNames,
    path: impl AsRef<Path>,
) -> Result<()> {
    let tensors = read_f32_tensors(path)?;
    let matched = match_paths(model, inner, tensors)?;
    model.set_weights(matched)
}
