//! Keras model JSON: the article's three examples, every supported option,
//! and refusals (unsupported layers and options, malformed text).
//!
//! The article examples are in `tests/keras_json/`, written by hand in the
//! form Keras 3's `model.to_json()` gives (see the README there). Other
//! cases edit a fixture's real `model.json`.

mod common;

use cnn_lstm::keras::{self, KerasModel};
use cnn_lstm::{Activation, DropoutMode, Error, LayerKind, Model};
use common::*;
use serde_json::{json, Value};

fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keras_json").join(name);
    std::fs::read_to_string(path).unwrap()
}

fn load(v: &Value) -> cnn_lstm::Result<Model> {
    keras::load_model_json(&v.to_string(), "test.json")
}

fn fixture_json(name: &str) -> Value {
    read_json(&keras_dir(name).join("model.json"))
}

/// The index of the layer called `name` in a Sequential/Functional config.
fn layer_mut<'a>(v: &'a mut Value, name: &str) -> &'a mut Value {
    v["config"]["layers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|l| l["config"]["name"] == name || l["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name}"))
}

fn unsupported(r: cnn_lstm::Result<Model>, words: &[&str]) {
    match r {
        Err(Error::Unsupported(m)) => {
            for w in words {
                assert!(m.contains(w), "message {m:?} lacks {w:?}");
            }
        }
        other => panic!("expected Unsupported mentioning {words:?}, got {other:?}"),
    }
}

fn format_error(r: cnn_lstm::Result<Model>) -> String {
    match r {
        Err(Error::Format { message, .. }) => message,
        other => panic!("expected a Format error, got {other:?}"),
    }
}

// ---- The article ------------------------------------------------------------

#[test]
fn article_example1_uses_the_inner_input_shape() {
    let model = keras::load_model_json(&example("article_example1.json"), "ex1").unwrap();
    // Conv 3*3*3*32+32 = 896; LSTM 64 on 62*62*32 = 123008 features:
    // 4*64*(123008+64+1) = 31,506,688; LSTM 32: 4*32*(64+32+1) = 12,416;
    // Dense 32*10+10 = 330.
    assert_eq!(model.param_count(), 896 + 31_506_688 + 12_416 + 330);
    assert_eq!(model.param_count(), 31_520_330);
    assert_eq!(model.input().time_steps, None);
    assert_eq!(model.input().frame, vec![64, 64, 3]);
    assert!(model.infos().iter().all(|i| !i.has_mask));
    assert!(matches!(
        model.layers()[1].kind,
        LayerKind::SpatialDropout { mode: DropoutMode::PerTimestep, .. }
    ));
    assert_eq!(model.output_shape().with_batch(2, 4), vec![2, 10]);
}

#[test]
fn article_example1_without_any_shape_is_refused() {
    let mut v: Value = serde_json::from_str(&example("article_example1.json")).unwrap();
    layer_mut(&mut v, "time_distributed")["config"]["layer"]["config"]
        .as_object_mut()
        .unwrap()
        .remove("input_shape");
    let m = format_error(load(&v));
    assert!(m.contains("no input shape"), "{m}");
}

#[test]
fn article_example2_is_refused_by_the_builder() {
    match keras::load_model_json(&example("article_example2.json"), "ex2") {
        Err(Error::Layer { index, name, message }) => {
            assert_eq!((index, name.as_str()), (2, "time_distributed_2"));
            assert!(message.contains("SpatialDropout2D"), "{message}");
            assert!(message.contains("between the convolution and the Flatten"), "{message}");
            assert!(message.contains("123008"), "{message}");
        }
        other => panic!("expected a layer error, got {other:?}"),
    }
}

#[test]
fn article_example3_masks_whole_frames() {
    let model = keras::load_model_json(&example("article_example3.json"), "ex3").unwrap();
    // 896 + 31,506,688 + Dense 64*10+10 = 650.
    assert_eq!(model.param_count(), 896 + 31_506_688 + 650);
    assert_eq!(model.param_count(), 31_508_234);
    assert_eq!(model.layers()[0].kind, LayerKind::Masking { mask_value: 0.0 });
    let masks: Vec<bool> = model.infos().iter().map(|i| i.has_mask).collect();
    // Masking, 3 x TimeDistributed carry the mask; the LSTM drops it.
    assert_eq!(masks, vec![true, true, true, true, false, false]);
    assert_eq!(model.input().time_steps, None);
}

