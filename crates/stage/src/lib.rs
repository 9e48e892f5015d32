//! What the model stages (train, sample) share, so that the `gpt2` crate is only the model and
//! its file format:
//! - [`device`]: `--device auto|cpu|cuda[:N]`, and running generic work on the chosen backend;
//! - [`cuda_preflight`]: what CUDA needs at run time, named before the first device call;
//! - [`gpu_memory`]: whether the chosen shape fits in the GPU's free memory;
//! - [`kernel_cache`]: where CUDA runs keep the kernels they compile;
//! - [`model`]: the model directory a `--model`/`--init` names, a path or a Hugging Face Hub id.

pub mod cuda_preflight;
pub mod device;
pub mod gpu_memory;
pub mod kernel_cache;
pub mod model;
