//! Causal self-attention's core for training, forward and backward, without a `time × time`
//! tensor: one launch forward and two backward, where burn takes two products, the softmax's
//! reductions and element-wise kernels forward, and five products and more backward, and
//! writes the scores and weights out in full (flash attention's tiling, after Dao et al.).
//!
//! A cube takes a tile of queries (forward, and the queries' gradients) or of keys (the keys'
//! and values' gradients), one unit a row with the row in registers, and walks the other side's
//! tiles through shared memory: each row of k and v is read from memory once a query tile, not
//! once a query. The forward pass keeps each query's log-sum-exp of its scores, from which the
//! backward pass computes the weights again. Dropout's keep mask is drawn inside the kernels
//! from Philox counters, the words `kernels::dropout_keeps` draws for the whole
//! `[batch, heads, time, time]` mask, so the CPU's operations stay the reference. The kernels
//! read q, k and v where the q/k/v projection wrote them and write the output and the
//! projection's gradient in those layouts: no copies into heads and back.

use crate::draw::{mask_args, Draw, DropoutDraw, MaskArgs};
use burn::tensor::{
    ops::{BoolTensor, FloatTensor},
    BoolStore, DType, Shape, TensorMetadata,
};
use burn_cubecl::{
    ops::numeric::empty_device_dtype, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime, FloatElement,
    IntElement,
};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::{prelude::*, CubeCount, CubeDim};
use std::marker::PhantomData;

/// Widest head the kernels take: a tile of k and one of v (or of q and of the output's gradient)
/// fill 16 KiB of shared memory at 64, what every backend offers (WebGPU's minimum). Every
/// GPT-2 has heads 64 wide.
pub const MAX_FLASH_HEAD_DIM: usize = 64;

/// How the kernels take the mask: burn's booleans as CUDA (u8) and wgpu (u32) store them.
pub const FLASH_MASK_DTYPES: [DType; 2] = [DType::Bool(BoolStore::U8), DType::Bool(BoolStore::U32)];

/// Rows of a tile, and units of a cube (one a row).
const TILE: usize = 32;

pub trait FlashAttention: burn::tensor::backend::Backend {
    /// `softmax(q · kᵀ / √head_dim)` over the keys each query may see, dropout on those weights,
    /// times `v`, for each of `heads` heads; with each query's log-sum-exp of its scaled scores,
    /// which the backward pass takes. `qkv` is the q/k/v projection's rows `[batch × time, 3 ×
    /// heads × head_dim]` (q, k and v side by side, each with its heads side by side; `head_dim`
    /// at most [`MAX_FLASH_HEAD_DIM`]), `hidden` `[batch, time, time]` is `true` where a query
    /// must not see a key (keys after the query are never seen, whatever it holds). Returns
    /// `(output [batch × time, heads × head_dim], logsumexp [batch, heads, time])`: the heads'
    /// outputs side by side, as the projection after attention takes them.
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradient of the q/k/v rows from that of the output, `d_output` `[batch × time, heads
    /// × head_dim]`, and what [`flash_attention`] took and returned: `[batch × time, 3 × heads ×
    /// head_dim]`, in the projection's layout.
    ///
    /// [`flash_attention`]: FlashAttention::flash_attention
    fn flash_attention_backward(
        qkv: FloatTensor<Self>,
        output: FloatTensor<Self>,
        logsumexp: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
    ) -> FloatTensor<Self>;
}

/// Below every score: where a row's running maximum starts.
const LOWEST_SCORE: f32 = -1.0e30;

