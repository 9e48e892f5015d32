//! Choosing where a stage runs: `--device auto|cpu|cuda[:N]`. `auto` (the default) takes CUDA
//! where the build has it, a GPU is present and CUDA's run-time pieces are found, and otherwise
//! the CPU with a notice that says why. An explicit `cuda` that cannot run is an error that
//! says what to do. Either way a run whose model cannot fit in the GPU's free memory is
//! stopped (or, under `auto`, moved to the CPU) before its first step. Training can also take
//! a list (`--devices cuda:0,cuda:1`): one worker a device.

#[cfg(feature = "cuda")]
use crate::cubecl_config::{self, Buffers};
use crate::{
    cuda_preflight,
    gpu_memory::{self, Fit, MemoryNeed},
};
use anyhow::{bail, Result};
#[cfg(feature = "cuda")]
use gpt2::Gpu;
use gpt2::{Cpu, Gpt2Backend, Precision};
use std::{fmt, mem, str::FromStr};

/// `--device`'s help, the same in every stage.
pub const HELP: &str = "auto, cpu, cuda or cuda:N. auto: CUDA when this build has it, a GPU is present, CUDA's \
                        libraries and headers are found and the model fits in the GPU's free memory, otherwise the \
                        CPU (with a notice saying why); cuda: stop and say what is missing instead of falling back";

/// What `--device` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
    /// burn's wgpu backend: development builds only (the `wgpu` feature).
    #[cfg(feature = "wgpu")]
    Wgpu,
    /// burn's CUDA backend on a device that compiles every kernel for an H100 and runs none:
    /// development builds only (the `cuda-compile` feature).
    #[cfg(feature = "cuda-compile")]
    CudaCompile,
}

/// Where a stage runs, once chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
    #[cfg(feature = "wgpu")]
    Wgpu,
    #[cfg(feature = "cuda-compile")]
    CudaCompile,
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            #[cfg(feature = "wgpu")]
            "wgpu" => Ok(DeviceChoice::Wgpu),
            #[cfg(feature = "cuda-compile")]
            "cuda-compile" => Ok(DeviceChoice::CudaCompile),
            _ => match text.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(index)) => Ok(DeviceChoice::Cuda(index)),
                _ => bail!("unknown device `{text}` (expected auto, cpu, cuda or cuda:N)"),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(index) => write!(f, "cuda:{index}"),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => write!(f, "wgpu"),
            #[cfg(feature = "cuda-compile")]
            DeviceChoice::CudaCompile => write!(f, "cuda-compile"),
        }
    }
}

impl Device {
    /// Refuse `precision` where this device has no tensors of its type: bf16 is CUDA's alone
    /// (the CPU backend has none, WebGPU neither).
    pub fn check_precision(self, precision: Precision) -> Result<()> {
        if precision != Precision::F32 && !self.is_cuda() {
            bail!(
                "--precision {precision} needs a CUDA device ({self} has no {precision} tensors); use --precision f32"
            );
        }
        Ok(())
    }

    /// Whether the device runs CUDA's kernels (or, `cuda-compile`, compiles them).
    fn is_cuda(self) -> bool {
        match self {
            Device::Cuda(_) => true,
            #[cfg(feature = "cuda-compile")]
            Device::CudaCompile => true,
            _ => false,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(index) => write!(f, "cuda:{index}"),
            #[cfg(feature = "wgpu")]
            Device::Wgpu => write!(f, "wgpu"),
            #[cfg(feature = "cuda-compile")]
            Device::CudaCompile => write!(f, "cuda-compile"),
        }
    }
}

/// Whether the NVIDIA driver's device nodes exist on this machine.
fn gpu_present() -> bool {
    std::path::Path::new(cuda_preflight::DRIVER_NODE).exists()
}

/// The device `stage` (train or sample) runs on for `requested`, printing a notice on stderr
/// whenever `auto` does not take a GPU the machine has. `need` is what the run needs on a GPU.
pub fn resolve(requested: DeviceChoice, stage: &str, need: &MemoryNeed) -> Result<Device> {
    gpt2::check_kernel_choices()?;
    let rebuild = format!(
        "rebuild with CUDA: `make {stage} FEATURES=cuda`, or `cargo build --release -p {stage} --features cuda`"
    );
    match requested {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu => Ok(Device::Wgpu),
        #[cfg(feature = "cuda-compile")]
        DeviceChoice::CudaCompile => Ok(Device::CudaCompile),
        DeviceChoice::Cuda(_) if !cfg!(feature = "cuda") => {
            bail!("--device {requested}: this build of {stage} has no CUDA support; {rebuild}")
        }
        DeviceChoice::Auto if !cfg!(feature = "cuda") => {
            if gpu_present() {
                eprintln!("notice: this machine has an NVIDIA GPU but this build has no CUDA support, so {stage} runs on the CPU; {rebuild}");
            }
            Ok(Device::Cpu)
        }
        _ => match (cuda_preflight::missing_on_this_machine(), requested) {
            (missing, DeviceChoice::Cuda(index)) if missing.is_empty() => fitting(requested, index, need),
            (missing, _) if missing.is_empty() => fitting(requested, 0, need),
            (missing, DeviceChoice::Auto) => {
                eprintln!("notice: {}; running on the CPU (--device auto)", cuda_preflight::describe(&missing));
                Ok(Device::Cpu)
            }
            (missing, _) => bail!("--device {requested}: {}", cuda_preflight::describe(&missing)),
        },
    }
}

