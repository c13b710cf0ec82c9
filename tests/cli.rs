//! The command line's contract: usage errors exit 2, failures exit 1 with
//! exactly one `error:` line on stderr, results go to stdout.

use std::process::{Command, Output};

fn cnn_lstm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cnn-lstm"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()))
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Exit code 1 and exactly one stderr line, starting `error:`; returns it.
fn assert_one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr}");
    assert!(lines[0].starts_with("error: "), "stderr: {stderr}");
    lines[0].to_string()
}

#[test]
fn help_lists_every_subcommand() {
    let out = cnn_lstm(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["demo", "run", "verify", "summary", "bench", "devices"] {
        assert!(text.contains(cmd), "--help lacks {cmd}: {text}");
    }
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["no-such-command"][..],
        &["demo", "--batch", "0"],
        &["demo", "--device", "tpu"],
        &["demo", "--timesteps", "ten"],
        &["run", "--model", "m.json"],
    ] {
        let out = cnn_lstm(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn summary_of_the_demo_model_matches_keras() {
    let out = cnn_lstm(&["summary"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // Parameter counts by hand: conv 3*3*3*32 + 32; LSTM 4*64*(62*62*32 + 64 + 1);
    // LSTM 4*32*(64 + 32 + 1); Dense 32*10 + 10. Keras prints the same total.
    let rows = [
        ("masking (Masking)", "(None, None, 64, 64, 3)", "0"),
        ("conv2d (TimeDistributed(Conv2D))", "(None, None, 62, 62, 32)", "896"),
        ("spatial_dropout2d", "(None, None, 62, 62, 32)", "0"),
        ("flatten", "(None, None, 123008)", "0"),
        ("lstm (LSTM)", "(None, None, 64)", "31,506,688"),
        ("lstm_1 (LSTM)", "(None, 32)", "12,416"),
        ("dense (Dense)", "(None, 10)", "330"),
    ];
    for (name, shape, params) in rows {
        let line = text.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| {
            panic!("no row {name} in\n{text}");
        });
        assert!(line.contains(shape), "{line}");
        assert!(line.trim_end().ends_with(&format!(" {params}")), "{line}");
    }
    assert!(text.contains("Total params: 31,520,330 (120.24 MB)"), "{text}");
}

#[test]
fn missing_files_are_one_line_errors() {
    let line = assert_one_error_line(&cnn_lstm(&["summary", "/nonexistent/model.json"]));
    assert!(line.contains("model.json"), "{line}");
    let line = assert_one_error_line(&cnn_lstm(&[
        "run",
        "--model",
        "/nonexistent/model.json",
        "--input",
        "/nonexistent/in.safetensors",
        "--output",
        "/tmp/out.safetensors",
        "--device",
        "cpu",
    ]));
    assert!(line.contains("model.json"), "{line}");
    let line =
        assert_one_error_line(&cnn_lstm(&["verify", "/nonexistent/fixture", "--device", "cpu"]));
    assert!(line.contains("/nonexistent/fixture"), "{line}");
}

#[test]
fn unknown_adapter_is_a_one_line_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_cnn-lstm"))
        .args(["demo", "--batch", "1", "--timesteps", "1", "--no-trained"])
        .env("CNN_LSTM_ADAPTER", "no adapter is called this")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let line = assert_one_error_line(&out);
    assert!(line.contains("no adapter is called this"), "{line}");
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras");

#[test]
fn verify_passes_on_every_keras_fixture_on_the_cpu() {
    let mut n = 0;
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("io.safetensors").exists() {
            continue;
        }
        n += 1;
        let out = cnn_lstm(&["verify", dir.to_str().unwrap(), "--device", "cpu"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {text}", dir.display());
        assert!(text.contains("every stored tensor and mask matches"), "{text}");
    }
    assert!(n >= 7, "only {n} fixtures found");
}

#[test]
fn verify_reports_a_tampered_layer() {
    use cnn_lstm::keras::{read_tensors, write_tensors, StoredTensor};
    let src = std::path::Path::new(FIXTURES).join("article_small");
    let dir = std::env::temp_dir().join(format!("cnn-lstm-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.json", "weights.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut io = read_tensors(src.join("io.safetensors")).unwrap();
    // Move one LSTM value by 1e-3, 100 times the Keras tolerance.
    match io.get_mut("layer/lstm") {
        Some(StoredTensor::F32(t)) => t.data_mut()[7] += 1e-3,
        _ => panic!("article_small has no layer/lstm"),
    }
    let tensors: Vec<(String, StoredTensor)> = io.into_iter().collect();
    write_tensors(dir.join("io.safetensors"), &tensors).unwrap();

    let out = cnn_lstm(&["verify", dir.to_str().unwrap(), "--device", "cpu"]);
    let line = assert_one_error_line(&out);
    assert!(line.contains("layer/lstm") && !line.contains("layer/lstm_1"), "{line}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISMATCH"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_writes_the_keras_output() {
    use cnn_lstm::keras::{read_tensors, StoredTensor};
    let src = std::path::Path::new(FIXTURES).join("two_conv_maxpool");
    let out_path = std::env::temp_dir().join(format!("cnn-lstm-run-{}.st", std::process::id()));
    let out = cnn_lstm(&[
        "run",
        "--model",
        src.join("model.json").to_str().unwrap(),
        "--weights",
        src.join("weights.safetensors").to_str().unwrap(),
        "--input",
        src.join("io.safetensors").to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
        "--device",
        "cpu",
        "--capture",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let ours = read_tensors(&out_path).unwrap();
    let keras = read_tensors(src.join("io.safetensors")).unwrap();
    let (Some(StoredTensor::F32(a)), Some(StoredTensor::F32(b))) =
        (ours.get("output"), keras.get("output"))
    else {
        panic!("no output tensor");
    };
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.data().iter().zip(b.data()) {
        assert!((x - y).abs() <= 1e-5, "{x} vs Keras {y}");
    }
    // --capture writes every layer under layer/<name>, like the fixtures.
    assert!(ours.keys().filter(|k| k.starts_with("layer/")).count() >= 5, "{:?}", ours.keys());
    let _ = std::fs::remove_file(&out_path);
}

#[test]
fn run_rejects_a_wrong_input_shape_in_one_line() {
    let src = std::path::Path::new(FIXTURES).join("two_conv_maxpool");
    let other = std::path::Path::new(FIXTURES).join("article_small");
    let out = cnn_lstm(&[
        "run",
        "--model",
        src.join("model.json").to_str().unwrap(),
        "--weights",
        src.join("weights.safetensors").to_str().unwrap(),
        "--input",
        other.join("io.safetensors").to_str().unwrap(),
        "--output",
        "/tmp/never-written.safetensors",
        "--device",
        "cpu",
    ]);
    let line = assert_one_error_line(&out);
    assert!(line.contains("input"), "{line}");
}

#[test]
fn bench_on_the_cpu_times_every_layer() {
    let out = cnn_lstm(&[
        "bench",
        "--device",
        "cpu",
        "--batch",
        "1",
        "--timesteps",
        "2",
        "--iterations",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for stage in ["conv2d", "lstm", "lstm_1", "dense", "forward pass (wall, mean)", "clips/s"] {
        assert!(text.contains(stage), "{stage} missing from\n{text}");
    }
}

#[test]
fn devices_lists_the_adapter_it_selects() {
    let out = cnn_lstm(&["devices"]);
    if out.status.code() != Some(0) {
        assert!(std::env::var_os("CI").is_none(), "CI has no GPU adapter");
        assert_one_error_line(&out);
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let selected = text.lines().find_map(|l| l.strip_prefix("Selected: ")).unwrap();
    // The selected adapter is one of those listed.
    assert!(text.lines().any(|l| l.trim() == selected), "{text}");
}
