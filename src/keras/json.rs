//! Keras 3 model JSON (`model.to_json()`, or `config.json` inside a
//! `.keras` file) to a [`Model`].
//!
//! Both `Sequential` and `Functional` models of the CNN-LSTM family load.
//! A Functional model must be a chain from its one input to its one output;
//! the `NotEqual`/`Any` op nodes that serialize a `Masking` layer's mask are
//! checked to be exactly that and are otherwise ignored, since the mask is
//! recomputed from the Masking layer (see [`crate::model`]).
//!
//! Where the input shape comes from, first match wins: an `InputLayer`'s
//! `batch_shape`; the first layer's `batch_shape` / `batch_input_shape` /
//! `input_shape`; the model's `build_input_shape` / `build_config`; and last
//! (the article's Example 1, which Keras itself ignores) an `input_shape` on
//! the layer inside the first `TimeDistributed`, read as `(T, H, W, C)`, or
//! as `(H, W, C)` with any T when the inner layer needs 3-D frames and three
//! dims are given. A `null` time dim accepts any T.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::weights::InnerNames;
use crate::error::{Error, Result};
use crate::model::{
    infer, Activation, Conv2D, Dense, DropoutMode, InputSpec, Layer, LayerKind, Lstm, Model,
    ModelBuilder, Padding, Pool2D, PoolKind, SampleShape,
};

/// Layer classes cnn-lstm loads, for messages.
const SUPPORTED: &str = "InputLayer, Masking, TimeDistributed(Conv2D | MaxPooling2D | \
                         AveragePooling2D | SpatialDropout2D | Dropout | Flatten | Reshape | \
                         Dense), SpatialDropout3D, Dropout, Flatten, Reshape, Dense, LSTM";

/// Parses Keras model JSON into a validated model (weights zero) and the
/// inner-layer names of its `TimeDistributed` wrappers.
pub fn parse_model(text: &str, source: &str) -> Result<(Model, InnerNames)> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| Error::format(source, format!("not valid model JSON: {e}")))?;
    let p = Parser { source, training_only: Default::default() };
    let class = p.str_field(&root, "class_name", "the model")?;
    let config = p.obj_field(&root, "config", "the model")?;
    let name = config.get("name").and_then(Value::as_str).unwrap_or("model").to_string();
    let (input, converted) = match class {
        "Sequential" => p.sequential(&root, config)?,
        "Functional" | "Model" => p.functional(config)?,
        other => {
            return Err(Error::Unsupported(format!(
                "{source}: top-level class {other}; cnn-lstm loads Sequential and Functional \
                 models"
            )))
        }
    };
    let mut builder = ModelBuilder::new(name, input.time_steps, &input.frame);
    let mut inner = InnerNames::default();
    for c in converted {
        if let Some(inner_name) = c.inner_name {
            inner.to_wrapper.insert(inner_name, c.layer.name.clone());
        }
        builder = builder.named_layer(c.layer.name, c.layer.kind);
    }
    let mut model = builder.build()?;
    for reason in p.training_only.take() {
        model.forbid_training(reason);
    }
    Ok((model, inner))
}

/// One converted top-level layer.
struct Converted {
    layer: Layer,
    /// The name of the layer inside `TimeDistributed`, if wrapped.
    inner_name: Option<String>,
}

struct Parser<'a> {
    source: &'a str,
    /// Options that only matter in training mode, which cnn-lstm does not
    /// implement: the model loads, and training-mode runs are refused.
    training_only: std::cell::RefCell<Vec<String>>,
}

