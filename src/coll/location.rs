//! MPI's `MINLOC` and `MAXLOC`: reductions over (value, index) pairs ([`ValueIndex`]) that
//! find the smallest (largest) value and where it is, the smallest index on ties.
//!
//! A pair has the layout of MPI's C pair type for its value (`MPI_FLOAT_INT`,
//! `MPI_DOUBLE_INT`, `MPI_LONG_INT`, `MPI_2INT`, `MPI_SHORT_INT`: a C struct of the value and
//! an `int`), so a buffer of pairs is what a C program would pass. Those structs have padding
//! (4 bytes after the `int` of `double_int` and `long_int`, 2 bytes after the `short` of
//! `short_int`), which [`bytemuck::Pod`] forbids: here the padding bytes are private fields,
//! zero in every pair made by [`ValueIndex::new`], so every byte of a pair is a defined byte
//! and a pair can be sent as bytes. `MPI_LONG_DOUBLE_INT` has no counterpart (Rust has no
//! `long double`).

use bytemuck::{Pod, Zeroable};

use super::Operation;

mod sealed {
    pub trait Sealed {}
}

/// The value types of a [`ValueIndex`]: `f32`, `f64`, `i64`, `i32` and `i16`.
pub trait LocationValue: Pod + PartialOrd + sealed::Sealed {
    /// The padding C puts between the value and the `int` (none, or 2 bytes after a `short`).
    type Middle: Pod + Default + std::fmt::Debug;
    /// The padding C puts after the `int` (none, or 4 bytes when the value is 8 bytes).
    type End: Pod + Default + std::fmt::Debug;
}

/// A value and its index, the element of [`LocationOperation`] reductions (MPI's pair types).
///
/// `#[repr(C)]` with C's layout: `ValueIndex<f64>` is 16 bytes with `index` at 8,
/// `ValueIndex<i16>` 8 bytes with `index` at 4. Padding is stored explicitly and is always
/// zero, which makes the pair [`Pod`]; equality compares `value` and `index` only.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ValueIndex<T: LocationValue> {
    /// The value compared.
    pub value: T,
    _middle: T::Middle,
    /// Where it came from (MPI's `int`): a rank, an element's position, any label.
    pub index: i32,
    _end: T::End,
}

// SAFETY: the datatype names exactly the two data fields, at their offsets, resized to the
// pair's size: the padding fields are not data.
unsafe impl<T: LocationValue + crate::datatype::Equivalence> crate::datatype::Equivalence
    for ValueIndex<T>
{
    fn equivalent_datatype() -> crate::datatype::Datatype {
        crate::datatype::struct_datatype(
            &[
                (
                    std::mem::offset_of!(Self, value) as isize,
                    T::equivalent_datatype(),
                ),
                (
                    std::mem::offset_of!(Self, index) as isize,
                    i32::equivalent_datatype(),
                ),
            ],
            std::mem::size_of::<Self>(),
        )
    }
}

impl<T: LocationValue> ValueIndex<T> {
    /// The pair `(value, index)`.
    pub fn new(value: T, index: i32) -> Self {
        ValueIndex {
            value,
            _middle: Default::default(),
            index,
            _end: Default::default(),
        }
    }
}

impl<T: LocationValue + std::fmt::Debug> std::fmt::Debug for ValueIndex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueIndex")
            .field("value", &self.value)
            .field("index", &self.index)
            .finish()
    }
}

impl<T: LocationValue> PartialEq for ValueIndex<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value && self.index == other.index
    }
}

macro_rules! location_values {
    ($($t:ty => ($middle:ty, $end:ty, $size:expr)),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl LocationValue for $t {
            type Middle = $middle;
            type End = $end;
        }
        // No padding: the fields' sizes add up to the struct's, as C lays it out.
        const _: () = assert!(
            std::mem::size_of::<ValueIndex<$t>>() == $size
                && std::mem::size_of::<$t>()
                    + std::mem::size_of::<$middle>()
                    + 4
                    + std::mem::size_of::<$end>()
                    == $size
        );
        // SAFETY: every field is zeroable (primitives and byte arrays), so the all-zero pair
        // is valid.
        unsafe impl Zeroable for ValueIndex<$t> {}
        // SAFETY: `repr(C)`, every field `Pod`, and no padding (the assertion above: the
        // fields fill the struct), so any bytes make a valid pair and every byte is defined.
        unsafe impl Pod for ValueIndex<$t> {}
    )*};
}
location_values!(
    f32 => ([u8; 0], [u8; 0], 8),
    f64 => ([u8; 0], [u8; 4], 16),
    i64 => ([u8; 0], [u8; 4], 16),
    i32 => ([u8; 0], [u8; 0], 8),
    i16 => ([u8; 2], [u8; 0], 8),
);

