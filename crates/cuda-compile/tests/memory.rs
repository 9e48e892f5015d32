//! The device's memory is CubeCL's account of an 80 GiB card: buffers are counted when made,
//! their space is free again when they are dropped, and the peaks stay (no NVRTC needed: no
//! kernel runs).

use burn::tensor::{Tensor, TensorData};
use cuda_compile::{peaks, CudaCompileDevice, CudaCompileEager};

const MIB: u64 = 1 << 20;

fn upload(mebibytes: usize) -> Tensor<CudaCompileEager, 1> {
    let floats = mebibytes * (1 << 20) / 4;
    Tensor::from_data(TensorData::new(vec![1.0f32; floats], [floats]), &CudaCompileDevice)
}

#[test]
fn buffers_are_counted_while_held_and_peaks_kept() {
    let first = upload(64);
    let after_one = peaks();
    assert_eq!(after_one.card, 80 << 30);
    assert!((64 * MIB..65 * MIB).contains(&after_one.in_use), "{after_one:?}");
    assert!(after_one.reserved >= after_one.in_use, "{after_one:?}");

    // The space of a dropped buffer is taken again: in use never reaches two buffers' worth.
    drop(first);
    let second = upload(64);
    assert!(peaks().in_use < 65 * MIB, "{:?}", peaks());

    // Two held at once are.
    let third = upload(64);
    let both = peaks();
    assert!((128 * MIB..130 * MIB).contains(&both.in_use), "{both:?}");
    drop((second, third));
    assert_eq!(peaks().in_use, both.in_use, "a peak stays after the buffers go");
}

/// CubeCL's "optimized" layout, which burn's `empty_device_dtype` asks for, pads each row on
/// CUDA (this device takes CUDA's policy) to a multiple of its size's next power of two, 16
/// bytes to the 512 of the alignment: GPT-2's 50,257 logits take 50,304 slots. Why
/// cube-kernels allocates what it writes with `empty_device_contiguous_dtype` (clippy.toml).
#[test]
#[allow(clippy::disallowed_methods)]
fn rows_are_padded_unless_asked_for_end_to_end() {
    use burn::tensor::{DType, Shape};
    use burn_cubecl::ops::numeric::{empty_device_contiguous_dtype, empty_device_dtype};
    use cubecl::Runtime;
    use cuda_compile::CudaCompileRuntime;

    let client = CudaCompileRuntime::client(&CudaCompileDevice);
    let strides = |shape: [usize; 2], contiguous: bool| {
        let make = if contiguous { empty_device_contiguous_dtype } else { empty_device_dtype };
        make(client.clone(), CudaCompileDevice, Shape::new(shape), DType::F32).meta.strides().to_vec()
    };
    assert_eq!(strides([3, 50_257], false), [50_304, 1]);
    assert_eq!(strides([4_099, 33], false), [64, 1]);
    assert_eq!(strides([3, 768], false), [768, 1], "a row of 3,072 bytes is a multiple of 512");
    assert_eq!(strides([3, 50_257], true), [50_257, 1]);
    assert_eq!(strides([4_099, 33], true), [33, 1]);
}
