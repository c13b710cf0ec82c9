//! Weights files: safetensors reading/writing, missing/extra/misshapen
//! weights, lying headers, and broken `.keras` archives.

mod common;

use std::io::Write;
use std::path::PathBuf;

use cnn_lstm::keras::{self, KerasModel, StoredTensor};
use cnn_lstm::{Error, Tensor};
use common::*;

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnn_lstm_{test}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn article_small() -> (KerasModel, Vec<(String, StoredTensor)>) {
    let dir = keras_dir("article_small");
    let text = std::fs::read_to_string(dir.join("model.json")).unwrap();
    let k = KerasModel::from_json(&text, "model.json").unwrap();
    let stored = keras::read_tensors(dir.join("weights.safetensors")).unwrap();
    (k, stored.into_iter().collect())
}

fn weights_error(r: cnn_lstm::Result<()>) -> (String, String) {
    match r {
        Err(Error::Weights { name, message }) => (name, message),
        other => panic!("expected a weights error, got {other:?}"),
    }
}

#[test]
fn roundtrip_f32_u8_i32() {
    let dir = scratch("roundtrip");
    let tensors = vec![
        (
            "output".to_string(),
            StoredTensor::F32(
                Tensor::new(vec![2, 3], vec![0.5, -1.0, 3.25, f32::MIN_POSITIVE, 1e30, -0.0])
                    .unwrap(),
            ),
        ),
        ("mask/lstm".to_string(), StoredTensor::U8 { shape: vec![2, 2], data: vec![1, 0, 1, 1] }),
        ("labels".to_string(), StoredTensor::I32 { shape: vec![3], data: vec![-7, 0, 9] }),
    ];
    let path = dir.join("out.safetensors");
    keras::write_tensors(&path, &tensors).unwrap();
    let back = keras::read_tensors(&path).unwrap();
    assert_eq!(back.len(), 3);
    for (name, t) in &tensors {
        assert_eq!(&back[name], t, "{name}");
    }
    // Only the file itself is left: the temporary was renamed.
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.safetensors")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_write_leaves_nothing_behind() {
    let dir = scratch("failed_write");
    let target = dir.join("missing_folder").join("out.safetensors");
    let t = vec![("x".to_string(), StoredTensor::U8 { shape: vec![1], data: vec![1] })];
    assert!(matches!(keras::write_tensors(&target, &t), Err(Error::Io { .. })));
    // A tensor whose data does not fill its shape is refused before writing.
    let target = dir.join("out.safetensors");
    let bad = vec![("x".to_string(), StoredTensor::U8 { shape: vec![4], data: vec![1] })];
    assert!(keras::write_tensors(&target, &bad).is_err());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // Overwriting an existing file replaces it whole.
    keras::write_tensors(&target, &t).unwrap();
    let t2 = vec![("y".to_string(), StoredTensor::U8 { shape: vec![2], data: vec![3, 4] })];
    keras::write_tensors(&target, &t2).unwrap();
    assert_eq!(keras::read_tensors(&target).unwrap().into_iter().collect::<Vec<_>>(), t2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Makes a FIFO at `path` with the `mkfifo` tool.
fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn writing_over_a_non_regular_file_is_refused_and_leaves_it_alone() {
    use std::os::unix::fs::FileTypeExt;
    let dir = scratch("non_regular_output");
    let t = vec![("x".to_string(), StoredTensor::U8 { shape: vec![1], data: vec![1] })];
    let format_message = |r: cnn_lstm::Result<()>| match r {
        Err(Error::Format { path, message }) => (path, message),
        other => panic!("expected a format error, got {other:?}"),
    };

    let fifo = dir.join("pipe");
    mkfifo(&fifo);
    let (path, message) = format_message(keras::write_tensors(&fifo, &t));
    assert_eq!(path, fifo.display().to_string());
    assert!(message.contains("FIFO") && message.contains("not a regular file"), "{message}");
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    let target = dir.join("target.safetensors");
    std::fs::write(&target, b"left alone").unwrap();
    let link = dir.join("link.safetensors");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (path, message) = format_message(keras::write_tensors(&link, &t));
    assert_eq!(path, link.display().to_string());
    assert!(message.contains("symbolic link") && message.contains("not a regular file"));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"left alone");

    let sub = dir.join("folder");
    std::fs::create_dir(&sub).unwrap();
    let (path, message) = format_message(keras::write_tensors(&sub, &t));
    assert_eq!(path, sub.display().to_string());
    assert_eq!(message, "is a directory; give a file path");
    assert!(sub.is_dir());

    // Nothing else (no temporary file) was created.
    let mut names: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let want: Vec<std::ffi::OsString> =
        ["folder", "link.safetensors", "pipe", "target.safetensors"].map(Into::into).into();
    assert_eq!(names, want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_are_capped_on_regular_files_and_pipes() {
    let dir = scratch("read_caps");
    // A regular file: at most `max` bytes, whatever the stream cap.
    let file = dir.join("ten");
    std::fs::write(&file, [7u8; 10]).unwrap();
    assert_eq!(keras::read_file_capped(&file, 10, 1).unwrap(), vec![7u8; 10]);
    match keras::read_file_capped(&file, 9, u64::MAX) {
        Err(Error::Format { path, message }) => {
            assert_eq!(path, file.display().to_string());
            assert!(message.contains("more than 9 bytes"), "{message}");
        }
        other => panic!("expected a format error, got {other:?}"),
    }
    // A FIFO: at most min(max, stream cap) bytes.
    let fifo = dir.join("pipe");
    mkfifo(&fifo);
    let read_fifo = |max: u64, stream_max: u64| {
        let writer_path = fifo.clone();
        let writer = std::thread::spawn(move || {
            // 100 bytes fit the pipe's buffer, so the writer never blocks on a
            // reader that stopped early.
            let mut f = std::fs::OpenOptions::new().write(true).open(writer_path).unwrap();
            let _ = f.write_all(&[3u8; 100]);
        });
        let got = keras::read_file_capped(&fifo, max, stream_max);
        writer.join().unwrap();
        got
    };
    assert_eq!(read_fifo(u64::MAX, 100).unwrap(), vec![3u8; 100]);
    assert_eq!(read_fifo(100, u64::MAX).unwrap(), vec![3u8; 100]);
    for (max, stream_max) in [(u64::MAX, 99), (99, u64::MAX)] {
        match read_fifo(max, stream_max) {
            Err(Error::Format { path, message }) => {
                assert_eq!(path, fifo.display().to_string());
                assert!(message.contains("not a regular file"), "{message}");
                assert!(message.contains("more than 99 bytes"), "{message}");
            }
            other => panic!("expected a format error, got {other:?}"),
        }
    }
    assert_eq!(keras::MAX_STREAM_BYTES, 1_073_741_824, "the documented 1 GiB");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_extra_and_misshapen_weights_are_named() {
    let dir = scratch("bad_weights");
    let path = dir.join("w.safetensors");

    // Missing: drop the LSTM's recurrent kernel.
    let (mut k, stored) = article_small();
    let missing: Vec<_> = stored
        .iter()
        .filter(|(n, _)| n != "sequential/lstm/lstm_cell/recurrent_kernel")
        .cloned()
        .collect();
    keras::write_tensors(&path, &missing).unwrap();
    let (name, message) = weights_error(k.load_weights_safetensors(&path));
    assert_eq!(name, "lstm/recurrent_kernel");
    assert!(message.contains("missing") && message.contains("[16, 64]"), "{message}");

    // Extra: a variable no layer has.
    let mut extra = stored.clone();
    extra.push((
        "sequential/lstm/lstm_cell/peephole".to_string(),
        StoredTensor::F32(Tensor::zeros(vec![3])),
    ));
    keras::write_tensors(&path, &extra).unwrap();
    let (name, message) = weights_error(k.load_weights_safetensors(&path));
    assert_eq!(name, "lstm/peephole");
    assert!(message.contains("not used") && message.contains("[3]"), "{message}");

    // Extra: a layer the model does not have.
    let mut extra = stored.clone();
    extra.push(("sequential/conv3d/kernel".to_string(), StoredTensor::F32(Tensor::zeros(vec![2]))));
    keras::write_tensors(&path, &extra).unwrap();
    let (name, _) = weights_error(k.load_weights_safetensors(&path));
    assert_eq!(name, "sequential/conv3d/kernel");

    // Misshapen: the Dense kernel transposed.
    let misshapen: Vec<_> = stored
        .iter()
        .map(|(n, t)| {
            if n == "sequential/dense/kernel" {
                (n.clone(), StoredTensor::F32(Tensor::zeros(vec![10, 8])))
            } else {
                (n.clone(), t.clone())
            }
        })
        .collect();
    keras::write_tensors(&path, &misshapen).unwrap();
    let (name, message) = weights_error(k.load_weights_safetensors(&path));
    assert_eq!(name, "dense/kernel");
    assert!(message.contains("[8, 10]") && message.contains("[10, 8]"), "{message}");

    // The same variable under two spellings.
    let mut twice = stored.clone();
    let dense = stored.iter().find(|(n, _)| n == "sequential/dense/bias").unwrap().1.clone();
    twice.push(("dense/bias".to_string(), dense));
    keras::write_tensors(&path, &twice).unwrap();
    let (name, message) = weights_error(k.load_weights_safetensors(&path));
    assert_eq!(name, "dense/bias");
    assert!(message.contains("twice"), "{message}");

    // A failed load leaves the weights unchanged (still unset here).
    assert!(k.model.weight(5, "kernel").is_none());
    assert!(k.model.check_weights().is_err());

    // Non-f32 weights are refused by name.
    let mut ints = stored.clone();
    ints[0].1 = StoredTensor::I32 { shape: vec![10], data: vec![0; 10] };
    keras::write_tensors(&path, &ints).unwrap();
    let r = k.load_weights_safetensors(&path);
    assert!(matches!(&r, Err(Error::Format { message, .. }) if message.contains("I32")), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A valid file with a header edited to lie about offsets, shapes or its
/// own length: every variant is a format error, never a panic.
#[test]
fn lying_safetensors_headers_are_errors() {
    let good = keras::serialize_tensors(
        &[("w".to_string(), StoredTensor::F32(Tensor::new(vec![2, 2], vec![1.0; 4]).unwrap()))],
        "test",
    )
    .unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + header_len]).unwrap().to_string();
    let data = &good[8 + header_len..];
    let with_header = |h: &str| {
        let mut h = h.to_string();
        while h.len() < header_len {
            h.push(' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("shape larger than data", with_header(&header.replace("[2,2]", "[4,4]"))),
        ("offsets past the end", with_header(&header.replace("[0,16]", "[0,1600]"))),
        ("shape smaller than data", with_header(&header.replace("[2,2]", "[1,2]"))),
        ("huge shape", with_header(&header.replace("[2,2]", "[4294967296,4294967296]"))),
        ("truncated data", good[..good.len() - 3].to_vec()),
        ("header longer than file", {
            let mut b = good.clone();
            b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            b
        }),
        ("header not json", with_header(&"x".repeat(header_len))),
        ("empty", Vec::new()),
        ("seven bytes", vec![1; 7]),
    ];
    cases.push(("sanity: the good file", good.clone()));
    for (what, bytes) in cases {
        let r = keras::read_tensors_bytes(&bytes, what);
        if what.starts_with("sanity") {
            assert!(r.is_ok(), "{what}: {r:?}");
        } else {
            assert!(matches!(r, Err(Error::Format { .. })), "{what}: {r:?}");
        }
    }
}

#[test]
fn broken_keras_archives_are_errors() {
    let dir = scratch("bad_keras");
    let good = std::fs::read(keras_dir("batch1_sigmoid").join("model.keras")).unwrap();
    let config = std::fs::read(keras_dir("batch1_sigmoid").join("model.json")).unwrap();

    let zip_of = |entries: &[(&str, &[u8])]| {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            for (name, bytes) in entries {
                w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
                w.write_all(bytes).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    };
    let h5 = {
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(&good)).unwrap();
        let mut e = a.by_name("model.weights.h5").unwrap();
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut v).unwrap();
        v
    };
    let mut flipped = h5.clone();
    for b in flipped.iter_mut().skip(100).step_by(7).take(2000) {
        *b ^= 0x5a;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a zip", b"hello".to_vec()),
        ("truncated zip", good[..good.len() / 2].to_vec()),
        ("no config", zip_of(&[("model.weights.h5", &h5)])),
        ("no weights", zip_of(&[("config.json", &config)])),
        ("h5 not hdf5", zip_of(&[("config.json", &config), ("model.weights.h5", b"nope")])),
        (
            "h5 truncated",
            zip_of(&[("config.json", &config), ("model.weights.h5", &h5[..h5.len() / 3])]),
        ),
        ("h5 corrupted", zip_of(&[("config.json", &config), ("model.weights.h5", &flipped)])),
    ];
    for (what, bytes) in cases {
        let r = keras::load_keras_bytes(&bytes, what);
        assert!(r.is_err(), "{what}: loaded");
    }
    // Sanity: the rebuilt archive with both entries loads.
    let ok = zip_of(&[("config.json", &config), ("model.weights.h5", &h5)]);
    keras::load_keras_bytes(&ok, "rebuilt").unwrap();

    // Architecture and weights disagree: the config's Dense has 2 units.
    let text = String::from_utf8(config.clone()).unwrap();
    let two = text.replace("\"units\": 1,", "\"units\": 2,");
    assert_ne!(two, text);
    let bytes = zip_of(&[("config.json", two.as_bytes()), ("model.weights.h5", &h5)]);
    let (name, message) = weights_error(keras::load_keras_bytes(&bytes, "units").map(|_| ()));
    assert_eq!(name, "dense/kernel");
    assert!(message.contains("[10, 2]") && message.contains("[10, 1]"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}
