//! CPU kernels on ndarray views, for the products and activations where burn 0.21's CPU backend
//! copies its operands (see BENCHMARKS.md, "Generation on the CPU"). The model crate calls them
//! through its CPU backend; nothing here knows about burn or the model.
//!
//! - [`matmul`]: `lhs · rhs` for views of any strides, copying neither; products of a few rows
//!   (decoding) go to the kernels of [`few_rows`], shared out among threads.
//! - [`masked_attention`]: attention's core, one thread per (row, head).
//! - [`gelu_tanh_in_place`]: GPT-2's GELU in one pass.
//! - [`dropout_keeps`]: dropout's masks from counters ([`philox4x32_10`]), the same on every
//!   thread and device.
//!
//! [`AdamWStep`] is no kernel: the scalars of an AdamW update, which the CubeCL kernels take too.
//!
//! This crate holds the workspace's only `unsafe` code: the SIMD kernels of [`few_rows`], behind
//! safe functions that check shapes and strides and borrow what the kernels read and write.
#![deny(unsafe_op_in_unsafe_fn)]

mod adamw;
mod attention;
mod dropout;
pub mod few_rows;
mod gelu;
mod philox;
mod product;

pub use adamw::AdamWStep;
pub use attention::masked_attention;
pub use dropout::{drop_threshold, dropout_keeps, MaskStream};
pub use gelu::{gelu_tanh_in_place, GELU_CUBIC, GELU_SQRT_2_OVER_PI};
pub use philox::philox4x32_10;
pub use product::{matmul, matmul_on_this_thread};
