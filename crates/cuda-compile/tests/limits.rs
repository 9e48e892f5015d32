//! The device refuses what an H100 would: a kernel asking for more shared memory than a cube
//! may have is reported as failed, before NVRTC (which this test does not need).

use burn::tensor::Tensor as BurnTensor;
use cubecl::prelude::*;
use cuda_compile::{report, CudaCompileDevice, CudaCompileEager, CudaCompileRuntime};

/// 240 KB of shared memory: above the 227 KiB of an H100's cube.
#[cube(launch)]
fn hungry(output: &mut Tensor<f32>) {
    let mut shared = SharedMemory::<f32>::new(60_000usize);
    shared[UNIT_POS as usize] = output[0];
    sync_cube();
    output[UNIT_POS as usize] = shared[0];
}

#[test]
fn a_kernel_beyond_the_cards_shared_memory_is_reported() {
    let output = BurnTensor::<CudaCompileEager, 1>::empty([32], &CudaCompileDevice).into_primitive().tensor();
    hungry::launch::<CudaCompileRuntime>(
        &output.client.clone(),
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(32),
        output.into_tensor_arg(),
    );
    let report = report();
    assert!(report.compiled.is_empty(), "{:?}", report.compiled);
    let [failure] = report.failures.as_slice() else { panic!("one failure: {:?}", report.failures) };
    assert_eq!(failure.kernel, "hungry::Hungry");
    assert!(failure.error.contains("240000 bytes of shared memory, above the 232448"), "{}", failure.error);
}
