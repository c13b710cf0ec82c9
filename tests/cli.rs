//! The command line's contract: usage errors exit 2, failures exit 1 with
//! exactly one `error:` line on stderr, results go to stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cnn_lstm::keras::{read_tensors, write_tensors, StoredTensor};

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
        &["run", "--model", "m.json", "--input", "i", "--output", "o", "--seed", "1"],
        &["run", "--model", "m.json", "--input", "i", "--output", "o", "--capture"],
        &["verify", "tests/fixtures/keras/article_small"],
        &["verify", "--model", "m.json"],
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
fn summary_reads_a_model_from_a_pipe() {
    // Process substitution hands the binary a pipe (/dev/fd/N), not a file.
    let model = fixture("article_small").join("model.json");
    let from_file = cnn_lstm(&["summary", path(&model)]);
    assert_eq!(from_file.status.code(), Some(0), "{}", String::from_utf8_lossy(&from_file.stderr));
    let script =
        format!("exec '{}' summary <(cat '{}')", env!("CARGO_BIN_EXE_cnn-lstm"), path(&model));
    let from_pipe = Command::new("bash")
        .args(["-c", &script])
        .env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(from_pipe.status.code(), Some(0), "{}", String::from_utf8_lossy(&from_pipe.stderr));
    assert_eq!(from_pipe.stdout, from_file.stdout);
    assert!(String::from_utf8_lossy(&from_pipe.stdout).contains("Total params"));
}

#[test]
fn an_endless_stream_is_refused_at_the_cap() {
    // /dev/zero is only read. Model JSON is capped at 64 MiB = 67108864 bytes.
    if !Path::new("/dev/zero").exists() {
        eprintln!("skipped: no /dev/zero");
        return;
    }
    let line = assert_one_error_line(&cnn_lstm(&["summary", "/dev/zero"]));
    assert!(line.contains("/dev/zero") && line.contains("67108864 bytes"), "{line}");
    assert!(line.contains("not a regular file"), "{line}");
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
    let line = assert_one_error_line(&cnn_lstm(&[
        "verify",
        "--model",
        "/nonexistent/fixture/model.keras",
        "--input",
        "/nonexistent/fixture/io.safetensors",
    ]));
    assert!(line.contains("/nonexistent/fixture/model.keras"), "{line}");
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

/// `cnn-lstm ARGS` with extra environment variables.
fn cnn_lstm_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cnn-lstm"));
    cmd.args(args)
        .env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()))
        .env_remove("RUST_LOG")
        .env_remove("CNN_LSTM_BACKEND")
        .env_remove("CNN_LSTM_ADAPTER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_filter_that_matches_nothing_lists_the_adapters_that_exist() {
    // The adapters on every backend, as `devices` lists them unfiltered.
    let listed = cnn_lstm_env(&["devices"], &[]);
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    let adapters: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Adapters:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    let filters: [&[(&str, &str)]; 2] = [
        &[("CNN_LSTM_ADAPTER", "nothing-matches")],
        &[("CNN_LSTM_BACKEND", if cfg!(target_os = "macos") { "dx12" } else { "metal" })],
    ];
    for env in filters {
        let out = cnn_lstm_env(&["demo", "--batch", "1", "--timesteps", "1", "--no-trained"], env);
        let line = assert_one_error_line(&out);
        assert!(line.contains("no GPU adapter: none matches"), "{line}");
        assert!(line.contains(env[0].1), "{line}");
        if adapters.is_empty() {
            assert!(std::env::var_os("CI").is_none(), "CI has software adapters");
            assert!(line.contains("no adapter exists on any backend"), "{line}");
            assert!(line.contains("mesa-vulkan-drivers"), "{line}");
        } else {
            assert!(line.contains("Relax or change the filter"), "{line}");
            assert!(!line.contains("mesa"), "{line}");
            for adapter in &adapters {
                assert!(line.contains(adapter), "{adapter} missing from {line}");
            }
        }
    }
}

