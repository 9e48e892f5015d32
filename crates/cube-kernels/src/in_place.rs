//! Buffers a kernel writes in place.

use burn_cubecl::{tensor::CubeTensor, CubeRuntime};

/// `buffer` itself where nothing else holds it and its elements lie in order, for a kernel
/// that rewrites it element by element; a copy of it otherwise, which the caller's holders
/// never see written.
pub(crate) fn writable_in_order<R: CubeRuntime>(buffer: CubeTensor<R>) -> CubeTensor<R> {
    if is_writable_in_order(&buffer) {
        buffer
    } else {
        buffer.copy()
    }
}

/// Whether nothing else holds `buffer` and its elements lie in order.
pub(crate) fn is_writable_in_order<R: CubeRuntime>(buffer: &CubeTensor<R>) -> bool {
    buffer.can_mut() && buffer.is_contiguous()
}
