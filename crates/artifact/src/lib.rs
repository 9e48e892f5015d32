//! Every artifact a stage writes is either complete or absent: files are written under a
//! temporary name beside their destination and renamed into place ([`write_atomically`]);
//! directories are built hidden and swapped in whole ([`Staging`]). A killed process leaves at
//! most a hidden leftover that no later stage mistakes for output, and that the next write of
//! the same output removes. A stage replaces only its own outputs ([`OutputDir`]), one run at a time
//! ([`OutputLock`]). Artifacts are named by their sha256 ([`sha256_file`]), which later stages
//! record as lineage.

mod checksum;
mod file;
mod leftovers;
mod lock;
mod ownership;
mod space;
mod staging;

pub use checksum::{sha256_bytes, sha256_file};
pub use file::write_atomically;
pub use leftovers::{remove_dead_leftovers, Leftovers};
pub use lock::OutputLock;
pub use ownership::OutputDir;
pub use space::{ensure_free, size};
pub use staging::Staging;
