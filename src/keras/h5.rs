//! Weights from a Keras 3 `model.weights.h5` (inside a `.keras` file).
//!
//! Keras 3 stores each layer's variables under `layers/<layer>/`, in
//! numbered datasets of a `vars` group, in the layer's creation order:
//! `layers/<td>/layer/vars/{0,1}` for a `TimeDistributed` wrapper (kernel,
//! bias), `layers/<lstm>/cell/vars/{0,1,2}` for an LSTM (kernel,
//! recurrent_kernel, bias) and `layers/<dense>/vars/{0,1}` for a Dense
//! layer. The numbers are mapped to the variable names the model expects
//! for that layer, in the same order; what is left over is reported as an
//! extra weight by [`Model::set_weights`].
//!
//! Read with the pure-Rust `hdf5-reader` crate (no libhdf5 needed).

use std::collections::BTreeMap;

use hdf5_reader::group::Group;
use hdf5_reader::Hdf5File;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::tensor::Tensor;

/// How deep `layers/<layer>/...` may nest before the file is refused.
const MAX_DEPTH: usize = 8;

/// Reads every `vars` dataset of `model.weights.h5` (given as bytes) and
/// maps it to `(layer name, variable name)` of `model`.
///
/// `source` names the file in errors. Variables of a layer the model does
/// not have, and numbered variables beyond what a layer needs, are returned
/// under their HDF5 path so that [`Model::set_weights`] names them as extra.
pub fn read_weights_h5(
    model: &Model,
    bytes: Vec<u8>,
    source: &str,
) -> Result<BTreeMap<(String, String), Tensor>> {
    let h5err = |e: hdf5_reader::error::Error| Error::format(source, format!("HDF5: {e}"));
    // No dataset may claim more than this many values (a corrupt header
    // must not trigger a huge allocation); Keras stores weights uncompressed.
    let max_values = bytes.len().saturating_mul(256);
    let file = Hdf5File::from_vec(bytes).map_err(h5err)?;
    let root = file.root_group().map_err(h5err)?;
    let (groups, _) = root.member_names().map_err(h5err)?;
    let mut out = BTreeMap::new();
    if !groups.iter().any(|g| g == "layers") {
        return Ok(out);
    }
    let layers = root.group("layers").map_err(h5err)?;
    let (layer_names, _) = layers.member_names().map_err(h5err)?;
    for layer_name in layer_names {
        let group = layers.group(&layer_name).map_err(h5err)?;
        let mut vars = Vec::new();
        let ctx = Ctx { source, max_values };
        collect_vars(&group, &format!("layers/{layer_name}"), 0, &mut vars, &ctx)?;
        let specs: Vec<&'static str> = model
            .layers()
            .iter()
            .position(|l| l.name == layer_name)
            .map(|i| model.infos()[i].weights.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default();
        for (k, (path, tensor)) in vars.into_iter().enumerate() {
            let key = match specs.get(k) {
                Some(var) => (layer_name.clone(), var.to_string()),
                None => match path.rsplit_once('/') {
                    Some((scope, idx)) => (scope.to_string(), idx.to_string()),
                    None => (path.clone(), String::new()),
                },
            };
            out.insert(key, tensor);
        }
    }
    Ok(out)
}

/// What [`collect_vars`] needs besides the group.
struct Ctx<'a> {
    source: &'a str,
    max_values: usize,
}

/// Collects `(path, tensor)` of every dataset in a `vars` group under
/// `group`, ordered by group path, then by variable number.
fn collect_vars(
    group: &Group,
    path: &str,
    depth: usize,
    out: &mut Vec<(String, Tensor)>,
    ctx: &Ctx,
) -> Result<()> {
    let source = ctx.source;
    let h5err = |e: hdf5_reader::error::Error| Error::format(source, format!("HDF5 {path}: {e}"));
    if depth > MAX_DEPTH {
        return Err(Error::format(source, format!("HDF5 {path}: groups nest too deeply")));
    }
    let (mut subgroups, datasets) = group.member_names().map_err(h5err)?;
    let is_vars = path.rsplit('/').next() == Some("vars");
    if is_vars {
        let mut numbered = Vec::with_capacity(datasets.len());
        for name in datasets {
            let n: usize = name.parse().map_err(|_| {
                Error::format(source, format!("HDF5 {path}/{name}: variable names are numbers"))
            })?;
            numbered.push((n, name));
        }
        numbered.sort();
        for (_, name) in numbered {
            let ds = group.dataset(&name).map_err(h5err)?;
            let shape: Vec<usize> = ds
                .shape()
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| Error::format(source, format!("HDF5 {path}/{name}: dims overflow")))?;
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let n = n.filter(|&n| n <= ctx.max_values).ok_or_else(|| {
                Error::format(
                    source,
                    format!("HDF5 {path}/{name}: shape {shape:?} is larger than the file allows"),
                )
            })?;
            let mut data = vec![0f32; n];
            ds.read_into(&mut data).map_err(|e| {
                Error::format(
                    source,
                    format!("HDF5 {path}/{name}: {e} (cnn-lstm reads float32 weights)"),
                )
            })?;
            out.push((format!("{path}/{name}"), Tensor::new(shape, data)?));
        }
    }
    subgroups.sort();
    for sub in subgroups {
        let g = group.group(&sub).map_err(h5err)?;
        collect_vars(&g, &format!("{path}/{sub}"), depth + 1, out, ctx)?;
    }
    Ok(())
}
