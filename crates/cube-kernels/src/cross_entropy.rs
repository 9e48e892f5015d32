//! The loss's cross-entropy over rows of logits, `[rows, vocab]` (50,257 columns for GPT-2),
//! forward in one launch and backward in one: burn 0.21 takes a maximum, a subtraction, an
//! exponential, a sum, a logarithm and an add forward, each reading or writing a tensor the
//! size of the logits, a gather, and an exponential, a product and a scatter backward. The
//! logits' gradient is written in the type the LM head's product reads it in (bf16 under
//! `--precision bf16`): no cast of its own, and half the bytes of the largest gradient.
//!
//! The logits may have more columns than the vocabulary (the LM head's product padded to a
//! width its tensor cores read in vectors: 50,304 for GPT-2): the columns past `vocab` are
//! read by neither kernel, and their gradient is written as zero.

use crate::{
    element::launch_for_element,
    fusion_op::{register_kernel_with_ints, Inputs, Launch},
    reduce::{cube_a_row, cube_max, cube_row, cube_sum},
};
use burn::tensor::{
    ops::{FloatTensor, IntTensor},
    DType, Shape,
};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeDim};

/// Units of a cube, one cube a row. A power of two (the sums halve it).
const UNITS: u32 = 256;

pub trait CrossEntropyRows: burn::tensor::backend::Backend {
    /// Each row's cross-entropy against its target, `log Σ exp(logits) − logits[target]`,
    /// and its log-normaliser `log Σ exp(logits)`, which the backward pass takes: both
    /// `[rows]`, for `logits` `[rows, columns]` whose first `vocab` columns are the vocabulary
    /// (the rest padding, never read), and `targets` `[rows]`. A target outside the
    /// vocabulary (the train stage refuses such tokens when it loads its data) reads no logit:
    /// its loss is the largest float, which no cross-entropy reaches (WGSL has no NaN literal).
    fn cross_entropy_rows(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        vocab: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The logits' gradient from the gradient of each row's cross-entropy, `d_losses` `[rows]`:
    /// `(softmax(logits) − one-hot(target)) · d_loss` on each row's first `vocab` columns and
    /// zero on the padding after them, with the log-normalisers [`cross_entropy_rows`]
    /// returned, written in the type `d_logits` (the logits', bf16 or f16).
    ///
    /// [`cross_entropy_rows`]: CrossEntropyRows::cross_entropy_rows
    fn cross_entropy_rows_backward(
        logits: FloatTensor<Self>,
        log_normalisers: FloatTensor<Self>,
        targets: IntTensor<Self>,
        d_losses: FloatTensor<Self>,
        d_logits: DType,
        vocab: usize,
    ) -> FloatTensor<Self>;
}

/// One cube a row: its units find the row's largest logit, then sum the exponentials of the
/// logits less it (no overflow), and the first unit writes the row's results.
#[cube(launch)]
fn cross_entropy_kernel<F: Float, I: Int>(
    logits: &Tensor<F>,
    targets: &Tensor<I>,
    losses: &mut Tensor<F>,
    log_normalisers: &mut Tensor<F>,
    vocab: usize,
    #[comptime] units: usize,
) {
    let row = cube_row();
    if row >= logits.shape(0) {
        terminate!();
    }
    let start = row * logits.stride(0);
    let unit = UNIT_POS_X as usize;
    let mut partial = SharedMemory::<F>::new(units);

    let mut largest = F::min_value();
    let mut i = unit;
    while i < vocab {
        largest = F::max(largest, logits[start + i * logits.stride(1)]);
        i += units;
    }
    let largest = cube_max::<F>(&mut partial, largest);
    let mut sum = F::new(0.0);
    let mut i = unit;
    while i < vocab {
        sum += F::exp(logits[start + i * logits.stride(1)] - largest);
        i += units;
    }
    let log_normaliser = largest + F::ln(cube_sum::<F>(&mut partial, sum));

    if unit == 0 {
        let target = targets[row * targets.stride(0)];
        let mut loss = F::max_value();
        if target >= I::new(0) && usize::cast_from(target) < vocab {
            loss = log_normaliser - logits[start + usize::cast_from(target) * logits.stride(1)];
        }
        losses[row] = loss;
        log_normalisers[row] = log_normaliser;
    }
}

/// One cube a row, its units along it: `(exp(logit − log-normaliser) − [column = target]) ·
/// d_loss`, rounded to `P`, on the vocabulary's columns; zero on the padding after them.
#[cube(launch)]
fn cross_entropy_backward_kernel<F: Float, I: Int, P: Float>(
    logits: &Tensor<F>,
    log_normalisers: &Tensor<F>,
    targets: &Tensor<I>,
    d_losses: &Tensor<F>,
    d_logits: &mut Tensor<P>,
    vocab: usize,
    #[comptime] units: usize,
) {
    let row = cube_row();
    if row >= logits.shape(0) {
        terminate!();
    }
    let columns = logits.shape(1);
    let log_normaliser = log_normalisers[row * log_normalisers.stride(0)];
    let d_loss = d_losses[row * d_losses.stride(0)];
    let target = targets[row * targets.stride(0)];
    let mut i = UNIT_POS_X as usize;
    while i < vocab {
        let mut gradient = F::exp(logits[row * logits.stride(0) + i * logits.stride(1)] - log_normaliser);
        if I::cast_from(i) == target {
            gradient -= F::new(1.0);
        }
        d_logits[row * columns + i] = P::cast_from(gradient * d_loss);
        i += units;
    }
    while i < columns {
        d_logits[row * columns + i] = P::new(0.0);
        i += units;
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> CrossEntropyRows for CubeBackend<R, F, I, BT> {
    fn cross_entropy_rows(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        vocab: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let rows = logits.meta.shape().dims::<2>()[0];
        let empty = || {
            empty_device_contiguous_dtype(
                logits.client.clone(),
                logits.device.clone(),
                Shape::new([rows]),
                logits.dtype,
            )
        };
        let (losses, log_normalisers) = (empty(), empty());
        cross_entropy_kernel::launch::<F, I, R>(
            &logits.client.clone(),
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            logits.into_tensor_arg(),
            targets.into_tensor_arg(),
            losses.clone().into_tensor_arg(),
            log_normalisers.clone().into_tensor_arg(),
            vocab,
            UNITS as usize,
        );
        (losses, log_normalisers)
    }

    fn cross_entropy_rows_backward(
        logits: FloatTensor<Self>,
        log_normalisers: FloatTensor<Self>,
        targets: IntTensor<Self>,
        d_losses: FloatTensor<Self>,
        d_logits: DType,
        vocab: usize,
    ) -> FloatTensor<Self> {
        let launch = launch_for_element!(
            cross_entropy_backward_kernel::<F, I, R>,
            d_logits,
            logits.dtype,
            "cross-entropy: the logits' gradient"
        );
        let shape = logits.meta.shape().clone();
        let rows = shape.dims::<2>()[0];
        let d_logits = empty_device_contiguous_dtype(logits.client.clone(), logits.device.clone(), shape, d_logits);
        launch(
            &logits.client.clone(),
            cube_a_row(rows),
            CubeDim::new_1d(UNITS),
            logits.into_tensor_arg(),
            log_normalisers.into_tensor_arg(),
            targets.into_tensor_arg(),
            d_losses.into_tensor_arg(),
            d_logits.clone().into_tensor_arg(),
            vocab,
            UNITS as usize,
        );
        d_logits
    }
}

impl<B: FusionBackend + CrossEntropyRows> CrossEntropyRows for Fusion<B> {
    fn cross_entropy_rows(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        vocab: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let rows = logits.shape.dims::<2>()[0];
        let launch: Launch<B, _> = |&vocab, mut inputs: Inputs<B>| {
            let (losses, log_normalisers) = B::cross_entropy_rows(inputs.float(), inputs.int(), vocab);
            vec![losses, log_normalisers]
        };
        let outputs = [(Shape::new([rows]), logits.dtype), (Shape::new([rows]), logits.dtype)];
        let [losses, log_normalisers] = register_kernel_with_ints::<B, _>(
            "cross_entropy_rows",
            vec![logits],
            vec![targets],
            &outputs,
            vocab,
            launch,
        )
        .try_into()
        .expect("two outputs");
        (losses, log_normalisers)
    }

    fn cross_entropy_rows_backward(
        logits: FloatTensor<Self>,
        log_normalisers: FloatTensor<Self>,
        targets: IntTensor<Self>,
        d_losses: FloatTensor<Self>,
        d_logits: DType,
        vocab: usize,
    ) -> FloatTensor<Self> {
        let outputs = [(logits.shape.clone(), d_logits)];
        let launch: Launch<B, _> = |&(d_logits, vocab), mut inputs: Inputs<B>| {
            let (logits, log_normalisers, d_losses) = (inputs.float(), inputs.float(), inputs.float());
            vec![B::cross_entropy_rows_backward(logits, log_normalisers, inputs.int(), d_losses, d_logits, vocab)]
        };
        let floats = vec![logits, log_normalisers, d_losses];
        let [d_logits] = register_kernel_with_ints::<B, _>(
            "cross_entropy_rows_backward",
            floats,
            vec![targets],
            &outputs,
            (d_logits, vocab),
            launch,
        )
        .try_into()
        .expect("one output");
        d_logits
    }
}
