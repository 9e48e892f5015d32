//! Products of a few rows with a weight matrix, on the CPU: the products of decoding, where each
//! step multiplies one row per sample by every weight of the model.
//!
//! Such a product reads each weight once and does a few multiply-adds with it, so it runs at the
//! speed memory delivers the weight, provided the arithmetic keeps up. General matrix-product
//! libraries do not serve this shape well: `gemm` (stable Rust) has no AVX-512 kernels and packs
//! the weight into a buffer before multiplying it; matrixmultiply packs the whole weight. The
//! kernels here multiply the weight where it lies, with `m` rows of accumulators in registers:
//! ~100 GFLOP/s on one core for 8 rows with AVX-512, against ~39 for `gemm` (BENCHMARKS.md).
//!
//! Two layouts, both with the weight's rows contiguous in memory:
//! - [`times_weight`]: `x · W` with `W` `[k, n]` (the model's linear layers). A tile of columns
//!   of `W` is read row by row; each of `x`'s rows adds its multiple of that piece of row.
//! - [`times_transposed_weight`]: `x · Wᵀ` with `W` `[n, k]` (the LM head, tied to the token
//!   embedding). Each output is a dot product of a row of `x` with a row of `W`, both
//!   contiguous.
//!
//! The widest instruction set the processor has is picked at run time: AVX-512, AVX2 with FMA,
//! or portable code the compiler vectorises for any target.

use ndarray::{ArrayView2, ArrayViewMut2};
use std::marker::PhantomData;

/// `out = x · w` for `x` `[m, k]` and `w` `[k, n]`, each with contiguous rows.
pub fn times_weight(x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>, out: ArrayViewMut2<'_, f32>) {
    let product = Product::new(x, w, out, Layout::Rows);
    // SAFETY: `widest` picks a set this processor has; `Product::new` checked that the three
    // arrays have contiguous rows and the shapes of the product, and `product` borrows them
    // (`out` mutably) for as long as it lives.
    unsafe { InstructionSet::widest().run(&product) }
}

/// `out = x · wᵀ` for `x` `[m, k]` and `w` `[n, k]`, each with contiguous rows.
pub fn times_transposed_weight(x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>, out: ArrayViewMut2<'_, f32>) {
    let product = Product::new(x, w, out, Layout::Transposed);
    // SAFETY: as in `times_weight`.
    unsafe { InstructionSet::widest().run(&product) }
}

/// How the weight `W` of a product is laid out.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// `[k, n]`: `x · W`.
    Rows,
    /// `[n, k]`: `x · Wᵀ`.
    Transposed,
}

/// The operands of `out[m, n] = x[m, k] · W` as pointers and row strides (in elements). It
/// borrows the arrays the pointers address for `'a`, `out` mutably, so none can be freed or
/// read elsewhere while a kernel runs on them.
#[derive(Clone, Copy)]
struct Product<'a> {
    layout: Layout,
    x: *const f32,
    x_row: usize,
    w: *const f32,
    w_row: usize,
    out: *mut f32,
    out_row: usize,
    m: usize,
    k: usize,
    n: usize,
    borrows: PhantomData<(&'a [f32], &'a mut [f32])>,
}

impl<'a> Product<'a> {
    fn new(x: ArrayView2<'a, f32>, w: ArrayView2<'a, f32>, mut out: ArrayViewMut2<'a, f32>, layout: Layout) -> Self {
        let (m, k) = x.dim();
        let (w_k, n) = match layout {
            Layout::Rows => w.dim(),
            Layout::Transposed => (w.ncols(), w.nrows()),
        };
        assert_eq!(k, w_k, "a product of x [{m}, {k}] and W {:?} ({layout:?})", w.dim());
        assert_eq!(out.dim(), (m, n), "the output of a product of {m} rows and {n} columns");
        let (x_row, w_row, out_row) = (
            row_stride("x", x.dim(), x.strides()),
            row_stride("W", w.dim(), w.strides()),
            row_stride("out", (m, n), out.strides()),
        );
        let (x, w, out) = (x.as_ptr(), w.as_ptr(), out.as_mut_ptr());
        Self { layout, x, x_row, w, w_row, out, out_row, m, k, n, borrows: PhantomData }
    }

    /// The same product for `count` rows of `x` and `out`, from row `start` on.
    ///
    /// SAFETY: `start + count <= self.m`.
    unsafe fn rows(self, start: usize, count: usize) -> Self {
        // SAFETY: rows `start..start + count` lie within both arrays, by the caller's promise.
        let (x, out) = unsafe { (self.x.add(start * self.x_row), self.out.add(start * self.out_row)) };
        Self { x, out, m: count, ..self }
    }
}

