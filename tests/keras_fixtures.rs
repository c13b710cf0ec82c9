//! Every Keras fixture loads from `model.json` + `weights.safetensors` and
//! from `model.keras`, with the layers, shapes, masks and parameter counts of
//! its `meta.json`, and the same weights both ways (checked against
//! `weights_index.json`, which says which variable each stored key is).

mod common;

use std::collections::BTreeMap;

use cnn_lstm::keras::{self, InnerNames, KerasModel};
use common::*;

#[test]
fn every_fixture_matches_its_meta_both_ways() {
    for name in FIXTURES {
        let dir = keras_dir(name);
        let meta = read_json(&dir.join("meta.json"));
        for (label, model) in both_loads(&dir) {
            check_meta(&model, &meta, &format!("{name} {label}"));
        }
    }
}

#[test]
fn digits_clips_matches_its_readme() {
    let dir = fixture_path("digits_clips");
    for (label, model) in both_loads(&dir) {
        assert_eq!(model.param_count(), 537_322, "{label}");
        assert_eq!(model.input().time_steps, Some(10));
        assert_eq!(model.input().frame, vec![32, 32, 1]);
        let names: Vec<&str> = model.layers().iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names[1], "masking", "{label}");
        assert_eq!(model.output_shape().with_batch(397, 10), vec![397, 10]);
    }
}

/// Every weight equals the stored value of the key `weights_index.json`
/// assigns to (layer, variable), whichever way the model was loaded.
#[test]
fn weights_are_the_indexed_values_both_ways() {
    let mut dirs: Vec<_> = FIXTURES.iter().map(|n| keras_dir(n)).collect();
    dirs.push(fixture_path("digits_clips"));
    for dir in dirs {
        let index = read_json(&dir.join("weights_index.json"));
        let stored = keras::read_f32_tensors(dir.join("weights.safetensors")).unwrap();
        for (label, model) in both_loads(&dir) {
            let mut count = 0;
            for entry in index.as_array().unwrap() {
                let layer = entry["layer"].as_str().unwrap();
                let variable = entry["variable"].as_str().unwrap();
                let i = model.layers().iter().position(|l| l.name == layer).unwrap();
                let got = model.weight(i, variable).unwrap();
                let want = &stored[entry["key"].as_str().unwrap()];
                assert_eq!(got, want, "{dir:?} {label}: {layer}/{variable}");
                count += 1;
            }
            let total: usize = model.infos().iter().map(|i| i.weights.len()).sum();
            assert_eq!(count, total, "{dir:?}: the index covers every weight");
        }
    }
}

/// The weights load under the path spelling a model rebuilt by Keras uses
/// (`conv2d/kernel`), and under the bare `<layer>/<inner>/<var>` spelling.
#[test]
fn weights_load_under_every_index_spelling() {
    let mut dirs: Vec<_> = FIXTURES.iter().map(|n| keras_dir(n)).collect();
    dirs.push(fixture_path("digits_clips"));
    let tmp = std::env::temp_dir().join(format!("cnn_lstm_spellings_{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for dir in dirs {
        let index = read_json(&dir.join("weights_index.json"));
        let stored = keras::read_f32_tensors(dir.join("weights.safetensors")).unwrap();
        let text = std::fs::read_to_string(dir.join("model.json")).unwrap();
        let reference = load_json_and_safetensors(&dir);
        let spellings: [&dyn Fn(&serde_json::Value) -> String; 2] =
            [&|e| e["path_after_model_from_json"].as_str().unwrap().to_string(), &|e| {
                let mut parts = vec![e["layer"].as_str().unwrap()];
                if let Some(inner) = e["inner_layer"].as_str() {
                    parts.push(inner);
                }
                if e["layer_class"] == "LSTM" {
                    parts.push("lstm_cell");
                }
                parts.push(e["variable"].as_str().unwrap());
                parts.join("/")
            }];
        for (s, spell) in spellings.iter().enumerate() {
            let renamed: Vec<(String, keras::StoredTensor)> = index
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let t = stored[e["key"].as_str().unwrap()].clone();
                    (spell(e), keras::StoredTensor::F32(t))
                })
                .collect();
            let file = tmp.join(format!("w{s}.safetensors"));
            keras::write_tensors(&file, &renamed).unwrap();
            let mut k = KerasModel::from_json(&text, "model.json").unwrap();
            k.load_weights_safetensors(&file).unwrap();
            // Keras's default inner names also work without the JSON's names.
            let mut plain = k.model.clone();
            keras::load_weights_safetensors(&mut plain, &file).unwrap();
            for i in 0..reference.layers().len() {
                for (v, _) in &reference.infos()[i].weights {
                    assert_eq!(k.model.weight(i, v), reference.weight(i, v), "{dir:?} {s} {v}");
                    assert_eq!(plain.weight(i, v), reference.weight(i, v), "{dir:?} {s} {v}");
                }
            }
        }
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn inner_names_come_from_the_json() {
    let text = std::fs::read_to_string(keras_dir("two_conv_maxpool").join("model.json")).unwrap();
    let k = KerasModel::from_json(&text, "model.json").unwrap();
    let want: BTreeMap<String, String> = [
        ("conv2d", "time_distributed"),
        ("max_pooling2d", "time_distributed_1"),
        ("conv2d_1", "time_distributed_2"),
        ("max_pooling2d_1", "time_distributed_3"),
        ("spatial_dropout2d", "time_distributed_4"),
        ("flatten", "time_distributed_5"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(k.inner, InnerNames { to_wrapper: want });
}

#[test]
fn null_time_dim_accepts_any_t() {
    let dir = keras_dir("seq_out_td_dense_dynT");
    for (label, model) in both_loads(&dir) {
        assert_eq!(model.input().time_steps, None, "{label}");
        for t in [1, 5, 17] {
            assert_eq!(model.check_input(&[2, t, 10, 10, 3]).unwrap(), (2, t));
        }
    }
    let fixed = load_json_and_safetensors(&keras_dir("article_small"));
    assert_eq!(fixed.input().time_steps, Some(5));
    assert!(fixed.check_input(&[3, 6, 16, 16, 3]).is_err());
}
