//! The device's dropout masks against the CPU's (`kernels::dropout_keeps`), word for word, on
//! burn's wgpu backend with and without fusion (Mesa's software Vulkan driver on a machine
//! without a GPU). `cargo test -p cube-kernels --features wgpu --test dropout`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{prelude::*, tensor::TensorPrimitive};
use cube_kernels::DropoutKeeps;
mod support;

use kernels::MaskStream;
use support::{Eager, Fused};

fn check<B: DropoutKeeps>(stream: MaskStream, p: f64, len: usize) {
    let kept = (1.0 / (1.0 - p)) as f32;
    let drawn = B::dropout_keeps(stream, p, kept, len, &Default::default());
    let drawn = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(drawn)).into_data().to_vec::<f32>().unwrap();
    let mut expected = vec![f32::NAN; len];
    kernels::dropout_keeps(stream, p, &mut expected);
    expected.iter_mut().for_each(|keep| *keep *= kept);
    assert_eq!(drawn.len(), len);
    if let Some(i) = (0..len).find(|&i| drawn[i] != expected[i]) {
        panic!(
            "{stream:?}, p {p}, {len} elements: element {i} is {} on the device, {} on the CPU",
            drawn[i], expected[i]
        );
    }
}

/// Lengths inside one call, across a partial last call, and of many cubes (a launch's second
/// dimension starts past 65,535 cubes, 268M bytes of f32: more than wgpu allocates at once);
/// every bit of the key and counter words in use.
fn check_all<B: DropoutKeeps>() {
    let stream = MaskStream { key: [0xA409_3822, 0x299F_31D0], stream: [0xFFFF_FFFF, 7, 0x8000_0001] };
    for (p, len) in [(0.1, 1), (0.5, 3), (0.1, 4), (0.9, 1027), (0.1, 16_777_221)] {
        check::<B>(stream, p, len);
    }
}

#[test]
fn matches_the_cpu_on_cubecl() {
    check_all::<Eager>();
}

#[test]
fn matches_the_cpu_through_fusion() {
    check_all::<Fused>();
}
