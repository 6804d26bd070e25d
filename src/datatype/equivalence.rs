//! Rust types with a datatype of their own, so that a `&[T]` can be sent as it is.

use std::mem::{offset_of, size_of};
use std::sync::OnceLock;

use super::{Datatype, Primitive, UserDatatype};

/// A type whose values a datatype describes (rsmpi's `Equivalence`).
///
/// # Safety
///
/// [`Equivalence::equivalent_datatype`] must describe exactly the bytes of `Self` that hold data,
/// at their offsets from the start of a value, with an extent of `size_of::<Self>()` and a lower
/// bound of 0: every byte it names must be initialized in every value (so never padding), and
/// writing any bit pattern of the right primitives to those bytes must leave a valid value. The
/// transports read and write those bytes of other processes' values on the strength of it.
pub unsafe trait Equivalence: Copy + 'static {
    /// The datatype of one value.
    fn equivalent_datatype() -> Datatype;
}

macro_rules! primitives {
    ($($t:ty => $primitive:ident),* $(,)?) => {$(
        // SAFETY: a primitive of the same size, every byte data, every bit pattern valid except
        // for `bool`, whose `Primitive::Bool` elements carry only what a `bool` held.
        unsafe impl Equivalence for $t {
            fn equivalent_datatype() -> Datatype {
                Datatype::primitive(Primitive::$primitive)
            }
        }
    )*};
}
primitives!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    u64 => U64, i64 => I64, f32 => F32, f64 => F64, bool => Bool,
);
#[cfg(target_pointer_width = "64")]
primitives!(usize => U64, isize => I64);
#[cfg(target_pointer_width = "32")]
primitives!(usize => U32, isize => I32);

// SAFETY: an array is its elements one `size_of::<T>()` apart, which is `T`'s extent by `T`'s
// own contract.
unsafe impl<T: Equivalence, const N: usize> Equivalence for [T; N] {
    fn equivalent_datatype() -> Datatype {
        match UserDatatype::contiguous(N, &T::equivalent_datatype()) {
            Ok(array) => array.into(),
            Err(error) => unreachable!("an array that exists has a datatype: {error}"),
        }
    }
}

// SAFETY: each field at its offset in the tuple, the padding left out, resized to the tuple.
unsafe impl<A: Equivalence, B: Equivalence> Equivalence for (A, B) {
    fn equivalent_datatype() -> Datatype {
        struct_datatype(
            &[
                (offset_of!(Self, 0) as isize, A::equivalent_datatype()),
                (offset_of!(Self, 1) as isize, B::equivalent_datatype()),
            ],
            size_of::<Self>(),
        )
    }
}

// SAFETY: as for pairs.
unsafe impl<A: Equivalence, B: Equivalence, C: Equivalence> Equivalence for (A, B, C) {
    fn equivalent_datatype() -> Datatype {
        struct_datatype(
            &[
                (offset_of!(Self, 0) as isize, A::equivalent_datatype()),
                (offset_of!(Self, 1) as isize, B::equivalent_datatype()),
                (offset_of!(Self, 2) as isize, C::equivalent_datatype()),
            ],
            size_of::<Self>(),
        )
    }
}

/// The datatype of a value with one field of each type at each offset, resized to `size` bytes:
/// what [`equivalence!`](crate::equivalence) expands to.
#[doc(hidden)]
pub fn struct_datatype(fields: &[(isize, Datatype)], size: usize) -> Datatype {
    let blocklengths = vec![1; fields.len()];
    let displacements: Vec<isize> = fields.iter().map(|(at, _)| *at).collect();
    let types: Vec<Datatype> = fields
        .iter()
        .map(|(_, datatype)| datatype.clone())
        .collect();
    let made = UserDatatype::structured(&blocklengths, &displacements, &types)
        .and_then(|fields| UserDatatype::resized(&fields, 0, size as isize));
    match made {
        Ok(datatype) => datatype.into(),
        Err(error) => unreachable!("fields of a value that exists have a datatype: {error}"),
    }
}

/// A cache for the datatype of one type, for [`equivalence!`](crate::equivalence).
#[doc(hidden)]
pub type DatatypeCell = OnceLock<Datatype>;

/// Implements [`Equivalence`](crate::datatype::Equivalence) for a struct from its fields.
///
/// Every field must be listed, with its exact type: the macro checks both at compile time (a
/// missing field or a wrong type does not compile), computes the offsets with `offset_of!`, and
/// resizes the datatype to `size_of` the struct, so padding is not data but consecutive values
/// are one struct apart. Every field type must itself be `Equivalence`, and the struct `Copy`.
///
/// ```
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: i32,
///     z: [u8; 3],
/// }
/// onecopy::equivalence!(Point { x: f64, y: i32, z: [u8; 3] });
///
/// use onecopy::datatype::Equivalence;
/// let datatype = Point::equivalent_datatype();
/// assert_eq!(datatype.size(), 15); // 8 + 4 + 3: the padding byte is not data
/// assert_eq!(datatype.extent(), 16); // size_of::<Point>()
/// ```
///
/// Leaving a field out does not compile:
///
/// ```compile_fail
/// #[derive(Clone, Copy)]
/// struct Pair { a: u32, b: u16 }
/// onecopy::equivalence!(Pair { a: u32 });
/// ```
///
/// Nor does a wrong type:
///
/// ```compile_fail
/// #[derive(Clone, Copy)]
/// struct Pair { a: u32, b: u16 }
/// onecopy::equivalence!(Pair { a: u32, b: u32 });
/// ```
#[macro_export]
macro_rules! equivalence {
    ($name:ident { $($field:ident : $ty:ty),+ $(,)? }) => {
        // SAFETY: the pattern below names every field with its type (it does not compile
        // otherwise), each field type is `Equivalence`, and the datatype places each field's
        // datatype at its `offset_of!`, resized to the struct: exactly the data bytes.
        unsafe impl $crate::datatype::Equivalence for $name {
            fn equivalent_datatype() -> $crate::datatype::Datatype {
                #[allow(dead_code)]
                fn every_field_listed_with_its_type(value: &$name) {
                    let $name { $($field),+ } = value;
                    $(let _: &$ty = $field;)+
                }
                static DATATYPE: $crate::datatype::DatatypeCell = $crate::datatype::DatatypeCell::new();
                DATATYPE
                    .get_or_init(|| {
                        $crate::datatype::struct_datatype(
                            &[$((
                                ::core::mem::offset_of!($name, $field) as isize,
                                <$ty as $crate::datatype::Equivalence>::equivalent_datatype(),
                            )),+],
                            ::core::mem::size_of::<$name>(),
                        )
                    })
                    .clone()
            }
        }
    };
}