#[test]
fn the_no_adapter_message_suggests_a_driver_only_when_none_exists() {
    use cnn_lstm::gpu::no_adapter_message;
    let all = vec!["llvmpipe (LLVM 19.1.7, 256 bits) (Vulkan, Cpu)".to_string()];
    let m = no_adapter_message(None, Some("nothing-matches"), &all);
    assert!(m.contains("CNN_LSTM_ADAPTER='nothing-matches'"), "{m}");
    assert!(m.contains(&all[0]) && m.contains("Relax or change the filter"), "{m}");
    assert!(!m.contains("mesa"), "{m}");
    let m = no_adapter_message(Some("metal"), None, &all);
    assert!(m.contains("CNN_LSTM_BACKEND=metal") && m.contains(&all[0]), "{m}");
    assert!(!m.contains("mesa"), "{m}");
    for m in
        [no_adapter_message(Some("metal"), Some("x"), &[]), no_adapter_message(None, None, &[])]
    {
        assert!(m.contains("apt-get install mesa-vulkan-drivers"), "{m}");
        assert!(!m.contains("Relax"), "{m}");
    }
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keras");

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A directory of its own under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cnn-lstm-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether GPU tests run: always under CI (`CI` set; CI has software adapters,
/// so a missing one must fail the test); elsewhere only when `cnn-lstm
/// devices` finds an adapter, else the test is skipped with a printed reason.
fn gpu_or_skip(test: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        return true;
    }
    let out = cnn_lstm(&["devices"]);
    if out.status.success() {
        return true;
    }
    eprintln!("{test}: skipped, no GPU adapter: {}", String::from_utf8_lossy(&out.stderr).trim());
    false
}

/// The table cells of the row for `key` in `verify`'s output.
fn verify_row<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no row {key} in\n{text}"));
    line.split_whitespace().skip(1).collect()
}

