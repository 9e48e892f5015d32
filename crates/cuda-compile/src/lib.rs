//! A CubeCL device that compiles every kernel launched on it for CUDA and runs none: the kernels
//! the CUDA path launches (this project's, and burn's fused and plain ones), compiled with NVRTC
//! for an H100/H200 (`sm_90a`) exactly as burn's CUDA backend compiles them on such a card,
//! on a machine without a GPU or CUDA driver. NVRTC comes from a CUDA toolkit or from the
//! `nvidia-cuda-nvrtc` Python wheel that PyTorch installs (`scripts/checks/cuda_compile.sh`).
//!
//! Nothing is computed: every read gives zeros. A stage run on this device takes its whole
//! path (a training step, decoding, sampling) with the kernels' shapes and types those
//! choose, and [`report`] says afterwards what compiled and what did not. Its memory is
//! CubeCL's account of a card's (nothing behind it), and [`peaks`] says how much the stage had
//! in use and reserved at most.

mod device;
mod hopper;
mod memory;
mod nvrtc;
mod runtime;
mod server;

pub use device::CudaCompileDevice;
pub use memory::{peaks, Peaks, MEMORY_VARIABLE};
pub use nvrtc::{report, Failure, Report};
pub use runtime::CudaCompileRuntime;

/// burn's CUDA backend (`burn::backend::Cuda`: CubeCL with fusion) on this device.
pub type CudaCompile = burn_fusion::Fusion<CudaCompileEager>;
/// burn's CUDA backend without fusion on this device.
pub type CudaCompileEager = burn_cubecl::CubeBackend<CudaCompileRuntime, f32, i32, u8>;
