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
