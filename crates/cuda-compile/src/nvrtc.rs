//! Each kernel's CUDA C++ compiled by NVRTC with the options cubecl-cuda passes
//! (`cubecl-cuda/src/compute/context.rs`, `compile_kernel`), and the outcome kept for
//! [`report`].

use crate::{hopper::GPU_ARCHITECTURE, CudaCompileDevice, CudaCompileRuntime};
use cubecl::Runtime;
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions};
use std::{
    collections::{hash_map::DefaultHasher, BTreeMap},
    fs,
    hash::{Hash, Hasher},
    path::PathBuf,
    sync::Mutex,
};

/// The environment variable naming a directory to write each compiled kernel's CUDA C++ and
/// PTX into: what `scripts/bench/kernel_registers.sh` hands to `ptxas` to see each kernel's
/// registers, spills and instructions as the card would run them.
pub const DUMP_VARIABLE: &str = "CUDA_COMPILE_DUMP";

/// What the device compiled since the process started.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The kernels that compiled, by module and type (`most_likely_kernel::MostLikelyKernel`):
    /// one entry a distinct kernel (its comptime values and types), in the order of their
    /// first launch.
    pub compiled: Vec<String>,
    pub failures: Vec<Failure>,
    /// The time spent writing and compiling them: what a fresh machine spends on the same
    /// kernels before its first step, less the faster or slower host.
    pub seconds: f64,
    /// Every launch, of a kernel compiled then or before: what the CUDA path launches (its
    /// fusion, not wgpu's), a step's being the difference between runs of different lengths.
    pub launches: u64,
    /// The launches by kernel, named as in `compiled`: where they go.
    pub launches_by_kernel: BTreeMap<String, u64>,
}

/// A kernel CubeCL could not write for CUDA, or NVRTC could not compile.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kernel: String,
    /// What went wrong, with NVRTC's log and the kernel's source where there are.
    pub error: String,
}

static REPORT: Mutex<Report> = Mutex::new(Report {
    compiled: Vec::new(),
    failures: Vec::new(),
    seconds: 0.0,
    launches: 0,
    launches_by_kernel: BTreeMap::new(),
});

/// What the device has compiled so far, once the kernels launched before are through.
pub fn report() -> Report {
    if let Err(error) = CudaCompileRuntime::client(&CudaCompileDevice).flush() {
        panic!("the cuda-compile device's queue: {error}");
    }
    REPORT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

pub(crate) fn count_launch(kernel: &str) {
    let mut report = REPORT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    report.launches += 1;
    match report.launches_by_kernel.get_mut(kernel) {
        Some(launches) => *launches += 1,
        None => {
            report.launches_by_kernel.insert(kernel.to_string(), 1);
        }
    }
}

pub(crate) fn record(kernel: String, outcome: Result<(), String>, seconds: f64) {
    let mut report = REPORT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    report.seconds += seconds;
    match outcome {
        Ok(()) => report.compiled.push(kernel),
        Err(error) => {
            eprintln!("cuda-compile: {kernel} does not compile for CUDA:\n{error}");
            report.failures.push(Failure { kernel, error });
        }
    }
}

/// Where CUDA's headers are: a toolkit, or the NVRTC wheel's directory, named by `CUDA_PATH`
/// as cubecl-cuda reads it.
pub(crate) fn include_paths() -> Vec<String> {
    let Some(cuda) = cubecl::cuda::install::cuda_path() else {
        panic!(
            "--device cuda-compile needs NVRTC and CUDA's headers: set CUDA_PATH to a CUDA toolkit, or to the \
             nvidia/cu13 directory of PyTorch's nvidia-cuda-nvrtc wheel, and put its lib directory on \
             LD_LIBRARY_PATH (scripts/checks/cuda_compile.sh finds both)"
        )
    };
    let include = cuda.join("include");
    [include.join("cccl"), include]
        .into_iter()
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect()
}

/// Compile `source` to PTX for capability 9.0, as cubecl-cuda does before loading a kernel.
/// With [`DUMP_VARIABLE`] set, the source and the PTX are written into that directory.
pub(crate) fn compile(name: &str, source: &str, include_paths: &[String]) -> Result<(), String> {
    let options = CompileOptions {
        options: vec![GPU_ARCHITECTURE.to_string(), "-lineinfo".to_string()],
        include_paths: include_paths.to_vec(),
        ..Default::default()
    };
    match compile_ptx_with_opts(source, options) {
        Ok(ptx) => dump(name, source, &ptx.to_src()),
        Err(CompileError::CompileError { log, .. }) => {
            Err(format!("NVRTC:\n{}\nsource:\n{source}", log.to_string_lossy()))
        }
        Err(other) => Err(format!("NVRTC: {other:?}")),
    }
}

/// `KERNEL-HASH.cu` and `.ptx`: kernels of one type differ by their comptime values and types,
/// and a hash of the source tells them apart (the same kernel compiled by two runs is one file).
/// The directory is made if it is not there.
fn dump(kernel: &str, source: &str, ptx: &str) -> Result<(), String> {
    let Some(dir) = std::env::var_os(DUMP_VARIABLE).map(PathBuf::from) else { return Ok(()) };
    fs::create_dir_all(&dir).map_err(|error| format!("making {}: {error}", dir.display()))?;
    let mut hasher = DefaultHasher::new();
    source.hash(&mut hasher);
    let name = format!("{}-{:08x}", kernel.replace("::", "."), hasher.finish() as u32);
    let write = |extension: &str, text: &str| {
        let path = dir.join(format!("{name}.{extension}"));
        fs::write(&path, text).map_err(|error| format!("writing {}: {error}", path.display()))
    };
    write("cu", source)?;
    write("ptx", ptx)
}
