//! The device's memory as cubecl-cuda would manage it, with no bytes behind it: every buffer a
//! stage asks for goes through CubeCL's memory management, configured as cubecl-cuda configures
//! it for a card of the size asked for (`cubecl-cuda/src/compute/stream.rs`: its pools, pages
//! of up to a quarter of the card, 512-byte alignment), so the pools reserve and slice as they
//! would on that card. The peaks of what is in use and what is reserved are kept for [`peaks`]:
//! what a training step would hold on the card, measured without one.

use crate::{hopper, CudaCompileDevice, CudaCompileRuntime};
use cubecl::{ir::MemoryDeviceProperties, Runtime};
use cubecl_runtime::{
    logging::ServerLogger,
    memory_management::{
        ManagedMemoryHandle, MemoryAllocationMode, MemoryConfiguration, MemoryManagement, MemoryManagementOptions,
        MemoryUsage,
    },
    server::IoError,
    storage::{ComputeStorage, StorageHandle, StorageId, StorageUtilization},
};
use std::sync::{Arc, Mutex};

/// The environment variable giving the card's memory in GiB (default: an H100 SXM's 80). It
/// decides the pools' page sizes; nothing is refused past it, [`peaks`] says how far it went.
pub const MEMORY_VARIABLE: &str = "CUDA_COMPILE_MEMORY_GIB";

const DEFAULT_GIB: f64 = 80.0;

/// The card's memory in bytes, from [`MEMORY_VARIABLE`].
pub(crate) fn card_bytes() -> u64 {
    let gib = match std::env::var(MEMORY_VARIABLE) {
        Ok(text) => match text.parse::<f64>() {
            Ok(gib) if gib > 0.0 => gib,
            _ => panic!("{MEMORY_VARIABLE}={text}: expected the card's memory in GiB, such as 11 or 80"),
        },
        Err(_) => DEFAULT_GIB,
    };
    (gib * f64::from(1 << 30)) as u64
}

/// The most a stage had in use and CubeCL had reserved at once, in bytes, on a card of `card`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peaks {
    pub in_use: u64,
    pub reserved: u64,
    pub card: u64,
}

static PEAKS: Mutex<Peaks> = Mutex::new(Peaks { in_use: 0, reserved: 0, card: 0 });

/// The peaks so far, once the work queued before has reached the device.
pub fn peaks() -> Peaks {
    if let Err(error) = CudaCompileRuntime::client(&CudaCompileDevice).flush() {
        panic!("the cuda-compile device's queue: {error}");
    }
    *PEAKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// CubeCL's memory management over storage with no bytes, as the server's one stream has it.
#[derive(Debug)]
pub(crate) struct DeviceMemory {
    management: MemoryManagement<NoMemory>,
}

impl DeviceMemory {
    pub(crate) fn new(properties: &MemoryDeviceProperties, card: u64) -> Self {
        PEAKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).card = card;
        let management = MemoryManagement::from_configuration(
            NoMemory,
            properties,
            MemoryConfiguration::default(),
            Arc::new(ServerLogger::default()),
            MemoryManagementOptions::new("Main GPU Memory"),
        );
        Self { management }
    }

    /// Give `memory` `size` bytes, as cubecl-cuda's `initialize_memory` does.
    pub(crate) fn initialize(&mut self, memory: ManagedMemoryHandle, size: u64) {
        let reserved = self.management.reserve(size).unwrap_or_else(|error| panic!("reserving {size} bytes: {error}"));
        self.management.bind(reserved, memory, 0).unwrap_or_else(|error| panic!("binding {size} bytes: {error}"));
        let usage = self.management.memory_usage();
        let mut peaks = PEAKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        peaks.in_use = peaks.in_use.max(usage.bytes_in_use);
        peaks.reserved = peaks.reserved.max(usage.bytes_reserved);
    }

    pub(crate) fn usage(&self) -> MemoryUsage {
        self.management.memory_usage()
    }

    pub(crate) fn cleanup(&mut self) {
        self.management.cleanup(true);
    }

    pub(crate) fn mode(&mut self, mode: MemoryAllocationMode) {
        self.management.mode(mode);
    }
}

/// The server's storage: none. Tensors have handles and no bytes behind them.
#[derive(Debug)]
pub struct NoMemory;

impl ComputeStorage for NoMemory {
    type Resource = ();

    fn alignment(&self) -> usize {
        hopper::MEMORY_ALIGNMENT as usize
    }

    fn get(&mut self, _handle: &StorageHandle) -> Self::Resource {}

    fn alloc(&mut self, size: u64) -> Result<StorageHandle, IoError> {
        Ok(StorageHandle::new(StorageId::new(), StorageUtilization { offset: 0, size }))
    }

    fn dealloc(&mut self, _id: StorageId) {}

    fn flush(&mut self) {}
}
