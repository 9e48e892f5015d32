//! The device: one, standing for an H100/H200.

use cubecl_common::device::{Device, DeviceId};

/// The compile-only device (`--device cuda-compile` of the development builds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CudaCompileDevice;

/// Set apart from the real runtimes' device ids, which number from 0.
const TYPE_ID: u16 = 0xC0DE;

impl Device for CudaCompileDevice {
    fn from_id(_device_id: DeviceId) -> Self {
        Self
    }

    fn to_id(&self) -> DeviceId {
        DeviceId { type_id: TYPE_ID, index_id: 0 }
    }
}

impl burn::tensor::backend::DeviceOps for CudaCompileDevice {}
