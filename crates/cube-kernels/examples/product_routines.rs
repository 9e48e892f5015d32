//! How fast each of cubek's matrix-product routines runs GPT-2's training products, to choose
//! the routine the model's products take (burn's default, without autotune, is the simple
//! cyclic one: half of gpt2's f32 step on an H200, at ~40 TFLOP/s). For each product of a
//! training step at `rows` rows (forward, the input's gradient, the weight's gradient, with the
//! operand layouts burn hands over) and each routine burn's autotune tries on tensor cores:
//! milliseconds a product, TFLOP/s, and the largest difference to burn's default routine's
//! result (a routine that misreads an operand shows here), then the fastest routine a product.
//!
//!   cargo run --release -p cube-kernels --features cuda --example product_routines -- \
//!       [--width 768] [--vocab 50257] [--rows 4096] [--dtypes f32,bf16] [--budget-s 240]
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
    use cube_kernels::product_in_f32;
    use cubecl::future::block_on;
    use cubek::matmul::{
        components::tile::TileMatmulKind::{self, Cmma, Mma},
        launch::Strategy,
        routines::{
            double_buffering::DoubleBufferingArgs, ordered_double_buffering::OrderedSelectionArgs, simple::SimpleArgs,
            BlueprintStrategy,
        },
    };
    use std::{
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
        dtypes: Vec<DType>,
        budget: Duration,
    }

    fn options() -> Options {
        let mut options = Options {
            width: 768,
            vocab: 50257,
            rows: 4096,
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

    /// One product, `lhs [m, k] · rhs [k, n]`, with whether each operand is a transposed view.
    struct Product {
        name: String,
        m: usize,
        n: usize,
        k: usize,
        lhs_transposed: bool,
        rhs_transposed: bool,
    }

    /// A training step's products: each linear layer's forward, input gradient (`dY · Wᵀ`) and
    /// weight gradient (`Xᵀ · dY`), and the LM head's, whose weight is the token embedding
    /// `[vocab, width]` read transposed.
    fn products(width: usize, vocab: usize, rows: usize) -> Vec<Product> {
        let mut products = Vec::new();
        let mut linear = |name: &str, d_in: usize, d_out: usize, weight_transposed: bool| {
            let product = |part: &str, m, n, k, lhs_transposed, rhs_transposed| Product {
                name: format!("{name} {part}"),
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

    /// The tensor-core routines burn's autotune tries (burn-cubecl `kernel/matmul/tune`).
    fn routines() -> Vec<Strategy> {
        let simple = |tile_matmul: TileMatmulKind, multi_rows| SimpleArgs { tile_matmul, multi_rows };
        let double = |tile_matmul: TileMatmulKind, specialized| DoubleBufferingArgs { tile_matmul, specialized };
        let ordered = |tile_matmul: TileMatmulKind, row_count| OrderedSelectionArgs {
            partition_k: Some(2),
            row_count: Some(row_count),
            rows_per_plane: Some(2),
            tile_matmul,
        };
        use BlueprintStrategy::Inferred;
        // Burn's default first (the reference), then those likelier to win on a Hopper card.
        vec![
            Strategy::Auto,
            Strategy::DoubleCyclicCmma(Inferred(double(Cmma, false))),
            Strategy::DoubleCyclicMma(Inferred(double(Mma, false))),
            Strategy::DoubleCyclicCmma(Inferred(double(Cmma, true))),
            Strategy::DoubleCyclicMma(Inferred(double(Mma, true))),
            Strategy::SpecializedCyclicCmma(Inferred(().into())),
            Strategy::SpecializedCyclicMma(Inferred(().into())),
            Strategy::SpecializedTmaCmma(Inferred(().into())),
            Strategy::SpecializedTmaMma(Inferred(().into())),
            Strategy::SimpleTmaCmma(Inferred(simple(Cmma, false))),
            Strategy::SimpleTmaMma(Inferred(simple(Mma, false))),
            Strategy::SimpleTmaCmma(Inferred(simple(Cmma, true))),
            Strategy::SimpleTmaMma(Inferred(simple(Mma, true))),
            Strategy::SimpleCyclicMma(Inferred(simple(Mma, false))),
            Strategy::SimpleCyclicCmma(Inferred(simple(Cmma, true))),
            Strategy::SimpleCyclicMma(Inferred(simple(Mma, true))),
            Strategy::OrderedDoubleCmma(Inferred(ordered(Cmma, 4))),
            Strategy::OrderedDoubleMma(Inferred(ordered(Mma, 4))),
            Strategy::OrderedDoubleCmma(Inferred(ordered(Cmma, 8))),
            Strategy::OrderedDoubleMma(Inferred(ordered(Mma, 8))),
        ]
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
        let routines = routines();
        println!("| product | m × n × k | operands | routine | ms | TFLOP/s | difference to the default |");
        println!("|---|---|---|---|---:|---:|---:|");
        let mut fastest = Vec::new();
        for &dtype in &options.dtypes {
            for product in products(options.width, options.vocab, options.rows) {
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
                let mut best: Option<(String, f64)> = None;
                let mut default_tflops = None;
                for routine in &routines {
                    if started.elapsed() > options.budget {
                        println!("budget of {:?} spent: the rest skipped", options.budget);
                        return summary(&fastest);
                    }
                    let line = |rest: String| {
                        println!(
                            "| {} | {} × {} × {} | {layouts} | {routine} | {rest} |",
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
                        best = Some((routine.to_string(), tflops));
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
        summary(&fastest);
    }

    fn summary(fastest: &[String]) {
        println!("\nfastest routine a product:");
        for line in fastest {
            println!("- {line}");
        }
    }
}
