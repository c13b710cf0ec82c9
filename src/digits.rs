//! Real handwritten digits and seeded clips of them moving through frames.
//!
//! The digits are the 1,797 8x8 images of the UCI "Optical Recognition of
//! Handwritten Digits" test set (E. Alpaydin and C. Kaynak, 1998; CC BY 4.0;
//! see `data/digits/README.md`), embedded in the crate so the demo runs from
//! any directory.
//!
//! [`render_clips`] turns them into a model input `[B, T, H, W, 3]`: each clip
//! shows one digit, upscaled by pixel repetition and tinted with a colour per
//! channel, moving with constant velocity and bouncing off the frame edges.
//! Clips have different lengths: the steps after a clip's last real frame are
//! all-zero padding frames, and some clips also lose the signal for a few
//! frames in the middle (all-zero gap frames). Every pixel of a real frame
//! carries a small noise floor, so a real frame is never all zero and a
//! `Masking(0.0)` layer masks exactly the padding and gap frames.

use std::io::Read;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The gzip-compressed digits: one digit per line, 64 pixel values (row-major
/// 8x8, each `0..=16`) and the class label `0..=9`, comma separated.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits/digits.csv.gz");

/// Side of one digit image in pixels.
pub const DIGIT_SIDE: usize = 8;

/// Largest pixel value in the digits data.
pub const DIGIT_MAX: u8 = 16;

/// A set of 8x8 digit images with their labels.
#[derive(Clone, Debug)]
pub struct Digits {
    /// Row-major 8x8 intensities `0..=16`.
    images: Vec<[u8; DIGIT_SIDE * DIGIT_SIDE]>,
    /// Class `0..=9` of each image.
    labels: Vec<u8>,
}

impl Digits {
    /// The digits embedded in the crate (1,797 images).
    pub fn embedded() -> Result<Self> {
        Self::from_csv_gz(DIGITS_CSV_GZ, "data/digits/digits.csv.gz")
    }

    /// Parses gzip-compressed CSV in the format of `data/digits/digits.csv.gz`;
    /// `path` only names the source in error messages.
    pub fn from_csv_gz(bytes: &[u8], path: &str) -> Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| Error::format(path, format!("not a gzip-compressed text file: {e}")))?;
        Self::from_csv(&text, path)
    }

    /// Parses CSV text: one digit per line, 64 values `0..=16` then the label.
    pub fn from_csv(text: &str, path: &str) -> Result<Self> {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for (line_no, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let at = |msg: String| Error::format(path, format!("line {}: {msg}", line_no + 1));
            let values = line
                .split(',')
                .map(|v| v.trim().parse::<u8>())
                .collect::<std::result::Result<Vec<u8>, _>>()
                .map_err(|e| at(format!("expected integers 0..=16, {e}")))?;
            if values.len() != DIGIT_SIDE * DIGIT_SIDE + 1 {
                return Err(at(format!("expected 65 values, got {}", values.len())));
            }
            let mut image = [0u8; DIGIT_SIDE * DIGIT_SIDE];
            image.copy_from_slice(&values[..DIGIT_SIDE * DIGIT_SIDE]);
            if let Some(v) = image.iter().find(|&&v| v > DIGIT_MAX) {
                return Err(at(format!("pixel value {v} is above {DIGIT_MAX}")));
            }
            let label = values[DIGIT_SIDE * DIGIT_SIDE];
            if label > 9 {
                return Err(at(format!("label {label} is not a digit 0..=9")));
            }
            images.push(image);
            labels.push(label);
        }
        if images.is_empty() {
            return Err(Error::format(path, "no digits in the file"));
        }
        Ok(Digits { images, labels })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True when there are no images (never for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Image `index`, row-major 8x8 values `0..=16`.
    pub fn image(&self, index: usize) -> Option<&[u8; DIGIT_SIDE * DIGIT_SIDE]> {
        self.images.get(index)
    }

    /// The class `0..=9` of image `index`.
    pub fn label(&self, index: usize) -> Option<u8> {
        self.labels.get(index).copied()
    }
}

/// How clips are rendered.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipStyle {
    /// Frame height and width in pixels.
    pub side: usize,
    /// Channels per pixel (each gets its own tint).
    pub channels: usize,
    /// Upscale factor of the 8x8 digit (pixel repetition); the digit covers
    /// `8 * scale` pixels square and must fit in the frame.
    pub scale: usize,
    /// Noise added to every pixel of a real frame is uniform in
    /// `[noise_floor, 2 * noise_floor)`; must be > 0 so real frames are never
    /// all zero.
    pub noise_floor: f32,
}

