//! Causal self-attention's core for training, forward and backward, without a `time × time`
//! tensor: one launch forward and two backward, where burn takes two products, the softmax's
//! reductions and element-wise kernels forward, and five products and more backward, and
//! writes the scores and weights out in full (flash attention's tiling, after Dao et al.).
//!
//! The forward pass keeps each query's log-sum-exp of its scores, from which the backward pass
//! computes the weights again. Dropout's keep mask is drawn inside the kernels from Philox
//! counters, the words `kernels::dropout_keeps` draws for the whole `[batch, heads, time, time]`
//! mask, so the CPU's operations stay the reference. The kernels read q, k and v where the q/k/v
//! projection wrote them and write the output and the projection's gradient in those layouts:
//! no copies into heads and back. The output is written in the type of the product after it
//! (bf16 under `--precision bf16`), and the backward pass reads it so: no cast between them, and
//! no f32 copy kept for the backward pass.
//!
//! Two kinds of kernel do it, by which units take their products ([`AttentionProducts`]):
//! [`fp32_units`]' on every device, [`tensor_cores`](mod@tensor_cores)' where a device has them
//! for the operands' type. Both hold a cube's rows as [`heads`] lays them out.

mod fp32_units;
mod heads;
mod tensor_cores;

pub use tensor_cores::{flash_attention_tensor_cores, tensor_cores_required};

use crate::{
    draw::{assert_drawable, mask_args, DropoutDraw},
    element::launch_for_element,
};
use burn::tensor::{
    ops::{BoolTensor, FloatTensor},
    BoolStore, DType, Shape, TensorMetadata,
};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime,
    FloatElement, IntElement,
};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::{prelude::*, CubeCount, CubeDim};
use fp32_units::{
    flash_attention_forward_kernel, flash_attention_key_value_gradient_kernel, flash_attention_query_gradient_kernel,
    SHARED_ROWS, TILE,
};
use heads::head_vector_size;
use std::marker::PhantomData;
use tensor_cores::{
    flash_attention_forward_tensor_cores_kernel, flash_attention_key_value_gradient_tensor_cores_kernel,
    flash_attention_query_gradient_tensor_cores_kernel, mask_vector_size, tensor_core_launch, tensor_cores,
    TensorCores,
};

/// Widest head the kernels take: a tile of k and one of v (or of q and of the output's gradient)
/// fill 16 KiB of shared memory at 64, and each kernel takes under 1 KiB besides: within what
/// CUDA (48 KiB) and the desktop GPUs wgpu runs on (32 KiB and up) give a cube. Every GPT-2
/// has heads 64 wide.
pub const MAX_FLASH_HEAD_DIM: usize = 64;

/// How the attention kernels (flash attention's, the softmax's) take the mask: burn's booleans
/// as CUDA (u8) and wgpu (u32) store them.
pub const ATTENTION_MASK_DTYPES: [DType; 2] = [DType::Bool(BoolStore::U8), DType::Bool(BoolStore::U32)];

pub trait FlashAttention: burn::tensor::backend::Backend {
    /// `softmax(q · kᵀ / √head_dim)` over the keys each query may see, dropout on those weights,
    /// times `v`, for each of `heads` heads; with each query's log-sum-exp of its scaled scores,
    /// which the backward pass takes. `qkv` is the q/k/v projection's rows `[batch × time, 3 ×
    /// heads × head_dim]` (q, k and v side by side, each with its heads side by side; `head_dim`
    /// at most [`MAX_FLASH_HEAD_DIM`]), `hidden` `[batch, time, time]` is `true` where a query
    /// must not see a key (keys after the query are never seen, whatever it holds). Returns
    /// `(output [batch × time, heads × head_dim], logsumexp [batch, heads, time])`: the heads'
    /// outputs side by side, as the projection after attention takes them, in the type
    /// `output` (that of the projection's operands: qkv's, bf16 or f16). `products` says
    /// which units take its products.
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        output: DType,
        products: AttentionProducts,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradient of the q/k/v rows from that of the output, `d_output` `[batch × time, heads
    /// × head_dim]`, and what [`flash_attention`] took and returned (the output in the type it
    /// was written in): `[batch × time, 3 × heads × head_dim]`, in the projection's layout.
    /// `products` says which units take its products.
    ///
    /// [`flash_attention`]: FlashAttention::flash_attention
    #[allow(clippy::too_many_arguments)]
    fn flash_attention_backward(
        qkv: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        products: AttentionProducts,
    ) -> FloatTensor<Self>;
}

/// Which units take flash attention's products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionProducts {
    /// The FP32 units, scalar multiply-adds, on every device.
    Fp32Units,
    /// Tensor cores where the device has them for the operands' type (see
    /// [`tensor_cores`]), the FP32 units elsewhere.
    TensorCores,
}

