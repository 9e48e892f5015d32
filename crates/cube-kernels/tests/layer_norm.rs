//! The LayerNorm kernels against burn's operations, alone and with the residual branch before
//! them (dropout's mask from `kernels::dropout_keeps`), on burn's wgpu backend (with and without
//! fusion; Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test layer_norm`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{
    prelude::*,
    tensor::{ops::FloatTensor, DType, TensorPrimitive},
};
use cube_kernels::{Branch, DropoutDraw, LayerNormRows};
use kernels::MaskStream;
use support::{from_host, normal, primitive, uniform, Eager, Fused, HALF, HALF_FLOAT};

mod support;

const EPSILON: f64 = 1e-5;

fn values<B: Backend>(tensor: FloatTensor<B>) -> Vec<f32> {
    Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(tensor)).into_data().to_vec::<f32>().unwrap()
}

/// Within 1e-5 of `expected`, relative to its size (1 at least) or, where `magnified` gives
/// it (`[rows, 1]`), to how much normalising a row magnifies the rounding of its mean: a row
/// whose spread is small beside its mean loses digits in any f32 LayerNorm, burn's as ours.
fn assert_close<B: Backend>(
    what: &str,
    expected: Tensor<B, 2>,
    actual: FloatTensor<B>,
    magnified: Option<Tensor<B, 2>>,
) {
    let [rows, d] = expected.dims();
    let (expected, actual) = (expected.into_data().to_vec::<f32>().unwrap(), values::<B>(actual));
    assert_eq!(expected.len(), actual.len(), "{what}");
    let magnified = magnified.map_or(vec![1.0; rows], |m| m.into_data().to_vec::<f32>().unwrap());
    let difference = (0..rows * d)
        .map(|i| (expected[i] - actual[i]).abs() / expected[i].abs().max(magnified[i / d]).max(1.0))
        .fold(0.0f32, f32::max);
    assert!(difference <= 1e-5, "{what}: max relative difference {difference}");
}

/// `|mean| / deviation` of each row, `[rows, 1]`.
fn magnification<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let (variance, mean) = x.var_mean_bias(1);
    mean.abs() * (variance + EPSILON).sqrt().recip()
}

/// Rows of different means and spreads, as the residual stream's, and γ, β.
fn inputs<B: Backend>(rows: usize, d: usize) -> (Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 1>) {
    let seed = (rows * d) as u64;
    let x = from_host::<B, 2>(normal(rows * d, seed), [rows, d])
        * from_host(uniform(rows, 0.5, 8.0, seed + 1), [rows, 1])
        + from_host(uniform(rows, -3.0, 3.0, seed + 2), [rows, 1]);
    let gamma = from_host(uniform(d, 0.5, 1.5, seed + 3), [d]);
    let beta = from_host(uniform(d, -1.0, 1.0, seed + 4), [d]);
    (x, gamma, beta)
}

/// The normalised rows and inverse deviations, as burn computes LayerNorm.
fn normalize<B: Backend>(x: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let (variance, mean) = x.clone().var_mean_bias(1);
    let inverse_deviation = (variance + EPSILON).sqrt().recip();
    ((x - mean) * inverse_deviation.clone(), inverse_deviation)
}

/// Dropout at `p` (none at 0) over `[rows, d]`, and its mask and scale as burn's operations
/// take it.
fn dropout<B: Backend>(p: f64, rows: usize, d: usize) -> (Option<DropoutDraw>, Tensor<B, 2>) {
    let stream = MaskStream { key: [7, 0x8000_0001], stream: [3, 1, 4] };
    let mut keeps = vec![1.0f32; rows * d];
    if p > 0.0 {
        kernels::dropout_keeps(stream, p, &mut keeps);
        keeps.iter_mut().for_each(|keep| *keep /= (1.0 - p) as f32);
    }
    let keeps = Tensor::from_data(TensorData::new(keeps, [rows, d]), &Default::default());
    ((p > 0.0).then_some(DropoutDraw { stream, p }), keeps)
}

/// Standard normal draws, `seed` telling apart a test's tensors of one shape.
fn random<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    from_host(normal(shape.iter().product(), seed), shape)
}

