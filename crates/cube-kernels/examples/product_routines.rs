//! How fast each of cubek's matrix-product routines runs GPT-2's training products, to choose
//! the routine the model's products take (burn's default, without autotune, is the simple
//! cyclic one: half of gpt2's f32 step on an H200, at ~40 TFLOP/s). For each product of a
//! training step at `rows` rows (forward, the input's gradient, the weight's gradient, with the
//! operand layouts burn hands over) and each routine burn's autotune tries on tensor cores:
//! milliseconds a product, TFLOP/s, and the largest difference to burn's default routine's
//! result (a routine that misreads an operand shows here), then the fastest routine a product
//! and, for each routine that ran every product right, a step's products' milliseconds (each
//! block's products `--layers` times): the routine to name in `GPT2_PRODUCTS`, which routes
//! every product of the model through one (`cube_kernels::product_routines`).
//!
//!   cargo run --release -p cube-kernels --features cuda --example product_routines -- \
//!       [--width 768] [--vocab 50304] [--rows 4096] [--layers 12] [--dtypes f32,bf16] [--budget-s 240]
//!
//! The operands are burn's own tensors (on CUDA their rows padded as CubeCL pads them), f32
//! (tensor cores take them as TF32) or bf16, the product written in f32. Lines come as each
//! product is timed; past `--budget-s` the remaining routines are skipped. With `--features
//! wgpu` it runs on burn's wgpu backend, where no tensor-core routine is available: a check of
//! the program itself.

