//! The sum of a buffer's squares on the device against f64 sums on the host, on burn's wgpu
//! backend with and without fusion (Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test sum_of_squares`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

mod support;

use burn::prelude::*;
use cube_kernels::{DeviceMemory, SumOfSquares};
use support::{assert_close, host_primitive, normal, primitive, Eager, Fused};

fn check<B: SumOfSquares>(len: usize) {
    let values = normal(len, len as u64);
    let x = Tensor::<B, 1>::from_data(TensorData::new(values.clone(), [len]), &Default::default());
    let expected: f64 = values.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let actual = host_primitive::<B, 1>(B::sum_of_squares(primitive(x)));
    assert_close(&format!("the sum of {len} squares"), &[expected], &actual, 1e-6);
}

/// No buffer of the squares: what the kernel is for. Counted in CubeCL's persistent pool, which
/// gives each allocation its own buffer of its exact size and keeps it.
fn takes_no_buffer_of_the_squares<B: SumOfSquares + DeviceMemory>() {
    let device = Default::default();
    B::memory_persistent_allocations(&device, (), |()| {
        let len = 1 << 20;
        let x = Tensor::<B, 1>::from_data(TensorData::new(normal(len, 7), [len]), &device);
        let reserved = || B::memory_usage(&device).expect("CubeCL counts its memory").bytes_reserved;
        let before = reserved();
        let sum = B::sum_of_squares(primitive(x));
        let after = reserved();
        // The blocks' sums (64 of them) and the total; the squares would take 4 MiB.
        assert!(after - before < 8192, "the sum took {} bytes", after - before);
        drop(sum);
    });
}

/// One test, so that no other test's buffers come and go while the allocator's count is read.
#[test]
fn sums_squares_as_f64_does_with_and_without_fusion() {
    takes_no_buffer_of_the_squares::<Eager>();
    takes_no_buffer_of_the_squares::<Fused>();
    // One element, part of a block, one block, a block and one, and several blocks whose sums
    // take a second pass.
    for len in [1, 1000, 16_384, 16_385, 1_000_003] {
        check::<Eager>(len);
        check::<Fused>(len);
    }
}
