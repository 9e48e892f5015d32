//! Attention's core on ndarray views.

use crate::product::matmul_on_this_thread;
use ndarray::{parallel::prelude::*, s, Array4, ArrayView3, ArrayView4, Axis};

/// `softmax(q · kᵀ / √head_dim)` with the hidden keys left out, times `v`. `q` is
/// `[batch, heads, time, head_dim]`, `k` and `v` `[batch, heads, keys, head_dim]`, `hidden`
/// `[batch, time, keys]` (`true` where a query must not see a key); returns
/// `[batch, time, heads, head_dim]`. Each (row, head) pair runs on its own thread, its products
/// on the few-row kernels where they apply.
pub fn masked_attention(
    q: ArrayView4<'_, f32>,
    k: ArrayView4<'_, f32>,
    v: ArrayView4<'_, f32>,
    hidden: ArrayView3<'_, bool>,
) -> Array4<f32> {
    let (batch, heads, time, head_dim) = q.dim();
    let scale = (head_dim as f32).sqrt();
    let mut y = Array4::<f32>::zeros((batch, time, heads, head_dim));
    y.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(row, mut y)| {
        y.axis_iter_mut(Axis(1)).into_par_iter().enumerate().for_each(|(head, mut y)| {
            let (q, k, v) =
                (q.slice(s![row, head, .., ..]), k.slice(s![row, head, .., ..]), v.slice(s![row, head, .., ..]));
            let mut weights = matmul_on_this_thread(q, k.t());
            for (mut scores, hidden) in weights.rows_mut().into_iter().zip(hidden.slice(s![row, .., ..]).rows()) {
                scores.zip_mut_with(&hidden, |score, &hidden| {
                    *score = if hidden { f32::NEG_INFINITY } else { *score / scale }
                });
                let max = scores.fold(f32::NEG_INFINITY, |max, &score| max.max(score));
                scores.mapv_inplace(|score| (score - max).exp());
                let sum = scores.sum();
                scores.mapv_inplace(|weight| weight / sum);
            }
            y.assign(&matmul_on_this_thread(weights.view(), v));
        });
    });
    y
}