/// The distance between rows of a matrix `dim` whose rows must be contiguous.
fn row_stride(name: &str, (rows, columns): (usize, usize), strides: &[isize]) -> usize {
    assert!(columns <= 1 || strides[1] == 1, "{name} needs contiguous rows (strides {strides:?})");
    match usize::try_from(strides[0]) {
        Ok(stride) => stride,
        Err(_) if rows <= 1 => 0,
        Err(_) => panic!("{name} has its rows in reverse order (strides {strides:?})"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum InstructionSet {
    Avx512,
    Avx2,
    Portable,
}

impl InstructionSet {
    fn widest() -> Self {
        [Self::Avx512, Self::Avx2].into_iter().find(|set| set.available()).unwrap_or(Self::Portable)
    }

    fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        let available = match self {
            Self::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            Self::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            Self::Portable => true,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let available = self == Self::Portable;
        available
    }

    /// SAFETY: this processor has the instruction set; the pointers and strides of `product`
    /// address valid arrays of its shapes, and nothing else accesses `out`.
    unsafe fn run(self, product: &Product<'_>) {
        // SAFETY: the caller's promises are those of each set's kernels.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Self::Avx512 => x86::with_avx512(product),
                #[cfg(target_arch = "x86_64")]
                Self::Avx2 => x86::with_avx2(product),
                _ => in_groups::<Portable>(product),
            }
        }
    }
}

/// A SIMD vector of `WIDTH` f32 lanes.
///
/// SAFETY, for every method: the processor has the type's instruction set; `load` and `store`
/// address `WIDTH` valid floats.
trait Lanes: Copy {
    const WIDTH: usize;
    /// How many vector registers hold accumulators, leaving the rest for the weight's vectors.
    const ACCUMULATORS: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(from: *const f32) -> Self;
    unsafe fn splat(value: f32) -> Self;
    /// `self × other + acc`
    unsafe fn mul_add(self, other: Self, acc: Self) -> Self;
    unsafe fn store(self, to: *mut f32);
    unsafe fn sum(self) -> f32;
}

/// Splits `product` into groups of rows, each a separate pass over the weight, with the
/// group's size fixed at compile time so its accumulators live in registers: as many rows as
/// leave two vectors of accumulators a row.
#[inline(always)]
unsafe fn in_groups<L: Lanes>(product: &Product) {
    // SAFETY: the caller's promises, as `InstructionSet::run` states them.
    unsafe {
        let mut start = 0;
        while start < product.m {
            let count = (product.m - start).min(L::ACCUMULATORS / 2);
            let group = product.rows(start, count);
            match count {
                1 => group_product::<L, 1>(&group),
                2 => group_product::<L, 2>(&group),
                3 => group_product::<L, 3>(&group),
                4 => group_product::<L, 4>(&group),
                5 => group_product::<L, 5>(&group),
                6 => group_product::<L, 6>(&group),
                7 => group_product::<L, 7>(&group),
                8 => group_product::<L, 8>(&group),
                _ => unreachable!("groups of at most 8 rows"),
            }
            start += count;
        }
    }
}

/// Column tiles of `x · W` span [`TILE_BYTES`] of each row of `W` where the registers allow:
/// the memory prefetcher fetches lines in pairs, and a tile of a single line (AVX2's two
/// vectors) left one row decoding at ~28 tokens/s against ~45 with AVX-512's two lines.
const TILE_BYTES: usize = 128;

/// The product for exactly `M` rows: tiles as wide as the registers allow, then tiles of one
/// vector, then single columns (`Rows`) or single weight rows (`Transposed`) at the edge.
#[inline(always)]
unsafe fn group_product<L: Lanes, const M: usize>(p: &Product) {
    // SAFETY: the caller's promises, as `InstructionSet::run` states them.
    unsafe {
        let mut j = 0;
        match p.layout {
            Layout::Rows => {
                let vectors = (L::ACCUMULATORS / M).min(TILE_BYTES / size_of::<f32>() / L::WIDTH);
                j = match vectors {
                    v if v >= 4 => column_tiles::<L, M, 4>(p, j),
                    2 | 3 => column_tiles::<L, M, 2>(p, j),
                    _ => j,
                };
                j = column_tiles::<L, M, 1>(p, j);
                column_tiles::<Scalar, M, 1>(p, j);
            }
            Layout::Transposed => {
                // Two weight rows at a time keep the loads of `x` shared, with 2 × M accumulators.
                while j + 2 <= p.n {
                    dot_tile::<L, M, 2>(p, j);
                    j += 2;
                }
                if j < p.n {
                    dot_tile::<L, M, 1>(p, j);
                }
            }
        }
    }
}

/// Tiles of `V` vectors from column `j` on, as many as fit; returns where they stop.
#[inline(always)]
unsafe fn column_tiles<L: Lanes, const M: usize, const V: usize>(p: &Product, mut j: usize) -> usize {
    // SAFETY: the caller's promises, as `InstructionSet::run` states them.
    unsafe {
        while j + V * L::WIDTH <= p.n {
            column_tile::<L, M, V>(p, j);
            j += V * L::WIDTH;
        }
        j
    }
}

/// `out[.., j..j + V·WIDTH] = x · W[.., j..j + V·WIDTH]` (`W` `[k, n]`).
#[inline(always)]
unsafe fn column_tile<L: Lanes, const M: usize, const V: usize>(p: &Product, j: usize) {
    // SAFETY: the caller's promises, as `InstructionSet::run` states them.
    unsafe {
        let mut acc = [[L::zero(); V]; M];
        for i in 0..p.k {
            let w_row = p.w.add(i * p.w_row + j);
            let mut w = [L::zero(); V];
            for (v, w) in w.iter_mut().enumerate() {
                *w = L::load(w_row.add(v * L::WIDTH));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = L::splat(*p.x.add(r * p.x_row + i));
                for v in 0..V {
                    acc[v] = x.mul_add(w[v], acc[v]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                acc.store(p.out.add(r * p.out_row + j + v * L::WIDTH));
            }
        }
    }
}

/// `out[.., j..j + J] = x · W[j..j + J, ..]ᵀ` (`W` `[n, k]`): dot products along `k`, the
/// last `k mod WIDTH` terms one at a time.
#[inline(always)]
unsafe fn dot_tile<L: Lanes, const M: usize, const J: usize>(p: &Product, j: usize) {
    // SAFETY: the caller's promises, as `InstructionSet::run` states them.
    unsafe {
        let mut acc = [[L::zero(); J]; M];
        let whole = p.k - p.k % L::WIDTH;
        let w_row = |jj: usize| p.w.add((j + jj) * p.w_row);
        let x_row = |r: usize| p.x.add(r * p.x_row);
        for i in (0..whole).step_by(L::WIDTH) {
            let mut w = [L::zero(); J];
            for (jj, w) in w.iter_mut().enumerate() {
                *w = L::load(w_row(jj).add(i));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = L::load(x_row(r).add(i));
                for jj in 0..J {
                    acc[jj] = x.mul_add(w[jj], acc[jj]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (jj, acc) in acc.iter().enumerate() {
                let tail = (whole..p.k).fold(0.0, |sum, i| sum + *x_row(r).add(i) * *w_row(jj).add(i));
                *p.out.add(r * p.out_row + j + jj) = acc.sum() + tail;
            }
        }
    }
}

/// One lane: the columns past the last whole tile.
#[derive(Clone, Copy)]
struct Scalar(f32);

impl Lanes for Scalar {
    const WIDTH: usize = 1;
    // Unused: the edge columns run within the groups of the wider type.
    const ACCUMULATORS: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(0.0)
    }
    #[inline(always)]
    unsafe fn load(from: *const f32) -> Self {
        unsafe { Self(*from) }
    }
    #[inline(always)]
    unsafe fn splat(value: f32) -> Self {
        Self(value)
    }
    #[inline(always)]
    unsafe fn mul_add(self, other: Self, acc: Self) -> Self {
        Self(acc.0 + self.0 * other.0)
    }
    #[inline(always)]
    unsafe fn store(self, to: *mut f32) {
        unsafe { *to = self.0 }
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        self.0
    }
}

/// Eight lanes in plain Rust, which the compiler vectorises for whatever target it builds.
#[derive(Clone, Copy)]
struct Portable([f32; 8]);

impl Lanes for Portable {
    const WIDTH: usize = 8;
    const ACCUMULATORS: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self([0.0; 8])
    }
    #[inline(always)]
    unsafe fn load(from: *const f32) -> Self {
        unsafe { Self(std::ptr::read_unaligned(from.cast())) }
    }
    #[inline(always)]
    unsafe fn splat(value: f32) -> Self {
        Self([value; 8])
    }
    #[inline(always)]
    unsafe fn mul_add(self, other: Self, acc: Self) -> Self {
        Self(std::array::from_fn(|l| acc.0[l] + self.0[l] * other.0[l]))
    }
    #[inline(always)]
    unsafe fn store(self, to: *mut f32) {
        unsafe { std::ptr::write_unaligned(to.cast(), self.0) }
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        self.0.iter().sum()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{in_groups, Lanes, Product};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn with_avx512(product: &Product) {
        // SAFETY: the caller's promises; this function enables the set `Avx512` uses.
        unsafe { in_groups::<Avx512>(product) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn with_avx2(product: &Product) {
        // SAFETY: the caller's promises; this function enables the set `Avx2` uses.
        unsafe { in_groups::<Avx2>(product) }
    }

    #[derive(Clone, Copy)]
    struct Avx512(__m512);

    impl Lanes for Avx512 {
        const WIDTH: usize = 16;
        // Of 32 registers.
        const ACCUMULATORS: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Self(_mm512_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> Self {
            unsafe { Self(_mm512_loadu_ps(from)) }
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> Self {
            unsafe { Self(_mm512_set1_ps(value)) }
        }
        #[inline(always)]
        unsafe fn mul_add(self, other: Self, acc: Self) -> Self {
            unsafe { Self(_mm512_fmadd_ps(self.0, other.0, acc.0)) }
        }
        #[inline(always)]
        unsafe fn store(self, to: *mut f32) {
            unsafe { _mm512_storeu_ps(to, self.0) }
        }
        #[inline(always)]
        unsafe fn sum(self) -> f32 {
            unsafe { _mm512_reduce_add_ps(self.0) }
        }
    }

    #[derive(Clone, Copy)]
    struct Avx2(__m256);

    impl Lanes for Avx2 {
        const WIDTH: usize = 8;
        // Of 16 registers.
        const ACCUMULATORS: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Self(_mm256_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn load(from: *const f32) -> Self {
            unsafe { Self(_mm256_loadu_ps(from)) }
        }
        #[inline(always)]
        unsafe fn splat(value: f32) -> Self {
            unsafe { Self(_mm256_set1_ps(value)) }
        }
        #[inline(always)]
        unsafe fn mul_add(self, other: Self, acc: Self) -> Self {
            unsafe { Self(_mm256_fmadd_ps(self.0, other.0, acc.0)) }
        }
        #[inline(always)]
        unsafe fn store(self, to: *mut f32) {
            unsafe { _mm256_storeu_ps(to, self.0) }
        }
        #[inline(always)]
        unsafe fn sum(self) -> f32 {
            unsafe {
                let halves = _mm_add_ps(_mm256_castps256_ps128(self.0), _mm256_extractf128_ps::<1>(self.0));
                let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
                _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn matrix(rows: usize, columns: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, columns), |(i, j)| ((i * 31 + j * 17 + seed) % 23) as f32 / 11.0 - 1.0)
    }

    /// Every instruction set this machine has, on every row count up to two groups and a bit,
    /// and shapes with edges: 37, 51 and 70 columns are not whole tiles (51 leaves a tile of one
    /// vector, then single columns), k = 19 not whole vectors.
    #[test]
    fn products_match_ndarray_on_every_instruction_set() {
        let sets: Vec<_> = [InstructionSet::Avx512, InstructionSet::Avx2, InstructionSet::Portable]
            .into_iter()
            .filter(|set| set.available())
            .collect();
        for set in sets {
            for m in (1..=10).chain([17]) {
                for (k, n) in [(19, 37), (64, 70), (128, 32), (40, 51)] {
                    let x = matrix(m, k, 1);
                    for (layout, w) in [(Layout::Rows, matrix(k, n, 2)), (Layout::Transposed, matrix(n, k, 3))] {
                        let expected = match layout {
                            Layout::Rows => x.dot(&w),
                            Layout::Transposed => x.dot(&w.t()),
                        };
                        let mut out = Array2::from_elem((m, n), f32::NAN);
                        let product = Product::new(x.view(), w.view(), out.view_mut(), layout);
                        // SAFETY: the arrays are the product's, `available` checked the set.
                        unsafe { set.run(&product) };
                        let difference = (&out - &expected).iter().fold(0.0f32, |max, d| max.max(d.abs()));
                        assert!(
                            difference < 1e-4,
                            "{set:?}, {m} rows, k {k}, n {n}, {layout:?}: max |difference| {difference}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "W needs contiguous rows")]
    fn refuses_a_weight_without_contiguous_rows() {
        let (x, w) = (matrix(2, 8, 0), matrix(8, 8, 0));
        times_weight(x.view(), w.t(), Array2::zeros((2, 8)).view_mut());
    }
}
