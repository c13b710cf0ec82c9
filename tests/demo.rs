//! The demo: the clips it renders, and the whole job run through the binary.

use std::process::{Command, Output};

use cnn_lstm::digits::{render_clips, ClipStyle, Digits};

fn clips(batch: usize, t: usize, seed: u64) -> (cnn_lstm::Tensor, Vec<cnn_lstm::digits::ClipInfo>) {
    render_clips(&Digits::embedded().unwrap(), &ClipStyle::default(), batch, t, seed).unwrap()
}

#[test]
fn clips_are_seeded() {
    let (a, ia) = clips(8, 10, 7);
    let (b, ib) = clips(8, 10, 7);
    let (c, _) = clips(8, 10, 8);
    assert_eq!(a, b);
    assert_eq!(ia, ib);
    assert_ne!(a.data(), c.data());
    assert_eq!(a.shape(), &[8, 10, 64, 64, 3]);
}

#[test]
fn padding_and_gap_frames_are_all_zero_and_real_frames_never_are() {
    let style = ClipStyle::default();
    let (x, infos) = clips(16, 10, 3);
    let frame = 64 * 64 * 3;
    let mut gaps = 0;
    for (b, info) in infos.iter().enumerate() {
        assert_eq!(info.valid.iter().filter(|&&v| v).count(), info.length);
        assert!((1..=10).contains(&info.length));
        if let Some((first, n)) = info.gap {
            gaps += 1;
            // A gap sits between real frames: real before it and after it.
            assert!(first >= 1 && n >= 1);
            assert!(info.valid[first - 1] && !info.valid[first] && info.valid[first + n]);
        }
        // Padding is at the end: after the last real frame everything is invalid.
        let last = info.valid.iter().rposition(|&v| v).unwrap();
        assert!(info.valid[..=last].iter().filter(|&&v| !v).count() == info.gap.map_or(0, |g| g.1));
        for t in 0..10 {
            let px = &x.data()[(b * 10 + t) * frame..(b * 10 + t + 1) * frame];
            if info.valid[t] {
                assert!(px.iter().all(|&v| v >= style.noise_floor), "clip {b} frame {t}");
                assert!(px.iter().all(|&v| v <= 1.0), "clip {b} frame {t}");
            } else {
                assert!(px.iter().all(|&v| v == 0.0), "clip {b} frame {t}");
            }
        }
    }
    // Every fourth clip (2, 6, 10, 14) has a gap when T >= 3.
    assert_eq!(gaps, 4);
    let lengths: std::collections::BTreeSet<usize> = infos.iter().map(|i| i.length).collect();
    assert!(lengths.len() >= 3, "lengths vary: {lengths:?}");
}

#[test]
fn the_digit_moves_and_stays_whole() {
    let (x, infos) = clips(8, 10, 11);
    let digits = Digits::embedded().unwrap();
    let frame = 64 * 64 * 3;
    for (b, info) in infos.iter().enumerate() {
        let image = digits.image(info.image_index).unwrap();
        assert_eq!(digits.label(info.image_index), Some(info.label));
        // Noise is below 0.04; a digit pixel with ink k >= 1 (of 16) adds at
        // least 0.85 * 0.5 * k / 16 >= 0.0265 in every channel. So pixels above
        // 0.043 are exactly the digit's: 16 per inked 8x8 pixel (4x upscale).
        let inked = image.iter().filter(|&&v| v >= 1).count() * 16;
        let mut centres = Vec::new();
        for t in (0..10).filter(|&t| info.valid[t]) {
            let px = &x.data()[(b * 10 + t) * frame..(b * 10 + t + 1) * frame];
            let ink: Vec<(usize, usize)> = (0..64 * 64)
                .filter(|p| px[p * 3..p * 3 + 3].iter().any(|&v| v >= 0.043))
                .map(|p| (p / 64, p % 64))
                .collect();
            assert_eq!(ink.len(), inked, "clip {b} frame {t}: the digit is cut off");
            let (r0, r1) =
                (ink.iter().map(|p| p.0).min().unwrap(), ink.iter().map(|p| p.0).max().unwrap());
            let (c0, c1) =
                (ink.iter().map(|p| p.1).min().unwrap(), ink.iter().map(|p| p.1).max().unwrap());
            assert!(r1 - r0 < 32 && c1 - c0 < 32);
            centres.push((r0 + r1, c0 + c1));
        }
        centres.dedup();
        assert!(centres.len() > 1 || info.length == 1, "clip {b} does not move: {centres:?}");
    }
}

fn cnn_lstm(args: &[&str]) -> Output {
    let xdg = std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into());
    Command::new(env!("CARGO_BIN_EXE_cnn-lstm"))
        .args(args)
        .env("XDG_RUNTIME_DIR", xdg)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// True when a GPU adapter exists. Without one the GPU tests skip, except