fn layer_name(v: &Value) -> &str {
    v.get("config")
        .and_then(|c| c.get("name"))
        .or_else(|| v.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?")
}

impl Parser<'_> {
    fn fmt(&self, msg: impl Into<String>) -> Error {
        Error::format(self.source, msg)
    }

    fn str_field<'v>(&self, v: &'v Value, key: &str, what: &str) -> Result<&'v str> {
        v.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.fmt(format!("{what} has no string field \"{key}\"")))
    }

    fn obj_field<'v>(&self, v: &'v Value, key: &str, what: &str) -> Result<&'v Value> {
        v.get(key)
            .filter(|c| c.is_object())
            .ok_or_else(|| self.fmt(format!("{what} has no object field \"{key}\"")))
    }

    fn array_field<'v>(&self, v: &'v Value, key: &str, what: &str) -> Result<&'v [Value]> {
        v.get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .ok_or_else(|| self.fmt(format!("{what} has no list field \"{key}\"")))
    }

    // ---- Sequential -------------------------------------------------------

    fn sequential(&self, root: &Value, config: &Value) -> Result<(InputSpec, Vec<Converted>)> {
        let layers = self.array_field(config, "layers", "the Sequential config")?;
        let (first_input, rest) = match layers.first() {
            Some(l) if l.get("class_name").and_then(Value::as_str) == Some("InputLayer") => {
                (Some(l), &layers[1..])
            }
            _ => (None, layers),
        };
        let input = match first_input {
            Some(l) => self.input_layer(l)?,
            None => self.sequential_input_without_input_layer(root, config, rest)?,
        };
        let mut converted = Vec::with_capacity(rest.len());
        for l in rest {
            converted.push(self.convert(l, &input, &converted)?);
        }
        Ok((input, converted))
    }

    fn sequential_input_without_input_layer(
        &self,
        root: &Value,
        config: &Value,
        layers: &[Value],
    ) -> Result<InputSpec> {
        let first = layers.first();
        if let Some(cfg) = first.and_then(|l| l.get("config")) {
            if let Some(spec) = self.shape_keys(cfg, layer_name(first.unwrap_or(&Value::Null)))? {
                return Ok(spec);
            }
        }
        let built = config
            .get("build_input_shape")
            .or_else(|| root.get("build_config").and_then(|b| b.get("input_shape")))
            .filter(|v| !v.is_null());
        if let Some(shape) = built {
            return self.batch_shape(shape, "build_input_shape");
        }
        let inner = first
            .filter(|l| l.get("class_name").and_then(Value::as_str) == Some("TimeDistributed"))
            .and_then(|l| l.get("config"))
            .and_then(|c| c.get("layer"));
        if let Some(inner) = inner {
            let cfg = inner.get("config").unwrap_or(&Value::Null);
            let class = inner.get("class_name").and_then(Value::as_str).unwrap_or("");
            let needs_frames = matches!(
                class,
                "Conv2D" | "MaxPooling2D" | "AveragePooling2D" | "SpatialDropout2D"
            );
            let dims = if let Some(v) = cfg.get("input_shape").filter(|v| !v.is_null()) {
                Some(self.dims(v, "input_shape")?)
            } else if let Some(v) = cfg
                .get("batch_input_shape")
                .or_else(|| cfg.get("batch_shape"))
                .filter(|v| !v.is_null())
            {
                let d = self.dims(v, "batch_input_shape")?;
                Some(d.get(1..).map(<[_]>::to_vec).unwrap_or_default())
            } else {
                None
            };
            if let Some(dims) = dims {
                if needs_frames && dims.len() == 3 {
                    return self.spec_from_dims(None, &dims, "input_shape");
                }
                return self.spec_from_time_and_frame(&dims, "input_shape");
            }
        }
        Err(self.fmt(
            "the Sequential model declares no input shape (no InputLayer, batch_shape, \
             input_shape or build_input_shape); build the model in Keras before saving, or \
             start it with keras.Input((None, H, W, C))",
        ))
    }

    /// `batch_shape` / `batch_input_shape` (with batch) or `input_shape` /
    /// `shape` (without) in a layer config.
    fn shape_keys(&self, cfg: &Value, name: &str) -> Result<Option<InputSpec>> {
        for key in ["batch_shape", "batch_input_shape"] {
            if let Some(v) = cfg.get(key).filter(|v| !v.is_null()) {
                return self.batch_shape(v, &format!("{name}.{key}")).map(Some);
            }
        }
        for key in ["input_shape", "shape"] {
            if let Some(v) = cfg.get(key).filter(|v| !v.is_null()) {
                let dims = self.dims(v, key)?;
                return self.spec_from_time_and_frame(&dims, &format!("{name}.{key}")).map(Some);
            }
        }
        Ok(None)
    }

    fn input_layer(&self, l: &Value) -> Result<InputSpec> {
        let cfg = self.obj_field(l, "config", "the InputLayer")?;
        self.check_dtype(layer_name(l), cfg)?;
        if cfg.get("sparse").and_then(Value::as_bool) == Some(true)
            || cfg.get("ragged").and_then(Value::as_bool) == Some(true)
        {
            return Err(Error::Unsupported(format!(
                "InputLayer {}: sparse or ragged input; use a dense [B, T, H, W, C] input",
                layer_name(l)
            )));
        }
        self.shape_keys(cfg, layer_name(l))?
            .ok_or_else(|| self.fmt(format!("InputLayer {} has no batch_shape", layer_name(l))))
    }

    /// A list of dims where `null` is `None`.
    fn dims(&self, v: &Value, what: &str) -> Result<Vec<Option<usize>>> {
        let arr = v.as_array().ok_or_else(|| self.fmt(format!("{what} is not a list")))?;
        arr.iter()
            .map(|d| match d {
                Value::Null => Ok(None),
                _ => d
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| self.fmt(format!("{what}: {d} is not a size or null"))),
            })
            .collect()
    }

    fn batch_shape(&self, v: &Value, what: &str) -> Result<InputSpec> {
        let dims = self.dims(v, what)?;
        match dims.split_first() {
            Some((_, rest)) => self.spec_from_time_and_frame(rest, what),
            None => Err(self.fmt(format!("{what} is empty"))),
        }
    }

    /// `(T, ...frame)` without the batch dim.
    fn spec_from_time_and_frame(&self, dims: &[Option<usize>], what: &str) -> Result<InputSpec> {
        match dims.split_first() {
            Some((t, frame)) if !frame.is_empty() => self.spec_from_dims(*t, frame, what),
            _ => Err(Error::input(
                what,
                "a sequence input (B, T, ...frame), e.g. (None, None, 64, 64, 3)",
                format!("{} dims after the batch dim", dims.len()),
            )),
        }
    }

    fn spec_from_dims(
        &self,
        time_steps: Option<usize>,
        frame: &[Option<usize>],
        what: &str,
    ) -> Result<InputSpec> {
        let frame: Option<Vec<usize>> = frame.iter().copied().collect();
        let frame = frame.ok_or_else(|| {
            Error::Unsupported(format!(
                "{}: {what} leaves a frame dim unknown (null); cnn-lstm needs fixed frame sizes",
                self.source
            ))
        })?;
        if time_steps == Some(0) || frame.contains(&0) {
            return Err(Error::input(what, "sizes >= 1", format!("{frame:?}")));
        }
        let elements = frame.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if elements.is_none_or(|n| n > MAX_VALUES) {
            return Err(Error::Unsupported(format!(
                "{}: {what} frames of {frame:?} hold more than {MAX_VALUES} values",
                self.source
            )));
        }
        Ok(InputSpec { time_steps, frame })
    }

    // ---- Functional -------------------------------------------------------

    fn functional(&self, config: &Value) -> Result<(InputSpec, Vec<Converted>)> {
        let layers = self.array_field(config, "layers", "the Functional config")?;
        let mut by_name: BTreeMap<&str, &Value> = BTreeMap::new();
        for l in layers {
            let name = l
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| self.fmt("a Functional layer has no \"name\""))?;
            if by_name.insert(name, l).is_some() {
                return Err(self.fmt(format!("layer name {name} appears twice")));
            }
        }
        let input_name = self.endpoint(config, "input_layers")?;
        let output_name = self.endpoint(config, "output_layers")?;
        let input_layer = by_name
            .get(input_name.as_str())
            .ok_or_else(|| self.fmt(format!("input layer {input_name} is not in the layers")))?;
        let input = self.input_layer(input_layer)?;

        // Walk back from the output along each node's first argument.
        let mut chain: Vec<&str> = Vec::new();
        let mut node_of: BTreeMap<&str, &Value> = BTreeMap::new();
        let mut current = output_name.as_str();
        let mut seen = BTreeSet::new();
        while current != input_name {
            if !seen.insert(current) {
                return Err(self.fmt(format!("the graph has a cycle through {current}")));
            }
            let l = by_name.get(current).ok_or_else(|| {
                self.fmt(format!("a node refers to layer {current}, which is not in the layers"))
            })?;
            if is_op(l) {
                return Err(Error::Unsupported(format!(
                    "op node {current} ({}) lies on the path from input to output; cnn-lstm \
                     supports layers there ({SUPPORTED}), and NotEqual/Any only as a Masking \
                     layer's mask",
                    l.get("class_name").and_then(Value::as_str).unwrap_or("?")
                )));
            }
            let node = self.single_node(l, current)?;
            let args = self.array_field(node, "args", &format!("the node of {current}"))?;
            if args.len() != 1 {
                return Err(Error::Unsupported(format!(
                    "layer {current} is called with {} positional arguments; cnn-lstm supports \
                     one input tensor per layer",
                    args.len()
                )));
            }
            let prev = self.history(&args[0], current)?;
            chain.push(current);
            node_of.insert(current, node);
            current = by_name.get_key_value(prev.as_str()).map(|(k, _)| *k).ok_or_else(|| {
                self.fmt(format!("layer {current} takes input from unknown layer {prev}"))
            })?;
        }
        chain.reverse();

        let mut converted: Vec<Converted> = Vec::with_capacity(chain.len());
        for name in &chain {
            converted.push(self.convert(by_name[name], &input, &converted)?);
        }

        // Every other entry must be the mask computation of a Masking layer.
        let on_chain: BTreeSet<&str> = chain.iter().copied().chain([input_name.as_str()]).collect();
        let mut mask_of_any: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, l) in &by_name {
            if on_chain.contains(name) {
                continue;
            }
            if !is_op(l) {
                return Err(Error::Unsupported(format!(
                    "layer {name} is not on the path from input {input_name} to output \
                     {output_name}; cnn-lstm supports single-chain models"
                )));
            }
            let class = l.get("class_name").and_then(Value::as_str).unwrap_or("?");
            match class {
                "NotEqual" => {
                    self.masking_of_not_equal(l, name, &chain, &converted, &input_name)?;
                }
                "Any" => {
                    let index =
                        self.masking_of_any(l, name, &by_name, &chain, &converted, &input_name)?;
                    mask_of_any.insert(name, index);
                }
                other => {
                    return Err(Error::Unsupported(format!(
                        "op node {name} ({other}); cnn-lstm accepts op nodes only as the \
                         NotEqual/Any mask computation of a Masking layer"
                    )))
                }
            }
        }

        self.check_mask_kwargs(&input, &chain, &node_of, &converted, &mask_of_any)?;
        Ok((input, converted))
    }

    fn endpoint(&self, config: &Value, key: &str) -> Result<String> {
        let v = config.get(key).ok_or_else(|| self.fmt(format!("no \"{key}\"")))?;
        let arr = v.as_array().ok_or_else(|| self.fmt(format!("\"{key}\" is not a list")))?;
        // Either one triple ["name", 0, 0] or a list of triples.
        let triple = match arr.first() {
            Some(Value::String(_)) => arr.as_slice(),
            Some(Value::Array(t)) if arr.len() == 1 => t.as_slice(),
            _ => {
                return Err(Error::Unsupported(format!(
                    "{}: \"{key}\" lists {} entries; cnn-lstm supports models with one input \
                     and one output",
                    self.source,
                    arr.len()
                )))
            }
        };
        triple
            .first()
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| self.fmt(format!("\"{key}\" does not start with a layer name")))
    }

    fn single_node<'v>(&self, l: &'v Value, name: &str) -> Result<&'v Value> {
        let nodes = self.array_field(l, "inbound_nodes", &format!("layer {name}"))?;
        match nodes {
            [node] => Ok(node),
            _ => Err(Error::Unsupported(format!(
                "layer {name} is called {} times; cnn-lstm supports each layer used once",
                nodes.len()
            ))),
        }
    }

    /// The layer name a `__keras_tensor__` argument comes from.
    fn history(&self, arg: &Value, consumer: &str) -> Result<String> {
        arg.get("config")
            .and_then(|c| c.get("keras_history"))
            .and_then(Value::as_array)
            .and_then(|h| h.first())
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "layer {consumer} takes an argument that is not a tensor of the model: {}",
                    short(arg)
                ))
            })
    }

    /// The name of the tensor a chain layer consumes.
    fn chain_input<'c>(chain: &[&'c str], input_name: &'c str, index: usize) -> &'c str {
        if index == 0 {
            input_name
        } else {
            chain[index - 1]
        }
    }

    /// Checks a `NotEqual` node is `not_equal(<Masking's input>, mask_value)`
    /// for some Masking layer of the chain; returns that layer's index.
    fn masking_of_not_equal(
        &self,
        l: &Value,
        name: &str,
        chain: &[&str],
        converted: &[Converted],
        input_name: &str,
    ) -> Result<usize> {
        let node = self.single_node(l, name)?;
        let args = self.array_field(node, "args", &format!("op node {name}"))?;
        let not_mask = || {
            Error::Unsupported(format!(
                "op node {name} (NotEqual) is not the mask computation of a Masking layer \
                 (not_equal(<the Masking layer's input>, mask_value)); cnn-lstm accepts op \
                 nodes only there"
            ))
        };
        let [tensor, value] = args else { return Err(not_mask()) };
        let source = self.history(tensor, name)?;
        let value = value.as_f64().ok_or_else(not_mask)?;
        converted
            .iter()
            .enumerate()
            .position(|(i, c)| match c.layer.kind {
                LayerKind::Masking { mask_value } => {
                    Self::chain_input(chain, input_name, i) == source && mask_value == value as f32
                }
                _ => false,
            })
            .ok_or_else(not_mask)
    }

    /// Checks an `Any` node is `any(<NotEqual of a Masking layer>, axis=-1)`;
    /// returns that Masking layer's index.
    fn masking_of_any(
        &self,
        l: &Value,
        name: &str,
        by_name: &BTreeMap<&str, &Value>,
        chain: &[&str],
        converted: &[Converted],
        input_name: &str,
    ) -> Result<usize> {
        let not_mask = || {
            Error::Unsupported(format!(
                "op node {name} (Any) is not the mask computation of a Masking layer \
                 (any(not_equal(x, mask_value), axis=-1)); cnn-lstm accepts op nodes only there"
            ))
        };
        let cfg = l.get("config").unwrap_or(&Value::Null);
        let axis_ok = match cfg.get("axis") {
            Some(Value::Number(n)) => n.as_i64() == Some(-1),
            Some(Value::Array(a)) => a.len() == 1 && a[0].as_i64() == Some(-1),
            _ => false,
        };
        if !axis_ok || cfg.get("keepdims").and_then(Value::as_bool) == Some(true) {
            return Err(not_mask());
        }
        let node = self.single_node(l, name)?;
        let args = self.array_field(node, "args", &format!("op node {name}"))?;
        let [tensor] = args else { return Err(not_mask()) };
        let source = self.history(tensor, name)?;
        let ne = by_name.get(source.as_str()).filter(|v| {
            is_op(v) && v.get("class_name").and_then(Value::as_str) == Some("NotEqual")
        });
        let ne = ne.ok_or_else(not_mask)?;
        self.masking_of_not_equal(ne, &source, chain, converted, input_name)
    }

    /// Checks every `mask` kwarg is the mask cnn-lstm propagates to that layer.
    fn check_mask_kwargs(
        &self,
        input: &InputSpec,
        chain: &[&str],
        node_of: &BTreeMap<&str, &Value>,
        converted: &[Converted],
        mask_of_any: &BTreeMap<&str, usize>,
    ) -> Result<()> {
        let layers: Vec<Layer> = converted.iter().map(|c| c.layer.clone()).collect();
        let infos = infer(input, &layers)?;
        let mut last_masking: Option<usize> = None;
        for (i, name) in chain.iter().enumerate() {
            let reaching = if i > 0 && infos[i - 1].has_mask { last_masking } else { None };
            let kwarg = node_of.get(name).and_then(|n| n.get("kwargs")).and_then(|k| k.get("mask"));
            match kwarg {
                None => {}
                Some(Value::Null) => {
                    if let Some(m) = reaching {
                        return Err(Error::Unsupported(format!(
                            "layer {name} is called with mask=None although the mask of \
                             Masking layer {} reaches it; cnn-lstm always applies that mask",
                            chain[m]
                        )));
                    }
                }
                Some(tensor) => {
                    let any = self.history(tensor, name)?;
                    let from = mask_of_any.get(any.as_str()).copied();
                    if from.is_none() || from != reaching {
                        return Err(Error::Unsupported(format!(
                            "layer {name} is given the mask {any}, but the mask that reaches it \
                             in cnn-lstm is {}; explicit masks other than the propagated \
                             Masking mask are not supported",
                            reaching.map_or("none".to_string(), |m| {
                                format!("that of Masking layer {}", chain[m])
                            })
                        )));
                    }
                }
            }
            if let LayerKind::Masking { .. } = converted[i].layer.kind {
                last_masking = Some(i);
            }
        }
        Ok(())
    }

    // ---- Layers -----------------------------------------------------------

    /// Converts one top-level layer, given the layers before it.
    fn convert(&self, l: &Value, input: &InputSpec, before: &[Converted]) -> Result<Converted> {
        let index = before.len();
        let class = self.str_field(l, "class_name", "a layer")?;
        let cfg = self.obj_field(l, "config", &format!("layer {}", layer_name(l)))?;
        let name = layer_name(l).to_string();
        let err = |msg: String| Error::layer(index, &name, msg);
        self.check_dtype(&name, cfg)?;
        let layers: Vec<Layer> = before.iter().map(|c| c.layer.clone()).collect();
        let shape = infer(input, &layers)?.last().map_or_else(
            || SampleShape { timed: true, dims: input.frame.clone() },
            |i| i.output.clone(),
        );
        let got = shape.keras_str(input.time_steps);
        let (kind, inner_name) = match class {
            "TimeDistributed" => {
                let inner = self.obj_field(cfg, "layer", &format!("TimeDistributed {name}"))?;
                let inner_class = self.str_field(inner, "class_name", "the wrapped layer")?;
                let inner_cfg = self.obj_field(inner, "config", "the wrapped layer")?;
                let inner_name = layer_name(inner).to_string();
                let iname = format!("{name}/{inner_name}");
                self.check_dtype(&iname, inner_cfg)?;
                if !shape.timed {
                    return Err(err(format!(
                        "TimeDistributed needs a time axis, got {got}; the LSTM before it must \
                         set return_sequences=True"
                    )));
                }
                let kind = match inner_class {
                    "Conv2D" => self.conv2d(&iname, inner_cfg)?,
                    "MaxPooling2D" => self.pool(&iname, inner_cfg, PoolKind::Max)?,
                    "AveragePooling2D" => self.pool(&iname, inner_cfg, PoolKind::Average)?,
                    "SpatialDropout2D" => {
                        self.channels_last(&iname, inner_cfg)?;
                        LayerKind::SpatialDropout {
                            rate: self.f64_or(inner_cfg, "rate", 0.0, &iname)?,
                            mode: DropoutMode::PerTimestep,
                        }
                    }
                    "Dropout" => self.dropout(&iname, inner_cfg)?,
                    "Flatten" => {
                        self.channels_last(&iname, inner_cfg)?;
                        LayerKind::Flatten
                    }
                    "Reshape" => {
                        let target =
                            self.target_shape(index, &iname, inner_cfg, shape.elements())?;
                        LayerKind::Reshape { target }
                    }
                    "Dense" => self.dense(&iname, inner_cfg)?,
                    other => {
                        return Err(Error::Unsupported(format!(
                            "layer {index} ({name}): TimeDistributed({other}) is not supported; \
                             cnn-lstm supports {SUPPORTED}"
                        )))
                    }
                };
                (kind, Some(inner_name))
            }
            "Masking" => {
                let mask_value = self.f64_or(cfg, "mask_value", 0.0, &name)? as f32;
                (LayerKind::Masking { mask_value }, None)
            }
            "SpatialDropout3D" => {
                self.channels_last(&name, cfg)?;
                let rate = self.f64_or(cfg, "rate", 0.0, &name)?;
                (LayerKind::SpatialDropout { rate, mode: DropoutMode::PerSample }, None)
            }
            "Dropout" => (self.dropout(&name, cfg)?, None),
            "Dense" => (self.dense(&name, cfg)?, None),
            "LSTM" => (self.lstm(&name, cfg)?, None),
            "Flatten" => {
                if shape.timed {
                    return Err(Error::Unsupported(format!(
                        "layer {index} ({name}): Flatten directly on the sequence {got} also \
                         flattens the time axis; wrap it as TimeDistributed(Flatten()) to \
                         flatten each frame"
                    )));
                }
                self.channels_last(&name, cfg)?;
                (LayerKind::Flatten, None)
            }
            "Reshape" => (self.top_reshape(index, &name, cfg, &shape, input, &got)?, None),
            "Conv2D" | "MaxPooling2D" | "AveragePooling2D" | "SpatialDropout2D" => {
                return Err(err(format!(
                    "{class} directly on {got} is not valid Keras ({class} takes rank-4 \
                     [B, H, W, C]); wrap it as TimeDistributed({class}(...)) to apply it to \
                     every frame"
                )))
            }
            "InputLayer" => {
                return Err(self.fmt(format!(
                    "InputLayer {name} appears after other layers; it must come first"
                )))
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "layer {index} ({name}): class {other} is not supported; cnn-lstm supports \
                     {SUPPORTED}"
                )))
            }
        };
        check_size(index, &name, &kind, &shape)?;
        Ok(Converted { layer: Layer::new(name, kind), inner_name })
    }

    fn check_dtype(&self, name: &str, cfg: &Value) -> Result<()> {
        let policy = match cfg.get("dtype") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::String(s)) => s.as_str(),
            Some(v) => v
                .get("config")
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("an unknown policy"),
        };
        if policy == "float32" {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "layer {name}: dtype policy {policy}; cnn-lstm computes in float32 (set the \
                 model's dtype policy to float32 before saving)"
            )))
        }
    }

    fn channels_last(&self, name: &str, cfg: &Value) -> Result<()> {
        match cfg.get("data_format").and_then(Value::as_str) {
            None | Some("channels_last") => Ok(()),
            Some(other) => Err(Error::Unsupported(format!(
                "layer {name}: data_format={other}; cnn-lstm uses channels_last [H, W, C] \
                 frames (Keras's default)"
            ))),
        }
    }

    fn f64_or(&self, cfg: &Value, key: &str, default: f64, name: &str) -> Result<f64> {
        match cfg.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.fmt(format!("layer {name}: {key} = {v} is not a number"))),
        }
    }

    fn usize_field(&self, cfg: &Value, key: &str, name: &str) -> Result<usize> {
        cfg.get(key)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.fmt(format!("layer {name}: {key} is missing or not a size")))
    }

    fn bool_or(&self, cfg: &Value, key: &str, default: bool, name: &str) -> Result<bool> {
        match cfg.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.fmt(format!("layer {name}: {key} = {v} is not true/false"))),
        }
    }

    /// An int or a pair of ints, as Keras writes kernel sizes and strides.
    fn pair(
        &self,
        cfg: &Value,
        key: &str,
        default: Option<(usize, usize)>,
        name: &str,
    ) -> Result<(usize, usize)> {
        let bad = || self.fmt(format!("layer {name}: {key} must be an int or two ints"));
        let one = |v: &Value| v.as_u64().and_then(|n| usize::try_from(n).ok());
        match cfg.get(key) {
            None | Some(Value::Null) => default.ok_or_else(bad),
            Some(Value::Array(a)) => match a.as_slice() {
                [h, w] => Ok((one(h).ok_or_else(bad)?, one(w).ok_or_else(bad)?)),
                [n] => one(n).map(|n| (n, n)).ok_or_else(bad),
                _ => Err(bad()),
            },
            Some(v) => one(v).map(|n| (n, n)).ok_or_else(bad),
        }
    }

    fn padding(&self, cfg: &Value, name: &str) -> Result<Padding> {
        match cfg.get("padding").and_then(Value::as_str).unwrap_or("valid") {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            other => Err(Error::Unsupported(format!(
                "layer {name}: padding='{other}'; cnn-lstm supports 'valid' and 'same'"
            ))),
        }
    }

    fn activation(&self, cfg: &Value, key: &str, default: &str, name: &str) -> Result<Activation> {
        let text = match cfg.get(key) {
            None => default.to_string(),
            Some(Value::Null) => "linear".to_string(),
            Some(Value::String(s)) => s.clone(),
            // A serialized function object: {"class_name": "function", "config": "relu"}.
            Some(v) => {
                v.get("config").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
                    Error::Unsupported(format!(
                        "layer {name}: {key} = {} is a custom activation; use a built-in name",
                        short(v)
                    ))
                })?
            }
        };
        Activation::from_keras(&text).ok_or_else(|| {
            Error::Unsupported(format!(
                "layer {name}: {key}='{text}' is not supported; use linear, relu, sigmoid, tanh, \
                 softmax, hard_sigmoid, elu, selu, softplus, softsign, silu or exponential"
            ))
        })
    }

    fn conv2d(&self, name: &str, cfg: &Value) -> Result<LayerKind> {
        self.channels_last(name, cfg)?;
        let groups = cfg.get("groups").and_then(Value::as_u64).unwrap_or(1);
        if groups != 1 {
            return Err(Error::Unsupported(format!(
                "layer {name}: Conv2D groups={groups}; cnn-lstm supports groups=1"
            )));
        }
        Ok(LayerKind::Conv2D(Conv2D {
            filters: self.usize_field(cfg, "filters", name)?,
            kernel: self.pair(cfg, "kernel_size", None, name)?,
            strides: self.pair(cfg, "strides", Some((1, 1)), name)?,
            dilation: self.pair(cfg, "dilation_rate", Some((1, 1)), name)?,
            padding: self.padding(cfg, name)?,
            activation: self.activation(cfg, "activation", "linear", name)?,
            use_bias: self.bool_or(cfg, "use_bias", true, name)?,
        }))
    }

    fn pool(&self, name: &str, cfg: &Value, kind: PoolKind) -> Result<LayerKind> {
        self.channels_last(name, cfg)?;
        let pool = self.pair(cfg, "pool_size", Some((2, 2)), name)?;
        Ok(LayerKind::Pool2D(Pool2D {
            kind,
            pool,
            strides: self.pair(cfg, "strides", Some(pool), name)?,
            padding: self.padding(cfg, name)?,
        }))
    }

    fn dropout(&self, name: &str, cfg: &Value) -> Result<LayerKind> {
        if cfg.get("noise_shape").is_some_and(|v| !v.is_null()) {
            return Err(Error::Unsupported(format!(
                "layer {name}: Dropout with a noise_shape; use SpatialDropout2D or \
                 SpatialDropout3D for shared masks"
            )));
        }
        Ok(LayerKind::Dropout { rate: self.f64_or(cfg, "rate", 0.0, name)? })
    }

    fn dense(&self, name: &str, cfg: &Value) -> Result<LayerKind> {
        Ok(LayerKind::Dense(Dense {
            units: self.usize_field(cfg, "units", name)?,
            activation: self.activation(cfg, "activation", "linear", name)?,
            use_bias: self.bool_or(cfg, "use_bias", true, name)?,
        }))
    }

    fn lstm(&self, name: &str, cfg: &Value) -> Result<LayerKind> {
        for (key, why) in [
            ("stateful", "state kept across batches"),
            ("go_backwards", "reversed sequences"),
            ("return_state", "returning the states as extra outputs"),
        ] {
            if self.bool_or(cfg, key, false, name)? {
                return Err(Error::Unsupported(format!(
                    "layer {name}: LSTM {key}=True ({why}) is not supported; save the model \
                     with {key}=False"
                )));
            }
        }
        for key in ["dropout", "recurrent_dropout"] {
            let rate = self.f64_or(cfg, key, 0.0, name)?;
            if !(0.0..1.0).contains(&rate) {
                return Err(Error::format(
                    self.source,
                    format!("layer {name}: LSTM {key}={rate} must lie in [0, 1)"),
                ));
            }
            if rate != 0.0 {
                // Inference ignores it, as Keras does; training would need
                // dropout inside the recurrence, which cnn-lstm lacks.
                self.training_only.borrow_mut().push(format!(
                    "layer {name}: LSTM {key}={rate} acts only in training mode, and cnn-lstm has \
                     no dropout inside the LSTM; run in inference mode, or set {key}=0.0 and use \
                     a Dropout layer before the LSTM"
                ));
            }
        }
        Ok(LayerKind::Lstm(Lstm {
            units: self.usize_field(cfg, "units", name)?,
            return_sequences: self.bool_or(cfg, "return_sequences", false, name)?,
            zero_output_for_mask: self.bool_or(cfg, "zero_output_for_mask", false, name)?,
            activation: self.activation(cfg, "activation", "tanh", name)?,
            recurrent_activation: self.activation(cfg, "recurrent_activation", "sigmoid", name)?,
            use_bias: self.bool_or(cfg, "use_bias", true, name)?,
        }))
    }

    /// A `target_shape` with at most one `-1`, resolved against `elements`.
    fn target_shape(
        &self,
        index: usize,
        name: &str,
        cfg: &Value,
        elements: usize,
    ) -> Result<Vec<usize>> {
        let raw = cfg
            .get("target_shape")
            .and_then(Value::as_array)
            .ok_or_else(|| self.fmt(format!("layer {name}: Reshape has no target_shape list")))?;
        let dims: Vec<i64> = raw
            .iter()
            .map(|d| d.as_i64().filter(|&n| n == -1 || n >= 1))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                self.fmt(format!("layer {name}: target_shape entries must be >= 1 or -1"))
            })?;
        resolve_target(&dims, elements).ok_or_else(|| {
            Error::layer(
                index,
                name,
                format!(
                    "Reshape target {dims:?} cannot hold the {elements} values per step; use a \
                     shape whose product is {elements}"
                ),
            )
        })
    }

    /// A top-level `Reshape`: per sample once the time axis is gone; on a
    /// sequence only when it keeps the time axis as its first dim.
    fn top_reshape(
        &self,
        index: usize,
        name: &str,
        cfg: &Value,
        shape: &SampleShape,
        input: &InputSpec,
        got: &str,
    ) -> Result<LayerKind> {
        if !shape.timed {
            let target = self.target_shape(index, name, cfg, shape.elements())?;
            return Ok(LayerKind::Reshape { target });
        }
        let raw: Vec<i64> = cfg
            .get("target_shape")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let keeps_time = match raw.first() {
            Some(&t) => {
                let rest_known = raw[1..].iter().all(|&d| d >= 1);
                let rest: i64 = raw[1..].iter().product();
                let per_step = i64::try_from(shape.elements()).unwrap_or(-1);
                rest_known
                    && rest == per_step
                    && (t == -1 || input.time_steps.and_then(|n| i64::try_from(n).ok()) == Some(t))
            }
            None => false,
        };
        if !keeps_time {
            return Err(Error::Unsupported(format!(
                "layer {index} ({name}): Reshape {raw:?} of the sequence {got} mixes the time \
                 axis with frame dims; wrap it as TimeDistributed(Reshape(...)) to reshape each \
                 step"
            )));
        }
        let target = raw[1..].iter().map(|&d| d as usize).collect();
        Ok(LayerKind::Reshape { target })
    }
}

