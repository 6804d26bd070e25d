//! Reduction operations: the system ones (sum, product, min, max, and for integers the logical
//! and bitwise ones) and user closures.
//!
//! Every collective combines contributions in rank order, `x0 op x1 op ... op x(n-1)`, with a
//! tree or ring shape fixed by the rank count and size alone, so a float reduction gives the same
//! bits on every run. Bitwise and logical operations exist for integer types only: asking for
//! one over `f64` does not compile.

use bytemuck::Pod;

mod sealed {
    pub trait Sealed {}
}

/// The element types the system operations reduce: the primitive integers and floats.
pub trait Number: Pod + PartialOrd + sealed::Sealed {
    /// `a + b` (wrapping for integers, as a serial loop in release builds would).
    fn add(a: Self, b: Self) -> Self;
    /// `a × b` (wrapping for integers).
    fn mul(a: Self, b: Self) -> Self;
}

/// The integer element types, which also have the logical and bitwise operations.
pub trait Integer: Number + Eq {
    /// `a & b`.
    fn bit_and(a: Self, b: Self) -> Self;
    /// `a | b`.
    fn bit_or(a: Self, b: Self) -> Self;
    /// `a ^ b`.
    fn bit_xor(a: Self, b: Self) -> Self;
    /// 1 if `b` is true, 0 if not (C's convention for logical results).
    fn from_bool(b: bool) -> Self;
    /// Whether the value is non-zero.
    fn truth(self) -> bool;
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Number for $t {
            fn add(a: Self, b: Self) -> Self { a.wrapping_add(b) }
            fn mul(a: Self, b: Self) -> Self { a.wrapping_mul(b) }
        }
        impl Integer for $t {
            fn bit_and(a: Self, b: Self) -> Self { a & b }
            fn bit_or(a: Self, b: Self) -> Self { a | b }
            fn bit_xor(a: Self, b: Self) -> Self { a ^ b }
            fn from_bool(b: bool) -> Self { b as $t }
            fn truth(self) -> bool { self != 0 }
        }
    )*};
}
integers!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

macro_rules! floats {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Number for $t {
            fn add(a: Self, b: Self) -> Self { a + b }
            fn mul(a: Self, b: Self) -> Self { a * b }
        }
    )*};
}
floats!(f32, f64);

/// An operation a reduction applies to slices of `T`, element by element or as a whole.
pub trait Operation<T: Pod> {
    /// `right = left op right`, element by element (`left` holds the lower ranks' part).
    fn reduce_into_right(&self, left: &[T], right: &mut [T]);

    /// `left = left op right`; the default goes through a copy of `right`.
    fn reduce_into_left(&self, left: &mut [T], right: &[T]) {
        let mut out = right.to_vec();
        self.reduce_into_right(left, &mut out);
        left.copy_from_slice(&out);
    }

    /// Whether `a op b == b op a`, which lets a collective choose a ring over a tree.
    fn is_commutative(&self) -> bool;
}

impl<T: Pod, O: Operation<T> + ?Sized> Operation<T> for &O {
    fn reduce_into_right(&self, left: &[T], right: &mut [T]) {
        (**self).reduce_into_right(left, right)
    }
    fn reduce_into_left(&self, left: &mut [T], right: &[T]) {
        (**self).reduce_into_left(left, right)
    }
    fn is_commutative(&self) -> bool {
        (**self).is_commutative()
    }
}

/// Sum, product, minimum and maximum, for every [`Number`] (rsmpi's `SystemOperation`); the
/// integer-only operations are made by [`SystemOperation::bitwise_and`] and its siblings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemOperation {
    /// `a + b`.
    Sum,
    /// `a × b`.
    Product,
    /// The smaller.
    Min,
    /// The larger.
    Max,
}

/// The logical and bitwise operations, for [`Integer`] types only: over floats they do not
/// compile.
///
/// ```compile_fail
/// use onecopy::coll::{Operation, SystemOperation};
/// let mut right = [1.0f64];
/// SystemOperation::bitwise_and().reduce_into_right(&[2.0f64], &mut right);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegerOperation {
    /// Both non-zero → 1, else 0.
    LogicalAnd,
    /// Either non-zero → 1, else 0.
    LogicalOr,
    /// Exactly one non-zero → 1, else 0.
    LogicalXor,
    /// `a & b`.
    BitwiseAnd,
    /// `a | b`.
    BitwiseOr,
    /// `a ^ b`.
    BitwiseXor,
}

