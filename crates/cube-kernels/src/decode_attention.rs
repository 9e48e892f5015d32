//! Attention's core for decoding: each row's one new query against every key of its cache,
//! `softmax(q · kᵀ / √head_dim) · v`, one cube of units a (row, head).

use burn::tensor::{ops::FloatTensor, Shape};
use burn_cubecl::{ops::numeric::empty_device_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::{prelude::*, CubeCount, CubeDim};
use std::marker::PhantomData;

/// Most keys the kernel takes: its weights live in the cube's shared memory, 4 bytes a key,
/// and 16 KiB is what every backend offers (WebGPU's minimum). GPT-2 has 1,024 positions.
pub const MAX_DECODE_KEYS: usize = 4096;

/// Units of a cube: the keys are shared out among them, then the head's dimensions.
const UNITS: u32 = 64;

pub trait DecodeAttention: burn::tensor::backend::Backend {
    /// For `q` `[batch, heads, 1, head_dim]` and `k`, `v` `[batch, heads, keys, head_dim]` (any
    /// strides: views of a cache's buffers do), each query attending to every key, unmasked:
    /// the heads' outputs side by side, `[batch, 1, heads × head_dim]`. At most [`MAX_DECODE_KEYS`]
    /// keys.
    fn decode_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// One cube a (row, head). Its units compute the scores of the keys in turn (each key's dot
/// product by one unit), the softmax over them in shared memory, then one output dimension
/// each.
#[cube(launch)]
fn decode_attention_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    output: &mut Tensor<F>,
    scale: f32,
    #[comptime] max_keys: usize,
) {
    let row = CUBE_POS_X as usize;
    let head = CUBE_POS_Y as usize;
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let keys = k.shape(2);
    let head_dim = q.shape(3);
    let q_start = row * q.stride(0) + head * q.stride(1);
    let k_start = row * k.stride(0) + head * k.stride(1);
    let v_start = row * v.stride(0) + head * v.stride(1);
    let scale = F::cast_from(scale);
    let mut weights = SharedMemory::<F>::new(max_keys);

    let mut key = unit;
    while key < keys {
        let mut dot = F::new(0.0);
        for d in 0..head_dim {
            dot += q[q_start + d * q.stride(3)] * k[k_start + key * k.stride(2) + d * k.stride(3)];
        }
        weights[key] = dot * scale;
        key += units;
    }
    sync_cube();
    // Every unit finds the maximum and, below, the sum itself: a few thousand reads of shared
    // memory, against a tree of barriers.
    let mut max = weights[0];
    for key in 1..keys {
        max = F::max(max, weights[key]);
    }
    sync_cube();
    let mut key = unit;
    while key < keys {
        weights[key] = F::exp(weights[key] - max);
        key += units;
    }
    sync_cube();
    let mut total = F::new(0.0);
    for key in 0..keys {
        total += weights[key];
    }

    let mut d = unit;
    while d < head_dim {
        let mut sum = F::new(0.0);
        for key in 0..keys {
            sum += weights[key] * v[v_start + key * v.stride(2) + d * v.stride(3)];
        }
        output[row * output.stride(0) + (head * head_dim + d) * output.stride(2)] = sum / total;
        d += units;
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> DecodeAttention for CubeBackend<R, F, I, BT> {
    fn decode_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        let [batch, heads, time, head_dim] = q.meta.shape().dims::<4>();
        let keys = k.meta.shape().dims::<4>()[2];
        assert_eq!(time, 1, "decoding attention takes one query a row");
        assert!(keys <= MAX_DECODE_KEYS, "decoding attention takes at most {MAX_DECODE_KEYS} keys, not {keys}");
        let client = q.client.clone();
        let output =
            empty_device_dtype(client.clone(), q.device.clone(), Shape::new([batch, 1, heads * head_dim]), q.dtype);
        // Shared memory sized to a power of two: a handful of compiled kernels as the cache grows.
        let max_keys = keys.next_power_of_two().max(64);
        decode_attention_kernel::launch::<F, R>(
            &client,
            CubeCount::Static(batch as u32, heads as u32, 1),
            CubeDim::new_1d(UNITS),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            1.0 / (head_dim as f32).sqrt(),
            max_keys,
        );
        output
    }
}

impl<B: FusionBackend + DecodeAttention> DecodeAttention for Fusion<B> {
    fn decode_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Clone, Debug)]
        struct DecodeAttentionOp<B> {
            desc: CustomOpIr,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + DecodeAttention> Operation<B::FusionRuntime> for DecodeAttentionOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([q, k, v], [output]) = self.desc.as_fixed();
                let attended = B::decode_attention(
                    handles.get_float_tensor::<B>(q),
                    handles.get_float_tensor::<B>(k),
                    handles.get_float_tensor::<B>(v),
                );
                handles.register_float_tensor::<B>(&output.id, attended);
            }
        }

        let client = q.client.clone();
        let [batch, heads, _, head_dim] = q.shape.dims::<4>();
        let streams = OperationStreams::with_inputs([&q, &k, &v]);
        let output = TensorIr::uninit(client.create_empty_handle(), Shape::new([batch, 1, heads * head_dim]), q.dtype);
        let desc = CustomOpIr::new("decode_attention", &[q.into_ir(), k.into_ir(), v.into_ir()], &[output]);
        client
            .register(streams, OperationIr::Custom(desc.clone()), DecodeAttentionOp::<B> { desc, backend: PhantomData })
            .output()
    }
}