/// One cube a tile of queries of one (batch, head), one unit a query: over the key tiles up to
/// its own, the unit keeps a running maximum of its scores, their exponentials' sum and the
/// weighted sum of values, rescaled when the maximum grows (online softmax).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_forward_kernel<F: Float, M: Int>(
    qkv: &Tensor<F>,
    hidden: &Tensor<M>,
    output: &mut Tensor<F>,
    logsumexp: &mut Tensor<F>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let query_tile = CUBE_POS_X as usize;
    let query = query_tile * TILE + UNIT_POS_X as usize;
    let active = query < time;

    let mut q_row = Array::<F>::new(head_dim);
    let mut weighted = Array::<F>::new(head_dim);
    read_row::<F>(qkv, at.start(qkv, query, at.q()), active, F::cast_from(scale), &mut q_row, head_dim);
    #[unroll]
    for d in 0..head_dim {
        weighted[d] = F::new(0.0);
    }
    let mut k_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut v_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut max = F::new(LOWEST_SCORE);
    let mut sum = F::new(0.0);
    let mut draw = Draw::new(mask, (at.pair * time + query) * time);

    for key_tile in 0..query_tile + 1 {
        load_tile::<F>(qkv, &at, key_tile * TILE, at.k(), &mut k_tile, head_dim);
        load_tile::<F>(qkv, &at, key_tile * TILE, at.v(), &mut v_tile, head_dim);
        sync_cube();
        if active {
            for j in 0..TILE {
                let key = key_tile * TILE + j;
                if sees::<M>(hidden, &at, query, key) {
                    let score = dot_shared::<F>(&q_row, &k_tile, j, head_dim);
                    if score > max {
                        let rescale = F::exp(max - score);
                        sum *= rescale;
                        #[unroll]
                        for d in 0..head_dim {
                            weighted[d] *= rescale;
                        }
                        max = score;
                    }
                    let weight = F::exp(score - max);
                    sum += weight;
                    let kept = weight * draw.keep_scale::<F>(key, dropout);
                    #[unroll]
                    for d in 0..head_dim {
                        weighted[d] += kept * v_tile[j * head_dim + d];
                    }
                }
            }
        }
        sync_cube();
    }
    if active {
        let start = at.start(output, query, at.q());
        #[unroll]
        for d in 0..head_dim {
            output[start + d * output.stride(1)] = weighted[d] / sum;
        }
        logsumexp[at.pair * time + query] = max + F::ln(sum);
    }
}

/// One cube a tile of queries, one unit a query: with `p` the weight of a key, `z` dropout's
/// scale for it (`1/(1 − p_drop)` or 0) and `D = Σ d_output · output` over the query's row,
/// the score's gradient is `p · (z · d_output · v − D)` and `d_q = Σ_keys that · k · scale`.
/// Writes `D` for the keys' kernel.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_query_gradient_kernel<F: Float, M: Int>(
    qkv: &Tensor<F>,
    output: &Tensor<F>,
    logsumexp: &Tensor<F>,
    d_output: &Tensor<F>,
    hidden: &Tensor<M>,
    d_qkv: &mut Tensor<F>,
    delta: &mut Tensor<F>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let query_tile = CUBE_POS_X as usize;
    let query = query_tile * TILE + UNIT_POS_X as usize;
    let active = query < time;
    let scale = F::cast_from(scale);

    let mut q_row = Array::<F>::new(head_dim);
    let mut d_output_row = Array::<F>::new(head_dim);
    let mut output_row = Array::<F>::new(head_dim);
    let mut gradient = Array::<F>::new(head_dim);
    read_row::<F>(qkv, at.start(qkv, query, at.q()), active, scale, &mut q_row, head_dim);
    read_row::<F>(d_output, at.start(d_output, query, at.q()), active, F::new(1.0), &mut d_output_row, head_dim);
    read_row::<F>(output, at.start(output, query, at.q()), active, F::new(1.0), &mut output_row, head_dim);
    let mut row_delta = F::new(0.0);
    #[unroll]
    for d in 0..head_dim {
        row_delta += d_output_row[d] * output_row[d];
        gradient[d] = F::new(0.0);
    }
    let mut row_logsumexp = F::new(0.0);
    if active {
        delta[at.pair * time + query] = row_delta;
        row_logsumexp = logsumexp[at.pair * time + query];
    }
    let mut k_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut v_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut draw = Draw::new(mask, (at.pair * time + query) * time);

    for key_tile in 0..query_tile + 1 {
        load_tile::<F>(qkv, &at, key_tile * TILE, at.k(), &mut k_tile, head_dim);
        load_tile::<F>(qkv, &at, key_tile * TILE, at.v(), &mut v_tile, head_dim);
        sync_cube();
        if active {
            for j in 0..TILE {
                let key = key_tile * TILE + j;
                if sees::<M>(hidden, &at, query, key) {
                    let weight = F::exp(dot_shared::<F>(&q_row, &k_tile, j, head_dim) - row_logsumexp);
                    let d_weight = dot_shared::<F>(&d_output_row, &v_tile, j, head_dim);
                    let d_score = weight * (draw.keep_scale::<F>(key, dropout) * d_weight - row_delta);
                    #[unroll]
                    for d in 0..head_dim {
                        gradient[d] += d_score * k_tile[j * head_dim + d];
                    }
                }
            }
        }
        sync_cube();
    }
    if active {
        let start = at.start(d_qkv, query, at.q());
        #[unroll]
        for d in 0..head_dim {
            d_qkv[start + d * d_qkv.stride(1)] = gradient[d] * scale;
        }
    }
}

