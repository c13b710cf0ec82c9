//! The WGSL sources of every kernel, compiled into the crate.
//!
//! Each kernel file in `shaders/` is prefixed with `shaders/common.wgsl`
//! (activations, the dropout hash, grid helpers) to form one module. There
//! is no templating: the composed text is what the device compiles, and
//! `tests/shaders.rs` validates every composed module with naga on the CPU.

/// Shared prelude of every kernel.
pub const COMMON: &str = include_str!("../shaders/common.wgsl");

/// One kernel module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Masking,
    Conv2D,
    Conv2DTexture,
    Pool2D,
    Dropout,
    MatmulRegister,
    MatmulTiled,
    MatmulSplitK,
    Softmax,
    LstmRecurrence,
    LstmRecurrenceTexture,
    LstmStepTexture,
}

impl Shader {
    /// Every kernel module.
    pub const ALL: [Shader; 12] = [
        Shader::Masking,
        Shader::Conv2D,
        Shader::Conv2DTexture,
        Shader::Pool2D,
        Shader::Dropout,
        Shader::MatmulRegister,
        Shader::MatmulTiled,
        Shader::MatmulSplitK,
        Shader::Softmax,
        Shader::LstmRecurrence,
        Shader::LstmRecurrenceTexture,
        Shader::LstmStepTexture,
    ];

    /// The file stem in `shaders/`, also the module's label.
    pub fn name(self) -> &'static str {
        match self {
            Shader::Masking => "masking",
            Shader::Conv2D => "conv2d",
            Shader::Conv2DTexture => "conv2d_texture",
            Shader::Pool2D => "pool2d",
            Shader::Dropout => "dropout",
            Shader::MatmulRegister => "matmul_register",
            Shader::MatmulTiled => "matmul_tiled",
            Shader::MatmulSplitK => "matmul_splitk",
            Shader::Softmax => "softmax",
            Shader::LstmRecurrence => "lstm_recurrence",
            Shader::LstmRecurrenceTexture => "lstm_recurrence_texture",
            Shader::LstmStepTexture => "lstm_step_texture",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Shader::Masking => include_str!("../shaders/masking.wgsl"),
            Shader::Conv2D => include_str!("../shaders/conv2d.wgsl"),
            Shader::Conv2DTexture => include_str!("../shaders/conv2d_texture.wgsl"),
            Shader::Pool2D => include_str!("../shaders/pool2d.wgsl"),
            Shader::Dropout => include_str!("../shaders/dropout.wgsl"),
            Shader::MatmulRegister => include_str!("../shaders/matmul_register.wgsl"),
            Shader::MatmulTiled => include_str!("../shaders/matmul_tiled.wgsl"),
            Shader::MatmulSplitK => include_str!("../shaders/matmul_splitk.wgsl"),
            Shader::Softmax => include_str!("../shaders/softmax.wgsl"),
            Shader::LstmRecurrence => include_str!("../shaders/lstm_recurrence.wgsl"),
            Shader::LstmRecurrenceTexture => {
                include_str!("../shaders/lstm_recurrence_texture.wgsl")
            }
            Shader::LstmStepTexture => include_str!("../shaders/lstm_step_texture.wgsl"),
        }
    }

    /// The composed WGSL source: the common prelude, then the kernel.
    pub fn source(self) -> String {
        format!("{COMMON}\n{}", self.body())
    }
}