impl SystemOperation {
    /// `a + b`.
    pub fn sum() -> SystemOperation {
        SystemOperation::Sum
    }
    /// `a × b`.
    pub fn product() -> SystemOperation {
        SystemOperation::Product
    }
    /// The smaller.
    pub fn min() -> SystemOperation {
        SystemOperation::Min
    }
    /// The larger.
    pub fn max() -> SystemOperation {
        SystemOperation::Max
    }
    /// Logical and (integers only).
    pub fn logical_and() -> IntegerOperation {
        IntegerOperation::LogicalAnd
    }
    /// Logical or (integers only).
    pub fn logical_or() -> IntegerOperation {
        IntegerOperation::LogicalOr
    }
    /// Logical exclusive or (integers only).
    pub fn logical_xor() -> IntegerOperation {
        IntegerOperation::LogicalXor
    }
    /// Bitwise and (integers only).
    pub fn bitwise_and() -> IntegerOperation {
        IntegerOperation::BitwiseAnd
    }
    /// Bitwise or (integers only).
    pub fn bitwise_or() -> IntegerOperation {
        IntegerOperation::BitwiseOr
    }
    /// Bitwise exclusive or (integers only).
    pub fn bitwise_xor() -> IntegerOperation {
        IntegerOperation::BitwiseXor
    }

    /// `a op b` for one element.
    pub fn apply<T: Number>(self, a: T, b: T) -> T {
        match self {
            SystemOperation::Sum => T::add(a, b),
            SystemOperation::Product => T::mul(a, b),
            // `b` when `a` is not smaller: a NaN in `a` gives `b`, the same on every run.
            SystemOperation::Min => {
                if a < b {
                    a
                } else {
                    b
                }
            }
            SystemOperation::Max => {
                if a > b {
                    a
                } else {
                    b
                }
            }
        }
    }
}

impl IntegerOperation {
    /// `a op b` for one element.
    pub fn apply<T: Integer>(self, a: T, b: T) -> T {
        match self {
            IntegerOperation::LogicalAnd => T::from_bool(a.truth() && b.truth()),
            IntegerOperation::LogicalOr => T::from_bool(a.truth() || b.truth()),
            IntegerOperation::LogicalXor => T::from_bool(a.truth() != b.truth()),
            IntegerOperation::BitwiseAnd => T::bit_and(a, b),
            IntegerOperation::BitwiseOr => T::bit_or(a, b),
            IntegerOperation::BitwiseXor => T::bit_xor(a, b),
        }
    }
}

/// `left[i] = f(left[i], right[i])`. Generic over `f` so that each operation gets a loop of
/// its own, which the compiler vectorizes; a `match` on the operation per element stops it.
///
/// Where the processor has AVX2 the loop is compiled for it too and chosen at run time (a
/// build for any x86-64 only gets 128-bit vectors): the 2-rank f64 reduce, mostly this loop
/// on the root, went from 2.92 to 2.47 µs a call at 64 KiB and from 0.45 to 0.40 at 8 KiB.
/// Each element is one operation either way, so the results are the same bits.
fn into_left<T: Copy>(left: &mut [T], right: &[T], f: impl Fn(T, T) -> T) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        return unsafe { into_left_avx2(left, right, f) };
    }
    into_left_any(left, right, f)
}

#[inline(always)]
fn into_left_any<T: Copy>(left: &mut [T], right: &[T], f: impl Fn(T, T) -> T) {
    for (l, &r) in left.iter_mut().zip(right) {
        *l = f(*l, r);
    }
}

/// # Safety
/// The processor must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn into_left_avx2<T: Copy>(left: &mut [T], right: &[T], f: impl Fn(T, T) -> T) {
    into_left_any(left, right, f)
}

/// `right[i] = f(left[i], right[i])`; chosen at run time like [`into_left`].
fn into_right<T: Copy>(left: &[T], right: &mut [T], f: impl Fn(T, T) -> T) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        return unsafe { into_right_avx2(left, right, f) };
    }
    into_right_any(left, right, f)
}

#[inline(always)]
fn into_right_any<T: Copy>(left: &[T], right: &mut [T], f: impl Fn(T, T) -> T) {
    for (r, &l) in right.iter_mut().zip(left) {
        *r = f(l, *r);
    }
}

/// # Safety
/// The processor must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn into_right_avx2<T: Copy>(left: &[T], right: &mut [T], f: impl Fn(T, T) -> T) {
    into_right_any(left, right, f)
}

/// Calls `$run` with a closure for `$op`'s variant, each a constant the match folds away.
macro_rules! per_variant {
    ($op:expr, $run:expr, $ty:ident { $($v:ident),* }) => {
        match $op {
            $($ty::$v => $run(|a, b| $ty::$v.apply(a, b)),)*
        }
    };
}

