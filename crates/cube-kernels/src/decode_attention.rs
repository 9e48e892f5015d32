//! Attention's core for decoding: each row's new key and value written into its cache, and its
//! one new query against every key there, `softmax(q · kᵀ / √head_dim) · v`, in one launch (one
//! cube of units a (row, head)). burn took a slice-assign for each buffer, the views of the
//! filled positions, copies to make operands contiguous, two products, the softmax's
//! reductions and element-wise kernels.

use crate::{
    chains::{chains_total, new_chains, CHAINS},
    flash_attention::LOWEST_SCORE,
    fusion_op::{register_kernel, Launch},
    reduce::{cube_max, cube_sum},
};
use burn::tensor::{ops::FloatTensor, Shape};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime,
    FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeCount, CubeDim};

/// Most keys the kernel takes: its weights live in the cube's shared memory, 4 bytes a key,
/// beside a slot a unit for the cube's sums, and 16 KiB is what every backend offers (WebGPU's
/// minimum). GPT-2 has 1,024 positions.
pub const MAX_DECODE_KEYS: usize = 4096 - UNITS as usize;

/// Widest head the kernel takes: a group of units holds a unit a dimension. Every GPT-2's heads
/// are 64 wide.
pub const MAX_DECODE_HEAD_DIM: usize = UNITS as usize;

/// Units of a cube: the keys are shared out among them, then the keys again among groups of a
/// unit a dimension of the head (4 groups at GPT-2's 64). With 64 units, one group, a cube's
/// two warps were all an SM ran (gpt2 at batch 1: 12 cubes), each unit summing the values of
/// every key for its dimension, a load's wait after each [`KEYS_AT_ONCE`].
const UNITS: u32 = 256;

