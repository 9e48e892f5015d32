//! What the model stages (train, sample) share, so that the `gpt2` crate is only the model and
//! its file format:
//! - [`device`]: `--device auto|cpu|cuda[:N]`, and running generic work on the chosen backend;
//! - [`cuda_preflight`]: what CUDA needs at run time, named before the first device call;
//! - [`gpu_memory`]: whether the chosen shape fits in the GPU's free memory;
//! - [`cubecl_config`]: where CUDA runs keep the kernels they compile, and how they hand out memory;
//! - [`model`]: the model directory a `--model`/`--init` names, a path or a Hugging Face Hub id.

pub mod cubecl_config;
pub mod cuda_preflight;
pub mod device;
pub mod gpu_memory;
pub mod model;