impl AttentionProducts {
    /// How the kernels run on tensor cores for heads `head_dim` wide and an output of type
    /// `output` on `client`'s device, where these products ask for them and the device has
    /// them; `None` where the FP32 units take them.
    fn on_tensor_cores<R: CubeRuntime>(
        self,
        client: &ComputeClient<R>,
        output: DType,
        head_dim: usize,
    ) -> Option<TensorCores> {
        match self {
            AttentionProducts::TensorCores => tensor_cores(client, output, head_dim),
            AttentionProducts::Fp32Units => None,
        }
    }
}

/// Below every score: where a row's running maximum starts (here and in decoding attention).
pub(crate) const LOWEST_SCORE: f32 = -1.0e30;

/// An unseen key's score in the forward kernel: below [`LOWEST_SCORE`] by as much again, so
/// that its weight `e^(score − maximum)` is 0 even in a row that has seen no key yet.
pub(crate) const UNSEEN_SCORE: f32 = 2.0 * LOWEST_SCORE;

/// Whether bit `n` of a word of bits (the flash kernels' pairs, the softmax's mask) is set.
#[cube]
pub(crate) fn is_set(bits: u32, n: usize) -> bool {
    (bits >> n as u32) & 1u32 == 1u32
}

/// `[batch, time, head_dim]` of attention over `qkv` with `heads` heads and mask `hidden`,
/// checked against what the kernels take.
fn dims<R: CubeRuntime>(qkv: &CubeTensor<R>, heads: usize, hidden: &CubeTensor<R>) -> [usize; 3] {
    let [batch, time, _] = hidden.meta.shape().dims::<3>();
    let head_dim = qkv.meta.shape().dims::<2>()[1] / (3 * heads);
    assert!(head_dim <= MAX_FLASH_HEAD_DIM, "flash attention takes heads at most {MAX_FLASH_HEAD_DIM} wide");
    assert_drawable(batch * heads * time * time, "flash attention");
    [batch, time, head_dim]
}

/// A cube every `rows_a_cube` positions of each (batch, head): the (batch, head) along x, the
/// blocks of rows along y. A GPU starts cubes x fastest, so a row of cubes is one block of
/// every head, and the kernels take the blocks longest first (under causality a block works on
/// 1 to `time / TILE` tiles: the last blocks of queries, the first of keys): the short ones
/// then fill the SMs that finish early. With the blocks in order, each head's longest started
/// last, after the card's first wave of cubes.
pub(crate) fn cubes(batch: usize, heads: usize, time: usize, rows_a_cube: usize) -> CubeCount {
    CubeCount::Static((batch * heads) as u32, time.div_ceil(rows_a_cube) as u32, 1)
}

/// The block of queries a cube of the forward or queries' kernel takes: the last first (see
/// [`cubes`]).
#[cube]
#[allow(arithmetic_overflow)] // rustc folds CubeCL's placeholders for the two (1 and 2)
pub(crate) fn longest_first() -> usize {
    (CUBE_COUNT_Y - 1 - CUBE_POS_Y) as usize
}

