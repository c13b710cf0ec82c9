//! Inputs the fuzz targets in `fuzz/` (or review of what they exercise)
//! found to crash, panic or misbehave, each pinned to the error it must give.
//! These run without cargo-fuzz.

use cnn_lstm::keras;
use cnn_lstm::Error;

/// A Sequential model on `(B, T, 6)` feature vectors with one top-level
/// `Reshape` of the given `target_shape` (JSON text).
fn sequential_reshape(target_shape: &str) -> String {
    format!(
        r#"{{"class_name": "Sequential", "config": {{"name": "s", "layers": [
            {{"class_name": "InputLayer", "config": {{"batch_shape": [null, null, 6],
              "name": "input_layer"}}}},
            {{"class_name": "Reshape", "config": {{"name": "reshape",
              "target_shape": {target_shape}}}}}
        ]}}}}"#
    )
}

#[test]
fn sequence_reshape_whose_dims_overflow_is_refused() {
    // 10 * 7378697629483820647 = 6 (mod 2^64): an unchecked i64 product
    // panicked with overflow checks on and wrapped to a "match" for the
    // 6 values per step without them.
    let text = sequential_reshape("[-1, 10, 7378697629483820647]");
    match keras::load_model_json(&text, "model.json") {
        Err(Error::Unsupported(msg)) => {
            assert!(msg.contains("layer 0 (reshape)"), "{msg}");
            assert!(msg.contains("Reshape [-1, 10, 7378697629483820647]"), "{msg}");
            assert!(msg.contains("TimeDistributed(Reshape"), "{msg}");
        }
        other => panic!("expected Unsupported naming the reshape, got {other:?}"),
    }
    // Plain overflow (2^32 * 2^32) is refused the same way.
    let text = sequential_reshape("[-1, 4294967296, 4294967296]");
    assert!(matches!(keras::load_model_json(&text, "m.json"), Err(Error::Unsupported(_))));
    // The check still accepts the honest spelling of the same layer.
    let model = keras::load_model_json(&sequential_reshape("[-1, 2, 3]"), "m.json").unwrap();
    assert_eq!(model.output_shape().dims, vec![2, 3]);
}

/// A `.keras` archive holding `entries`, deflate-compressed.
fn keras_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap();
    buf.into_inner()
}

#[test]
fn keras_config_json_that_expands_past_64_mib_is_refused() {
    // 64 MiB + 1 of spaces deflates to about 64 KiB: before the cap the
    // loader inflated a config.json up to 8 GiB into memory.
    let big = vec![b' '; (64 << 20) + 1];
    let archive = keras_zip(&[("config.json", &big)]);
    assert!(archive.len() < 1 << 20, "the archive itself is small: {}", archive.len());
    match keras::load_keras_bytes(&archive, "bomb.keras") {
        Err(Error::Format { path, message }) => {
            assert_eq!(path, "bomb.keras");
            assert!(
                message.contains("config.json expands to more than 67108864 bytes"),
                "{message}"
            );
        }
        other => panic!("expected a format error naming config.json, got {other:?}"),
    }
    // Exactly at the cap it is read and parsed (and fails as JSON, not on size).
    let at_cap = vec![b' '; 64 << 20];
    match keras::load_keras_bytes(&keras_zip(&[("config.json", &at_cap)]), "cap.keras") {
        Err(Error::Format { message, .. }) => {
            assert!(message.contains("not valid model JSON"), "{message}")
        }
        other => panic!("expected a JSON error, got {other:?}"),
    }
}
