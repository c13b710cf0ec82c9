//! Adapter selection, device creation and GPU error capture.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// How to choose an adapter. [`ContextOptions::from_env`] reads
/// `CNN_LSTM_BACKEND` (`vulkan`, `gl`, `metal`, `dx12`) and
/// `CNN_LSTM_ADAPTER` (a case-insensitive part of the adapter name).
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Backend name, or `None` for every backend.
    pub backend: Option<String>,
    /// Part of the adapter name, or `None` for the best adapter.
    pub adapter: Option<String>,
    /// Limits to request instead of the adapter's own; each must be within
    /// the adapter's. Tests use this to emulate small devices.
    pub limits: Option<wgpu::Limits>,
    /// Forces a GEMM variant instead of choosing by adapter type.
    pub matmul: Option<MatmulVariant>,
    /// Caps `max_storage_buffer_binding_size` and `max_buffer_size` below
    /// the adapter's, in bytes, to emulate a small device.
    pub max_binding: Option<u64>,
}

/// The GEMM kernels, chosen by adapter type unless forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulVariant {
    /// 4x4 register tile, no workgroup barriers: fastest on CPU adapters.
    Register,
    /// 16x16 workgroup-memory tiles: fastest on real GPUs.
    Tiled,
    /// Split-K (`shaders/matmul_splitk.wgsl`) for every GEMM whose K and N
    /// are multiples of 4, the register tile for the others. Never chosen
    /// by default as such (both default variants already use split-K for
    /// skinny GEMMs); tests force it to cover the kernel on small shapes.
    SplitK,
}

impl ContextOptions {
    /// Options from the environment variables `CNN_LSTM_BACKEND` and `CNN_LSTM_ADAPTER`.
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        ContextOptions {
            backend: get("CNN_LSTM_BACKEND"),
            adapter: get("CNN_LSTM_ADAPTER"),
            ..Default::default()
        }
    }
}

/// Parses a backend name into wgpu's flags.
pub fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        "metal" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        other => Err(Error::NoAdapter(format!(
            "unknown backend '{other}' in CNN_LSTM_BACKEND; use vulkan, gl, metal or dx12"
        ))),
    }
}

/// GPU errors recorded by wgpu's callbacks, which run outside our calls.
#[derive(Default)]
struct Faults {
    uncaptured: Option<String>,
    lost: Option<String>,
}

