//! What cubecl-cuda 0.10 finds on an H100 or H200 (compute capability 9.0) when it starts
//! (`cubecl-cuda/src/runtime.rs`, `DeviceService::init`): the device properties that decide
//! which kernels burn chooses and how CubeCL writes them, and the compiler's options. Copied
//! for capability 9.0, with the figures the driver reports on those cards.

use cubecl::ir::{
    features::{AtomicUsage, Plane, Tma, TypeUsage},
    BarrierLevel, DeviceProperties, ElemType, FloatKind, HardwareProperties, MemoryDeviceProperties, OpaqueType,
    SemanticType, StorageType, Type, VectorSize,
};
use cubecl_common::profile::TimingMethod;
use cubecl_cpp::{
    cuda::arch::CudaArchitecture,
    register_supported_types,
    shared::{
        register_mma_features, register_scaled_mma_features, register_wmma_features, CompilationOptions, CppCompiler,
        CppSupportedFeatures, SupportedMmaCombinations, SupportedScaledMmaCombinations,
    },
    Dialect,
};
use cudarc::driver::sys::CUDA_VERSION;

/// Compute capability 9.0: Hopper.
pub const ARCH_VERSION: u32 = 90;

/// NVRTC's target, as cubecl-cuda names it for capability 9.0 and above.
pub const GPU_ARCHITECTURE: &str = "--gpu-architecture=sm_90a";

/// The row alignment `cuMemAllocPitch` gives, which cubecl-cuda lays tensors out by.
pub const MEMORY_ALIGNMENT: u64 = 512;

pub fn compilation_options() -> CompilationOptions {
    CompilationOptions {
        warp_size: 32,
        supports_features: CppSupportedFeatures {
            fast_math: true,
            grid_constants: true,
            fast_tanh: CUDA_VERSION >= 12080,
            clusters: true,
            elect_sync: true,
        },
    }
}

/// `memory`: the card's memory in bytes, of which cubecl-cuda takes pages of a quarter.
pub fn device_properties(memory: u64) -> DeviceProperties {
    let tensor_cores = supported_by(&cubecl::cuda::CudaCompiler::default());
    let hardware = HardwareProperties {
        load_width: 128,
        plane_size_min: 32,
        plane_size_max: 32,
        max_bindings: cubecl::cuda::CUDA_MAX_BINDINGS,
        // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN on H100 and H200: 227 KiB.
        max_shared_memory_size: 232_448,
        max_cube_count: (i32::MAX as u32, u16::MAX as u32, u16::MAX as u32),
        max_units_per_cube: 1024,
        max_cube_dim: (1024, 1024, 64),
        num_streaming_multiprocessors: Some(132),
        num_tensor_cores: Some(4),
        min_tensor_cores_dim: if tensor_cores.wmma.is_empty() { None } else { Some(8) },
        num_cpu_cores: None,
        max_vector_size: VectorSize::MAX,
    };
    let memory = MemoryDeviceProperties { max_page_size: memory / 4, alignment: MEMORY_ALIGNMENT };
    let mut properties = DeviceProperties::new(Default::default(), memory, hardware, TimingMethod::System);
    register_supported_types(&mut properties);
    properties.register_type_usage(ElemType::Float(FloatKind::TF32), TypeUsage::Conversion);
    let atomic =
        |kind, vector_size| Type::new(StorageType::Atomic(ElemType::Float(kind))).with_vector_size(vector_size);
    properties.register_atomic_type_usage(atomic(FloatKind::F64, 1), AtomicUsage::Add | AtomicUsage::LoadStore);
    for vector_size in [1, 2] {
        properties
            .register_atomic_type_usage(atomic(FloatKind::F16, vector_size), AtomicUsage::Add | AtomicUsage::LoadStore);
    }
    for vector_size in [2, 4] {
        properties
            .register_atomic_type_usage(atomic(FloatKind::F32, vector_size), AtomicUsage::LoadStore | AtomicUsage::Add);
    }
    properties.register_semantic_type(SemanticType::Pipeline);
    properties.register_type_usage(OpaqueType::Barrier(BarrierLevel::Unit), TypeUsage::Buffer);
    properties.register_type_usage(OpaqueType::Barrier(BarrierLevel::Cube), TypeUsage::Buffer);
    properties.features.plane.insert(Plane::Sync);
    for kind in [FloatKind::F16, FloatKind::BF16] {
        properties.features.matmul.ldmatrix.insert(ElemType::Float(kind).into());
        properties.features.matmul.stmatrix.insert(ElemType::Float(kind).into());
    }
    properties.features.copy_async = true;
    for kind in [FloatKind::E4M3, FloatKind::E5M2] {
        properties.register_type_usage(ElemType::Float(kind), TypeUsage::Conversion | TypeUsage::Buffer);
    }
    properties.features.tma.insert(Tma::Base);
    properties.register_semantic_type(SemanticType::TensorMap);
    properties.features.cube_cluster = true;
    properties.features.memory_reinterpret = true;
    properties.features.alignment = true;
    properties.features.plane.insert(Plane::Ops);
    properties.features.plane.insert(Plane::NonUniformControlFlow);
    register_wmma_features(tensor_cores.wmma, &mut properties);
    register_mma_features(tensor_cores.mma, &mut properties);
    register_scaled_mma_features(tensor_cores.scaled_mma, &mut properties);
    properties
}

/// The tensor cores' instructions and shapes that `compiler` can write for capability 9.0.
struct TensorCores {
    wmma: SupportedMmaCombinations,
    mma: SupportedMmaCombinations,
    scaled_mma: SupportedScaledMmaCombinations,
}

/// Generic so that it asks the dialect cubecl-cuda was built with (its `ptx-wmma` feature
/// chooses it).
fn supported_by<D: Dialect<Architecture = CudaArchitecture>>(_compiler: &CppCompiler<D>) -> TensorCores {
    let arch = CudaArchitecture { version: ARCH_VERSION };
    TensorCores {
        wmma: D::supported_wmma_combinations(&arch),
        mma: D::supported_mma_combinations(&arch),
        scaled_mma: D::supported_scaled_mma_combinations(&arch),
    }
}
