//! A training pass with every product of the model routed through `cube_kernels`' product
//! path by `GPT2_PRODUCTS` (its own autodiff node and bias adds, f32 operands; here burn's
//! default routine, the only one wgpu has), against the CPU, as `wgpu_training` checks
//! burn's products. A test binary of its own: the variable is read once a process.
//! `cargo test -p gpt2 --features wgpu --test wgpu_product_routine`

use gpt2::{Gpt2Backend, Wgpu};

mod common;

#[test]
fn a_training_pass_with_products_by_a_named_routine_gives_the_cpus_gradients() {
    std::env::set_var("GPT2_PRODUCTS", "default");
    assert!(<Wgpu as Gpt2Backend>::products_by_routine(), "f32 products take the routine");
    common::training_pass::assert_wgpu_pass_matches_cpu(1e-5);
}