#[test]
fn input_shape_on_the_first_layer_in_keras2_spellings() {
    let base: Value = serde_json::from_str(&example("article_example3.json")).unwrap();
    let want = keras::load_model_json(&base.to_string(), "ex3").unwrap();
    for (key, shape) in [
        ("batch_input_shape", json!([null, null, 64, 64, 3])),
        ("batch_shape", json!([null, null, 64, 64, 3])),
        ("input_shape", json!([null, 64, 64, 3])),
    ] {
        let mut v = base.clone();
        v["config"]["layers"].as_array_mut().unwrap().remove(0);
        layer_mut(&mut v, "masking")["config"][key] = shape;
        let got = load(&v).unwrap();
        assert_eq!(got.input(), want.input(), "{key}");
        assert_eq!(got.param_count(), want.param_count(), "{key}");
    }
}

#[test]
fn build_input_shape_gives_the_input_when_no_layer_does() {
    let mut v: Value = serde_json::from_str(&example("article_example1.json")).unwrap();
    layer_mut(&mut v, "time_distributed")["config"]["layer"]["config"]
        .as_object_mut()
        .unwrap()
        .remove("input_shape");
    v["config"]["build_input_shape"] = json!([null, 7, 20, 20, 3]);
    let model = load(&v).unwrap();
    assert_eq!(model.input().time_steps, Some(7));
    assert_eq!(model.input().frame, vec![20, 20, 3]);
    // LSTM 64 on 18*18*32 = 10368 features.
    assert_eq!(model.param_count(), 896 + 4 * 64 * (10368 + 64 + 1) + 12_416 + 330);
}

// ---- Options ----------------------------------------------------------------

#[test]
fn lstm_options_load() {
    let mut v = fixture_json("article_small");
    {
        let c = &mut layer_mut(&mut v, "lstm")["config"];
        c["activation"] = json!("relu");
        c["recurrent_activation"] = json!("hard_sigmoid");
        c["zero_output_for_mask"] = json!(true);
        c["unroll"] = json!(true);
        c["unit_forget_bias"] = json!(false);
    }
    layer_mut(&mut v, "lstm_1")["config"]["use_bias"] = json!(false);
    let model = load(&v).unwrap();
    let LayerKind::Lstm(l) = &model.layers()[3].kind else { panic!("not an LSTM") };
    assert_eq!((l.activation, l.recurrent_activation), (Activation::Relu, Activation::HardSigmoid));
    assert!(l.zero_output_for_mask && l.return_sequences && l.use_bias);
    let LayerKind::Lstm(l1) = &model.layers()[4].kind else { panic!("not an LSTM") };
    assert!(!l1.use_bias && !l1.return_sequences);
    // lstm_1 without bias: 4*8*(16+8) = 768; the rest as in meta.json (102,554 with 4*8 bias).
    assert_eq!(model.param_count(), 102_554 - 32);
}

#[test]
fn conv_and_pool_options_load() {
    let mut v = fixture_json("two_conv_maxpool");
    {
        let c = &mut layer_mut(&mut v, "time_distributed")["config"]["layer"]["config"];
        c["kernel_size"] = json!(5);
        c["strides"] = json!([1, 1]);
        c["dilation_rate"] = json!(2);
        c["padding"] = json!("same");
        c["activation"] = json!("swish");
        c["use_bias"] = json!(false);
    }
    {
        let p = &mut layer_mut(&mut v, "time_distributed_1")["config"]["layer"];
        p["class_name"] = json!("AveragePooling2D");
        p["config"]["strides"] = Value::Null;
        p["config"]["pool_size"] = json!(3);
    }
    let model = load(&v).unwrap();
    let LayerKind::Conv2D(c) = &model.layers()[0].kind else { panic!() };
    assert_eq!((c.kernel, c.dilation, c.use_bias), ((5, 5), (2, 2), false));
    assert_eq!(c.activation, Activation::Silu);
    let LayerKind::Pool2D(p) = &model.layers()[1].kind else { panic!() };
    assert_eq!((p.pool, p.strides), ((3, 3), (3, 3)));
    // 20x20 'same' conv keeps 20x20; pool 3 stride 3 'valid' gives 6x6.
    assert_eq!(model.infos()[1].output.dims, vec![6, 6, 8]);
}