/// Without a branch (`p` `None`), and with one at dropout `p`.
fn check_forward<B: LayerNormRows>(rows: usize, d: usize, p: Option<f64>) {
    let what = format!("rows {rows}, d {d}, branch {p:?}");
    let (x, gamma, beta) = inputs::<B>(rows, d);
    let (stream, branch) = match p {
        None => (x.clone(), None),
        Some(p) => {
            let (product, bias) = (random::<B, 2>([rows, d], 5), random::<B, 1>([d], 6));
            let (dropout, keeps) = dropout::<B>(p, rows, d);
            let stream = x.clone() + (product.clone() + bias.clone().unsqueeze()) * keeps;
            (stream, Some(Branch { product: primitive(product), bias: primitive(bias), dropout }))
        }
    };
    let (normalized, inverse_deviation) = normalize(stream.clone());
    let output = normalized.clone() * gamma.clone().unsqueeze() + beta.clone().unsqueeze();
    let with_branch = branch.is_some();
    let dtype = x.dtype();
    let actual = B::layer_norm_rows(primitive(x), primitive(gamma), primitive(beta), EPSILON, branch, dtype);
    let magnified = magnification(stream.clone());
    assert_close(&format!("{what}: output"), output, actual.output, Some(magnified.clone()));
    assert_close(&format!("{what}: normalized"), normalized, actual.normalized, Some(magnified));
    assert_close(&format!("{what}: inverse deviation"), inverse_deviation, actual.inverse_deviation, None);
    assert_eq!(actual.stream.is_some(), with_branch, "{what}: the stream comes back with a branch");
    if let Some(actual) = actual.stream {
        assert_close(&format!("{what}: stream"), stream, actual, None);
    }
}

/// The output in f16, as a product of 16-bit operands reads it: the f32 output rounded, element
/// for element, with everything else as in f32 (bf16's path; wgpu has no bf16).
fn check_rounded_output<B: LayerNormRows>(rows: usize, d: usize, p: Option<f64>) {
    let what = format!("rows {rows}, d {d}, branch {p:?}");
    let (x, gamma, beta) = inputs::<B>(rows, d);
    let run = |output| {
        let branch = p.map(|p| Branch {
            product: primitive(random::<B, 2>([rows, d], 5)),
            bias: primitive(random::<B, 1>([d], 6)),
            dropout: dropout::<B>(p, rows, d).0,
        });
        let (x, gamma, beta) = (primitive(x.clone()), primitive(gamma.clone()), primitive(beta.clone()));
        let normed = B::layer_norm_rows(x, gamma, beta, EPSILON, branch, output);
        let tensor = |primitive| Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(primitive));
        (tensor(normed.output), tensor(normed.normalized), normed.stream.map(tensor))
    };
    let (full, rounded) = (run(DType::F32), run(HALF));
    assert_eq!(rounded.0.dtype(), HALF, "{what}: the output's type");
    let host = |tensor: Tensor<B, 2>| tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    assert_eq!(host(rounded.0), host(full.0.cast(HALF_FLOAT)), "{what}: the output, rounded");
    assert_eq!(host(rounded.1), host(full.1), "{what}: the normalised rows, in f32");
    assert_eq!(rounded.2.map(host), full.2.map(host), "{what}: the stream, in f32");
}

/// The branch's product's gradient in f16, as a product of 16-bit operands reads it: the f32
/// gradient rounded, element for element, with the sums (the bias's among them) as in f32.
fn check_rounded_product_gradient<B: LayerNormRows>(rows: usize, d: usize, p: f64) {
    let what = format!("rows {rows}, d {d}, dropout {p}");
    let (x, _, _) = inputs::<B>(rows, d);
    let (normalized, _) = normalize(x);
    let (d_y, d_x) = (random::<B, 2>([rows, d], 9), random::<B, 2>([rows, d], 10));
    let dropout = dropout::<B>(p, rows, d).0;
    let vector = |primitive| Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(primitive));
    let host = |tensor: Tensor<B, 1>| tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    let run = |product| {
        let branch = Some((primitive(d_x.clone()), dropout, product));
        let gradients =
            B::layer_norm_rows_parameter_gradients(primitive(d_y.clone()), primitive(normalized.clone()), branch);
        let (d_product, d_bias) = gradients.branch.expect("the branch's gradients");
        let d_product = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(d_product));
        (d_product, [gradients.gamma, gradients.beta, d_bias].map(|sums| host(vector(sums))))
    };
    let (full, rounded) = (run(DType::F32), run(HALF));
    assert_eq!(rounded.0.dtype(), HALF, "{what}: the product's gradient's type");
    let host = |tensor: Tensor<B, 2>| tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    assert_eq!(host(rounded.0), host(full.0.cast(HALF_FLOAT)), "{what}: the product's gradient, rounded");
    assert_eq!(rounded.1, full.1, "{what}: γ's, β's and the bias's gradients, in f32");
}

/// Without and with the stream's gradient from later layers.
fn check_backward<B: LayerNormRows>(rows: usize, d: usize, with_stream: bool) {
    let (x, gamma, _) = inputs::<B>(rows, d);
    let (normalized, inverse_deviation) = normalize(x);
    let d_y = random::<B, 2>([rows, d], 7);
    let g = d_y.clone() * gamma.clone().unsqueeze();
    let mean_g_n = (g.clone() * normalized.clone()).mean_dim(1);
    let mut d_x = (g.clone() - g.mean_dim(1) - normalized.clone() * mean_g_n) * inverse_deviation.clone();
    let d_stream = with_stream.then(|| random::<B, 2>([rows, d], 8));
    if let Some(d_stream) = &d_stream {
        d_x = d_x + d_stream.clone();
    }
    let actual = B::layer_norm_rows_backward(
        primitive(d_y),
        primitive(normalized),
        primitive(inverse_deviation),
        primitive(gamma),
        d_stream.map(primitive),
    );
    assert_close(&format!("rows {rows}, d {d}, stream {with_stream}: d_x"), d_x, actual, None);
}