/// One cube a tile of keys, one unit a key, over the query tiles from its own on: `d_v = Σ p ·
/// z · d_output` and `d_k = Σ p · (z · d_output · v − D) · q · scale` over the queries that see
/// the key.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn flash_attention_key_value_gradient_kernel<F: Float, M: Int>(
    qkv: &Tensor<F>,
    logsumexp: &Tensor<F>,
    delta: &Tensor<F>,
    d_output: &Tensor<F>,
    hidden: &Tensor<M>,
    d_qkv: &mut Tensor<F>,
    heads: u32,
    scale: f32,
    mask: &MaskArgs,
    #[comptime] head_dim: usize,
    #[comptime] dropout: bool,
) {
    let at = Layout::new(heads, hidden.shape(1), head_dim);
    let time = at.time;
    let key_tile = CUBE_POS_X as usize;
    let key = key_tile * TILE + UNIT_POS_X as usize;
    let active = key < time;
    let scale = F::cast_from(scale);

    let mut k_row = Array::<F>::new(head_dim);
    let mut v_row = Array::<F>::new(head_dim);
    let mut d_k_row = Array::<F>::new(head_dim);
    let mut d_v_row = Array::<F>::new(head_dim);
    read_row::<F>(qkv, at.start(qkv, key, at.k()), active, scale, &mut k_row, head_dim);
    read_row::<F>(qkv, at.start(qkv, key, at.v()), active, F::new(1.0), &mut v_row, head_dim);
    #[unroll]
    for d in 0..head_dim {
        d_k_row[d] = F::new(0.0);
        d_v_row[d] = F::new(0.0);
    }
    let mut q_tile = SharedMemory::<F>::new(TILE * head_dim);
    let mut d_output_tile = SharedMemory::<F>::new(TILE * head_dim);

    for query_tile in key_tile..time.div_ceil(TILE) {
        load_tile::<F>(qkv, &at, query_tile * TILE, at.q(), &mut q_tile, head_dim);
        load_tile::<F>(d_output, &at, query_tile * TILE, at.q(), &mut d_output_tile, head_dim);
        sync_cube();
        if active {
            for i in 0..TILE {
                let query = query_tile * TILE + i;
                if query < time && sees::<M>(hidden, &at, query, key) {
                    let row = at.pair * time + query;
                    let weight = F::exp(dot_shared::<F>(&k_row, &q_tile, i, head_dim) - logsumexp[row]);
                    // Each query's row of the mask is its own Philox stream position: no word
                    // of a call serves two queries.
                    let mut draw = Draw::new(mask, row * time);
                    let keep_scale = draw.keep_scale::<F>(key, dropout);
                    let d_weight = dot_shared::<F>(&v_row, &d_output_tile, i, head_dim);
                    let d_score = weight * (keep_scale * d_weight - delta[row]);
                    #[unroll]
                    for d in 0..head_dim {
                        d_v_row[d] += weight * keep_scale * d_output_tile[i * head_dim + d];
                        d_k_row[d] += d_score * q_tile[i * head_dim + d];
                    }
                }
            }
        }
        sync_cube();
    }
    if active {
        let k_start = at.start(d_qkv, key, at.k());
        let v_start = at.start(d_qkv, key, at.v());
        #[unroll]
        for d in 0..head_dim {
            d_qkv[k_start + d * d_qkv.stride(1)] = d_k_row[d] * scale;
            d_qkv[v_start + d * d_qkv.stride(1)] = d_v_row[d];
        }
    }
}