/// A device and queue on one adapter, with error capture installed.
///
/// wgpu's default reaction to an uncaptured error is to panic; a context
/// records it instead, and every call checks the record, so a fault comes
/// back as an [`Error`] from the call that caused it.
pub struct Context {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    matmul: MatmulVariant,
    faults: Arc<Mutex<Faults>>,
    /// Serializes all work on the GL backend, whose single GL context wgpu
    /// guards with a lock that panics after a timeout when several threads
    /// contend for it (measured: parallel tests on llvmpipe GL).
    gl_serial: Option<Mutex<()>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("adapter", &self.describe()).finish()
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

fn describe_info(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

/// Every adapter wgpu finds, described as `name (backend, type)`.
pub fn list_adapters() -> Vec<String> {
    let inst = instance(wgpu::Backends::all());
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(|a| describe_info(&a.get_info()))
        .collect()
}

/// The message of [`Error::NoAdapter`] when no adapter matches the filter
/// `backend` / `adapter` (`CNN_LSTM_BACKEND` / `CNN_LSTM_ADAPTER`); `all`
/// lists the adapters that exist on any backend, as [`list_adapters`] does.
///
/// When some exist, it lists them and says to relax or change the filter;
/// only when none exists at all does it suggest installing a driver.
pub fn no_adapter_message(backend: Option<&str>, adapter: Option<&str>, all: &[String]) -> String {
    let filtered = backend.is_some() || adapter.is_some();
    let install = "on Linux without a GPU, install Mesa's software Vulkan driver (apt-get \
                   install mesa-vulkan-drivers)";
    if !filtered {
        return format!("wgpu found no adapter on any backend; {install}");
    }
    let filter = format!(
        "CNN_LSTM_BACKEND={}, CNN_LSTM_ADAPTER={}",
        backend.unwrap_or("(unset)"),
        adapter.map_or("(unset)".to_string(), |a| format!("'{a}' (part of the name)"))
    );
    if all.is_empty() {
        return format!("none matches ({filter}), and no adapter exists on any backend; {install}");
    }
    format!(
        "none matches ({filter}); the adapters that exist: {}. Relax or change the filter \
         (CNN_LSTM_ADAPTER takes a part of a name above, CNN_LSTM_BACKEND one of their \
         backends), or unset both to use the best adapter",
        all.join("; ")
    )
}

impl Context {
    /// Picks an adapter and creates a device with the adapter's own limits.
    ///
    /// Default choice: discrete, then integrated GPUs, then software
    /// adapters; Vulkan/Metal/DX12 before GL. The choice is logged at info.
    pub fn new(options: &ContextOptions) -> Result<Arc<Context>> {
        let backends = match &options.backend {
            Some(name) => parse_backend(name)?,
            None => wgpu::Backends::all(),
        };
        let inst = instance(backends);
        let mut adapters = pollster::block_on(inst.enumerate_adapters(backends));
        let wanted = options.adapter.as_ref().map(|s| s.to_lowercase());
        let found: Vec<String> = adapters.iter().map(|a| describe_info(&a.get_info())).collect();
        adapters.retain(|a| {
            let info = a.get_info();
            wanted.as_ref().is_none_or(|w| info.name.to_lowercase().contains(w))
        });
        adapters.sort_by_key(|a| {
            let info = a.get_info();
            (type_rank(info.device_type), backend_rank(info.backend))
        });
        let adapter = adapters.into_iter().next().ok_or_else(|| {
            // The filtered backend may have none while others have some:
            // list every adapter on every backend.
            let all = if options.backend.is_some() { list_adapters() } else { found };
            Error::NoAdapter(no_adapter_message(
                options.backend.as_deref(),
                options.adapter.as_deref(),
                &all,
            ))
        })?;
        Self::from_adapter(adapter, options)
    }

    fn from_adapter(adapter: wgpu::Adapter, options: &ContextOptions) -> Result<Arc<Context>> {
        let info = adapter.get_info();
        let adapter_limits = adapter.limits();
        let limits = match &options.limits {
            Some(l) => {
                if !l.check_limits(&adapter_limits) {
                    return Err(Error::Unsupported(format!(
                        "requested limits exceed those of adapter {}",
                        describe_info(&info)
                    )));
                }
                l.clone()
            }
            None => adapter_limits,
        };
        let limits = match options.max_binding {
            Some(cap) => wgpu::Limits {
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size.min(cap),
                max_buffer_size: limits.max_buffer_size.min(cap),
                ..limits
            },
            None => limits,
        };
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let desc = wgpu::DeviceDescriptor {
            label: Some("cnn-lstm device"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::NoAdapter(format!("{}: {e}", describe_info(&info))))?;

        let faults = Arc::new(Mutex::new(Faults::default()));
        let sink = Arc::clone(&faults);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut f) = sink.lock() {
                f.uncaptured.get_or_insert_with(|| e.to_string());
            }
        }));
        let sink = Arc::clone(&faults);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut f) = sink.lock() {
                f.lost.get_or_insert_with(|| format!("{reason:?}: {message}"));
            }
        });

        let matmul = options.matmul.unwrap_or(match info.device_type {
            wgpu::DeviceType::Cpu => MatmulVariant::Register,
            _ => MatmulVariant::Tiled,
        });
        log::debug!(
            "GEMM variant {matmul:?} for {:?} adapters; split-K for skinny GEMMs \
             (M <= 512, K >= 1024, K and N multiples of 4)",
            info.device_type
        );
        log::info!(
            "cnn-lstm on {}; max storage binding {} B, max buffer {} B, max workgroups/dim {}; \
             GEMM variant {matmul:?}",
            describe_info(&info),
            limits.max_storage_buffer_binding_size,
            limits.max_buffer_size,
            limits.max_compute_workgroups_per_dimension
        );
        let gl_serial = (info.backend == wgpu::Backend::Gl).then(|| Mutex::new(()));
        Ok(Arc::new(Context { device, queue, info, limits, features, matmul, faults, gl_serial }))
    }

    /// `name (backend, device type)` of the adapter.
    pub fn describe(&self) -> String {
        describe_info(&self.info)
    }

    /// The adapter's information.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The limits the device was created with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The largest storage binding cnn-lstm uses, in bytes: the device's
    /// `max_storage_buffer_binding_size` and `max_buffer_size`, and on CPU
    /// adapters at most 48 MiB. Mesa's llvmpipe (behind lavapipe and GL)
    /// advertises 128 MiB bindings, but measured here it returned wrong
    /// values from a 64 MiB binding (65535 x 256 f32, about 2^24 elements)
    /// while 58 MiB and 32 MiB bindings were right; larger tensors are split
    /// into chunks instead. 48 MiB keeps a margin below 2^24 f32 elements and
    /// fits the article model's convolution output at batch 8 x 10 steps
    /// (80 x 62 x 62 x 32 f32, 37.5 MiB).
    pub fn binding_limit(&self) -> u64 {
        let device = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        match self.info.device_type {
            wgpu::DeviceType::Cpu => device.min(48 << 20),
            _ => device,
        }
    }

    /// The most loop iterations one shader invocation may run, where the
    /// driver cuts longer work off silently: Mesa's llvmpipe (CPU adapters)
    /// ends an invocation's loops after 65535 iterations in all (measured:
    /// nested loops do not escape it), so cnn-lstm plans at most 50000.
    /// `None` where no such limit is known.
    pub fn loop_budget(&self) -> Option<usize> {
        (self.info.device_type == wgpu::DeviceType::Cpu).then_some(50_000)
    }

    /// The GEMM variant in use.
    pub fn matmul_variant(&self) -> MatmulVariant {
        self.matmul
    }

    /// True when the device can time each stage with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The wgpu device, for callers embedding cnn-lstm in their own GPU work.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Returns the first recorded fault: device loss first, then an
    /// uncaptured error. A lost device stays lost; an uncaptured error is
    /// reported once.
    pub fn check_faults(&self, label: &str) -> Result<()> {
        let mut f = match self.faults.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(lost) = &f.lost {
            return Err(Error::DeviceLost(lost.clone()));
        }
        if let Some(message) = f.uncaptured.take() {
            return Err(classify(label, &message, 0));
        }
        Ok(())
    }

    /// Runs `body` inside validation and out-of-memory error scopes and
    /// turns a captured error into an [`Error`] naming `label`.
    /// Holds the GL serialization lock for the caller's whole operation; a
    /// no-op on other backends.
    pub(crate) fn exclusive(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        self.gl_serial.as_ref().map(|m| match m.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        })
    }

    pub(crate) fn scoped<T>(&self, label: &str, bytes: u64, body: impl FnOnce() -> T) -> Result<T> {
        self.check_faults(label)?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = body();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = oom {
            return Err(Error::OutOfMemory { label: format!("{label}: {e}"), bytes });
        }
        if let Some(e) = validation {
            return Err(classify(label, &e.to_string(), bytes));
        }
        self.check_faults(label)?;
        Ok(value)
    }

    /// Waits for submitted work, with a timeout so a hung device cannot
    /// block the caller forever.
    pub(crate) fn wait(&self, label: &str) -> Result<()> {
        let poll = self.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(Duration::from_secs(120)),
        });
        if let Err(e) = poll {
            self.check_faults(label)?;
            return Err(Error::Map(format!("{label}: waiting for the GPU failed: {e}")));
        }
        self.check_faults(label)
    }
}

fn classify(label: &str, message: &str, bytes: u64) -> Error {
    let lower = message.to_lowercase();
    if lower.contains("out of memory") {
        Error::OutOfMemory { label: label.to_string(), bytes }
    } else if lower.contains("shader") && lower.contains("pars") {
        Error::ShaderCompilation { shader: label.to_string(), message: message.to_string() }
    } else {
        Error::Validation { label: label.to_string(), message: message.to_string() }
    }
}
