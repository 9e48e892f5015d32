//! Stretches of one flat buffer as tensors of their own shapes, without a copy, in one
//! operation: the train stage's parameters are views of the optimizer's flat buffers, made
//! anew after each update. On fusion a slice and a reshape a parameter are two operations the
//! host records (584 a step at gpt2-medium's shape); here all of a buffer's views are one.
//!
//! burn's `slice` makes a view only when both of its ends lie on the device's alignment (512
//! bytes on CUDA) and copies otherwise, though a kernel binds a tensor by where it starts (and
//! CubeCL's own `offset_handles` ends views anywhere). gpt2-xl's token embedding (50,257 ×
//! 1,600 elements) and biases (1,600) end off that alignment: each was copied after every
//! update. Here a stretch that starts on the alignment is always a view.

use crate::fusion_op::{register_kernel, Launch};
use burn::tensor::{
    backend::Backend,
    ops::{FloatTensor, FloatTensorOps},
    Shape, Slice,
};
use burn_cubecl::{tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};

pub trait Views: Backend {
    /// `buffer` `[len]`'s stretches `start..start + n` as tensors of `shape` (`n` elements,
    /// row-major), one a `(start, shape)`. Views where the backend makes them: on CubeCL, a
    /// stretch that starts on the device's alignment is the buffer at an offset.
    fn views(buffer: FloatTensor<Self>, stretches: Vec<(usize, Shape)>) -> Vec<FloatTensor<Self>>;
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Views for CubeBackend<R, F, I, BT> {
    fn views(buffer: FloatTensor<Self>, stretches: Vec<(usize, Shape)>) -> Vec<FloatTensor<Self>> {
        let alignment = buffer.client.properties().memory.alignment;
        let element = buffer.dtype.size() as u64;
        let buffer_start = buffer.handle.offset_start.unwrap_or(0);
        let len = buffer.meta.shape().num_elements();
        stretches
            .into_iter()
            .map(|(start, shape)| {
                let end = start + shape.num_elements();
                assert!(end <= len, "the stretch {start}..{end} lies outside the buffer of {len}");
                let offset_start = start as u64 * element;
                if buffer.is_contiguous() && (buffer_start + offset_start).is_multiple_of(alignment) {
                    let handle =
                        buffer.handle.clone().offset_start(offset_start).offset_end((len - end) as u64 * element);
                    CubeTensor::new_contiguous(
                        buffer.client.clone(),
                        buffer.device.clone(),
                        shape,
                        handle,
                        buffer.dtype,
                    )
                } else {
                    Self::float_reshape(Self::float_slice(buffer.clone(), &[Slice::from(start..end)]), shape)
                }
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
