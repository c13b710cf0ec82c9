//! A Keras-style model summary: one row per layer with its name and type,
//! output shape and parameter count, then the totals.

use crate::model::{DropoutMode, LayerKind, Model};

/// Formats `n` with thousands separators, `31520330` -> `31,520,330`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Keras's size text for `params` float32 values: `120.24 MB` (1 MB = 2^20 bytes).
pub fn param_bytes(params: usize) -> String {
    let bytes = params as f64 * 4.0;
    let units = [("B", 1.0), ("KB", 1024.0), ("MB", 1048576.0), ("GB", 1073741824.0)];
    let (name, scale) =
        units.iter().rev().find(|(_, s)| bytes >= *s).copied().unwrap_or(("B", 1.0));
    format!("{:.2} {name}", bytes / scale)
}

/// The type column: the Keras class, wrapped in `TimeDistributed(...)` for
/// the per-frame layers Keras would wrap.
fn type_name(kind: &LayerKind, timed_input: bool) -> String {
    let class = kind.class_name();
    let per_frame = match kind {
        LayerKind::Conv2D(_)
        | LayerKind::Pool2D(_)
        | LayerKind::Flatten
        | LayerKind::Reshape { .. }
        | LayerKind::Dense(_) => true,
        LayerKind::SpatialDropout { mode, .. } => *mode == DropoutMode::PerTimestep,
        LayerKind::Masking { .. } | LayerKind::Dropout { .. } | LayerKind::Lstm(_) => false,
    };
    if per_frame && timed_input {
        format!("TimeDistributed({class})")
    } else {
        class.to_string()
    }
}

/// The summary table of `model`, as text ending in a newline.
///
/// Output shapes are written as Keras writes them, `(None, None, 62, 62, 32)`:
/// the batch is `None`, the time axis is `None` unless the model declares a
/// fixed T. Layers that keep a timestep mask are marked `*` in a footnote
/// column, since Keras's own table does not show masks.
pub fn summary(model: &Model) -> String {
    let t = model.input().time_steps;
    let mut rows: Vec<[String; 3]> = Vec::new();
    for (layer, info) in model.layers().iter().zip(model.infos()) {
        let name = format!("{} ({})", layer.name, type_name(&layer.kind, info.input.timed));
        let shape = info.output.keras_str(t);
        let shape = if info.has_mask { format!("{shape} *") } else { shape };
        rows.push([name, shape, thousands(info.params)]);
    }
    let header = ["Layer (type)".to_string(), "Output Shape".to_string(), "Param #".to_string()];
    let mut width = [0usize; 3];
    for row in rows.iter().chain(std::iter::once(&header)) {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    width[0] = width[0].max(28);
    width[1] = width[1].max(24);
    width[2] = width[2].max(10);
    let total_width = width.iter().sum::<usize>() + 6;
    let line = |ch: char| ch.to_string().repeat(total_width);
    let fmt_row = |r: &[String; 3]| {
        format!(
            " {:<w0$}  {:<w1$}  {:>w2$}\n",
            r[0],
            r[1],
            r[2],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2]
        )
    };

    let mut out = format!("Model: \"{}\"\n", model.name());
    out.push_str(&line('_'));
    out.push('\n');
    out.push_str(&fmt_row(&header));
    out.push_str(&line('='));
    out.push('\n');
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&fmt_row(row));
        if i + 1 < rows.len() {
            out.push_str(&line('-'));
            out.push('\n');
        }
    }
    out.push_str(&line('='));
    out.push('\n');
    let total = model.param_count();
    out.push_str(&format!("Total params: {} ({})\n", thousands(total), param_bytes(total)));
    out.push_str(&format!("Trainable params: {} ({})\n", thousands(total), param_bytes(total)));
    out.push_str("Non-trainable params: 0 (0.00 B)\n");
    if rows.iter().any(|r| r[1].ends_with(" *")) {
        out.push_str("* a timestep mask is attached to this output\n");
    }
    out.push_str(&line('_'));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(31_520_330), "31,520,330");
    }

    #[test]
    fn param_bytes_like_keras() {
        // 31,520,330 * 4 bytes / 2^20 = 120.2405...
        assert_eq!(param_bytes(31_520_330), "120.24 MB");
        assert_eq!(param_bytes(0), "0.00 B");
        assert_eq!(param_bytes(896), "3.50 KB");
    }
}
