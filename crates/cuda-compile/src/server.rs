//! The server behind the device: it runs nothing and keeps no bytes, only CubeCL's account of
//! its memory (crate::memory); each distinct kernel launched on it is written as CUDA C++ and
//! compiled by NVRTC, once.

use crate::{
    hopper,
    memory::{self, DeviceMemory, NoMemory},
    nvrtc,
};
use cubecl::{cuda::CudaCompiler, CubeTask};
use cubecl_common::{
    backtrace::BackTrace,
    bytes::Bytes,
    device::{DeviceId, DeviceService},
    future::DynFut,
    profile::ProfileDuration,
    stream_id::StreamId,
};
use cubecl_cpp::shared::CompilationOptions;
use cubecl_runtime::{
    allocator::PitchedMemoryLayoutPolicy,
    id::KernelId,
    logging::ServerLogger,
    memory_management::{ManagedMemoryHandle, MemoryAllocationMode, MemoryUsage},
    server::{
        Binding, ComputeServer, CopyDescriptor, CubeCount, ExecutionMode, KernelArguments, ProfileError,
        ProfilingToken, ServerCommunication, ServerError, ServerUtilities,
    },
    storage::ManagedResource,
    timestamp_profiler::TimestampProfiler,
    validation::{validate_cube_dim, validate_units},
};
use std::{collections::HashSet, sync::Arc, time::Instant};

#[derive(Debug)]
pub struct CompileServer {
    utilities: Arc<ServerUtilities<Self>>,
    options: CompilationOptions,
    /// Where CUDA's headers are, found at the first compilation (a kernel refused before
    /// NVRTC needs none).
    include_paths: Option<Vec<String>>,
    /// The kernels compiled already: a kernel is compiled once, however often it is launched.
    compiled: HashSet<KernelId>,
    timestamps: TimestampProfiler,
    memory: DeviceMemory,
}

impl DeviceService for CompileServer {
    fn init(_device_id: DeviceId) -> Self {
        let card = memory::card_bytes();
        let properties = hopper::device_properties(card);
        let memory = DeviceMemory::new(&properties.memory, card);
        let layout = PitchedMemoryLayoutPolicy::new(hopper::MEMORY_ALIGNMENT as usize);
        let utilities = ServerUtilities::new(properties, Arc::new(ServerLogger::default()), (), layout);
        Self {
            utilities: Arc::new(utilities),
            options: hopper::compilation_options(),
            include_paths: None,
            compiled: HashSet::new(),
            timestamps: TimestampProfiler::default(),
            memory,
        }
    }

    fn utilities(&self) -> Arc<dyn std::any::Any + Send + Sync> {
        ComputeServer::utilities(self) as Arc<dyn std::any::Any + Send + Sync>
    }
}

impl ServerCommunication for CompileServer {
    const SERVER_COMM_ENABLED: bool = false;
}

impl CompileServer {
    /// Write `kernel` for CUDA and compile it, checking on the way what cubecl-cuda checks
    /// before it loads a kernel (its cube's size, its shared memory).
    fn compile(&mut self, kernel: &dyn CubeTask<CudaCompiler>, mode: ExecutionMode, name: &str) -> Result<(), String> {
        let properties = &self.utilities.properties;
        let id = kernel.id();
        validate_cube_dim(properties, &id).map_err(|error| error.to_string())?;
        validate_units(properties, &id).map_err(|error| error.to_string())?;
        let compiled = kernel
            .compile(&mut CudaCompiler::default(), &self.options, mode, kernel.address_type())
            .map_err(|error| error.to_string())?;
        let shared = compiled.repr.as_ref().map_or(0, |repr| repr.shared_memory_size());
        let most = properties.hardware.max_shared_memory_size;
        if shared > most {
            return Err(format!("{shared} bytes of shared memory, above the {most} a cube may have"));
        }
        nvrtc::compile(name, &compiled.source, self.include_paths.get_or_insert_with(nvrtc::include_paths))
    }
}