/// under CI (`CI` set), where software adapters are installed and a missing
/// adapter is a failure.
fn have_gpu() -> bool {
    let out = cnn_lstm(&["devices"]);
    if out.status.success() {
        return true;
    }
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(std::env::var_os("CI").is_none(), "CI has no GPU adapter: {why}");
    eprintln!("skipping: no GPU adapter ({why})");
    false
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn demo_on_the_cpu_reproduces_the_keras_trained_model() {
    let out = cnn_lstm(&["demo", "--device", "cpu", "--batch", "2", "--timesteps", "3"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Total params: 31,520,330"), "{text}");
    assert!(text.contains("not meaningful"), "{text}");
    // Nothing is compared on the CPU alone, and the table has one CPU column.
    assert!(!text.contains("GPU and the CPU reference compute the same"), "{text}");
    assert!(text.contains("only the CPU reference runs"), "{text}");
    let header = text.lines().find(|l| l.contains("true digit")).unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>().join(" "),
        "clip length true digit CPU class (prob)"
    );
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("true digit"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in rows {
        // clip, length, true digit, class, (prob): five cells.
        assert_eq!(row.split_whitespace().count(), 5, "{row}");
    }
    // Keras's accuracy on the fixture's 397 clips (its README): 354/397.
    assert!(text.contains("accuracy 354/397"), "{text}");
    assert!(text.contains("same predicted class on 397/397 clips"), "{text}");
    assert!(text.contains("Result: OK"), "{text}");
}

/// The demo's mask numbers, worked out here from the library: the same
/// clips and weights, the conv output from the CPU reference, the drops
/// from `rng::keep` with the documented layer seed.
#[test]
fn demo_training_on_the_cpu_reports_the_hash_drops() {
    use cnn_lstm::{init, reference, rng, zoo, RunOptions};
    let (batch, steps, seed) = (2usize, 4usize, 3u64);
    let out = cnn_lstm(&[
        "demo",
        "--device",
        "cpu",
        "--batch",
        "2",
        "--timesteps",
        "4",
        "--training",
        "--seed",
        "3",
        "--no-trained",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));

    let mut model = zoo::article("article", zoo::ArticleSize::FULL, true).unwrap();
    init::keras_default_weights(&mut model, seed).unwrap();
    let (x, _) = clips(batch, steps, seed);
    let opts = RunOptions { training: true, seed, capture_layers: true };
    let fwd = reference::forward(&model, &x, &opts).unwrap();
    let conv = &fwd.layers.iter().find(|l| l.name == "conv2d").unwrap().value;
    let (mut decidable, mut dropped) = (0, 0);
    let (thr, layer_seed) = (rng::drop_threshold(0.2), rng::layer_seed(seed, 2));
    for b in 0..batch {
        for t in 0..steps {
            for c in 0..32 {
                let base = (b * steps + t) * 62 * 62 * 32;
                if (0..62 * 62).any(|p| conv.data()[base + p * 32 + c] != 0.0) {
                    decidable += 1;
                    dropped +=
                        usize::from(!rng::keep(layer_seed, thr, b as u32, t as u32, c as u32));
                }
            }
        }
    }
    let line = text.lines().find(|l| l.starts_with("Dropout masks")).unwrap();
    let want =
        format!("of the {decidable} whose input is not all zero, the hash drops {dropped} (");
    assert!(line.contains(&want), "{line}\nwant: {want}");
    assert!(line.ends_with(&format!("for {decidable} of them")), "{line}");
    assert!(!text.contains("  GPU: "), "{text}");
}

#[test]
fn demo_gpu_agrees_with_cpu() {
    if !have_gpu() {
        return;
    }
    let out = cnn_lstm(&["demo", "--batch", "3", "--timesteps", "4", "--no-trained"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Adapter: "), "{text}");
    assert!(text.contains("GPU vs CPU: max |difference|"), "{text}");
    assert!(text.contains(": agree"), "{text}");
    // One prediction row per clip.
    let rows = text
        .lines()
        .skip_while(|l| !l.contains("true digit"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty());
    assert_eq!(rows.count(), 3, "{text}");
}

#[test]
fn demo_training_mode_checks_dropout_masks() {
    if !have_gpu() {
        return;
    }
    let out = cnn_lstm(&[
        "demo",
        "--batch",
        "2",
        "--timesteps",
        "3",
        "--training",
        "--seed",
        "5",
        "--no-trained",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    // 2 clips x 3 frames x 32 channels = 192 maps; the GPU must zero the same ones.
    let line = text.lines().find(|l| l.starts_with("Dropout masks")).unwrap();
    assert!(line.contains("192 (clip, frame, channel) maps"), "{line}");
    let gpu = text.lines().find(|l| l.starts_with("  GPU: the same all-zero maps")).unwrap();
    assert!(gpu.contains("for 192 of 192"), "{gpu}");
}

#[test]
fn cargo_run_without_arguments_runs_the_full_demo() {
    if !have_gpu() {
        return;
    }
    // Exactly what `cargo run --release` runs: 8 clips of 10 frames on the
    // full-size model, then the trained model.
    let out = cnn_lstm(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Input: 8 clips x 10 frames of 64x64x3"), "{text}");
    assert!(text.contains("Total params: 31,520,330"), "{text}");
    assert!(text.contains("GPU vs CPU: max |difference|"), "{text}");
    let rows = text
        .lines()
        .skip_while(|l| !l.contains("true digit"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty());
    assert_eq!(rows.count(), 8, "{text}");
    assert!(text.contains("accuracy 354/397"), "{text}");
    assert!(text.contains("Result: OK"), "{text}");
}
