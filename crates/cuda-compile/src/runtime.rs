//! The CubeCL runtime: CUDA's compiler and limits, the compile-only server.

use crate::{device::CudaCompileDevice, server::CompileServer};
use cubecl::{
    client::ComputeClient,
    cuda::{CudaCompiler, CudaRuntime},
    ir::TargetProperties,
    server::ComputeServer,
    zspace::{Shape, Strides},
    Runtime,
};
use cubecl_common::device::DeviceId;

/// burn's CUDA runtime as far as compiling goes; see the crate's documentation.
#[derive(Debug, Clone)]
pub struct CudaCompileRuntime;

impl Runtime for CudaCompileRuntime {
    type Compiler = CudaCompiler;
    type Server = CompileServer;
    type Device = CudaCompileDevice;

    fn client(device: &Self::Device) -> ComputeClient<Self> {
        ComputeClient::load(device)
    }

    fn name(_client: &ComputeClient<Self>) -> &'static str {
        "cuda-compile"
    }

    fn require_array_lengths() -> bool {
        CudaRuntime::require_array_lengths()
    }

    fn max_cube_count() -> (u32, u32, u32) {
        CudaRuntime::max_cube_count()
    }

    fn can_read_tensor(shape: &Shape, strides: &Strides) -> bool {
        CudaRuntime::can_read_tensor(shape, strides)
    }

    fn target_properties() -> TargetProperties {
        CudaRuntime::target_properties()
    }

    fn enumerate_devices(_type_id: u16, _info: &<Self::Server as ComputeServer>::Info) -> Vec<DeviceId> {
        vec![cubecl_common::device::Device::to_id(&CudaCompileDevice)]
    }
}