/// Whether `query` sees `key` in the cube's row of the batch: the key is not later than the
/// query, and `hidden` does not hide it.
#[cube]
fn sees<M: Int>(hidden: &Tensor<M>, at: &Layout, query: usize, key: usize) -> bool {
    key <= query
        && hidden[at.batch * hidden.stride(0) + query * hidden.stride(1) + key * hidden.stride(2)] == M::from_int(0)
}

/// Where a cube's head lies in the rows `[batch × time, sections × heads × head_dim]` the
/// kernels read and write: the q/k/v projection's (q, k, v side by side, each with its heads
/// side by side) and the output's.
#[derive(CubeType)]
struct Layout {
    /// The cube's (batch, head), and `batch × heads + head`.
    batch: usize,
    head: usize,
    pair: usize,
    time: usize,
    /// `heads × head_dim`: one section's columns.
    width: usize,
    #[cube(comptime)]
    head_dim: usize,
}

#[cube]
impl Layout {
    fn new(heads: u32, time: usize, #[comptime] head_dim: usize) -> Layout {
        let heads = heads as usize;
        let pair = CUBE_POS_Y as usize;
        Layout { batch: pair / heads, head: pair % heads, pair, time, width: heads * head_dim, head_dim }
    }

    /// The first column of the cube's head in q's section (and in the output), k's and v's.
    fn q(&self) -> usize {
        self.head * self.head_dim
    }

    fn k(&self) -> usize {
        self.width + self.head * self.head_dim
    }

    fn v(&self) -> usize {
        2 * self.width + self.head * self.head_dim
    }

    /// Where `position`'s row of the head starts in `rows`, from the head's first `column`.
    fn start<F: Float>(&self, rows: &Tensor<F>, position: usize, column: usize) -> usize {
        (self.batch * self.time + position) * rows.stride(0) + column * rows.stride(1)
    }
}

/// `head_dim` elements of `from` from index `start` on (along its columns), times `scale`, into
/// `into`; zeros for a unit past the last row.
#[cube]
fn read_row<F: Float>(
    from: &Tensor<F>,
    start: usize,
    active: bool,
    scale: F,
    into: &mut Array<F>,
    #[comptime] head_dim: usize,
) {
    #[unroll]
    for d in 0..head_dim {
        into[d] = F::new(0.0);
    }
    if active {
        #[unroll]
        for d in 0..head_dim {
            into[d] = from[start + d * from.stride(1)] * scale;
        }
    }
}

/// Positions `first … first + TILE` of the cube's head, from `column` on, of `from` into
/// `tile`, shared out among the cube's units; zeros past the last position.
#[cube]
fn load_tile<F: Float>(
    from: &Tensor<F>,
    at: &Layout,
    first: usize,
    column: usize,
    tile: &mut SharedMemory<F>,
    #[comptime] head_dim: usize,
) {
    let mut i = UNIT_POS_X as usize;
    while i < TILE * head_dim {
        let position = first + i / head_dim;
        let mut value = F::new(0.0);
        if position < at.time {
            value = from[at.start(from, position, column) + (i % head_dim) * from.stride(1)];
        }
        tile[i] = value;
        i += TILE;
    }
}

/// `row · tile[j]`, with `tile` rows of `head_dim`.
#[cube]
fn dot_shared<F: Float>(row: &Array<F>, tile: &SharedMemory<F>, j: usize, #[comptime] head_dim: usize) -> F {
    let mut sum = F::new(0.0);
    #[unroll]
    for d in 0..head_dim {
        sum += row[d] * tile[j * head_dim + d];
    }
    sum
}

/// `[batch, time, head_dim]` of attention over `qkv` with `heads` heads and mask `hidden`,
/// checked against what the kernels take.
fn dims<R: CubeRuntime>(qkv: &CubeTensor<R>, heads: usize, hidden: &CubeTensor<R>) -> [usize; 3] {
    let [batch, time, _] = hidden.meta.shape().dims::<3>();
    let head_dim = qkv.meta.shape().dims::<2>()[1] / (3 * heads);
    assert!(head_dim <= MAX_FLASH_HEAD_DIM, "flash attention takes heads at most {MAX_FLASH_HEAD_DIM} wide");
    assert!(
        (batch * heads * time * time) < u32::MAX as usize,
        "flash attention's dropout mask needs fewer than 2³² elements"
    );
    [batch, time, head_dim]
}