#[test]
fn refused_options_name_the_layer_and_option() {
    let cases: Vec<(&str, &str, Value, &[&str])> = vec![
        ("lstm", "stateful", json!(true), &["lstm", "stateful"]),
        ("lstm", "go_backwards", json!(true), &["lstm", "go_backwards"]),
        ("lstm", "return_state", json!(true), &["lstm", "return_state"]),
        ("lstm", "activation", json!("softmax"), &["lstm", "softmax"]),
        ("lstm", "activation", json!("gelu"), &["lstm", "gelu"]),
        ("dense", "dtype", json!("mixed_float16"), &["dense", "mixed_float16"]),
    ];
    for (layer, key, value, words) in cases {
        let mut v = fixture_json("article_small");
        layer_mut(&mut v, layer)["config"][key] = value;
        unsupported(load(&v), words);
    }
    let inner_cases: Vec<(&str, Value, &[&str])> = vec![
        ("data_format", json!("channels_first"), &["conv2d", "channels_first"]),
        ("groups", json!(2), &["conv2d", "groups=2"]),
        ("padding", json!("causal"), &["conv2d", "causal"]),
        (
            "dtype",
            json!({"module": "keras", "class_name": "DTypePolicy",
                   "config": {"name": "bfloat16"}, "registered_name": null}),
            &["conv2d", "bfloat16"],
        ),
    ];
    for (key, value, words) in inner_cases {
        let mut v = fixture_json("article_small");
        layer_mut(&mut v, "time_distributed")["config"]["layer"]["config"][key] = value;
        unsupported(load(&v), words);
    }
}

#[test]
fn lstm_dropout_loads_for_inference_and_refuses_training() {
    // LSTM dropout acts only in training (Keras ignores it at inference),
    // so the model loads and infers; a training-mode run names the option.
    for (key, rate) in [("dropout", 0.25), ("recurrent_dropout", 0.1)] {
        let mut v = fixture_json("article_small");
        layer_mut(&mut v, "lstm")["config"][key] = json!(rate);
        let mut model = load(&v).unwrap();
        cnn_lstm::init::keras_default_weights(&mut model, 1).unwrap();
        let x = cnn_lstm::Tensor::zeros(vec![1, 5, 16, 16, 3]);
        let inference = cnn_lstm::RunOptions::default();
        cnn_lstm::reference::forward(&model, &x, &inference).unwrap();
        let training = cnn_lstm::RunOptions { training: true, ..Default::default() };
        let err = cnn_lstm::reference::forward(&model, &x, &training).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, cnn_lstm::Error::Unsupported(_)), "{text}");
        assert!(text.contains("lstm") && text.contains(&format!("{key}={rate}")), "{text}");
    }
}

#[test]
fn unsupported_classes_are_named() {
    for class in ["GRU", "Bidirectional", "ConvLSTM2D", "SimpleRNN"] {
        let mut v = fixture_json("article_small");
        layer_mut(&mut v, "lstm")["class_name"] = json!(class);
        unsupported(load(&v), &[class, "lstm"]);
    }
    for class in ["BatchNormalization", "Conv3D", "LSTM", "Masking"] {
        let mut v = fixture_json("article_small");
        layer_mut(&mut v, "time_distributed_1")["config"]["layer"]["class_name"] = json!(class);
        unsupported(load(&v), &[&format!("TimeDistributed({class})")]);
    }
    let mut v = fixture_json("article_small");
    v["class_name"] = json!("Bidirectional");
    unsupported(load(&v), &["Bidirectional"]);
}

#[test]
fn plain_conv_on_frames_is_refused_clearly() {
    for class in ["Conv2D", "MaxPooling2D", "SpatialDropout2D"] {
        let mut v = fixture_json("two_conv_maxpool");
        let td = layer_mut(&mut v, "time_distributed").clone();
        let mut inner = td["config"]["layer"].clone();
        inner["class_name"] = json!(class);
        inner["config"]["name"] = json!("plain");
        *layer_mut(&mut v, "time_distributed") = inner;
        match load(&v) {
            Err(Error::Layer { name, message, .. }) => {
                assert_eq!(name, "plain");
                assert!(message.contains("not valid Keras"), "{message}");
                assert!(message.contains(&format!("TimeDistributed({class}")), "{message}");
            }
            other => panic!("{class}: expected a layer error, got {other:?}"),
        }
    }
}

#[test]
fn top_level_flatten_on_a_sequence_is_refused() {
    let mut v = fixture_json("article_small");
    let inner = layer_mut(&mut v, "time_distributed_2")["config"]["layer"].clone();
    *layer_mut(&mut v, "time_distributed_2") = inner;
    unsupported(load(&v), &["flatten", "time axis", "TimeDistributed(Flatten())"]);
}