/// Without a branch (`p` `None`), and with one at dropout `p`.
fn check_parameter_gradients<B: LayerNormRows>(rows: usize, d: usize, p: Option<f64>) {
    let what = format!("rows {rows}, d {d}, branch {p:?}");
    let (x, _, _) = inputs::<B>(rows, d);
    let (normalized, _) = normalize(x);
    let d_y = random::<B, 2>([rows, d], 9);
    let d_x = random::<B, 2>([rows, d], 10);
    let (dropout, keeps) = dropout::<B>(p.unwrap_or(0.0), rows, d);
    let d_product = d_x.clone() * keeps;
    // The sums in f64 on the host: burn's own column sums in f32, one thread down 65,537 rows,
    // are off by more than the kernel.
    let host = |tensor: &Tensor<B, 2>| tensor.clone().into_data().to_vec::<f32>().unwrap();
    let (g, n, branch) = (host(&d_y), host(&normalized), host(&d_product));
    let mut expected = [vec![0.0f64; d], vec![0.0f64; d], vec![0.0f64; d]];
    for i in 0..rows * d {
        expected[0][i % d] += f64::from(g[i]) * f64::from(n[i]);
        expected[1][i % d] += f64::from(g[i]);
        expected[2][i % d] += f64::from(branch[i]);
    }
    let dtype = d_x.dtype();
    let gradients = B::layer_norm_rows_parameter_gradients(
        primitive(d_y),
        primitive(normalized),
        p.map(|_| (primitive(d_x), dropout, dtype)),
    );
    let mut sums = vec![("d_gamma", &expected[0], gradients.gamma), ("d_beta", &expected[1], gradients.beta)];
    assert_eq!(gradients.branch.is_some(), p.is_some(), "{what}: the branch's gradients come with a branch");
    if let Some((actual_product, actual_bias)) = gradients.branch {
        assert_close(&format!("{what}: d_product"), d_product, actual_product, None);
        sums.push(("d_bias", &expected[2], actual_bias));
    }
    for (name, expected, actual) in sums {
        let actual =
            Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(actual)).into_data().to_vec::<f32>().unwrap();
        assert_eq!(expected.len(), actual.len(), "{what}: {name}");
        let largest = expected.iter().fold(1.0f64, |largest, e| largest.max(e.abs()));
        let difference = expected.iter().zip(&actual).map(|(e, a)| (e - f64::from(*a)).abs()).fold(0.0f64, f64::max);
        assert!(difference <= 1e-5 * largest, "{what}: {name} differs by {difference} at scale {largest}");
    }
}

/// Rows narrower than a cube's units, GPT-2's widths, and more rows than one launch dimension
/// holds (65,535 cubes).
const SHAPES: [(usize, usize); 4] = [(1, 8), (5, 768), (300, 1600), (65_537, 4)];

/// No branch, a branch without dropout, and one with.
const BRANCHES: [Option<f64>; 3] = [None, Some(0.0), Some(0.3)];

#[test]
fn layer_norm_matches_burns_operations() {
    for (rows, d) in SHAPES {
        for p in BRANCHES {
            check_forward::<Eager>(rows, d, p);
            check_forward::<Fused>(rows, d, p);
        }
    }
}

#[test]
fn layer_norm_writes_its_output_in_the_type_asked_for() {
    for (rows, d) in SHAPES {
        for p in BRANCHES {
            check_rounded_output::<Eager>(rows, d, p);
            check_rounded_output::<Fused>(rows, d, p);
        }
    }
}

#[test]
fn layer_norm_writes_its_branch_products_gradient_in_the_type_asked_for() {
    for (rows, d) in SHAPES {
        for p in [0.0, 0.3] {
            check_rounded_product_gradient::<Eager>(rows, d, p);
            check_rounded_product_gradient::<Fused>(rows, d, p);
        }
    }
}

#[test]
fn layer_norm_backward_matches_burns_operations() {
    for (rows, d) in SHAPES {
        for with_stream in [false, true] {
            check_backward::<Eager>(rows, d, with_stream);
            check_backward::<Fused>(rows, d, with_stream);
        }
    }
}

#[test]
fn layer_norm_parameter_gradients_match_burns_operations() {
    for (rows, d) in SHAPES {
        for p in BRANCHES {
            check_parameter_gradients::<Eager>(rows, d, p);
            check_parameter_gradients::<Fused>(rows, d, p);
        }
    }
}