impl<T: Number> Operation<T> for SystemOperation {
    fn reduce_into_right(&self, left: &[T], right: &mut [T]) {
        per_variant!(
            self,
            |f| into_right(left, right, f),
            SystemOperation {
                Sum,
                Product,
                Min,
                Max
            }
        )
    }
    fn reduce_into_left(&self, left: &mut [T], right: &[T]) {
        per_variant!(
            self,
            |f| into_left(left, right, f),
            SystemOperation {
                Sum,
                Product,
                Min,
                Max
            }
        )
    }
    fn is_commutative(&self) -> bool {
        true
    }
}

impl<T: Integer> Operation<T> for IntegerOperation {
    fn reduce_into_right(&self, left: &[T], right: &mut [T]) {
        per_variant!(
            self,
            |f| into_right(left, right, f),
            IntegerOperation {
                LogicalAnd,
                LogicalOr,
                LogicalXor,
                BitwiseAnd,
                BitwiseOr,
                BitwiseXor
            }
        )
    }
    fn reduce_into_left(&self, left: &mut [T], right: &[T]) {
        per_variant!(
            self,
            |f| into_left(left, right, f),
            IntegerOperation {
                LogicalAnd,
                LogicalOr,
                LogicalXor,
                BitwiseAnd,
                BitwiseOr,
                BitwiseXor
            }
        )
    }
    fn is_commutative(&self) -> bool {
        true
    }
}

/// A reduction written by the user (rsmpi's `UserOperation`): `f(left, right)` must set
/// `right[i] = left[i] op right[i]` for every `i`, where `left` holds the lower ranks' part.
/// The operation must be associative (collectives group contributions as their tree or ring
/// shape dictates) and must not call the runtime: it runs inside a collective.
///
/// ```
/// use onecopy::coll::{Operation, UserOperation};
/// let max_abs = UserOperation::commutative(|l: &[i64], r: &mut [i64]| {
///     for (r, l) in r.iter_mut().zip(l) {
///         *r = (*r).abs().max(l.abs());
///     }
/// });
/// let mut right = [3, -7];
/// max_abs.reduce_into_right(&[-5, 2], &mut right);
/// assert_eq!(right, [5, 7]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct UserOperation<F> {
    f: F,
    commutative: bool,
}

impl<F> UserOperation<F> {
    /// An operation with `a op b == b op a`: collectives may combine in any fixed order.
    pub fn commutative(f: F) -> Self {
        UserOperation {
            f,
            commutative: true,
        }
    }

    /// An operation applied strictly in rank order.
    pub fn non_commutative(f: F) -> Self {
        UserOperation {
            f,
            commutative: false,
        }
    }
}

impl<T: Pod, F: Fn(&[T], &mut [T])> Operation<T> for UserOperation<F> {
    fn reduce_into_right(&self, left: &[T], right: &mut [T]) {
        (self.f)(left, right)
    }
    fn is_commutative(&self) -> bool {
        self.commutative
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loops chosen at run time (AVX2 where the processor has it) give the same bits as the
    /// plain loop, for every float operation, on values with NaNs, signed zeros, infinities and
    /// subnormals, at lengths that leave vector remainders.
    #[test]
    fn wide_loops_give_the_same_bits_as_the_plain_one() {
        let specials = [
            0.0f64,
            -0.0,
            1.5,
            -2.25,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE / 3.0,
            1e308,
            -1e-300,
            7.0,
        ];
        let a: Vec<f64> = (0..203)
            .map(|i| specials[i % 11] * (1.0 + i as f64))
            .collect();
        let b: Vec<f64> = (0..203)
            .map(|i| specials[(i * 7 + 3) % 11] / (1.0 + i as f64))
            .collect();
        for op in [
            SystemOperation::Sum,
            SystemOperation::Product,
            SystemOperation::Min,
            SystemOperation::Max,
        ] {
            for len in [0, 1, 3, 4, 5, 15, 16, 17, 203] {
                let mut left = a[..len].to_vec();
                let mut plain = a[..len].to_vec();
                op.reduce_into_left(&mut left, &b[..len]);
                into_left_any(&mut plain, &b[..len], |x, y| op.apply(x, y));
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&left), bits(&plain), "{op:?} into left, {len}");
                let mut right = b[..len].to_vec();
                let mut plain = b[..len].to_vec();
                op.reduce_into_right(&a[..len], &mut right);
                into_right_any(&a[..len], &mut plain, |x, y| op.apply(x, y));
                assert_eq!(bits(&right), bits(&plain), "{op:?} into right, {len}");
                let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
                let mut left = f32s(&a[..len]);
                let mut plain = f32s(&a[..len]);
                op.reduce_into_left(&mut left, &f32s(&b[..len]));
                into_left_any(&mut plain, &f32s(&b[..len]), |x, y| op.apply(x, y));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&left), bits(&plain), "{op:?} f32, {len}");
            }
        }
    }
}