#[test]
fn spatial_dropout3d_and_reshape_with_minus_one() {
    // Replace TD(SpatialDropout2D) by SpatialDropout3D, TD(Flatten) by TD(Reshape((-1,))).
    let mut v = fixture_json("article_small");
    *layer_mut(&mut v, "time_distributed_1") = json!({
        "module": "keras.layers", "class_name": "SpatialDropout3D",
        "config": {"rate": 0.3, "seed": null, "name": "spatial_dropout3d",
                   "dtype": "float32", "data_format": "channels_last"},
        "registered_name": null});
    let td = layer_mut(&mut v, "time_distributed_2");
    td["config"]["layer"] = json!({
        "module": "keras.layers", "class_name": "Reshape",
        "config": {"name": "reshape", "trainable": true, "dtype": "float32",
                   "target_shape": [-1]},
        "registered_name": null});
    let model = load(&v).unwrap();
    assert_eq!(
        model.layers()[1].kind,
        LayerKind::SpatialDropout { rate: 0.3, mode: DropoutMode::PerSample }
    );
    assert_eq!(model.layers()[2].kind, LayerKind::Reshape { target: vec![14 * 14 * 8] });
    assert_eq!(model.param_count(), 102_554);
}

// ---- Functional graphs ------------------------------------------------------

#[test]
fn functional_endpoints_may_be_lists_of_one_triple() {
    let mut v = fixture_json("mask_trailing_middle");
    v["config"]["input_layers"] = json!([["input_layer", 0, 0]]);
    v["config"]["output_layers"] = json!([["dense", 0, 0]]);
    let meta = read_json(&keras_dir("mask_trailing_middle").join("meta.json"));
    assert_eq!(load(&v).unwrap().param_count() as u64, meta["param_count"].as_u64().unwrap());
    v["config"]["output_layers"] = json!([["dense", 0, 0], ["lstm_1", 0, 0]]);
    unsupported(load(&v), &["one input and one output"]);
}

#[test]
fn functional_mask_nodes_must_be_the_masking_computation() {
    // A NotEqual comparing with another value than the Masking's mask_value.
    let mut v = fixture_json("mask_trailing_middle");
    layer_mut(&mut v, "not_equal")["inbound_nodes"][0]["args"][1] = json!(1.0);
    unsupported(load(&v), &["not_equal", "not the mask computation"]);

    // An Any over another axis.
    let mut v = fixture_json("mask_trailing_middle");
    layer_mut(&mut v, "any")["config"]["axis"] = json!(1);
    unsupported(load(&v), &["any", "not the mask computation"]);

    // Another op node hanging off the graph.
    let mut v = fixture_json("mask_trailing_middle");
    let mut extra = layer_mut(&mut v, "any").clone();
    extra["name"] = json!("add");
    extra["class_name"] = json!("Add");
    extra["config"]["name"] = json!("add");
    v["config"]["layers"].as_array_mut().unwrap().push(extra);
    unsupported(load(&v), &["add", "Add"]);

    // A layer given an explicit mask=None although the Masking mask reaches it.
    let mut v = fixture_json("mask_trailing_middle");
    layer_mut(&mut v, "lstm")["inbound_nodes"][0]["kwargs"]["mask"] = Value::Null;
    unsupported(load(&v), &["lstm", "mask=None"]);

    // A mask handed to a layer the Masking mask does not reach.
    let mut v = fixture_json("mask_trailing_middle");
    let mask = layer_mut(&mut v, "lstm")["inbound_nodes"][0]["kwargs"]["mask"].clone();
    layer_mut(&mut v, "dense")["inbound_nodes"][0]["kwargs"]["mask"] = mask;
    unsupported(load(&v), &["dense", "the mask that reaches it"]);
}

#[test]
fn functional_branches_are_refused() {
    let mut v = fixture_json("same_stride2_even_kernel");
    let mut extra = layer_mut(&mut v, "dense").clone();
    extra["name"] = json!("dense_side");
    extra["config"]["name"] = json!("dense_side");
    v["config"]["layers"].as_array_mut().unwrap().push(extra);
    unsupported(load(&v), &["dense_side", "not on the path"]);
}

#[test]
fn functional_layer_called_twice_is_refused() {
    let mut v = fixture_json("same_stride2_even_kernel");
    let node = layer_mut(&mut v, "lstm")["inbound_nodes"][0].clone();
    layer_mut(&mut v, "lstm")["inbound_nodes"].as_array_mut().unwrap().push(node);
    unsupported(load(&v), &["lstm", "called 2 times"]);
}

// ---- Malformed text ---------------------------------------------------------

