//! The embedding lookup's gradient against the host's sums (each looked-up row added in order
//! into zeros, as burn's `select_assign` adds them), on burn's wgpu backend with and without
//! fusion (Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test embedding_gradient`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

mod support;

use burn::{prelude::*, tensor::TensorPrimitive};
use cube_kernels::EmbeddingGradient;
use support::{normal, primitive, Eager, Fused};

/// Row `indices[i]` of `[rows, d]` zeros plus row `i` of `d_output`, in the order of `i`.
fn on_the_host(d_output: &[f32], indices: &[i64], rows: usize, d: usize) -> Vec<f32> {
    let mut gradient = vec![0.0f32; rows * d];
    for (i, &index) in indices.iter().enumerate() {
        for column in 0..d {
            gradient[index as usize * d + column] += d_output[i * d + column];
        }
    }
    gradient
}

fn check<B: EmbeddingGradient>(positions: usize, rows: usize, d: usize, transposed: bool) {
    let device = Default::default();
    let seed = (positions * rows * d) as u64;
    let values = normal(positions * d, seed);
    // Indices with repeats (every 7th position looks up row 3; the rest spread over the rows,
    // some rows never), as a batch's tokens repeat.
    let indices: Vec<i64> =
        (0..positions).map(|i| if i % 7 == 0 { 3 } else { ((i * 31 + i / 5) % rows) as i64 }).collect();
    let d_output = if transposed {
        let stored: Vec<f32> = (0..d * positions).map(|k| values[(k % positions) * d + k / positions]).collect();
        Tensor::<B, 2>::from_data(TensorData::new(stored, [d, positions]), &device).transpose()
    } else {
        Tensor::<B, 2>::from_data(TensorData::new(values.clone(), [positions, d]), &device)
    };
    let index_tensor = Tensor::<B, 1, Int>::from_data(TensorData::new(indices.clone(), [positions]), &device);
    let gradient = B::embedding_gradient(primitive(d_output), index_tensor.into_primitive(), rows);
    let gradient = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(gradient));
    assert_eq!(gradient.dims(), [rows, d]);
    assert_eq!(
        gradient.into_data().to_vec::<f32>().unwrap(),
        on_the_host(&values, &indices, rows, d),
        "{positions} positions, {rows} rows, {d} columns, transposed {transposed}"
    );
}

fn check_shapes<B: EmbeddingGradient>() {
    // One position; more positions than rows (each row many times); gpt2's width; wider than
    // a pass of the cube's units (two passes, the second cut short); a transposed gradient.
    for (positions, rows, d) in [(1, 5, 3), (300, 50, 17), (70, 1_000, 768), (40, 9, 1_100)] {
        check::<B>(positions, rows, d, false);
    }
    check::<B>(65, 20, 33, true);
}

#[test]
fn embedding_gradient_adds_each_looked_up_row_in_order() {
    check_shapes::<Eager>();
    check_shapes::<Fused>();
}