fn resolve_target(dims: &[i64], elements: usize) -> Option<Vec<usize>> {
    let unknown = dims.iter().filter(|&&d| d == -1).count();
    let known = dims
        .iter()
        .filter(|&&d| d != -1)
        .try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?))?;
    match unknown {
        0 => (known == elements).then(|| dims.iter().map(|&d| d as usize).collect()),
        1 if known > 0 && elements.is_multiple_of(known) => Some(
            dims.iter().map(|&d| if d == -1 { elements / known } else { d as usize }).collect(),
        ),
        _ => None,
    }
}

/// Most values one layer's weights, or one timestep's tensor, may hold
/// (2^31 f32 = 8 GiB): larger sizes in a model file are refused before
/// anything is allocated or any size computation can overflow.
const MAX_VALUES: usize = 1 << 31;

/// Checks, with overflow-checked arithmetic, that `kind` applied to `shape`
/// needs at most [`MAX_VALUES`] weights and output values per step.
fn check_size(index: usize, name: &str, kind: &LayerKind, shape: &SampleShape) -> Result<()> {
    let mul = |xs: &[usize]| xs.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let input = shape.elements();
    let last = shape.dims.last().copied().unwrap_or(1);
    let (weights, output) = match kind {
        LayerKind::Conv2D(c) => {
            let cin = shape.dims.get(2).copied().unwrap_or(1);
            let hw = shape.dims.iter().take(2).product::<usize>();
            // The dilated window must fit too.
            let window = mul(&[c.kernel.0, c.dilation.0]).and(mul(&[c.kernel.1, c.dilation.1]));
            (window.and(mul(&[c.kernel.0, c.kernel.1, cin, c.filters])), mul(&[hw, c.filters]))
        }
        LayerKind::Dense(d) => (mul(&[last + 1, d.units]), mul(&[input / last.max(1), d.units])),
        LayerKind::Lstm(l) => {
            (last.checked_add(l.units).and_then(|n| mul(&[n + 1, 4, l.units])), Some(l.units))
        }
        LayerKind::Reshape { target } => (Some(0), mul(target)),
        _ => (Some(0), Some(input)),
    };
    let fits = |n: Option<usize>| n.is_some_and(|n| n <= MAX_VALUES);
    if fits(weights) && fits(output) {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "layer {index} ({name}): {} on {} needs more than {MAX_VALUES} weights or values per              step; cnn-lstm refuses models that large",
            kind.class_name(),
            shape.keras_str(None)
        )))
    }
}

/// True for a serialized op node (`keras.src.ops.*`), which is not a layer.
fn is_op(l: &Value) -> bool {
    l.get("module").and_then(Value::as_str).is_some_and(|m| m.starts_with("keras.src.ops"))
        || matches!(l.get("class_name").and_then(Value::as_str), Some("NotEqual" | "Any"))
}

/// A short rendering of a JSON value for messages.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let cut = (0..=80).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        format!("{}...", &s[..cut])
    } else {
        s
    }
}