impl ComputeServer for CompileServer {
    type Kernel = Box<dyn CubeTask<CudaCompiler>>;
    type Storage = NoMemory;
    type MemoryLayoutPolicy = PitchedMemoryLayoutPolicy;
    type Info = ();

    fn initialize_memory(&mut self, memory: ManagedMemoryHandle, size: u64, _stream_id: StreamId) {
        self.memory.initialize(memory, size);
    }

    fn logger(&self) -> Arc<ServerLogger> {
        self.utilities.logger.clone()
    }

    fn utilities(&self) -> Arc<ServerUtilities<Self>> {
        self.utilities.clone()
    }

    /// Zeros: nothing was computed. Losses read 0, sampled tokens are token 0.
    fn read(
        &mut self,
        descriptors: Vec<CopyDescriptor>,
        _stream_id: StreamId,
    ) -> DynFut<Result<Vec<Bytes>, ServerError>> {
        let zeros = descriptors
            .iter()
            .map(|descriptor| Bytes::from_bytes_vec(vec![0; descriptor.shape.num_elements() * descriptor.elem_size]))
            .collect();
        Box::pin(async move { Ok(zeros) })
    }

    fn write(&mut self, _descriptors: Vec<(CopyDescriptor, Bytes)>, _stream_id: StreamId) {}

    fn sync(&mut self, _stream_id: StreamId) -> DynFut<Result<(), ServerError>> {
        Box::pin(async move { Ok(()) })
    }

    fn get_resource(&mut self, _binding: Binding, _stream_id: StreamId) -> Result<ManagedResource<()>, ServerError> {
        Err(ServerError::Generic {
            reason: "the cuda-compile device keeps no memory to hand out".to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    // The trait's contract is about what a kernel may read and write when it runs; none runs here.
    #[allow(unsafe_code)]
    unsafe fn launch(
        &mut self,
        kernel: Self::Kernel,
        _count: CubeCount,
        _bindings: KernelArguments,
        mode: ExecutionMode,
        _stream_id: StreamId,
    ) {
        let name = short_name(kernel.name());
        nvrtc::count_launch(&name);
        if self.compiled.insert(kernel.id()) {
            let start = Instant::now();
            let outcome = self.compile(kernel.as_ref(), mode, &name);
            nvrtc::record(name, outcome, start.elapsed().as_secs_f64());
        }
    }

    fn flush(&mut self, _stream_id: StreamId) -> Result<(), ServerError> {
        Ok(())
    }

    fn memory_usage(&mut self, _stream_id: StreamId) -> Result<MemoryUsage, ServerError> {
        Ok(self.memory.usage())
    }

    fn memory_cleanup(&mut self, _stream_id: StreamId) {
        self.memory.cleanup();
    }

    fn start_profile(&mut self, _stream_id: StreamId) -> Result<ProfilingToken, ServerError> {
        Ok(self.timestamps.start())
    }

    fn end_profile(&mut self, _stream_id: StreamId, token: ProfilingToken) -> Result<ProfileDuration, ProfileError> {
        self.timestamps.stop(token)
    }

    fn allocation_mode(&mut self, mode: MemoryAllocationMode, _stream_id: StreamId) {
        self.memory.mode(mode);
    }
}

/// A kernel's type name without its crate's path and its type parameters:
/// `cube_kernels::most_likely::most_likely_kernel::MostLikelyKernel<f32, …>` is
/// `most_likely_kernel::MostLikelyKernel`.
fn short_name(type_name: &str) -> String {
    let path = type_name.split('<').next().unwrap_or(type_name);
    let segments: Vec<&str> = path.rsplitn(3, "::").collect();
    match segments.as_slice() {
        [name, module, ..] => format!("{module}::{name}"),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::short_name;

    #[test]
    fn kernels_are_named_by_their_module_and_type() {
        assert_eq!(
            short_name("cube_kernels::most_likely::most_likely_kernel::MostLikelyKernel<f32, cuda_compile::X>"),
            "most_likely_kernel::MostLikelyKernel"
        );
        assert_eq!(short_name("Kernel<f32>"), "Kernel");
    }
}
