//! Host-side mirrors of each shader's uniform struct, with their sizes
//! checked against the WGSL layouts at compile time.

use bytemuck::{Pod, Zeroable};

/// `MaskParams` of `shaders/masking.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MaskParams {
    pub frames: u32,
    pub frame_len: u32,
    pub mask_value: f32,
    pub groups_x: u32,
}

/// `ConvParams` of `shaders/conv2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ConvParams {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub cin: u32,
    pub oh: u32,
    pub ow: u32,
    pub cout: u32,
    pub kh: u32,
    pub kw: u32,
    pub sh: u32,
    pub sw: u32,
    pub dh: u32,
    pub dw: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub act: u32,
    pub has_bias: u32,
    pub groups_x: u32,
    /// Channel blocks per output row: `ceil(cout / workgroup size)`.
    pub co_blocks: u32,
    /// 1: frames whose timestep mask word (binding 5) is 0 are written as
    /// zeros instead of convolved.
    pub skip_masked: u32,
}

/// `ConvParams` of `shaders/conv2d_texture.wgsl`: those of `conv2d.wgsl`
/// (with `co_blocks` = ceil(cout / channels per invocation)), then the pixel
/// segments per row.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ConvTexParams {
    pub conv: ConvParams,
    /// ceil(OW / 8): segments of 8 output pixels per row.
    pub segs: u32,
    /// log2 of the operand textures' width in texels.
    pub tex_shift: u32,
    pub _pad: [u32; 2],
}

/// `PoolParams` of `shaders/pool2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct PoolParams {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub c: u32,
    pub oh: u32,
    pub ow: u32,
    pub ph: u32,
    pub pw: u32,
    pub sh: u32,
    pub sw: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub is_max: u32,
    pub groups_x: u32,
    pub _pad: [u32; 2],
}

/// `DropoutParams` of `shaders/dropout.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct DropoutParams {
    pub batch: u32,
    pub steps: u32,
    pub step_len: u32,
    pub channels: u32,
    /// 0: per (b, t, channel); 1: per (b, channel); 2: per element.
    pub mode: u32,
    pub seed: u32,
    pub threshold: u32,
    pub scale: f32,
    pub groups_x: u32,
    /// Index of the first sample of this batch slice in the whole batch.
    pub sample_offset: u32,
    pub _pad: [u32; 2],
}

/// `MatmulParams` of `shaders/matmul_register.wgsl` and `matmul_tiled.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub lda: u32,
    pub k_offset: u32,
    pub k_len: u32,
    pub first_chunk: u32,
    pub last_chunk: u32,
    pub has_bias: u32,
    pub act: u32,
    pub groups_x: u32,
    pub row_offset: u32,
    pub _pad: u32,
}

/// `SplitKParams` of `shaders/matmul_splitk.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SplitKParams {
    pub m: u32,
    pub n: u32,
    pub lda: u32,
    /// First row of this weight chunk within K (a multiple of 4).
    pub k_offset: u32,
    /// Rows of this weight chunk.
    pub k_len: u32,
    /// K values per slice (a multiple of 4).
    pub slice_len: u32,
    /// Index of this chunk's first slice in the partial-sum buffer.
    pub slice_base: u32,
    /// Slices over every chunk (read by the reduce entry).
    pub slices: u32,
    pub has_bias: u32,
    pub act: u32,
    pub groups_x: u32,
    /// log2 of the operand textures' width in texels.
    pub tex_shift: u32,
}

/// `SoftmaxParams` of `shaders/softmax.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct SoftmaxParams {
    pub rows: u32,
    pub cols: u32,
    pub groups_x: u32,
    pub _pad: u32,
}

/// `LstmParams` of `shaders/lstm_recurrence.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct LstmParams {
    pub batch: u32,
    pub steps: u32,
    pub units: u32,
    pub act: u32,
    pub rec_act: u32,
    pub zero_output_for_mask: u32,
    pub write_seq: u32,
    pub _pad: u32,
}

/// `TimeWindow` of the persistent LSTM recurrence kernels: the timesteps one
/// dispatch covers (the state is zeroed when `t_begin` is 0) and the grid width.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct TimeWindow {
    pub t_begin: u32,
    pub t_end: u32,
    pub groups_x: u32,
    pub _pad: u32,
}

/// `LstmTexParams` of `shaders/lstm_recurrence_texture.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct LstmTexParams {
    pub batch: u32,
    pub steps: u32,
    pub units: u32,
    pub act: u32,
    pub rec_act: u32,
    pub zero_output_for_mask: u32,
    pub write_seq: u32,
    /// log2 of the recurrent kernel texture's width in texels.
    pub tex_shift: u32,
}

/// `LstmStepParams` of `shaders/lstm_step_texture.wgsl`: those of
/// [`LstmTexParams`], then the timestep of this dispatch and the grid width.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct LstmStepParams {
    pub tex: LstmTexParams,
    /// The timestep this dispatch computes.
    pub step: u32,
    pub groups_x: u32,
    pub _pad: [u32; 2],
}

// The WGSL structs hold only 4-byte scalars, so their sizes are 4 x fields.
const _: () = assert!(std::mem::size_of::<MaskParams>() == 16);
const _: () = assert!(std::mem::size_of::<ConvParams>() == 80);
const _: () = assert!(std::mem::size_of::<ConvTexParams>() == 96);
const _: () = assert!(std::mem::size_of::<PoolParams>() == 64);
const _: () = assert!(std::mem::size_of::<DropoutParams>() == 48);
const _: () = assert!(std::mem::size_of::<MatmulParams>() == 48);
const _: () = assert!(std::mem::size_of::<SplitKParams>() == 48);
const _: () = assert!(std::mem::size_of::<SoftmaxParams>() == 16);
const _: () = assert!(std::mem::size_of::<LstmParams>() == 32);
const _: () = assert!(std::mem::size_of::<TimeWindow>() == 16);
const _: () = assert!(std::mem::size_of::<LstmTexParams>() == 32);
const _: () = assert!(std::mem::size_of::<LstmStepParams>() == 48);
