//! Stretches of one flat buffer as tensors of their own shapes, without a copy, in one
//! operation: the train stage's parameters are views of the optimizer's flat buffers, made
//! anew after each update. On fusion a slice and a reshape a parameter are two operations the
//! host records (584 a step at gpt2-medium's shape); here all of a buffer's views are one.

use crate::fusion_op::{register_kernel, Launch};
use burn::tensor::{
    backend::Backend,
    ops::{FloatTensor, FloatTensorOps},
    Shape, Slice,
};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};

pub trait Views: Backend {
    /// `buffer` `[len]`'s stretches `start..start + n` as tensors of `shape` (`n` elements,
    /// row-major), one a `(start, shape)`. Views where the backend makes them: on CubeCL, a
    /// stretch whose ends lie on the device's alignment is the buffer at an offset.
    fn views(buffer: FloatTensor<Self>, stretches: Vec<(usize, Shape)>) -> Vec<FloatTensor<Self>>;
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Views for CubeBackend<R, F, I, BT> {
    fn views(buffer: FloatTensor<Self>, stretches: Vec<(usize, Shape)>) -> Vec<FloatTensor<Self>> {
        stretches
            .into_iter()
            .map(|(start, shape)| {
                let stretch = Slice::from(start..start + shape.num_elements());
                Self::float_reshape(Self::float_slice(buffer.clone(), &[stretch]), shape)
            })
            .collect()
    }
}

impl<B: FusionBackend + Views> Views for Fusion<B> {
    fn views(buffer: FloatTensor<Self>, stretches: Vec<(usize, Shape)>) -> Vec<FloatTensor<Self>> {
        let shapes: Vec<Shape> = stretches.iter().map(|(_, shape)| shape.clone()).collect();
        let launch: Launch<B, _> =
            |stretches: &Vec<(usize, Shape)>, mut inputs| B::views(inputs.float(), stretches.clone());
        register_kernel::<B, _>("views", vec![buffer], &shapes, stretches, launch)
    }
}
