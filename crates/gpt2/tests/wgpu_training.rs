//! A training pass on burn's CubeCL + fusion path (the path CUDA takes, here on wgpu: Mesa's
//! software Vulkan driver on a machine without a GPU) against the CPU: the loss and every
//! parameter's gradient of the tiny fixture, with dropout and documents packed in rows. On wgpu
//! each branch's end, its dropout and the LayerNorm after it run in `cube-kernels`' LayerNorm
//! kernels, attention in its flash kernels, the loss's cross-entropy in its kernels, and the
//! written-out backward passes hand the residual stream's gradient from block to block.
//! `cargo test -p gpt2 --features wgpu --test wgpu_training`

mod common;

#[test]
fn a_training_pass_on_wgpu_gives_the_cpus_loss_and_gradients() {
    common::training_pass::assert_wgpu_pass_matches_cpu(1e-5);
}