/// Runs `$launch` with `$M` the element type of the boolean mask `$hidden` (burn stores
/// booleans as bytes or as 32-bit words, by backend).
macro_rules! with_mask_element {
    ($hidden:expr, $M:ident => $launch:expr) => {
        match $hidden.dtype {
            burn::tensor::DType::Bool(burn::tensor::BoolStore::U8) => {
                type $M = u8;
                $launch
            }
            burn::tensor::DType::Bool(burn::tensor::BoolStore::U32) => {
                type $M = u32;
                $launch
            }
            other => panic!(
                "attention's kernels take masks stored as {:?}, not {other:?}",
                $crate::flash_attention::ATTENTION_MASK_DTYPES
            ),
        }
    };
}
pub(crate) use with_mask_element;

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FlashAttention for CubeBackend<R, F, I, BT> {
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        output: DType,
        products: AttentionProducts,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, time, head_dim] = dims(&qkv, heads, &hidden);
        let (client, device) = (qkv.client.clone(), qkv.device.clone());
        let own = qkv.dtype;
        let output = empty_device_contiguous_dtype(
            client.clone(),
            device.clone(),
            Shape::new([batch * time, heads * head_dim]),
            output,
        );
        let logsumexp =
            empty_device_contiguous_dtype(client.clone(), device, Shape::new([batch, heads, time]), qkv.dtype);
        let on_tensor_cores = products.on_tensor_cores(&client, output.dtype, head_dim);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let vector = head_vector_size(&[&qkv], head_dim);
        with_mask_element!(hidden, M => match on_tensor_cores {
            Some(cores) => tensor_core_launch!(
                flash_attention_forward_tensor_cores_kernel::<F, M, R>,
                cores.fragment,
                output.dtype,
                own
            )(
                &client,
                cores.cubes(batch, heads, time),
                cores.cube_dim(),
                vector,
                mask_vector_size(&hidden),
                qkv.into_tensor_arg(),
                hidden.into_tensor_arg(),
                output.clone().into_tensor_arg(),
                logsumexp.clone().into_tensor_arg(),
                heads as u32,
                scale,
                mask_args(dropout),
                head_dim,
                dropout.is_some(),
                cores.fragment,
                cores.rows,
            ),
            None => launch_for_element!(
                flash_attention_forward_kernel::<F, M, R>,
                output.dtype,
                own,
                "flash attention: the output"
            )(
                &client,
                cubes(batch, heads, time, TILE),
                CubeDim::new_1d(TILE as u32),
                vector,
                qkv.into_tensor_arg(),
                hidden.into_tensor_arg(),
                output.clone().into_tensor_arg(),
                logsumexp.clone().into_tensor_arg(),
                heads as u32,
                scale,
                mask_args(dropout),
                head_dim,
                dropout.is_some(),
            ),
        });
        (output, logsumexp)
    }

    fn flash_attention_backward(
        qkv: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        products: AttentionProducts,
    ) -> FloatTensor<Self> {
        let [batch, time, head_dim] = dims(&qkv, heads, &hidden);
        let (client, device) = (qkv.client.clone(), qkv.device.clone());
        let d_qkv = empty_device_contiguous_dtype(client.clone(), device.clone(), qkv.shape(), qkv.dtype);
        let delta = empty_device_contiguous_dtype(client.clone(), device, Shape::new([batch, heads, time]), qkv.dtype);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let (own, output_type) = (qkv.dtype, output.dtype);
        let on_tensor_cores = products.on_tensor_cores(&client, output_type, head_dim);
        let vector = head_vector_size(&[&qkv, &output, &d_output, &d_qkv], head_dim);
        with_mask_element!(hidden, M => match on_tensor_cores {
            Some(cores) => {
                let mask_vector = mask_vector_size(&hidden);
                tensor_core_launch!(
                    flash_attention_query_gradient_tensor_cores_kernel::<F, M, R>,
                    cores.fragment,
                    output_type,
                    own
                )(
                    &client,
                    cores.cubes(batch, heads, time),
                    cores.cube_dim(),
                    vector,
                    mask_vector,
                    qkv.clone().into_tensor_arg(),
                    output.into_tensor_arg(),
                    logsumexp.clone().into_tensor_arg(),
                    d_output.clone().into_tensor_arg(),
                    hidden.clone().into_tensor_arg(),
                    d_qkv.clone().into_tensor_arg(),
                    delta.clone().into_tensor_arg(),
                    heads as u32,
                    scale,
                    mask_args(dropout),
                    head_dim,
                    dropout.is_some(),
                    cores.fragment,
                    cores.rows,
                );
                tensor_core_launch!(flash_attention_key_value_gradient_tensor_cores_kernel::<F, M, R>, cores.fragment)(
                    &client,
                    cores.cubes(batch, heads, time),
                    cores.cube_dim(),
                    vector,
                    mask_vector,
                    qkv.into_tensor_arg(),
                    logsumexp.into_tensor_arg(),
                    delta.into_tensor_arg(),
                    d_output.into_tensor_arg(),
                    hidden.into_tensor_arg(),
                    d_qkv.clone().into_tensor_arg(),
                    heads as u32,
                    scale,
                    mask_args(dropout),
                    head_dim,
                    dropout.is_some(),
                    cores.fragment,
                    cores.rows,
                );
            }
            None => {
                launch_for_element!(
                    flash_attention_query_gradient_kernel::<F, M, R>,
                    output_type,
                    own,
                    "flash attention's backward pass: the output"
                )(
                    &client,
                    cubes(batch, heads, time, SHARED_ROWS),
                    CubeDim::new_1d(TILE as u32),
                    vector,
                    qkv.clone().into_tensor_arg(),
                    output.into_tensor_arg(),
                    logsumexp.clone().into_tensor_arg(),
                    d_output.clone().into_tensor_arg(),
                    hidden.clone().into_tensor_arg(),
                    d_qkv.clone().into_tensor_arg(),
                    delta.clone().into_tensor_arg(),
                    heads as u32,
                    scale,
                    mask_args(dropout),
                    head_dim,
                    dropout.is_some(),
                );
                flash_attention_key_value_gradient_kernel::launch::<F, M, R>(
                    &client,
                    cubes(batch, heads, time, SHARED_ROWS),
                    CubeDim::new_1d(TILE as u32),
                    vector,
                    qkv.into_tensor_arg(),
                    logsumexp.into_tensor_arg(),
                    delta.into_tensor_arg(),
                    d_output.into_tensor_arg(),
                    hidden.into_tensor_arg(),
                    d_qkv.clone().into_tensor_arg(),
                    heads as u32,
                    scale,
                    mask_args(dropout),
                    head_dim,
                    dropout.is_some(),
                );
            }
        });
        d_qkv
    }
}