/// CUDA device `index` when `need` fits in its free memory (or `nvidia-smi` cannot say), with
/// a warning when only the estimate of the activations is above it.
fn fitting(requested: DeviceChoice, index: usize, need: &MemoryNeed) -> Result<Device> {
    let device = Device::Cuda(index);
    match gpu_memory::free_bytes(index).map(|free| gpu_memory::judge(need, free, &device.to_string())) {
        None | Some(Fit::Fits) => Ok(device),
        Some(Fit::MayNotFit(warning)) => {
            eprintln!("warning: {warning}");
            Ok(device)
        }
        Some(Fit::DoesNotFit(reason)) if requested == DeviceChoice::Auto => {
            eprintln!("notice: {reason}; running on the CPU (--device auto)");
            Ok(Device::Cpu)
        }
        Some(Fit::DoesNotFit(reason)) => bail!("--device {requested}: {reason}"),
    }
}

/// The devices of `--devices`, each checked as [`resolve`] checks one: several CPU workers
/// (they share the machine's cores), or distinct CUDA devices and NCCL; never a mix, never
/// `auto`.
pub fn resolve_all(requested: &[DeviceChoice], stage: &str, need: &MemoryNeed) -> Result<Vec<Device>> {
    let listed = requested.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let mut devices: Vec<Device> = Vec::with_capacity(requested.len());
    for &choice in requested {
        if choice == DeviceChoice::Auto {
            bail!("--devices {listed}: list the devices themselves (cpu, cuda:N), not auto");
        }
        let device = resolve(choice, stage, need)?;
        if devices.first().is_some_and(|first| mem::discriminant(first) != mem::discriminant(&device)) {
            bail!("--devices {listed}: the devices of a run must all be CPUs or all CUDA devices");
        }
        if device != Device::Cpu && devices.contains(&device) {
            bail!("--devices {listed}: {device} is listed twice (each GPU takes one worker)");
        }
        devices.push(device);
    }
    if devices.len() > 1 && matches!(devices[0], Device::Cuda(_)) {
        if let Some(nccl) = cuda_preflight::missing_for_several_on_this_machine() {
            bail!("--devices {listed}: {nccl}");
        }
    }
    Ok(devices)
}

/// Work that runs on whichever backend was chosen.
pub trait OnBackend {
    type Output;
    fn run<B: Gpt2Backend>(self, device: B::Device) -> Self::Output;
}

