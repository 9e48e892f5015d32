//! A training pass with attention through burn's products (`GPT2_ATTENTION=products`: the
//! scores made in full, the CPU's way) in place of the flash kernels, against the CPU, as
//! `wgpu_training` checks the flash kernels. A test binary of its own: the variable is read
//! once a process.
//! `cargo test -p gpt2 --features wgpu --test wgpu_attention_route`

use gpt2::AttentionRoute;

mod common;

#[test]
fn a_training_pass_with_attention_by_products_gives_the_cpus_gradients() {
    std::env::set_var("GPT2_ATTENTION", "products");
    assert_eq!(AttentionRoute::chosen(), AttentionRoute::Products);
    common::training_pass::assert_wgpu_pass_matches_cpu(1e-5);
}