#[test]
fn malformed_text_is_a_format_error() {
    let text = std::fs::read_to_string(keras_dir("article_small").join("model.json")).unwrap();
    for bad in [
        "not json".to_string(),
        String::new(),
        text[..text.len() / 2].to_string(),
        "[1, 2, 3]".to_string(),
        "{}".to_string(),
        r#"{"class_name": "Sequential", "config": {"layers": 5}}"#.to_string(),
        r#"{"class_name": "Functional", "config": {"layers": []}}"#.to_string(),
    ] {
        let r = keras::load_model_json(&bad, "bad.json");
        assert!(matches!(r, Err(Error::Format { .. })), "{:?}: {r:?}", &bad[..bad.len().min(30)]);
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    for open in ["[", "{\"a\":"] {
        let text = open.repeat(1_000_000);
        let m = format_error(keras::load_model_json(&text, "deep.json"));
        assert!(m.contains("recursion limit"), "{m}");
    }
}

#[test]
fn wrong_field_types_are_format_errors() {
    let mut v = fixture_json("article_small");
    layer_mut(&mut v, "lstm")["config"]["units"] = json!("sixteen");
    let m = format_error(load(&v));
    assert!(m.contains("lstm") && m.contains("units"), "{m}");

    let mut v = fixture_json("article_small");
    layer_mut(&mut v, "lstm")["config"]["return_sequences"] = json!("yes");
    let m = format_error(load(&v));
    assert!(m.contains("return_sequences"), "{m}");

    let mut v = fixture_json("article_small");
    layer_mut(&mut v, "input_layer")["config"]["batch_shape"] = json!([null, 5, -16, 16, 3]);
    let m = format_error(load(&v));
    assert!(m.contains("batch_shape"), "{m}");
}

#[test]
fn unknown_frame_dims_are_refused() {
    let mut v = fixture_json("article_small");
    layer_mut(&mut v, "input_layer")["config"]["batch_shape"] = json!([null, 5, null, 16, 3]);
    unsupported(load(&v), &["frame dim"]);
}

#[test]
fn keras_model_from_json_keeps_inner_names() {
    let text = std::fs::read_to_string(keras_dir("mask_trailing_middle").join("model.json"));
    let k = KerasModel::from_json(&text.unwrap(), "model.json").unwrap();
    assert_eq!(k.inner.to_wrapper.get("conv2d").map(String::as_str), Some("time_distributed_2"));
    assert_eq!(k.inner.to_wrapper.get("flatten_1").map(String::as_str), Some("time_distributed_4"));
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    for (layer, key, value) in [
        ("lstm", "units", json!(1u64 << 40)),
        ("dense", "units", json!(u64::MAX)),
        ("lstm_1", "units", json!(1u64 << 33)),
    ] {
        let mut v = fixture_json("article_small");
        layer_mut(&mut v, layer)["config"][key] = value;
        unsupported(load(&v), &[layer, "more than"]);
    }
    let mut v = fixture_json("article_small");
    layer_mut(&mut v, "time_distributed")["config"]["layer"]["config"]["filters"] =
        json!(1u64 << 62);
    unsupported(load(&v), &["time_distributed", "more than"]);
    let mut v = fixture_json("article_small");
    layer_mut(&mut v, "time_distributed")["config"]["layer"]["config"]["dilation_rate"] =
        json!([u64::MAX / 2, u64::MAX / 2]);
    unsupported(load(&v), &["time_distributed", "more than"]);
    let mut v = fixture_json("article_small");
    layer_mut(&mut v, "input_layer")["config"]["batch_shape"] =
        json!([null, 5, 1u64 << 40, 1u64 << 40, 3]);
    unsupported(load(&v), &["more than"]);
    let mut v = fixture_json("article_small");
    let td = layer_mut(&mut v, "time_distributed_2");
    td["config"]["layer"]["class_name"] = json!("Reshape");
    td["config"]["layer"]["config"]["target_shape"] = json!([1u64 << 40, 1u64 << 40, -1]);
    assert!(load(&v).is_err());
}

#[test]
fn mask_value_matches_in_float32() {
    // 0.1 is not exactly representable: the NotEqual node's 0.1 (a double)
    // must still be recognised as the Masking layer's mask_value.
    let mut v = fixture_json("mask_trailing_middle");
    layer_mut(&mut v, "masking")["config"]["mask_value"] = json!(0.1);
    layer_mut(&mut v, "not_equal")["inbound_nodes"][0]["args"][1] = json!(0.1);
    let model = load(&v).unwrap();
    assert_eq!(model.layers()[1].kind, LayerKind::Masking { mask_value: 0.1 });
}