pub trait DecodeAttention: burn::tensor::backend::Backend {
    /// Attention for one new position a row, with a layer's KV cache: `qkv` `[batch, 3 × heads ×
    /// head_dim]` holds each row's new q, k and v side by side (each with its heads side by
    /// side), `keys` and `values` `[batch, heads, capacity, head_dim]` are the cache's buffers,
    /// filled before `position`. Writes the new key and value at `position` and attends each
    /// query to positions `0..=position`, unmasked. Returns the heads' outputs side by side,
    /// `[batch, heads × head_dim]`, and the buffers with the new position written: in place
    /// when nothing else holds them. `position` is below the capacity and
    /// [`MAX_DECODE_KEYS`].
    fn decode_attention(
        qkv: FloatTensor<Self>,
        keys: FloatTensor<Self>,
        values: FloatTensor<Self>,
        position: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// One cube a (row, head). Its units write the new key and value into the cache, each reads
/// the scaled query, and they compute the scores of the keys in turn (each key's dot product by
/// one unit, its loads issued together, in [`CHAINS`] partial sums), take the largest score
/// and the exponentials' sum as trees across the cube, then the output: groups of `head_dim`
/// units, one dimension a unit, each group over every `groups`-th key ([`KEYS_AT_ONCE`] at a
/// time), the groups' sums then added in shared memory. The new position's key and value are
/// read from `qkv`, not back from the cache: on Vulkan a barrier orders shared memory, not the
/// cube's own writes to a buffer.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn decode_attention_kernel<F: Float>(
    qkv: &Tensor<F>,
    keys: &mut Tensor<F>,
    values: &mut Tensor<F>,
    output: &mut Tensor<F>,
    position: u32,
    scale: f32,
    #[comptime] max_keys: usize,
    #[comptime] head_dim: usize,
) {
    let row = CUBE_POS_X as usize;
    let head = CUBE_POS_Y as usize;
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let position = position as usize;
    let width = CUBE_COUNT_Y as usize * head_dim;
    let qkv_column = qkv.stride(1);
    let q_start = row * qkv.stride(0) + head * head_dim * qkv_column;
    let new_k_start = q_start + width * qkv_column;
    let new_v_start = new_k_start + width * qkv_column;
    let (key_stride, key_column) = (keys.stride(2), keys.stride(3));
    let (value_stride, value_column) = (values.stride(2), values.stride(3));
    let k_start = row * keys.stride(0) + head * keys.stride(1);
    let v_start = row * values.stride(0) + head * values.stride(1);
    let mut weights = SharedMemory::<F>::new(max_keys);
    let mut partial = SharedMemory::<F>::new(UNITS as usize);

    let mut d = unit;
    while d < head_dim {
        keys[k_start + position * key_stride + d * key_column] = qkv[new_k_start + d * qkv_column];
        values[v_start + position * value_stride + d * value_column] = qkv[new_v_start + d * qkv_column];
        d += units;
    }
    let mut q = Array::<F>::new(head_dim);
    #[unroll]
    for d in 0..head_dim {
        q[d] = qkv[q_start + d * qkv_column] * F::cast_from(scale);
    }

    let mut largest = F::new(LOWEST_SCORE);
    let mut key = unit;
    while key <= position {
        let mut dot = new_chains::<F>();
        if key == position {
            #[unroll]
            for d in 0..head_dim {
                dot[d % CHAINS] += q[d] * qkv[new_k_start + d * qkv_column];
            }
        } else {
            let start = k_start + key * key_stride;
            #[unroll]
            for d in 0..head_dim {
                dot[d % CHAINS] += q[d] * keys[start + d * key_column];
            }
        }
        let score = chains_total::<F>(&dot);
        weights[key] = score;
        largest = F::max(largest, score);
        key += units;
    }
    let max = cube_max::<F>(&mut partial, largest);
    let mut sum = F::new(0.0);
    let mut key = unit;
    while key <= position {
        let weight = F::exp(weights[key] - max);
        weights[key] = weight;
        sum += weight;
        key += units;
    }
    // Its barriers also make every unit's weights visible to all.
    let total = cube_sum::<F>(&mut partial, sum);

    let groups = comptime!(UNITS as usize / head_dim);
    let (group, d) = (unit / head_dim, unit % head_dim);
    let mut sums = new_chains::<F>();
    if group < groups {
        let column = v_start + d * value_column;
        if group == 0 {
            sums[0] = weights[position] * qkv[new_v_start + d * qkv_column];
        }
        let mut key = group;
        while key + (KEYS_AT_ONCE - 1) * groups < position {
            #[unroll]
            for n in 0..KEYS_AT_ONCE {
                let at = key + n * groups;
                sums[n % CHAINS] += weights[at] * values[column + at * value_stride];
            }
            key += KEYS_AT_ONCE * groups;
        }
        while key < position {
            sums[0] += weights[key] * values[column + key * value_stride];
            key += groups;
        }
    }
    // Every unit has read the total from `partial` before it takes the groups' sums.
    sync_cube();
    partial[unit] = chains_total::<F>(&sums);
    sync_cube();
    if unit < head_dim {
        let mut y = F::new(0.0);
        for g in 0..groups {
            y += partial[g * head_dim + unit];
        }
        output[row * output.stride(0) + (head * head_dim + unit) * output.stride(1)] = y / total;
    }
}

/// Cached values a unit reads before it waits for them, in the output's sum over the keys.
const KEYS_AT_ONCE: usize = 8;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> DecodeAttention for CubeBackend<R, F, I, BT> {
    fn decode_attention(
        qkv: FloatTensor<Self>,
        keys: FloatTensor<Self>,
        values: FloatTensor<Self>,
        position: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, heads, capacity, head_dim] = keys.meta.shape().dims::<4>();
        assert!(position < capacity, "position {position} is past the cache's {capacity}");
        assert!(position < MAX_DECODE_KEYS, "decoding attention takes at most {MAX_DECODE_KEYS} keys");
        assert!(head_dim <= MAX_DECODE_HEAD_DIM, "decoding attention takes heads at most {MAX_DECODE_HEAD_DIM} wide");
        let client = qkv.client.clone();
        let output = empty_device_contiguous_dtype(
            client.clone(),
            qkv.device.clone(),
            Shape::new([batch, heads * head_dim]),
            qkv.dtype,
        );
        // As burn's slice_assign: a buffer another tensor still holds is copied first.
        let writable = |buffer: CubeTensor<R>| match buffer.can_mut() && buffer.is_nonoverlapping() {
            true => buffer,
            false => buffer.copy(),
        };
        let (keys, values) = (writable(keys), writable(values));
        // Shared memory sized to a power of two: a handful of compiled kernels as the cache grows.
        let max_keys = (position + 1).next_power_of_two().clamp(64, MAX_DECODE_KEYS);
        decode_attention_kernel::launch::<F, R>(
            &client,
            CubeCount::Static(batch as u32, heads as u32, 1),
            CubeDim::new_1d(UNITS),
            qkv.into_tensor_arg(),
            keys.clone().into_tensor_arg(),
            values.clone().into_tensor_arg(),
            output.clone().into_tensor_arg(),
            position as u32,
            1.0 / (head_dim as f32).sqrt(),
            max_keys,
            head_dim,
        );
        (output, keys, values)
    }
}

impl<B: FusionBackend + DecodeAttention> DecodeAttention for Fusion<B> {
    fn decode_attention(
        qkv: FloatTensor<Self>,
        keys: FloatTensor<Self>,
        values: FloatTensor<Self>,
        position: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, heads, _, head_dim] = keys.shape.dims::<4>();
        let outputs = [Shape::new([batch, heads * head_dim]), keys.shape.clone(), values.shape.clone()];
        let launch: Launch<B, _> = |&position, mut inputs| {
            let (qkv, keys, values) = (inputs.float(), inputs.float(), inputs.float());
            let (attended, keys, values) = B::decode_attention(qkv, keys, values, position);
            vec![attended, keys, values]
        };
        let [attended, keys, values] =
            register_kernel::<B, _>("decode_attention", vec![qkv, keys, values], &outputs, position, launch)
                .try_into()
                .expect("three outputs");
        (attended, keys, values)
    }
}
