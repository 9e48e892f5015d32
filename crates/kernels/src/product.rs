//! Matrix products on ndarray views of any strides, with no copy of either operand: products of
//! a few rows go to the kernels of [`crate::few_rows`], the rest to matrixmultiply (ndarray's
//! `dot`).

use crate::few_rows;
use ndarray::{parallel::prelude::*, Array2, ArrayView2, Axis};

/// Products with at most this many rows go to the kernels of [`crate::few_rows`], which read
/// the weight where it lies, at memory speed; from about 64 rows on matrixmultiply (which packs
/// the weight first) is the faster (2-core x86-64, see BENCHMARKS.md).
const FEW_ROWS: usize = 32;

/// The few-row kernels run on one thread, so the weight is shared out among threads in blocks
/// of this many rows: contiguous in memory, and within the 2nd-level cache. A fixed size, not
/// one per thread, so that the numbers do not depend on how many threads there are.
const BLOCK: usize = 128;

/// `lhs · rhs` for views of any strides (a transposed weight included), copying neither, on
/// all threads.
pub fn matmul(lhs: ArrayView2<'_, f32>, rhs: ArrayView2<'_, f32>) -> Array2<f32> {
    let ((m, k), (rhs_rows, n)) = (lhs.dim(), rhs.dim());
    assert_eq!(k, rhs_rows, "matrix product of [{m}, {k}] and [{rhs_rows}, {n}]");
    let Some(weight) = few_row_weight(lhs, rhs) else {
        return lhs.dot(&rhs);
    };
    let lhs = lhs.as_standard_layout();
    let lhs = lhs.view();
    if weight == Weight::Transposed {
        // A transposed weight: blocks of its rows (our columns), each its own outputs.
        let mut out = Array2::<f32>::zeros((m, n));
        out.axis_chunks_iter_mut(Axis(1), BLOCK)
            .into_par_iter()
            .zip(rhs.reversed_axes().axis_chunks_iter(Axis(0), BLOCK))
            .for_each(|(out, weight)| {
                touch(weight, m);
                few_rows::times_transposed_weight(lhs, weight, out);
            });
        out
    } else {
        // Blocks of the weight's rows, each a partial sum, added up in order.
        let partials: Vec<Array2<f32>> = lhs
            .axis_chunks_iter(Axis(1), BLOCK)
            .into_par_iter()
            .zip(rhs.axis_chunks_iter(Axis(0), BLOCK))
            .map(|(lhs, weight)| {
                let mut partial = Array2::<f32>::zeros((m, n));
                touch(weight, m);
                few_rows::times_weight(lhs, weight, partial.view_mut());
                partial
            })
            .collect();
        partials.into_iter().reduce(|sum, partial| sum + partial).unwrap_or_else(|| Array2::zeros((m, n)))
    }
}

/// `lhs · rhs` on the calling thread, for products too small to share out (attention's, per
/// row and head).
pub fn matmul_on_this_thread(lhs: ArrayView2<'_, f32>, rhs: ArrayView2<'_, f32>) -> Array2<f32> {
    let lhs_rows_contiguous = lhs.ncols() <= 1 || lhs.strides()[1] == 1;
    let weight = few_row_weight(lhs, rhs).filter(|_| lhs_rows_contiguous);
    let mut out = Array2::<f32>::zeros((lhs.nrows(), rhs.ncols()));
    match weight {
        Some(Weight::Transposed) => few_rows::times_transposed_weight(lhs, rhs.reversed_axes(), out.view_mut()),
        Some(Weight::Rows) => few_rows::times_weight(lhs, rhs, out.view_mut()),
        None => return lhs.dot(&rhs),
    }
    out
}

/// How the right-hand side of a product lies for the few-row kernels.
#[derive(Clone, Copy, PartialEq)]
enum Weight {
    /// Rows contiguous: `x · W`.
    Rows,
    /// Columns contiguous: `x · Wᵀ` for a `W` with contiguous rows (the LM head).
    Transposed,
}

/// The few-row kernels' view of `rhs`, or `None` where they do not apply: `lhs` has more than
/// [`FEW_ROWS`] rows, or `rhs` has neither its rows nor its columns contiguous.
fn few_row_weight(lhs: ArrayView2<'_, f32>, rhs: ArrayView2<'_, f32>) -> Option<Weight> {
    match rhs.strides() {
        _ if lhs.nrows() > FEW_ROWS => None,
        [1, _] => Some(Weight::Transposed),
        [_, 1] => Some(Weight::Rows),
        _ => None,
    }
}

/// For products of several rows, reads one float of every cache line of `block` (a contiguous
/// block of a weight) front to back first, so that the kernels, which read it in column tiles,
/// find it in the cache: the memory prefetcher follows a stream front to back, not the tiles.
/// For one row the kernels are the faster alone.
fn touch(block: ArrayView2<'_, f32>, rows: usize) {
    if rows < TOUCH_FROM_ROWS {
        return;
    }
    let mut sum = 0.0f32;
    for row in block.rows() {
        for value in row.iter().step_by(16) {
            sum += value;
        }
    }
    std::hint::black_box(sum);
}

const TOUCH_FROM_ROWS: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn matrix(rows: usize, columns: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, columns), |(i, j)| ((i * 31 + j * 17 + seed) % 23) as f32 / 11.0 - 1.0)
    }

    fn assert_close(actual: &Array2<f32>, expected: &Array2<f32>, what: &str) {
        assert_eq!(actual.dim(), expected.dim(), "{what}");
        let difference = (actual - expected).iter().fold(0.0f32, |max, d| max.max(d.abs()));
        let scale = expected.iter().fold(1.0f32, |max, e| max.max(e.abs()));
        assert!(difference <= 1e-5 * scale, "{what}: max |difference| {difference} at scale {scale}");
    }

    /// One row and eight (the few-row kernels, 200 columns with edges), 40 (matrixmultiply);
    /// k = 300 spans three blocks; the weight as it lies and transposed.
    #[test]
    fn products_match_ndarray_on_every_path() {
        for rows in [1, 8, 40] {
            let x = matrix(rows, 300, 1);
            let (weight, embedding) = (matrix(300, 200, 2), matrix(200, 300, 3));
            assert_close(&matmul(x.view(), weight.view()), &x.dot(&weight), &format!("{rows} rows, x · W"));
            assert_close(&matmul(x.view(), embedding.t()), &x.dot(&embedding.t()), &format!("{rows} rows, x · Wᵀ"));
            let on_this_thread = matmul_on_this_thread(x.view(), embedding.t());
            assert_close(&on_this_thread, &x.dot(&embedding.t()), &format!("{rows} rows, one thread"));
        }
    }
}
