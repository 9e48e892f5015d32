//! The decoding attention kernel against burn's operations, on burn's wgpu backend (with and
//! without fusion): on a machine without a GPU, Mesa's software Vulkan driver runs it on the
//! CPU (`apt-get install mesa-vulkan-drivers`). `cargo test -p cube-kernels --features wgpu`

use burn::{
    backend::wgpu::{CubeBackend, WgpuRuntime},
    backend::Wgpu,
    prelude::*,
    tensor::{activation::softmax, Distribution, TensorPrimitive},
};
use cube_kernels::DecodeAttention;

fn reference<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, heads, _, head_dim] = q.dims();
    let weights = softmax(q.matmul(k.transpose()) / (head_dim as f64).sqrt(), 3);
    weights.matmul(v).swap_dims(1, 2).reshape([batch, 1, heads * head_dim])
}

fn kernel<B: DecodeAttention>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 3> {
    let output =
        B::decode_attention(q.into_primitive().tensor(), k.into_primitive().tensor(), v.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(output))
}

/// As the model calls it: q a view of the q/k/v projection's rows, k and v the first `keys`
/// positions of a cache buffer with room to spare.
fn check<B: DecodeAttention>(batch: usize, heads: usize, keys: usize) {
    let device = Default::default();
    let head_dim = 64;
    let qkv = Tensor::<B, 2>::random([batch, 3 * heads * head_dim], Distribution::Normal(0.0, 1.0), &device);
    let q = qkv.slice([0..batch, 0..heads * head_dim]).reshape([batch, 1, heads, head_dim]).swap_dims(1, 2);
    let buffer =
        |scale| {
            Tensor::<B, 4>::random([batch, heads, 2 * keys, head_dim], Distribution::Normal(0.0, scale), &device)
                .slice([0..batch, 0..heads, 0..keys, 0..head_dim])
        };
    // Large scores: the softmax must subtract the maximum.
    let (k, v) = (buffer(4.0), buffer(1.0));
    let expected = reference(q.clone(), k.clone(), v.clone()).into_data().to_vec::<f32>().unwrap();
    let actual = kernel(q, k, v).into_data().to_vec::<f32>().unwrap();
    let difference = expected.iter().zip(&actual).map(|(e, a)| (e - a).abs()).fold(0.0f32, f32::max);
    assert!(difference <= 1e-5, "batch {batch}, heads {heads}, keys {keys}: max |difference| {difference}");
}

#[test]
fn decode_attention_matches_burns_operations() {
    for (batch, heads, keys) in [(1, 1, 1), (1, 12, 7), (3, 12, 100), (2, 4, 1025)] {
        check::<CubeBackend<WgpuRuntime, f32, i32, u32>>(batch, heads, keys);
        check::<Wgpu<f32, i32>>(batch, heads, keys);
    }
}
