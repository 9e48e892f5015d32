//! What CubeCL's allocator holds on the device: its own count, next to which a process's total
//! (nvidia-smi's) also shows the driver's context and the pools' unused pages.

use burn::tensor::{backend::Backend, Device};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::MemoryUsage;

pub trait DeviceMemory: Backend {
    /// The allocator's count for the calling thread's stream once the device has run the work
    /// queued so far (this waits for it); `None` if the device has failed.
    fn memory_usage(device: &Device<Self>) -> Option<MemoryUsage>;
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> DeviceMemory for CubeBackend<R, F, I, BT> {
    fn memory_usage(device: &Device<Self>) -> Option<MemoryUsage> {
        Self::sync(device).ok()?;
        R::client(device).memory_usage().ok()
    }
}

impl<B: FusionBackend + DeviceMemory> DeviceMemory for Fusion<B> {
    fn memory_usage(device: &Device<Self>) -> Option<MemoryUsage> {
        // Tensors dropped since the last flush are freed when fusion's stream runs their drops.
        Self::sync(device).ok()?;
        B::memory_usage(device)
    }
}