/// Work that runs on several devices of whichever backend was chosen.
pub trait OnDevices {
    type Output;
    fn run<B: Gpt2Backend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Run `work` on the backend and device of `device`.
pub fn dispatch<W: OnBackend>(device: Device, work: W) -> W::Output {
    dispatch_all(&[device], OnOne(work))
}

/// Run `work` on the backend and devices of `devices` (one kind, as [`resolve_all`] gives).
/// For training and evaluation, whose steps ask for the same buffers again and again: on CUDA
/// each buffer has its own exact size ([`Buffers::ExactSize`]).
pub fn dispatch_all<W: OnDevices>(devices: &[Device], work: W) -> W::Output {
    match devices[0] {
        Device::Cpu => work.run::<Cpu>(vec![Default::default(); one_kind(devices)]),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => work.run::<Gpu>(cuda_devices(devices, Buffers::ExactSize)),
        #[cfg(feature = "wgpu")]
        Device::Wgpu => work.run::<gpt2::Wgpu>(vec![Default::default(); one_kind(devices)]),
        #[cfg(feature = "cuda-compile")]
        Device::CudaCompile => {
            cubecl_config::configure(Buffers::ExactSize);
            compiled(work.run::<cuda_compile::CudaCompile>(vec![Default::default(); one_kind(devices)]))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => unreachable!("resolve() never picks CUDA without the feature"),
    }
}

/// [`dispatch`], with the GPU backends without burn's fusion (`gpt2::GpuEager`): for decoding,
/// whose operations are `cube_kernels`' own and for which fusion only costs host time, and
/// whose shapes grow with each token: on CUDA, buffers come from CubeCL's pools.
pub fn dispatch_eager<W: OnBackend>(device: Device, work: W) -> W::Output {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => {
            let [cuda] =
                <[_; 1]>::try_from(cuda_devices(&[device], Buffers::Pooled)).unwrap_or_else(|_| panic!("one device"));
            work.run::<gpt2::GpuEager>(cuda)
        }
        #[cfg(feature = "wgpu")]
        Device::Wgpu => work.run::<gpt2::WgpuEager>(Default::default()),
        #[cfg(feature = "cuda-compile")]
        Device::CudaCompile => {
            cubecl_config::configure(Buffers::Pooled);
            compiled(work.run::<cuda_compile::CudaCompileEager>(Default::default()))
        }
        _ => dispatch(device, work),
    }
}

/// `output`, once the stage's work on the `cuda-compile` device is done and what it compiled
/// and the most memory it held are said; the process ends there, with status 1, if a kernel did not compile for CUDA.
#[cfg(feature = "cuda-compile")]
fn compiled<T>(output: T) -> T {
    let report = cuda_compile::report();
    let mut kernels = std::collections::BTreeMap::<&str, usize>::new();
    for kernel in &report.compiled {
        *kernels.entry(kernel).or_default() += 1;
    }
    eprintln!(
        "cuda-compile: {} kernels compiled for CUDA (sm_90a, NVRTC) in {:.1} s, {} failed; {} launches",
        report.compiled.len(),
        report.seconds,
        report.failures.len(),
        report.launches
    );
    for (kernel, variants) in kernels {
        eprintln!("  compiled: {kernel} ({variants})");
    }
    for (kernel, launches) in &report.launches_by_kernel {
        eprintln!("  launched: {kernel} {launches}");
    }
    for failure in &report.failures {
        eprintln!("  failed: {}", failure.kernel);
    }
    let memory = cuda_compile::peaks();
    let gib = |bytes: u64| bytes as f64 / f64::from(1 << 30);
    eprintln!(
        "cuda-compile: memory at its peak: {:.2} GiB in use, {:.2} GiB reserved by CubeCL, \
         on a card of {:.1} GiB ({})",
        gib(memory.in_use),
        gib(memory.reserved),
        gib(memory.card),
        cuda_compile::MEMORY_VARIABLE
    );
    if !report.failures.is_empty() {
        std::process::exit(1);
    }
    output
}

/// How many `devices` there are, checking that they are of one kind.
fn one_kind(devices: &[Device]) -> usize {
    let kind = mem::discriminant(&devices[0]);
    assert!(devices.iter().all(|device| mem::discriminant(device) == kind), "one kind of device: {devices:?}");
    devices.len()
}

/// CUDA's devices for `devices` (all CUDA), with compiled kernels kept on disk and memory
/// handed out as `buffers`.
#[cfg(feature = "cuda")]
fn cuda_devices(devices: &[Device], buffers: Buffers) -> Vec<burn::backend::cuda::CudaDevice> {
    one_kind(devices);
    cubecl_config::configure(buffers);
    let cuda = |device: &Device| match device {
        Device::Cuda(index) => burn::backend::cuda::CudaDevice::new(*index),
        _ => unreachable!("one kind of device"),
    };
    devices.iter().map(cuda).collect()
}

/// Work for one device, run as work for a list of one.
struct OnOne<W>(W);

impl<W: OnBackend> OnDevices for OnOne<W> {
    type Output = W::Output;

    fn run<B: Gpt2Backend>(self, devices: Vec<B::Device>) -> Self::Output {
        let [device] = <[B::Device; 1]>::try_from(devices).unwrap_or_else(|_| panic!("one device"));
        self.0.run::<B>(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        for (text, choice) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(0)),
            ("cuda:2", DeviceChoice::Cuda(2)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
        }
        assert_eq!(DeviceChoice::Cuda(1).to_string(), "cuda:1");
        assert_eq!(DeviceChoice::default().to_string(), "auto");
        assert!("tpu".parse::<DeviceChoice>().unwrap_err().to_string().contains("auto, cpu, cuda or cuda:N"));
    }

    fn need() -> MemoryNeed {
        MemoryNeed::training(&gpt2::Gpt2Config::preset("gpt2").unwrap(), 1, 1024)
    }

    #[test]
    fn device_lists_are_one_kind_and_name_each_gpu_once() {
        let cpus = resolve_all(&[DeviceChoice::Cpu, DeviceChoice::Cpu], "train", &need()).unwrap();
        assert_eq!(cpus, [Device::Cpu, Device::Cpu]);
        let error = resolve_all(&[DeviceChoice::Cpu, DeviceChoice::Auto], "train", &need()).unwrap_err().to_string();
        assert!(error.contains("--devices cpu,auto: list the devices themselves"), "{error}");
    }

    #[test]
    fn cpu_is_always_honoured() {
        assert_eq!(resolve(DeviceChoice::Cpu, "train", &need()).unwrap(), Device::Cpu);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_asked_of_a_build_without_it_names_the_command_that_adds_it() {
        let error = resolve(DeviceChoice::Cuda(0), "train", &need()).unwrap_err().to_string();
        assert!(error.contains("--device cuda:0: this build of train has no CUDA support"), "{error}");
        assert!(error.contains("`make train FEATURES=cuda`"), "{error}");
        assert!(error.contains("`cargo build --release -p train --features cuda`"), "{error}");
        assert_eq!(resolve(DeviceChoice::Auto, "sample", &need()).unwrap(), Device::Cpu);
    }
}