#[test]
fn verify_passes_on_every_keras_fixture_on_gpu_cpu_and_keras() {
    if !gpu_or_skip("verify_passes_on_every_keras_fixture_on_gpu_cpu_and_keras") {
        return;
    }
    let mut n = 0;
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let dir = entry.unwrap().path();
        let io = dir.join("io.safetensors");
        if !io.exists() {
            continue;
        }
        n += 1;
        let model = dir.join("model.json");
        let weights = dir.join("weights.safetensors");
        let out = cnn_lstm(&[
            "verify",
            "--model",
            path(&model),
            "--weights",
            path(&weights),
            "--input",
            path(&io),
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {text}{stderr}", dir.display());
        assert!(text.contains("no divergence"), "{text}");
        // Every tensor Keras stored has a row with all three pairs compared:
        // values as `<max diff> ok` (three cells of two words), masks `equal`.
        for key in read_tensors(&io).unwrap().keys().filter(|k| k.as_str() != "input") {
            let cells = verify_row(&text, key);
            if key.starts_with("mask/") {
                assert_eq!(cells, ["equal"; 3], "{key}: {text}");
            } else {
                assert_eq!(cells.iter().filter(|c| **c == "ok").count(), 3, "{key}: {text}");
                assert_eq!(cells.len(), 6, "{key}: {text}");
            }
        }
    }
    assert!(n >= 7, "only {n} fixtures found");
}

#[test]
fn verify_reads_weights_from_a_keras_file() {
    if !gpu_or_skip("verify_reads_weights_from_a_keras_file") {
        return;
    }
    let dir = fixture("mask_trailing_middle");
    let model = dir.join("model.keras");
    let io = dir.join("io.safetensors");
    let out = cnn_lstm(&["verify", "--model", path(&model), "--input", path(&io)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(verify_row(&text, "mask/lstm"), ["equal"; 3], "{text}");
}

#[test]
fn verify_without_keras_outputs_compares_gpu_and_cpu() {
    if !gpu_or_skip("verify_without_keras_outputs_compares_gpu_and_cpu") {
        return;
    }
    // An input file holding only `input`: GPU vs CPU is the one column.
    let tmp = TempDir::new("verify-input-only");
    let src = fixture("two_conv_maxpool");
    let mut io = read_tensors(src.join("io.safetensors")).unwrap();
    let input = io.remove("input").unwrap();
    let in_path = tmp.0.join("in.safetensors");
    write_tensors(&in_path, &[("frames".to_string(), input)]).unwrap();
    let model = src.join("model.keras");
    let out = cnn_lstm(&[
        "verify",
        "--model",
        path(&model),
        "--input",
        path(&in_path),
        "--input-key",
        "frames",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("GPU vs Keras"), "{text}");
    let cells = verify_row(&text, "layer/lstm");
    assert_eq!((cells.len(), cells[1]), (2, "ok"), "{text}");
}

#[test]
fn verify_without_the_gpu_is_a_one_line_error() {
    // It promises GPU and CPU, so a missing adapter fails rather than
    // comparing the CPU alone.
    let dir = fixture("batch1_sigmoid");
    let out = Command::new(env!("CARGO_BIN_EXE_cnn-lstm"))
        .args(["verify", "--model"])
        .arg(dir.join("model.keras"))
        .arg("--input")
        .arg(dir.join("io.safetensors"))
        .env("CNN_LSTM_ADAPTER", "no adapter is called this")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let line = assert_one_error_line(&out);
    assert!(line.contains("no adapter is called this"), "{line}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("no divergence"));
}

/// Copies `name`'s model and weights into a new temp dir with its
/// io.safetensors changed by `tamper`; returns the dir.
fn tampered_fixture(
    name: &str,
    tamper: impl FnOnce(&mut std::collections::BTreeMap<String, StoredTensor>),
) -> TempDir {
    let src = fixture(name);
    let tmp = TempDir::new(&format!("tampered-{name}"));
    for f in ["model.json", "weights.safetensors"] {
        std::fs::copy(src.join(f), tmp.0.join(f)).unwrap();
    }
    let mut io = read_tensors(src.join("io.safetensors")).unwrap();
    tamper(&mut io);
    let tensors: Vec<(String, StoredTensor)> = io.into_iter().collect();
    write_tensors(tmp.0.join("io.safetensors"), &tensors).unwrap();
    tmp
}

fn verify_dir(dir: &Path) -> Output {
    let (model, weights, io) =
        (dir.join("model.json"), dir.join("weights.safetensors"), dir.join("io.safetensors"));
    cnn_lstm(&[
        "verify",
        "--model",
        path(&model),
        "--weights",
        path(&weights),
        "--input",
        path(&io),
    ])
}

#[test]
fn verify_reports_a_tampered_layer() {
    if !gpu_or_skip("verify_reports_a_tampered_layer") {
        return;
    }
    // Move one LSTM value by 1e-3, 100 times the Keras tolerance. The next
    // layers were computed by Keras from the true value, so they still agree.
    let tmp = tampered_fixture("article_small", |io| match io.get_mut("layer/lstm") {
        Some(StoredTensor::F32(t)) => t.data_mut()[7] += 1e-3,
        _ => panic!("article_small has no layer/lstm"),
    });
    let out = verify_dir(&tmp.0);
    let line = assert_one_error_line(&out);
    // The GPU and the CPU agree; the first pair that diverges is GPU vs Keras.
    assert!(line.contains("first divergence at layer lstm (layer/lstm), GPU vs Keras"), "{line}");
    assert!(line.contains("2 of "), "{line}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first divergence: layer lstm (layer/lstm), GPU vs Keras"), "{text}");
    let cells = verify_row(&text, "layer/lstm");
    assert_eq!([cells[1], cells[3], cells[5]], ["ok", "MISMATCH", "MISMATCH"], "{text}");
    assert_eq!(verify_row(&text, "layer/lstm_1").iter().filter(|c| **c == "ok").count(), 3);
}

#[test]
fn verify_reports_a_tampered_mask() {
    if !gpu_or_skip("verify_reports_a_tampered_mask") {
        return;
    }
    // Sample 0's first step is valid in every mask of this fixture (its
    // README); mark it masked in the LSTM's mask only.
    let tmp = tampered_fixture("mask_trailing_middle", |io| match io.get_mut("mask/lstm") {
        Some(StoredTensor::U8 { data, .. }) => {
            assert_eq!(data[0], 1);
            data[0] = 0;
        }
        _ => panic!("mask_trailing_middle has no mask/lstm"),
    });
    let out = verify_dir(&tmp.0);
    let line = assert_one_error_line(&out);
    assert!(line.contains("first divergence at layer lstm (mask/lstm), GPU vs Keras"), "{line}");
    assert!(line.contains("(b, t) = (0, 0)"), "{line}");
}

#[test]
fn run_writes_the_keras_output_and_every_layer() {
    let src = fixture("two_conv_maxpool");
    let tmp = TempDir::new("run-layers");
    let out_path = tmp.0.join("out.safetensors");
    let out = cnn_lstm(&[
        "run",
        "--model",
        path(&src.join("model.json")),
        "--weights",
        path(&src.join("weights.safetensors")),
        "--input",
        path(&src.join("io.safetensors")),
        "--output",
        path(&out_path),
        "--device",
        "cpu",
        "--layers",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let ours = read_tensors(&out_path).unwrap();
    let keras = read_tensors(src.join("io.safetensors")).unwrap();
    // --layers writes every layer Keras stored, under the same names.
    for (key, want) in keras.iter().filter(|(k, _)| k.as_str() != "input") {
        let (Some(StoredTensor::F32(a)), StoredTensor::F32(b)) = (ours.get(key), want) else {
            panic!("{key} missing or not F32 in {:?}", ours.keys());
        };
        assert_eq!(a.shape(), b.shape(), "{key}");
        for (x, y) in a.data().iter().zip(b.data()) {
            assert!((x - y).abs() <= 1e-5, "{key}: {x} vs Keras {y}");
        }
    }
}

#[test]
fn run_with_layers_writes_the_keras_masks() {
    let src = fixture("mask_trailing_middle");
    let keras = read_tensors(src.join("io.safetensors")).unwrap();
    let want: Vec<(&String, &StoredTensor)> =
        keras.iter().filter(|(k, _)| k.starts_with("mask/")).collect();
    assert!(want.len() >= 2, "{:?}", keras.keys());
    let mut devices = vec!["cpu"];
    if gpu_or_skip("run_with_layers_writes_the_keras_masks (gpu)") {
        devices.push("gpu");
    }
    for device in devices {
        let tmp = TempDir::new(&format!("run-masks-{device}"));
        let out_path = tmp.0.join("out.safetensors");
        let out = cnn_lstm(&[
            "run",
            "--model",
            path(&src.join("model.keras")),
            "--input",
            path(&src.join("io.safetensors")),
            "--output",
            path(&out_path),
            "--device",
            device,
            "--layers",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let ours = read_tensors(&out_path).unwrap();
        let masks: Vec<&String> = ours.keys().filter(|k| k.starts_with("mask/")).collect();
        assert_eq!(masks, want.iter().map(|(k, _)| *k).collect::<Vec<_>>(), "{device}");
        for (key, keras_mask) in &want {
            let StoredTensor::U8 { shape: want_shape, data: want_data } = keras_mask else {
                panic!("{key} is not U8 in the fixture");
            };
            // The fixture's (B, T) = (5, 6), 1 = valid step.
            assert_eq!(want_shape, &[5, 6]);
            match ours.get(*key) {
                Some(StoredTensor::U8 { shape, data }) => {
                    assert_eq!((shape, data), (want_shape, want_data), "{device} {key}");
                }
                other => panic!("{device} {key}: {:?}", other.map(StoredTensor::dtype_name)),
            }
        }
    }
}

#[test]
fn run_reads_weights_from_a_keras_file() {
    let src = fixture("dense_relu_head");
    let tmp = TempDir::new("run-keras");
    let out_path = tmp.0.join("out.safetensors");
    let out = cnn_lstm(&[
        "run",
        "--model",
        path(&src.join("model.keras")),
        "--input",
        path(&src.join("io.safetensors")),
        "--output",
        path(&out_path),
        "--device",
        "cpu",
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
    // Without --layers only the output is written.
    assert_eq!(ours.keys().collect::<Vec<_>>(), ["output"]);
}

#[test]
fn seed_without_training_is_bad_usage() {
    let src = fixture("dense_relu_head");
    let out = cnn_lstm(&[
        "run",
        "--model",
        path(&src.join("model.keras")),
        "--input",
        path(&src.join("io.safetensors")),
        "--output",
        "/tmp/cnn-lstm-never-written.safetensors",
        "--seed",
        "7",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--training"), "{stderr}");
}

#[test]
fn a_failing_run_leaves_no_output_file() {
    // Input of article_small (3, 5, 16, 16, 3) into two_conv_maxpool, which
    // takes 20x20x1 frames: the run fails after reading everything.
    let src = fixture("two_conv_maxpool");
    let other = fixture("article_small");
    for device in ["cpu", "gpu"] {
        let tmp = TempDir::new(&format!("run-fails-{device}"));
        let out_path = tmp.0.join("out.safetensors");
        let out = cnn_lstm(&[
            "run",
            "--model",
            path(&src.join("model.json")),
            "--weights",
            path(&src.join("weights.safetensors")),
            "--input",
            path(&other.join("io.safetensors")),
            "--output",
            path(&out_path),
            "--device",
            device,
            "--layers",
        ]);
        let line = assert_one_error_line(&out);
        assert!(line.contains("input"), "{line}");
        // Neither OUT nor a temporary file beside it.
        let left: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "{device}: {left:?}");
    }
}

/// A safetensors file holding one F64 tensor `input` of shape [1] (built by
/// hand: 8-byte little-endian header length, JSON header, data).
fn f64_input_file(path: &Path) {
    let mut header = br#"{"input":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#.to_vec();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&1.5f64.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn an_f64_input_is_told_to_be_float32() {
    let tmp = TempDir::new("f64-input");
    let input = tmp.0.join("in.safetensors");
    f64_input_file(&input);
    let dir = fixture("article_small");
    let out_path = tmp.0.join("out.safetensors");
    let (model, weights) = (dir.join("model.json"), dir.join("weights.safetensors"));
    for cmd in ["run", "verify"] {
        let mut args = vec![
            cmd,
            "--model",
            path(&model),
            "--weights",
            path(&weights),
            "--input",
            path(&input),
        ];
        if cmd == "run" {
            args.extend(["--output", path(&out_path), "--device", "cpu"]);
        }
        let line = assert_one_error_line(&cnn_lstm(&args));
        assert!(
            line.contains(path(&input)) && line.contains("tensor input has dtype F64"),
            "{line}"
        );
        assert!(line.contains("model inputs must be float32"), "{line}");
        assert!(!line.contains("weights"), "{line}");
    }
    assert!(!out_path.exists());
}

#[test]
fn an_output_path_that_is_a_directory_is_named() {
    let tmp = TempDir::new("output-dir");
    let dir = fixture("article_small");
    let out = cnn_lstm(&[
        "run",
        "--model",
        path(&dir.join("model.keras")),
        "--input",
        path(&dir.join("io.safetensors")),
        "--output",
        path(&tmp.0),
        "--device",
        "cpu",
    ]);
    let line = assert_one_error_line(&out);
    assert_eq!(line, format!("error: {}: is a directory; give a file path", path(&tmp.0)));
    assert!(tmp.0.is_dir());
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
    for stage in ["conv2d", "lstm", "lstm_1", "dense", "first call", "median"] {
        assert!(text.contains(stage), "{stage} missing from\n{text}");
    }
}

#[test]
fn bench_json_has_the_documented_fields() {
    let out = cnn_lstm(&[
        "bench",
        "--model",
        "small",
        "--device",
        "cpu",
        "--batch",
        "2",
        "--timesteps",
        "3",
        "--iters",
        "2",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "adapter",
        "backend",
        "model",
        "batch",
        "timesteps",
        "first_call_ms",
        "median_ms",
        "stages",
        "gpu_bytes",
    ] {
        assert!(v.get(field).is_some(), "{field} missing from {v}");
    }
    assert_eq!(v["batch"], 2);
    assert_eq!(v["timesteps"], 3);
    assert_eq!(v["model"], "small");
    // The small model's layers, in order, each with its three rates.
    let names: Vec<&str> =
        v["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"conv2d"));
    assert_eq!(names.last(), Some(&"dense"));
    for s in v["stages"].as_array().unwrap() {
        for key in ["ms", "gflops", "gbps"] {
            assert!(s[key].as_f64().is_some_and(|x| x >= 0.0), "{key} in {s}");
        }
    }
}

#[test]
fn bench_peak_on_the_cpu_is_refused_naming_the_option() {
    // A usage error (exit 2, clap's usage line), not a run failure.
    let out = cnn_lstm(&["bench", "--device", "cpu", "--peak", "--iters", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--peak") && stderr.contains("--device cpu"), "{stderr}");
    assert!(stderr.contains("Usage: cnn-lstm bench"), "{stderr}");
    assert!(out.stdout.is_empty());
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