#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn main() {
    survey::run();
}

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
fn main() {
    eprintln!("product_routines: build with --features cuda (or wgpu)");
    std::process::exit(2);
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod survey {
    use burn::{
        prelude::*,
        tensor::{DType, Distribution, FloatDType},
    };
    use burn_cubecl::tensor::CubeTensor;
    use cube_kernels::{product_in_f32, product_routines};
    use cubecl::future::block_on;
    use std::{
        collections::BTreeMap,
        panic::{self, AssertUnwindSafe},
        time::{Duration, Instant},
    };

    #[cfg(feature = "cuda")]
    type Runtime = cubecl::cuda::CudaRuntime;
    #[cfg(feature = "cuda")]
    type Device = burn_cubecl::CubeBackend<Runtime, f32, i32, u8>;
    #[cfg(not(feature = "cuda"))]
    type Runtime = burn::backend::wgpu::WgpuRuntime;
    #[cfg(not(feature = "cuda"))]
    type Device = burn::backend::wgpu::CubeBackend<Runtime, f32, i32, u32>;

    /// Timed launches a routine gets after the one that compiles it.
    const REPEATS: u32 = 10;

    struct Options {
        width: usize,
        vocab: usize,
        rows: usize,
        layers: usize,
        dtypes: Vec<DType>,
        budget: Duration,
    }

    fn options() -> Options {
        let mut options = Options {
            width: 768,
            // GPT-2's 50,257 tokens as training's LM head pads them (`Gpt2Backend::lm_head_columns`).
            vocab: 50304,
            rows: 4096,
            layers: 12,
            dtypes: vec![DType::F32, DType::BF16],
            budget: Duration::MAX,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
            let number = || value.parse::<usize>().unwrap_or_else(|_| panic!("{flag} takes a number, not {value}"));
            match flag.as_str() {
                "--width" => options.width = number(),
                "--vocab" => options.vocab = number(),
                "--rows" => options.rows = number(),
                "--layers" => options.layers = number(),
                "--budget-s" => options.budget = Duration::from_secs(number() as u64),
                "--dtypes" => {
                    options.dtypes = value
                        .split(',')
                        .map(|name| match name {
                            "f32" => DType::F32,
                            "bf16" => DType::BF16,
                            "f16" => DType::F16,
                            other => panic!("--dtypes takes f32, bf16 and f16, not {other}"),
                        })
                        .collect()
                }
                other => panic!("unknown flag {other}; see the header of examples/product_routines.rs"),
            }
        }
        options
    }

    /// One product, `lhs [m, k] · rhs [k, n]`, with whether each operand is a transposed view,
    /// and how many of it a step takes.
    struct Product {
        name: String,
        per_step: usize,
        m: usize,
        n: usize,
        k: usize,
        lhs_transposed: bool,
        rhs_transposed: bool,
    }

    /// A training step's products: each linear layer's forward, input gradient (`dY · Wᵀ`) and
    /// weight gradient (`Xᵀ · dY`), and the LM head's, whose weight is the token embedding
    /// `[vocab, width]` read transposed. Each block's four layers come `layers` times a step.
    fn products(width: usize, vocab: usize, rows: usize, layers: usize) -> Vec<Product> {
        let mut products = Vec::new();
        let mut linear = |name: &str, d_in: usize, d_out: usize, weight_transposed: bool| {
            let per_step = if weight_transposed { 1 } else { layers };
            let product = |part: &str, m, n, k, lhs_transposed, rhs_transposed| Product {
                name: format!("{name} {part}"),
                per_step,
                m,
                n,
                k,
                lhs_transposed,
                rhs_transposed,
            };
            products.push(product("forward", rows, d_out, d_in, false, weight_transposed));
            products.push(product("input gradient", rows, d_in, d_out, false, !weight_transposed));
            products.push(product("weight gradient", d_in, d_out, rows, true, false));
        };
        linear("q/k/v", width, 3 * width, false);
        linear("attention projection", width, width, false);
        linear("MLP expansion", width, 4 * width, false);
        linear("MLP projection", 4 * width, width, false);
        linear("LM head", width, vocab, true);
        products
    }

    fn operand(rows: usize, columns: usize, transposed: bool, dtype: DType) -> CubeTensor<Runtime> {
        let device = Default::default();
        let dims = if transposed { [columns, rows] } else { [rows, columns] };
        let mut tensor = Tensor::<Device, 2>::random(dims, Distribution::Uniform(-1.0, 1.0), &device);
        if transposed {
            tensor = tensor.transpose();
        }
        tensor.cast(FloatDType::from(dtype)).into_primitive().tensor()
    }

    fn values(tensor: CubeTensor<Runtime>) -> Vec<f32> {
        Tensor::<Device, 2>::from_primitive(burn::tensor::TensorPrimitive::Float(tensor))
            .into_data()
            .to_vec::<f32>()
            .expect("f32 values")
    }

    /// The largest difference between two results, relative to the first's largest element.
    fn difference(expected: &[f32], actual: &[f32]) -> f32 {
        let scale = expected.iter().fold(f32::MIN_POSITIVE, |m, e| m.max(e.abs()));
        let worst = expected.iter().zip(actual).map(|(e, a)| (e - a).abs()).fold(0.0f32, |m, d| m.max(d));
        if worst.is_nan() || actual.iter().any(|a| a.is_nan()) {
            f32::NAN
        } else {
            worst / scale
        }
    }

    pub fn run() {
        let options = options();
        let started = Instant::now();
        let routines = product_routines();
        println!("| product | m × n × k | operands | routine | ms | TFLOP/s | difference to the default |");
        println!("|---|---|---|---|---:|---:|---:|");
        let mut fastest = Vec::new();
        // (operands, routine) → (ms of a step's products, products it ran right).
        let mut step_ms = BTreeMap::<(String, &str), (f64, usize)>::new();
        let products = products(options.width, options.vocab, options.rows, options.layers);
        for &dtype in &options.dtypes {
            for product in &products {
                let lhs = operand(product.m, product.k, product.lhs_transposed, dtype);
                let rhs = operand(product.k, product.n, product.rhs_transposed, dtype);
                let client = lhs.client.clone();
                let flops = 2.0 * (product.m * product.n * product.k) as f64;
                let layouts = format!(
                    "{dtype:?}, {}{}",
                    if product.lhs_transposed { "lhsᵀ" } else { "lhs" },
                    if product.rhs_transposed { " rhsᵀ" } else { " rhs" }
                );
                let mut reference: Option<Vec<f32>> = None;
                let mut best: Option<(&str, f64)> = None;
                let mut default_tflops = None;
                for routine in &routines {
                    let (name, routine) = (routine.name, &routine.strategy);
                    if started.elapsed() > options.budget {
                        println!("budget of {:?} spent: the rest skipped", options.budget);
                        return summary(&fastest, &step_ms, products.len());
                    }
                    let line = |rest: String| {
                        println!(
                            "| {} | {} × {} × {} | {layouts} | {name} | {rest} |",
                            product.name, product.m, product.n, product.k
                        )
                    };
                    // A routine may refuse the product, or fail on it: either way, the next.
                    let attempt = || product_in_f32(routine, &lhs, &rhs).map(values);
                    let result = match panic::catch_unwind(AssertUnwindSafe(attempt)) {
                        Ok(Ok(result)) => result,
                        Ok(Err(why)) => {
                            line(format!(
                                "unavailable | | {}",
                                format!("{why:?}").chars().take(80).collect::<String>()
                            ));
                            continue;
                        }
                        Err(_) => {
                            line("panicked | |".into());
                            continue;
                        }
                    };
                    let difference = match &reference {
                        None => 0.0,
                        Some(expected) => difference(expected, &result),
                    };
                    reference.get_or_insert(result);
                    let start = Instant::now();
                    for _ in 0..REPEATS {
                        product_in_f32(routine, &lhs, &rhs).expect("ran once already");
                    }
                    block_on(client.sync()).expect("the device finishes");
                    let seconds = start.elapsed().as_secs_f64() / REPEATS as f64;
                    let tflops = flops / seconds / 1e12;
                    line(format!("{:.3} | {tflops:.2} | {difference:.1e}", seconds * 1e3));
                    // A routine whose result is off is no candidate (bf16 operands: ~1e-3 apart).
                    let trusted = difference.is_finite() && difference < 1e-2;
                    default_tflops.get_or_insert(tflops);
                    if trusted && best.as_ref().is_none_or(|(_, fastest)| tflops > *fastest) {
                        best = Some((name, tflops));
                    }
                    if trusted {
                        let step = step_ms.entry((format!("{dtype:?}"), name)).or_insert((0.0, 0));
                        step.0 += seconds * 1e3 * product.per_step as f64;
                        step.1 += 1;
                    }
                }
                if let (Some((routine, tflops)), Some(default)) = (best, default_tflops) {
                    fastest.push(format!(
                        "{} ({layouts}): {routine}, {tflops:.2} TFLOP/s ({:.2}x the default's)",
                        product.name,
                        tflops / default
                    ));
                }
            }
        }
        summary(&fastest, &step_ms, products.len());
    }

    fn summary(fastest: &[String], step_ms: &BTreeMap<(String, &str), (f64, usize)>, products: usize) {
        println!("\nfastest routine a product:");
        for line in fastest {
            println!("- {line}");
        }
        // One routine takes every product (GPT2_PRODUCTS): the one whose step is shortest.
        println!("\na step's products by one routine (those that ran every product right), fastest first:");
        let mut whole: Vec<_> = step_ms.iter().filter(|(_, &(_, ran))| ran == products).collect();
        whole.sort_by(|(a_key, a), (b_key, b)| a_key.0.cmp(&b_key.0).then(a.0.total_cmp(&b.0)));
        for ((operands, routine), (ms, _)) in whole {
            println!("- {operands}: GPT2_PRODUCTS={routine}: {ms:.1} ms");
        }
    }
}