impl Default for ClipStyle {
    /// 64x64x3 frames with the digit upscaled 4x to 32x32.
    fn default() -> Self {
        ClipStyle { side: 64, channels: 3, scale: 4, noise_floor: 0.02 }
    }
}

/// What one rendered clip shows.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipInfo {
    /// Row of the digits data shown.
    pub image_index: usize,
    /// The true digit.
    pub label: u8,
    /// Number of real (non-zero) frames.
    pub length: usize,
    /// Per timestep: true for a real frame, false for an all-zero frame.
    pub valid: Vec<bool>,
    /// `Some((first, count))` when the clip has a gap of all-zero frames in
    /// the middle, before its last real frame.
    pub gap: Option<(usize, usize)>,
}

/// A small seeded generator (SplitMix64), so clips do not depend on the
/// version of any random-number crate.
#[derive(Clone, Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64, stream: u64) -> Self {
        let mut g = SplitMix(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        g.next_u64();
        g
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 24 random bits.
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform integer in `lo..=hi` (`lo <= hi`).
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Renders `batch` clips of `timesteps` frames, seeded: the same arguments
/// always give the same tensor `[batch, timesteps, side, side, channels]`.
///
/// Clip `i` has its own generator from `(seed, i)`. It shows a random digit,
/// tinted per channel with a weight in `[0.5, 1.0]`, scaled to `[0, 0.85]`,
/// at a random start, moving 1..3 pixels per frame in each direction and
/// bouncing off the edges. Its length is random in `ceil(T/2)..=T`. When
/// `T >= 3`, every fourth clip (`i % 4 == 2`) instead has between 2 and
/// `T - 1` real frames and an all-zero gap of 1 or more frames after its
/// first real frame; the digit keeps moving during the gap. Padding frames
/// after the last real frame are all zero.
pub fn render_clips(
    digits: &Digits,
    style: &ClipStyle,
    batch: usize,
    timesteps: usize,
    seed: u64,
) -> Result<(Tensor, Vec<ClipInfo>)> {
    let digit_px = DIGIT_SIDE * style.scale;
    if style.scale == 0 || digit_px > style.side || style.channels == 0 {
        return Err(Error::input(
            "clip style",
            format!("scale >= 1, 8 * scale <= side and channels >= 1 (side {})", style.side),
            format!("scale {}, channels {}", style.scale, style.channels),
        ));
    }
    if style.noise_floor.is_nan() || style.noise_floor <= 0.0 {
        return Err(Error::input(
            "clip noise floor",
            "> 0 (real frames must never be all zero)",
            style.noise_floor.to_string(),
        ));
    }
    if batch == 0 || timesteps == 0 {
        return Err(Error::input(
            "clip batch and timesteps",
            ">= 1 each",
            format!("batch {batch}, timesteps {timesteps}"),
        ));
    }
    if digits.is_empty() {
        return Err(Error::input("digits", "at least one image", "none"));
    }

    let (side, ch) = (style.side, style.channels);
    let frame_len = side * side * ch;
    let mut data = vec![0.0f32; batch * timesteps * frame_len];
    let mut infos = Vec::with_capacity(batch);
    let span = (side - digit_px) as f32;

    for (i, clip) in data.chunks_exact_mut(timesteps * frame_len).enumerate() {
        let mut rng = SplitMix::new(seed, i as u64 + 1);
        let image_index = rng.range(0, digits.len() - 1);
        let (image, label) = (&digits.images[image_index], digits.labels[image_index]);
        let tint: Vec<f32> = (0..ch).map(|_| 0.5 + 0.5 * rng.unit()).collect();

        let with_gap = timesteps >= 3 && i % 4 == 2;
        let (length, gap) = if with_gap {
            let length = rng.range(2, timesteps - 1);
            let gap_len = rng.range(1, timesteps - length);
            let first = rng.range(1, length - 1);
            (length, Some((first, gap_len)))
        } else {
            (rng.range(timesteps.div_ceil(2), timesteps), None)
        };
        let valid: Vec<bool> = (0..timesteps)
            .map(|t| match gap {
                Some((first, n)) if t >= first && t < first + n => false,
                Some((_, n)) => t < length + n,
                None => t < length,
            })
            .collect();

        let mut pos = [rng.unit() * span, rng.unit() * span];
        let mut vel = [0.0f32; 2];
        for v in &mut vel {
            let speed = 1.0 + 2.0 * rng.unit();
            *v = if rng.next_u64() & 1 == 0 { speed } else { -speed };
        }

        for (t, frame) in clip.chunks_exact_mut(frame_len).enumerate() {
            if valid[t] {
                draw_frame(frame, style, image, &tint, pos, &mut rng);
            }
            for axis in 0..2 {
                pos[axis] += vel[axis];
                if pos[axis] < 0.0 {
                    pos[axis] = -pos[axis];
                    vel[axis] = -vel[axis];
                } else if pos[axis] > span {
                    pos[axis] = 2.0 * span - pos[axis];
                    vel[axis] = -vel[axis];
                }
                pos[axis] = pos[axis].clamp(0.0, span);
            }
        }
        infos.push(ClipInfo { image_index, label, length, valid, gap });
    }

    let tensor = Tensor::new(vec![batch, timesteps, side, side, ch], data)?;
    Ok((tensor, infos))
}

/// Draws one real frame `[side, side, channels]`: noise everywhere, plus the
/// digit with its top-left corner at the rounded `pos` (row, column).
fn draw_frame(
    frame: &mut [f32],
    style: &ClipStyle,
    image: &[u8; DIGIT_SIDE * DIGIT_SIDE],
    tint: &[f32],
    pos: [f32; 2],
    rng: &mut SplitMix,
) {
    let (side, ch, scale) = (style.side, style.channels, style.scale);
    for v in frame.iter_mut() {
        *v = style.noise_floor * (1.0 + rng.unit());
    }
    let (top, left) = (pos[0].round() as usize, pos[1].round() as usize);
    for y in 0..DIGIT_SIDE * scale {
        for x in 0..DIGIT_SIDE * scale {
            let ink = f32::from(image[(y / scale) * DIGIT_SIDE + x / scale]);
            if ink == 0.0 {
                continue;
            }
            let (row, col) = (top + y, left + x);
            if row >= side || col >= side {
                continue;
            }
            for (c, &tint_c) in tint.iter().enumerate() {
                frame[(row * side + col) * ch + c] += 0.85 * tint_c * ink / f32::from(DIGIT_MAX);
            }
        }
    }
}

/// Renders a `[side, side]` grey frame as text, one character per `step`
/// pixels, for showing a clip in a terminal.
pub fn ascii_frame(frame: &[f32], side: usize, channels: usize, step: usize) -> String {
    const RAMP: &[u8] = b" .:-=+*#%@";
    let step = step.max(1);
    let mut out = String::new();
    for row in (0..side).step_by(step) {
        for col in (0..side).step_by(step) {
            let base = (row * side + col) * channels;
            let v = frame
                .get(base..base + channels)
                .map_or(0.0, |px| px.iter().copied().fold(0.0f32, f32::max));
            let level = ((v.clamp(0.0, 1.0)) * (RAMP.len() - 1) as f32).round() as usize;
            out.push(RAMP[level.min(RAMP.len() - 1)] as char);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits_parse() {
        let d = Digits::embedded().unwrap();
        assert_eq!(d.len(), 1797);
        for label in 0..10u8 {
            let n = (0..d.len()).filter(|&i| d.label(i) == Some(label)).count();
            assert!((170..=190).contains(&n), "label {label}: {n} images");
        }
    }

    #[test]
    fn bad_csv_is_an_error() {
        assert!(Digits::from_csv("1,2,3\n", "x").is_err());
        let line = format!("{},3\n", vec!["17"; 64].join(","));
        assert!(Digits::from_csv(&line, "x").is_err());
        assert!(Digits::from_csv_gz(b"not gzip", "x").is_err());
    }
}
