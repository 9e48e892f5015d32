//! Kernels generic over a second element type, launched for the type one of their tensors has:
//! bf16 or f16, as products of 16-bit operands read them, or the backend's own float type.

/// `$kernel`'s launch function with its second element type that of `$dtype`: bf16, f16, or
/// `$F` where `$dtype` is `$own` (the type of `$F`'s tensors). Panics, naming `$what`, for any
/// other type.
///
/// A kernel with an integer type too, `$kernel::<$F, $I, $R>`, takes the element type after it.
macro_rules! launch_for_element {
    ($kernel:ident::<$F:ty, $I:ty, $R:ty>, $dtype:expr, $own:expr, $what:expr) => {
        match $dtype {
            burn::tensor::DType::BF16 => $kernel::launch::<$F, $I, half::bf16, $R>,
            burn::tensor::DType::F16 => $kernel::launch::<$F, $I, half::f16, $R>,
            dtype if dtype == $own => $kernel::launch::<$F, $I, $F, $R>,
            dtype => panic!("{}: {dtype:?} beside {:?}", $what, $own),
        }
    };
    ($kernel:ident::<$F:ty, $R:ty>, $dtype:expr, $own:expr, $what:expr) => {
        match $dtype {
            burn::tensor::DType::BF16 => $kernel::launch::<$F, half::bf16, $R>,
            burn::tensor::DType::F16 => $kernel::launch::<$F, half::f16, $R>,
            dtype if dtype == $own => $kernel::launch::<$F, $F, $R>,
            dtype => panic!("{}: {dtype:?} beside {:?}", $what, $own),
        }
    };
}
pub(crate) use launch_for_element;
