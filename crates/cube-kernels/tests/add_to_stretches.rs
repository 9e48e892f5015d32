//! Tensors added to their stretches of a flat buffer on the device against the same sums on
//! the host, on burn's wgpu backend with and without fusion (Mesa's software Vulkan driver on a
//! machine without a GPU). `cargo test -p cube-kernels --features wgpu --test add_to_stretches`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{prelude::*, tensor::TensorPrimitive};
use cube_kernels::AddToStretches;
mod support;

use support::{Eager, Fused};

/// Values that differ from element to element and piece to piece, exact in f32.
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7 + seed * 13) % 101) as f32 / 8.0 - 6.0).collect()
}

fn tensor<B: Backend>(values: Vec<f32>) -> Tensor<B, 1> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), &Default::default())
}

fn host<B: Backend>(tensor: Tensor<B, 1>) -> Vec<f32> {
    tensor.into_data().to_vec().unwrap()
}

/// Pieces of one element to more than a launch's width (a unit then steps through its piece),
/// more of them than a launch takes, with gaps between stretches; the buffer also held
/// elsewhere (then copied, the holder's values untouched) or not.
fn check<B: AddToStretches>(held_elsewhere: bool) {
    let lengths = [1, 3, 255, 257, 300_001].into_iter().cycle().take(41).collect::<Vec<_>>();
    let starts: Vec<usize> =
        lengths.iter().scan(5, |next, &len| Some(std::mem::replace(next, *next + len + 2))).collect();
    let length = starts.last().unwrap() + lengths.last().unwrap() + 9;
    let start_values = values(length, 0);
    let buffer = tensor::<B>(start_values.clone());
    let holder = held_elsewhere.then(|| buffer.clone());

    let mut expected = start_values.clone();
    let mut pieces = Vec::new();
    for (seed, (&len, &start)) in lengths.iter().zip(&starts).enumerate() {
        let piece = values(len, seed + 1);
        for (j, value) in piece.iter().enumerate() {
            expected[start + j] += value;
        }
        pieces.push((tensor::<B>(piece).into_primitive().tensor(), start));
    }
    let summed = B::add_to_stretches(buffer.into_primitive().tensor(), pieces);
    let summed = host(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(summed)));
    if let Some(i) = (0..length).find(|&i| summed[i] != expected[i]) {
        panic!("element {i} is {} on the device, {} on the host", summed[i], expected[i]);
    }
    if let Some(holder) = holder {
        assert_eq!(host(holder), start_values, "the holder's buffer was left as it was");
    }
}

#[test]
fn adds_as_the_host_does_on_cubecl() {
    check::<Eager>(false);
    check::<Eager>(true);
}

#[test]
fn adds_as_the_host_does_through_fusion() {
    check::<Fused>(false);
    check::<Fused>(true);
}

/// Pieces of rank 2 are added in row-major order, a transposed view's too (the LM head's
/// gradient for the token embedding can arrive so), and one whose rows lie further apart than
/// their length (as CubeCL pads a product's rows to its pitch on CUDA: here a view of the left
/// half of a wider matrix).
fn check_layouts<B: AddToStretches>() {
    let device = Default::default();
    let (rows, columns) = (3, 5);
    let plain = Tensor::<B, 2>::from_data(TensorData::new(values(rows * columns, 1), [rows, columns]), &device);
    let transposed =
        Tensor::<B, 2>::from_data(TensorData::new(values(rows * columns, 2), [columns, rows]), &device).transpose();
    let padded = Tensor::<B, 2>::from_data(TensorData::new(values(3 * 16, 4), [3, 16]), &device).slice([0..3, 0..8]);
    let pieces = [(plain, 2), (transposed, 20), (padded, 40)];
    let start_values = values(70, 3);
    let mut expected = start_values.clone();
    for (piece, start) in &pieces {
        for (j, value) in host(piece.clone().reshape([-1])).into_iter().enumerate() {
            expected[start + j] += value;
        }
    }
    let pieces = pieces.into_iter().map(|(piece, start)| (piece.into_primitive().tensor(), start)).collect();
    let summed = B::add_to_stretches(tensor::<B>(start_values).into_primitive().tensor(), pieces);
    assert_eq!(host(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(summed))), expected);
}

#[test]
fn adds_pieces_of_rank_two_in_row_major_order() {
    check_layouts::<Eager>();
    check_layouts::<Fused>();
}