/// `MINLOC` and `MAXLOC` over [`ValueIndex`] pairs (commutative, as MPI says).
///
/// ```
/// use onecopy::collective::{LocationOperation, Operation, ValueIndex};
/// let mut right = [ValueIndex::new(2.0f64, 5), ValueIndex::new(1.0, 0)];
/// LocationOperation::MinLoc.reduce_into_right(&[ValueIndex::new(2.0, 3), ValueIndex::new(4.0, 1)], &mut right);
/// assert_eq!(right, [ValueIndex::new(2.0, 3), ValueIndex::new(1.0, 0)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationOperation {
    /// The smaller value with its index; on equal values the smaller index.
    MinLoc,
    /// The larger value with its index; on equal values the smaller index.
    MaxLoc,
}

impl LocationOperation {
    /// `a op b` for one pair. Values neither smaller nor larger than each other (equal, or a
    /// NaN) keep `a`'s value with the smaller index, the same on every run.
    pub fn apply<T: LocationValue>(self, a: ValueIndex<T>, b: ValueIndex<T>) -> ValueIndex<T> {
        let (first, second) = match self {
            LocationOperation::MinLoc => (a.value < b.value, b.value < a.value),
            LocationOperation::MaxLoc => (a.value > b.value, b.value > a.value),
        };
        if first {
            a
        } else if second {
            b
        } else {
            ValueIndex::new(a.value, a.index.min(b.index))
        }
    }
}

impl<T: LocationValue> Operation<ValueIndex<T>> for LocationOperation
where
    ValueIndex<T>: Pod,
{
    fn reduce_into_right(&self, left: &[ValueIndex<T>], right: &mut [ValueIndex<T>]) {
        for (r, &l) in right.iter_mut().zip(left) {
            *r = self.apply(l, *r);
        }
    }
    fn reduce_into_left(&self, left: &mut [ValueIndex<T>], right: &[ValueIndex<T>]) {
        for (l, &r) in left.iter_mut().zip(right) {
            *l = self.apply(*l, r);
        }
    }
    fn is_commutative(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_have_the_layout_of_mpis_c_pair_types() {
        assert_eq!(std::mem::offset_of!(ValueIndex<f64>, index), 8);
        assert_eq!(std::mem::align_of::<ValueIndex<f64>>(), 8);
        assert_eq!(std::mem::offset_of!(ValueIndex<i16>, index), 4);
        assert_eq!(std::mem::size_of::<ValueIndex<f32>>(), 8);
        let wide = ValueIndex::new(-1i64, -1);
        assert_eq!(&bytemuck::bytes_of(&wide)[12..], &[0, 0, 0, 0]);
        let short = ValueIndex::new(-1i16, -1);
        assert_eq!(&bytemuck::bytes_of(&short)[2..4], &[0, 0]);
    }

    #[test]
    fn pairs_have_a_datatype_of_their_two_fields() {
        use crate::datatype::{Equivalence, Primitive};
        let t = ValueIndex::<f64>::equivalent_datatype();
        assert_eq!((t.size(), t.extent()), (12, 16));
        assert_eq!(t.segments(1).collect::<Vec<_>>(), [(0, 12)]);
        assert_eq!(t.primitive_elements_in(24), 4);
        let t = ValueIndex::<i16>::equivalent_datatype();
        assert_eq!((t.size(), t.extent()), (6, 8));
        assert_eq!(t.segments(2).collect::<Vec<_>>(), [(0, 2), (4, 6), (12, 4)]);
        assert_eq!(
            ValueIndex::<i32>::equivalent_datatype().homogeneous(),
            Some(Primitive::I32)
        );
    }

    #[test]
    fn ties_take_the_smaller_index_either_way_round() {
        let (a, b) = (ValueIndex::new(3i32, 7), ValueIndex::new(3i32, 2));
        for op in [LocationOperation::MinLoc, LocationOperation::MaxLoc] {
            assert_eq!(op.apply(a, b), ValueIndex::new(3, 2));
            assert_eq!(op.apply(b, a), ValueIndex::new(3, 2));
        }
        let (lo, hi) = (ValueIndex::new(1.5f32, 9), ValueIndex::new(2.5f32, 0));
        assert_eq!(LocationOperation::MinLoc.apply(hi, lo), lo);
        assert_eq!(LocationOperation::MaxLoc.apply(lo, hi), hi);
    }
}
