//! Every artifact a stage writes is either complete or absent: files are written under a
//! temporary name beside their destination and renamed into place ([`write_atomically`]);
//! directories are built hidden and swapped in whole ([`Staging`]). A killed process leaves at
//! most a hidden leftover that no later stage mistakes for output. Artifacts are named by
//! their sha256 ([`sha256_file`]), which later stages record as lineage.

mod checksum;
mod file;
mod staging;

pub use checksum::{sha256_bytes, sha256_file};
pub use file::write_atomically;
pub use staging::Staging;
