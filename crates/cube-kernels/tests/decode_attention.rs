//! The decoding attention kernel against burn's operations on the CPU, on burn's wgpu backend
//! (with and without fusion): on a machine without a GPU, Mesa's software Vulkan driver runs it
//! on the CPU (`apt-get install mesa-vulkan-drivers`). `cargo test -p cube-kernels --features wgpu`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{
    backend::NdArray,
    prelude::*,
    tensor::{activation::softmax, ops::FloatTensor, TensorPrimitive},
};
use cube_kernels::DecodeAttention;
mod support;

use support::{from_host, normal, Eager, Fused};

const HEAD_DIM: usize = 64;

/// Where the reference runs: burn's products on CUDA take TF32 tensor cores, far coarser than
/// the kernel's f32 sums.
type Cpu = NdArray<f32>;

fn on_cpu<B: Backend, const D: usize>(tensor: &Tensor<B, D>) -> Tensor<Cpu, D> {
    Tensor::from_data(tensor.to_data(), &Default::default())
}

/// The new position's attention and the buffers with its key and value written, by burn's
/// operations.
fn reference<B: Backend>(
    qkv: Tensor<B, 2>,
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
    position: usize,
) -> (Tensor<B, 2>, Tensor<B, 4>, Tensor<B, 4>) {
    let [batch, heads, _, head_dim] = keys.dims();
    let by_heads = |t: Tensor<B, 2>| t.reshape([batch, 1, heads, head_dim]).swap_dims(1, 2);
    let mut parts = qkv.chunk(3, 1);
    let (v, k, q) = (by_heads(parts.pop().unwrap()), by_heads(parts.pop().unwrap()), by_heads(parts.pop().unwrap()));
    let new = [0..batch, 0..heads, position..position + 1, 0..head_dim];
    let (keys, values) = (keys.slice_assign(new.clone(), k), values.slice_assign(new, v));
    let filled = [0..batch, 0..heads, 0..position + 1, 0..head_dim];
    let (k, v) = (keys.clone().slice(filled.clone()), values.clone().slice(filled));
    let weights = softmax(q.matmul(k.transpose()) / (head_dim as f64).sqrt(), 3);
    (weights.matmul(v).swap_dims(1, 2).reshape([batch, heads * head_dim]), keys, values)
}

fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

fn float<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}

fn assert_close<B: Backend, const D: usize>(what: &str, expected: Tensor<Cpu, D>, actual: Tensor<B, D>) {
    let (expected, actual) =
        (expected.into_data().to_vec::<f32>().unwrap(), actual.into_data().to_vec::<f32>().unwrap());
    assert_eq!(expected.len(), actual.len(), "{what}");
    let difference = expected.iter().zip(&actual).map(|(e, a)| (e - a).abs()).fold(0.0f32, f32::max);
    assert!(difference <= 1e-5, "{what}: max |difference| {difference}");
}

/// As the model calls it: the q/k/v projection's rows and a cache with room to spare, filled
/// before `position`. With `shared`, a clone of the key buffer is kept, which must not change.
fn check<B: DecodeAttention>(batch: usize, heads: usize, position: usize, shared: bool) {
    // Fixed draws: a failure reruns as it failed.
    let seed = (batch * heads * position) as u64;
    let what = format!("batch {batch}, heads {heads}, position {position}, shared {shared}");
    let qkv = from_host::<B, 2>(normal(batch * 3 * heads * HEAD_DIM, seed), [batch, 3 * heads * HEAD_DIM]) * 2.0;
    let buffer = |scale, seed| {
        let dims = [batch, heads, 2 * position + 1, HEAD_DIM];
        from_host::<B, 4>(normal(dims.iter().product(), seed), dims) * scale
    };
    // Large scores: the softmax must subtract the maximum.
    let (keys, values) = (buffer(4.0, seed + 1), buffer(1.0, seed + 2));
    let (expected, expected_keys, expected_values) = reference(on_cpu(&qkv), on_cpu(&keys), on_cpu(&values), position);
    let keys_before = keys.clone().into_data();
    let kept = shared.then(|| keys.clone());
    let (actual, actual_keys, actual_values) =
        B::decode_attention(primitive(qkv), primitive(keys), primitive(values), position);
    assert_close(&format!("{what}: output"), expected, float::<B, 2>(actual));
    assert_close(&format!("{what}: keys"), expected_keys, float::<B, 4>(actual_keys));
    assert_close(&format!("{what}: values"), expected_values, float::<B, 4>(actual_values));
    if let Some(kept) = kept {
        assert_eq!(kept.into_data(), keys_before, "{what}: a buffer another tensor holds was written");
    }
}

#[test]
fn decode_attention_matches_burns_operations() {
    for (batch, heads, position, shared) in
        [(1, 1, 0, false), (1, 12, 6, true), (3, 12, 99, false), (2, 3, 301, false), (2, 4, 1024, true)]
    {
        check::<Eager>(batch, heads, position, shared);
        check::<Fused>(batch, heads, position, shared);
    }
}
