//! Views of a flat buffer's stretches against the buffer's values, on burn's wgpu backend with
//! and without fusion (Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test views`

use burn::{
    backend::wgpu::{CubeBackend, WgpuRuntime},
    backend::Wgpu,
    prelude::*,
    tensor::{ops::FloatTensor, TensorPrimitive},
};
use cube_kernels::Views;

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
    check::<CubeBackend<WgpuRuntime, f32, i32, u32>>();
}

#[test]
fn views_hold_their_stretches_through_fusion() {
    check::<Wgpu>();
}