impl<B: FusionBackend + FlashAttention> FlashAttention for Fusion<B> {
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        output: DType,
        products: AttentionProducts,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Clone, Debug)]
        struct ForwardOp<B> {
            desc: CustomOpIr,
            heads: usize,
            dropout: Option<DropoutDraw>,
            products: AttentionProducts,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + FlashAttention> Operation<B::FusionRuntime> for ForwardOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([qkv, hidden], [output, logsumexp]) = self.desc.as_fixed();
                let (attended, row_logsumexp) = B::flash_attention(
                    handles.get_float_tensor::<B>(qkv),
                    self.heads,
                    handles.get_bool_tensor::<B>(hidden),
                    self.dropout,
                    output.dtype,
                    self.products,
                );
                handles.register_float_tensor::<B>(&output.id, attended);
                handles.register_float_tensor::<B>(&logsumexp.id, row_logsumexp);
            }
        }

        let client = qkv.client.clone();
        let [rows, columns] = qkv.shape.dims::<2>();
        let [batch, time, _] = hidden.shape.dims::<3>();
        let streams = OperationStreams::with_inputs([&qkv, &hidden]);
        let outputs = [
            TensorIr::uninit(client.create_empty_handle(), Shape::new([rows, columns / 3]), output),
            TensorIr::uninit(client.create_empty_handle(), Shape::new([batch, heads, time]), qkv.dtype),
        ];
        let desc = CustomOpIr::new("flash_attention", &[qkv.into_ir(), hidden.into_ir()], &outputs);
        let op = ForwardOp::<B> { desc: desc.clone(), heads, dropout, products, backend: PhantomData };
        let [output, logsumexp] = client.register(streams, OperationIr::Custom(desc), op).outputs();
        (output, logsumexp)
    }

    fn flash_attention_backward(
        qkv: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
        products: AttentionProducts,
    ) -> FloatTensor<Self> {
        #[derive(Clone, Debug)]
        struct BackwardOp<B> {
            desc: CustomOpIr,
            heads: usize,
            dropout: Option<DropoutDraw>,
            products: AttentionProducts,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + FlashAttention> Operation<B::FusionRuntime> for BackwardOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([qkv, output, logsumexp, d_output, hidden], [d_qkv]) = self.desc.as_fixed();
                let gradient = B::flash_attention_backward(
                    handles.get_float_tensor::<B>(qkv),
                    handles.get_float_tensor::<B>(output),
                    handles.get_float_tensor::<B>(logsumexp),
                    handles.get_float_tensor::<B>(d_output),
                    self.heads,
                    handles.get_bool_tensor::<B>(hidden),
                    self.dropout,
                    self.products,
                );
                handles.register_float_tensor::<B>(&d_qkv.id, gradient);
            }
        }

        let client = qkv.client.clone();
        let streams = OperationStreams::with_inputs([&qkv, &output, &logsumexp, &d_output, &hidden]);
        let d_qkv = TensorIr::uninit(client.create_empty_handle(), qkv.shape.clone(), qkv.dtype);
        let inputs = [qkv.into_ir(), output.into_ir(), logsumexp.into_ir(), d_output.into_ir(), hidden.into_ir()];
        let desc = CustomOpIr::new("flash_attention_backward", &inputs, &[d_qkv]);
        let op = BackwardOp::<B> { desc: desc.clone(), heads, dropout, products, backend: PhantomData };
        let [d_qkv] = client.register(streams, OperationIr::Custom(desc), op).outputs();
        d_qkv
    }
}
