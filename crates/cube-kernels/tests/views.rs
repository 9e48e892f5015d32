//! Views of a flat buffer's stretches against the buffer's values, on burn's wgpu backend with
//! and without fusion (Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test views`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{
    prelude::*,
    tensor::{ops::FloatTensor, TensorPrimitive},
};
use cube_kernels::Views;
mod support;

use support::{Eager, Fused};

fn values<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> (Vec<usize>, Vec<f32>) {
    let tensor = Tensor::<B, D>::from_primitive(TensorPrimitive::Float(tensor));
    (tensor.dims().to_vec(), tensor.into_data().to_vec().unwrap())
}

/// Stretches at aligned starts (the train stage's layout: views at an offset) and not, of
/// ranks 1 and 2, each with its own values and shape; the buffer stays whole.
fn check<B: Views>() {
    let buffer_values: Vec<f32> = (0..300).map(|i| i as f32 * 0.5 - 40.0).collect();
    let buffer = Tensor::<B, 1>::from_data(TensorData::new(buffer_values.clone(), [300]), &Default::default());
    let stretches =
        vec![(0, Shape::new([2, 3])), (64, Shape::new([5])), (128, Shape::new([4, 16])), (201, Shape::new([3, 3]))];
    let views = B::views(buffer.clone().into_primitive().tensor(), stretches.clone());
    assert_eq!(views.len(), stretches.len());
    for (view, (start, shape)) in views.into_iter().zip(stretches) {
        let expected = buffer_values[start..start + shape.num_elements()].to_vec();
        let actual = match shape.num_dims() {
            1 => values::<B, 1>(view),
            _ => values::<B, 2>(view),
        };
        assert_eq!(actual, (shape.to_vec(), expected), "the stretch at {start}");
    }
    assert_eq!(buffer.into_data().to_vec::<f32>().unwrap(), buffer_values, "the buffer left as it was");
}

#[test]
fn views_hold_their_stretches_on_cubecl() {
    check::<Eager>();
}

/// A stretch that starts on the device's alignment is the buffer at an offset wherever it ends
/// (burn's `slice` copied those ending off the alignment: gpt2-xl's embedding and biases), and
/// one that starts off it is a copy of its own.
#[test]
fn stretches_starting_on_the_alignment_are_views_wherever_they_end() {
    type B = Eager;
    let buffer = Tensor::<B, 1>::from_data(TensorData::new(vec![1.0f32; 4096], [4096]), &Default::default());
    let buffer = buffer.into_primitive().tensor();
    let alignment = buffer.client.properties().memory.alignment as usize / size_of::<f32>();
    let stretches = vec![
        (0, Shape::new([alignment + 1])),
        (2 * alignment, Shape::new([3, alignment + 1])),
        (8 * alignment, Shape::new([5])),
        (9 * alignment + 1, Shape::new([2])),
    ];
    let views = B::views(buffer.clone(), stretches.clone());
    for (view, (start, shape)) in views.iter().zip(&stretches) {
        let end = start + shape.num_elements();
        if start.is_multiple_of(alignment) {
            assert!(!(4096 - end).is_multiple_of(alignment), "a stretch {start}..{end} ending on the alignment");
            assert!(!view.handle.memory.can_mut(), "the stretch {start}..{end} shares the buffer's memory");
            assert_eq!(view.handle.offset_start, Some((start * size_of::<f32>()) as u64), "the stretch {start}..{end}");
        } else {
            assert!(view.handle.memory.can_mut(), "the stretch {start}..{end} is a copy");
        }
    }
}

#[test]
fn views_hold_their_stretches_through_fusion() {
    check::<Fused>();
}