fn cubes(batch: usize, heads: usize, time: usize) -> CubeCount {
    CubeCount::Static(time.div_ceil(TILE) as u32, (batch * heads) as u32, 1)
}

/// Runs `$launch` with `$M` the element type of the boolean mask `$hidden` (burn stores
/// booleans as bytes or as 32-bit words, by backend).
macro_rules! with_mask_element {
    ($hidden:expr, $M:ident => $launch:expr) => {
        match $hidden.dtype {
            DType::Bool(BoolStore::U8) => {
                type $M = u8;
                $launch
            }
            DType::Bool(BoolStore::U32) => {
                type $M = u32;
                $launch
            }
            other => panic!("flash attention takes masks stored as {FLASH_MASK_DTYPES:?}, not {other:?}"),
        }
    };
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FlashAttention for CubeBackend<R, F, I, BT> {
    fn flash_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        hidden: BoolTensor<Self>,
        dropout: Option<DropoutDraw>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, time, head_dim] = dims(&qkv, heads, &hidden);
        let (client, device) = (qkv.client.clone(), qkv.device.clone());
        let output =
            empty_device_dtype(client.clone(), device.clone(), Shape::new([batch * time, heads * head_dim]), qkv.dtype);
        let logsumexp = empty_device_dtype(client.clone(), device, Shape::new([batch, heads, time]), qkv.dtype);
        with_mask_element!(hidden, M => flash_attention_forward_kernel::launch::<F, M, R>(
            &client,
            cubes(batch, heads, time),
            CubeDim::new_1d(TILE as u32),
            qkv.into_tensor_arg(),
            hidden.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            logsumexp.clone().into_tensor_arg(),
            heads as u32,
            1.0 / (head_dim as f32).sqrt(),
            mask_args(dropout),
            head_dim,
            dropout.is_some(),
        ));
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
    ) -> FloatTensor<Self> {
        let [batch, time, head_dim] = dims(&qkv, heads, &hidden);
        let (client, device) = (qkv.client.clone(), qkv.device.clone());
        let d_qkv = empty_device_dtype(client.clone(), device.clone(), qkv.shape(), qkv.dtype);
        let delta = empty_device_dtype(client.clone(), device, Shape::new([batch, heads, time]), qkv.dtype);
        let scale = 1.0 / (head_dim as f32).sqrt();
        with_mask_element!(hidden, M => {
            flash_attention_query_gradient_kernel::launch::<F, M, R>(
                &client,
                cubes(batch, heads, time),
                CubeDim::new_1d(TILE as u32),
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
                cubes(batch, heads, time),
                CubeDim::new_1d(TILE as u32),
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
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Clone, Debug)]
        struct ForwardOp<B> {
            desc: CustomOpIr,
            heads: usize,
            dropout: Option<DropoutDraw>,
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
            TensorIr::uninit(client.create_empty_handle(), Shape::new([rows, columns / 3]), qkv.dtype),
            TensorIr::uninit(client.create_empty_handle(), Shape::new([batch, heads, time]), qkv.dtype),
        ];
        let desc = CustomOpIr::new("flash_attention", &[qkv.into_ir(), hidden.into_ir()], &outputs);
        let op = ForwardOp::<B> { desc: desc.clone(), heads, dropout, backend: PhantomData };
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
    ) -> FloatTensor<Self> {
        #[derive(Clone, Debug)]
        struct BackwardOp<B> {
            desc: CustomOpIr,
            heads: usize,
            dropout: Option<DropoutDraw>,
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
                );
                handles.register_float_tensor::<B>(&d_qkv.id, gradient);
            }
        }

        let client = qkv.client.clone();
        let streams = OperationStreams::with_inputs([&qkv, &output, &logsumexp, &d_output, &hidden]);
        let d_qkv = TensorIr::uninit(client.create_empty_handle(), qkv.shape.clone(), qkv.dtype);
        let inputs = [qkv.into_ir(), output.into_ir(), logsumexp.into_ir(), d_output.into_ir(), hidden.into_ir()];
        let desc = CustomOpIr::new("flash_attention_backward", &inputs, &[d_qkv]);
        let op = BackwardOp::<B> { desc: desc.clone(), heads, dropout, backend: PhantomData };
        let [d_qkv] = client.register(streams, OperationIr::Custom(desc), op).outputs();
        d_qkv
    }
}
