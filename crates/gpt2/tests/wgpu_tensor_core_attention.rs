//! A training pass with the flash kernels' products on tensor cores
//! (`GPT2_ATTENTION=flash-tensor-cores`) against the CPU, as `wgpu_training` checks them on
//! the FP32 units, within what their operands' rounding allows (f16 on wgpu, 2⁻¹¹ each). On Mesa
//! 26's driver the loss came within 5·10⁻⁵ of the CPU's, the gradients within 1·10⁻⁴-9·10⁻³ of
//! their scales, the most in the first layer, which every later one's gradient reaches, and in
//! its LayerNorm's β (a sum over the rows that cancels); the FP32 kernels' within 10⁻⁵. Runs where
//! the device has tensor cores (`scripts/checks/tensor_cores.sh`: Mesa 26's software Vulkan
//! driver through CubeCL's SPIR-V, feature `vulkan`); elsewhere it says so and passes, unless
//! `CUBE_KERNELS_TENSOR_CORES=required`. A test binary of its own: the variable is read once a
//! process.
//! `cargo test -p gpt2 --features vulkan --test wgpu_tensor_core_attention`

use burn::{backend::wgpu::WgpuRuntime, tensor::DType};
use gpt2::AttentionRoute;

mod common;

#[test]
fn a_training_pass_with_attention_on_tensor_cores_gives_the_cpus_gradients() {
    std::env::set_var("GPT2_ATTENTION", "flash-tensor-cores");
    assert_eq!(AttentionRoute::chosen(), AttentionRoute::FlashTensorCores);
    let device = Default::default();
    let tensor_cores = cube_kernels::flash_attention_tensor_cores::<WgpuRuntime>(
        &device,
        DType::F32,
        cube_kernels::MAX_FLASH_HEAD_DIM,
    );
    let Some(fragment) = tensor_cores else {
        assert!(!cube_kernels::tensor_cores_required(), "no tensor cores on this device");
        eprintln!("no tensor cores on this device: not tested");
        return;
    };
    eprintln!("tensor cores' {fragment}");
    common::training_pass::assert_wgpu_pass_matches_cpu(2e-2);
}
