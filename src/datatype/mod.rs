//! Derived datatypes: MPI's description of where the data of a message lies in memory
//! (`MPI_Type_vector`, `MPI_Type_create_struct`, `MPI_Type_create_subarray` ...), and packing
//! through them.
//!
//! This module owns the layout arithmetic only: building types with checked arithmetic, the
//! MPI-3.1 §4.1 bounds (lower bound, extent, true extent, resized markers), the byte segments a
//! transfer walks, the signature, packing, buffer views and a serialization a peer can rebuild a
//! type from. It does not move messages: point to point and the collectives take a [`View`] or
//! the [`Datatype::segments`] of one and turn them into iovec lists.
//!
//! A [`Datatype`] keeps the constructor that made it ([`Datatype::combiner`]) beside a normalized
//! layout tree (runs of bytes, repeats and sequences of blocks), so that a vector of a million
//! blocks is three nodes and [`Datatype::segments`] walks it lazily. Every type also has a
//! signature, the sequence of its primitive elements, which the layout does not keep because it
//! merges adjacent runs whatever they hold.
//!
//! Two deliberate departures from C implementations: the extent of a struct is never rounded up
//! for alignment (resize it, as [`equivalence!`](crate::equivalence) does, to match a Rust
//! struct), and nesting is limited to [`MAX_DEPTH`] constructors so that no walk over a type can
//! exhaust the stack.
//!
//! ```
//! use onecopy::datatype::{Datatype, Primitive, UserDatatype};
//!
//! // Every other pair of i32s, three times.
//! let pairs = UserDatatype::vector(3, 2, 4, &Datatype::primitive(Primitive::I32))?;
//! assert_eq!((pairs.size(), pairs.extent()), (24, 40));
//! let segments: Vec<_> = pairs.segments(1).collect();
//! assert_eq!(segments, [(0, 8), (16, 8), (32, 8)]);
//! # Ok::<(), onecopy::datatype::DatatypeError>(())
//! ```

mod encode;
mod equivalence;
mod layout;
mod signature;
#[cfg(test)]
mod tests;
mod view;

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

pub use encode::{MAX_ENCODING_BYTES, MAX_ENCODING_NODES};
pub use equivalence::Equivalence;
#[doc(hidden)]
pub use equivalence::{DatatypeCell, struct_datatype};
pub use layout::{Batch, Direction, Segments, Stream};
pub use view::{MutView, View};

use layout::{Bounds, Node, add, mul, repeat_bounds, shift, to_isize, union};
use signature::{Signature, Uniform};

/// The deepest nesting of constructors a type may have (a primitive is depth 0; a
/// [`UserDatatype::dup`] may sit one level above). Decoding a peer's type enforces the same limit,
/// which bounds every recursive walk over a type.
pub const MAX_DEPTH: usize = 64;

/// The most dimensions a subarray may have.
pub const MAX_SUBARRAY_DIMENSIONS: usize = 32;

/// Why a datatype could not be built, decoded or used on a buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatatypeError {
    /// A size, displacement or extent does not fit the address space.
    #[error("datatype arithmetic overflows: a size, displacement or extent does not fit in isize")]
    Overflow,
    /// The layout reaches outside the buffer.
    #[error(
        "the layout spans bytes {lower}..{upper} relative to the buffer start, but the buffer \
         holds 0..{buffer_len}; pass a larger buffer, or a smaller count"
    )]
    OutOfBounds {
        /// Lowest byte the layout touches.
        lower: isize,
        /// One past the highest byte the layout touches.
        upper: isize,
        /// Length of the buffer in bytes.
        buffer_len: usize,
    },
    /// A receive layout writes some byte more than once.
    #[error("the layout writes some byte more than once, so it cannot describe a receive buffer")]
    Overlap,
    /// A packed buffer is too short to pack into, or a packed stream longer than the layout.
    #[error("packed length mismatch: {expected} bytes are needed, {actual} given")]
    LengthMismatch {
        /// Bytes the layout needs (to pack into) or holds (to unpack from).
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// An encoded datatype is malformed.
    #[error("bad datatype encoding: {0}")]
    BadEncoding(String),
    /// Constructor arguments that MPI does not allow.
    #[error("invalid datatype argument: {0}")]
    InvalidArgument(String),
    /// A type nested deeper than [`MAX_DEPTH`].
    #[error("datatype nested {depth} constructors deep, more than the limit of {limit}")]
    TooDeep {
        /// The depth the type would have.
        depth: usize,
        /// [`MAX_DEPTH`].
        limit: usize,
    },
}

/// The predefined element types (`MPI_UINT8_T`, `MPI_DOUBLE`, `MPI_BYTE` ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Primitive {
    /// `u8`.
    U8,
    /// `i8`.
    I8,
    /// `u16`.
    U16,
    /// `i16`.
    I16,
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `u64`.
    U64,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `bool`, one byte (`MPI_C_BOOL`).
    Bool,
    /// An untyped byte (`MPI_BYTE`).
    Byte,
}

impl Primitive {
    /// Every primitive, in declaration order.
    pub const ALL: [Primitive; 12] = [
        Primitive::U8,
        Primitive::I8,
        Primitive::U16,
        Primitive::I16,
        Primitive::U32,
        Primitive::I32,
        Primitive::U64,
        Primitive::I64,
        Primitive::F32,
        Primitive::F64,
        Primitive::Bool,
        Primitive::Byte,
    ];

    /// Bytes in one element.
    pub fn size(self) -> usize {
        match self {
            Primitive::U8 | Primitive::I8 | Primitive::Bool | Primitive::Byte => 1,
            Primitive::U16 | Primitive::I16 => 2,
            Primitive::U32 | Primitive::I32 | Primitive::F32 => 4,
            Primitive::U64 | Primitive::I64 | Primitive::F64 => 8,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which index of a subarray varies fastest in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    /// Row major: the last index varies fastest (`MPI_ORDER_C`).
    C,
    /// Column major: the first index varies fastest (`MPI_ORDER_FORTRAN`).
    Fortran,
}

/// The constructor that made a type and its arguments, as `MPI_Type_get_envelope` and
/// `MPI_Type_get_contents` report them. Equal when the arguments are equal and the old types
/// equal as [`Datatype`]s.
#[derive(Debug, Clone)]
pub enum Combiner {
    /// A predefined type.
    Named(Primitive),
    /// [`UserDatatype::contiguous`].
    Contiguous {
        /// Elements of `old`.
        count: usize,
        /// The element type.
        old: Datatype,
    },
    /// [`UserDatatype::vector`].
    Vector {
        /// Blocks.
        count: usize,
        /// Elements of `old` per block.
        blocklength: usize,
        /// Distance between block starts, in extents of `old`.
        stride: isize,
        /// The element type.
        old: Datatype,
    },
    /// [`UserDatatype::heterogeneous_vector`].
    HVector {
        /// Blocks.
        count: usize,
        /// Elements of `old` per block.
        blocklength: usize,
        /// Distance between block starts, in bytes.
        stride_bytes: isize,
        /// The element type.
        old: Datatype,
    },
    /// [`UserDatatype::indexed`].
    Indexed {
        /// Elements of `old` in each block.
        blocklengths: Vec<usize>,
        /// Block starts, in extents of `old`.
        displacements: Vec<isize>,
        /// The element type.
        old: Datatype,
    },
    /// [`UserDatatype::heterogeneous_indexed`].
    HIndexed {
        /// Elements of `old` in each block.
        blocklengths: Vec<usize>,
        /// Block starts, in bytes.
        displacements_bytes: Vec<isize>,
        /// The element type.
        old: Datatype,
    },
    /// [`UserDatatype::indexed_block`].
    IndexedBlock {
        /// Elements of `old` in every block.
        blocklength: usize,
        /// Block starts, in extents of `old`.
        displacements: Vec<isize>,
        /// The element type.
        old: Datatype,
    },
    /// [`UserDatatype::heterogeneous_indexed_block`].
    HIndexedBlock {
        /// Elements of `old` in every block.
        blocklength: usize,
        /// Block starts, in bytes.
        displacements_bytes: Vec<isize>,
        /// The element type.
        old: Datatype,
    },
    /// [`UserDatatype::structured`].
    Struct {
        /// Elements in each block.
        blocklengths: Vec<usize>,
        /// Block starts, in bytes.
        displacements_bytes: Vec<isize>,
        /// The element type of each block.
        types: Vec<Datatype>,
    },
    /// [`UserDatatype::resized`].
    Resized {
        /// The new lower bound, in bytes.
        lb: isize,
        /// The new extent, in bytes.
        extent: isize,
        /// The type resized.
        old: Datatype,
    },
    /// [`UserDatatype::subarray`].
    Subarray {
        /// Elements of the whole array in each dimension.
        sizes: Vec<usize>,
        /// Elements of the subarray in each dimension.
        subsizes: Vec<usize>,
        /// Where the subarray starts in each dimension.
        starts: Vec<usize>,
        /// Which index varies fastest.
        order: Order,
        /// The element type.
        old: Datatype,
    },
    /// [`UserDatatype::dup`].
    Dup(Datatype),
}

impl Combiner {
    /// The old types the constructor took, in argument order.
    pub fn old_types(&self) -> Vec<&Datatype> {
        match self {
            Combiner::Named(_) => Vec::new(),
            Combiner::Struct { types, .. } => types.iter().collect(),
            Combiner::Contiguous { old, .. }
            | Combiner::Vector { old, .. }
            | Combiner::HVector { old, .. }
            | Combiner::Indexed { old, .. }
            | Combiner::HIndexed { old, .. }
            | Combiner::IndexedBlock { old, .. }
            | Combiner::HIndexedBlock { old, .. }
            | Combiner::Resized { old, .. }
            | Combiner::Subarray { old, .. }
            | Combiner::Dup(old) => vec![old],
        }
    }

    /// Equal arguments, the old types compared with `same`.
    fn same_arguments(
        &self,
        other: &Combiner,
        same: &mut dyn FnMut(&Datatype, &Datatype) -> bool,
    ) -> bool {
        use Combiner as C;
        let scalars = match (self, other) {
            (C::Named(a), C::Named(b)) => a == b,
            (C::Contiguous { count: a, .. }, C::Contiguous { count: b, .. }) => a == b,
            (
                C::Vector {
                    count: a,
                    blocklength: b,
                    stride: c,
                    ..
                },
                C::Vector {
                    count: x,
                    blocklength: y,
                    stride: z,
                    ..
                },
            )
            | (
                C::HVector {
                    count: a,
                    blocklength: b,
                    stride_bytes: c,
                    ..
                },
                C::HVector {
                    count: x,
                    blocklength: y,
                    stride_bytes: z,
                    ..
                },
            ) => (a, b, c) == (x, y, z),
            (
                C::Indexed {
                    blocklengths: a,
                    displacements: b,
                    ..
                },
                C::Indexed {
                    blocklengths: x,
                    displacements: y,
                    ..
                },
            )
            | (
                C::HIndexed {
                    blocklengths: a,
                    displacements_bytes: b,
                    ..
                },
                C::HIndexed {
                    blocklengths: x,
                    displacements_bytes: y,
                    ..
                },
            )
            | (
                C::Struct {
                    blocklengths: a,
                    displacements_bytes: b,
                    ..
                },
                C::Struct {
                    blocklengths: x,
                    displacements_bytes: y,
                    ..
                },
            ) => (a, b) == (x, y),
            (
                C::IndexedBlock {
                    blocklength: a,
                    displacements: b,
                    ..
                },
                C::IndexedBlock {
                    blocklength: x,
                    displacements: y,
                    ..
                },
            )
            | (
                C::HIndexedBlock {
                    blocklength: a,
                    displacements_bytes: b,
                    ..
                },
                C::HIndexedBlock {
                    blocklength: x,
                    displacements_bytes: y,
                    ..
                },
            ) => (a, b) == (x, y),
            (
                C::Resized {
                    lb: a, extent: b, ..
                },
                C::Resized {
                    lb: x, extent: y, ..
                },
            ) => (a, b) == (x, y),
            (
                C::Subarray {
                    sizes: a,
                    subsizes: b,
                    starts: c,
                    order: d,
                    ..
                },
                C::Subarray {
                    sizes: w,
                    subsizes: x,
                    starts: y,
                    order: z,
                    ..
                },
            ) => (a, b, c, d) == (w, x, y, z),
            (C::Dup(_), C::Dup(_)) => true,
            _ => false,
        };
        let (mine, theirs) = (self.old_types(), other.old_types());
        scalars && mine.len() == theirs.len() && mine.iter().zip(&theirs).all(|(a, b)| same(a, b))
    }
}

/// What a type is made of beyond its combiner: the layout, the markers set by resizing, the
/// signature. Constructors compose these.
#[derive(Clone, Debug)]
struct Part {
    layout: Arc<Node>,
    /// Bounds of the lower- and upper-bound markers, if any copy of a resized type is inside.
    markers: Bounds,
    signature: Arc<Signature>,
}

impl Part {
    fn primitive(primitive: Primitive) -> Result<Part, DatatypeError> {
        Ok(Part {
            layout: Node::run(primitive.size())?,
            markers: None,
            signature: Signature::primitive(primitive),
        })
    }

    /// MPI's lower and upper bound: from the markers if there are any, else from the data.
    fn lb_ub(&self) -> (isize, isize) {
        self.markers.or(self.layout.bounds).unwrap_or((0, 0))
    }

    fn extent(&self) -> isize {
        let (lb, ub) = self.lb_ub();
        ub - lb
    }

    /// `count` copies, copy `k` at `k * stride` bytes.
    fn repeat(&self, count: usize, stride: isize) -> Result<Part, DatatypeError> {
        Ok(Part {
            layout: Node::repeat(count, stride, &self.layout)?,
            markers: repeat_bounds(self.markers, count, stride)?,
            signature: Signature::repeat(count, &self.signature)?,
        })
    }

    /// `blocklength` copies of `self` one extent apart.
    fn block(&self, blocklength: usize) -> Result<Part, DatatypeError> {
        self.repeat(blocklength, self.extent())
    }

    /// The parts in order, each at its displacement in bytes.
    fn blocks(parts: Vec<(isize, Part)>) -> Result<Part, DatatypeError> {
        let mut markers = None;
        let mut layouts = Vec::with_capacity(parts.len());
        let mut signatures = Vec::with_capacity(parts.len());
        for (at, part) in parts {
            markers = union(markers, shift(part.markers, at)?);
            layouts.push((at, part.layout));
            signatures.push(part.signature);
        }
        Ok(Part {
            layout: Node::blocks(layouts)?,
            markers,
            signature: Signature::sequence(signatures)?,
        })
    }
}

struct Inner {
    combiner: Combiner,
    part: Part,
    /// Constructors between this type and the primitives.
    depth: usize,
    /// Whether one element overlaps itself, computed on first need.
    overlaps_one: OnceLock<bool>,
}

/// A datatype: a layout of primitive elements relative to a buffer start, with MPI's bounds.
///
/// Cloning is cheap (a reference count). Equality is structural over the construction: two types
/// are equal when they were made by the same constructors with the same arguments from equal old
/// types, wherever they were built (a decoded copy equals its original). `dup(t) != t`, as their
/// combiners differ, although they describe the same layout.
#[derive(Clone)]
pub struct Datatype(Arc<Inner>);

impl Datatype {
    fn new(combiner: Combiner, part: Part) -> Result<Datatype, DatatypeError> {
        let depth = 1 + combiner
            .old_types()
            .iter()
            .map(|old| old.0.depth)
            .max()
            .unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(DatatypeError::TooDeep {
                depth,
                limit: MAX_DEPTH,
            });
        }
        // The extent and true extent are differences of bounds that each fit; the differences
        // must fit too, so that every accessor is plain arithmetic.
        let (lb, ub) = part.lb_ub();
        let (true_lb, true_ub) = part.layout.bounds.unwrap_or((0, 0));
        if ub.checked_sub(lb).is_none() || true_ub.checked_sub(true_lb).is_none() {
            return Err(DatatypeError::Overflow);
        }
        Ok(Datatype(Arc::new(Inner {
            combiner,
            part,
            depth,
            overlaps_one: OnceLock::new(),
        })))
    }

    /// The predefined type for `primitive` (shared: calling this twice gives one allocation).
    pub fn primitive(primitive: Primitive) -> Datatype {
        static NAMED: [OnceLock<Datatype>; 12] = [const { OnceLock::new() }; 12];
        NAMED[primitive.index()]
            .get_or_init(|| {
                let part = match Part::primitive(primitive) {
                    Ok(part) => part,
                    Err(_) => unreachable!("a primitive is at most 8 bytes"),
                };
                Datatype(Arc::new(Inner {
                    combiner: Combiner::Named(primitive),
                    part,
                    depth: 0,
                    overlaps_one: OnceLock::from(false),
                }))
            })
            .clone()
    }

    /// The untyped byte (`MPI_BYTE`).
    pub fn bytes() -> Datatype {
        Datatype::primitive(Primitive::Byte)
    }

    fn part(&self) -> &Part {
        &self.0.part
    }

    fn layout(&self) -> &Node {
        &self.0.part.layout
    }

    /// The constructor that made this type and its arguments.
    pub fn combiner(&self) -> &Combiner {
        &self.0.combiner
    }

    /// Constructors between this type and the primitives (0 for a primitive).
    pub fn depth(&self) -> usize {
        self.0.depth
    }

    /// Bytes of data in one element (`MPI_Type_size`).
    pub fn size(&self) -> usize {
        self.layout().size
    }

    /// The lower bound (`MPI_Type_get_extent`'s `lb`): the lowest lower-bound marker a resize
    /// left inside the type if there is one, else the lowest data byte, else 0.
    pub fn lower_bound(&self) -> isize {
        self.part().lb_ub().0
    }

    /// Upper bound minus lower bound: the distance between consecutive elements of this type in
    /// a count, a vector or a contiguous type. Not rounded up for alignment.
    pub fn extent(&self) -> isize {
        self.part().extent()
    }

    /// The lowest data byte, ignoring markers (`MPI_Type_get_true_extent`); 0 for a type
    /// without data.
    pub fn true_lower_bound(&self) -> isize {
        self.layout().bounds.map_or(0, |(low, _)| low)
    }

    /// One past the highest data byte minus the lowest; 0 for a type without data.
    pub fn true_extent(&self) -> isize {
        self.layout().bounds.map_or(0, |(low, high)| high - low)
    }

    /// The true bounds of `count` elements, element `i` displaced by `i * extent`: the bytes a
    /// buffer must hold. `None` when they hold no data.
    pub fn layout_bounds(&self, count: usize) -> Result<Option<(isize, isize)>, DatatypeError> {
        repeat_bounds(self.layout().bounds, count, self.extent())
    }

    /// If `count` elements are one contiguous run of bytes in packing order: its offset from the
    /// buffer start and its length; `Some((0, 0))` when there is no data. O(1).
    pub fn contiguous_run(&self, count: usize) -> Option<(isize, usize)> {
        match self.segment_count(count) {
            0 => Some((0, 0)),
            1 => Some((self.layout().first_start, self.size().checked_mul(count)?)),
            _ => None,
        }
    }

    /// The `(offset, len)` byte segments of `count` elements, element `i` displaced by
    /// `i * extent`, offsets relative to the buffer start, in packing (typemap) order. A segment
    /// is merged with the previous one only when it starts exactly where that one ended; none is
    /// empty.
    ///
    /// Lazy: each item costs O(depth) and allocates nothing, whatever the number of segments.
    /// Offsets are exact whenever [`Datatype::layout_bounds`] of `count` succeeds.
    pub fn segments(&self, count: usize) -> Segments<'_> {
        Segments::new(self.layout(), count, self.extent())
    }

    /// The exact number of items [`Datatype::segments`] yields, in O(1) without iterating
    /// (saturating at `usize::MAX`, which only a count whose data overflows memory reaches).
    pub fn segment_count(&self, count: usize) -> usize {
        let layout = self.layout();
        if count == 0 || layout.is_empty() {
            return 0;
        }
        let seam = Some(layout.last_end) == self.extent().checked_add(layout.first_start);
        let count = count as u128;
        let pieces = layout.pieces as u128 * count;
        let joins = layout.joins as u128 * count + if seam { count - 1 } else { 0 };
        usize::try_from(pieces - joins).unwrap_or(usize::MAX)
    }

    /// Bytes `count` elements pack into: `size * count`, saturating at `usize::MAX`.
    pub fn pack_size(&self, count: usize) -> usize {
        self.size().saturating_mul(count)
    }

    /// `Some(p)` if every primitive element of the type is `p`; `None` for a mixed type or one
    /// without elements.
    pub fn homogeneous(&self) -> Option<Primitive> {
        match self.part().signature.uniform {
            Uniform::One(primitive) => Some(primitive),
            Uniform::Empty | Uniform::Mixed => None,
        }
    }

    /// Whole primitive elements in the first `bytes` bytes of a packed stream of elements of
    /// this type (`MPI_Get_elements`). O(depth × widest struct or indexed list).
    pub fn primitive_elements_in(&self, bytes: usize) -> usize {
        let signature = &self.part().signature;
        if signature.size == 0 {
            return 0;
        }
        let whole = bytes / signature.size;
        whole.saturating_mul(signature.elements) + signature.elements_in(bytes % signature.size)
    }

    /// Whole elements of this type in `bytes` packed bytes (`MPI_Get_count`): `None`
    /// (`MPI_UNDEFINED`) when `bytes` is not a multiple of the size; `Some(0)` for a type of
    /// size 0.
    pub fn count_in(&self, bytes: usize) -> Option<usize> {
        match self.size() {
            0 => Some(0),
            size if bytes.is_multiple_of(size) => Some(bytes / size),
            _ => None,
        }
    }

    /// Whether `count` elements write some byte twice, which makes them unfit for a receive.
    ///
    /// Cost: O(1) when the structure proves the layout disjoint (blocks and repeats whose true
    /// extents do not meet, which covers every type built without resizing below the true
    /// extent or overlapping displacements). Otherwise the segments are sorted: O(n log n) time
    /// and O(n) memory in [`Datatype::segment_count`], memoized per type for `count == 1`.
    pub fn overlaps(&self, count: usize) -> bool {
        let layout = self.layout();
        if count == 0 || layout.is_empty() {
            return false;
        }
        let one = *self
            .0
            .overlaps_one
            .get_or_init(|| !layout.disjoint && layout::segments_overlap(self.segments(1)));
        if one || count == 1 {
            return one;
        }
        if self.extent().unsigned_abs() >= self.true_extent().unsigned_abs() {
            return false;
        }
        layout::segments_overlap(self.segments(count))
    }

    /// Packs `count` elements laid out in `buf` (offsets relative to `buf[0]`) into the front of
    /// `out`, in typemap order; returns the bytes written, `size * count`.
    pub fn pack_into(
        &self,
        buf: &[u8],
        count: usize,
        out: &mut [u8],
    ) -> Result<usize, DatatypeError> {
        view::pack(self, buf, count, out)
    }

    /// Unpacks a packed stream into `count` elements laid out in `buf`. A stream shorter than
    /// `count` elements (a short message) fills what it covers, in typemap order, and leaves the
    /// rest of `buf` untouched; a longer one is an error. Returns the bytes consumed.
    ///
    /// An overlapping layout is not rejected here (later writes win); [`MutView`] rejects it.
    pub fn unpack_from(
        &self,
        packed: &[u8],
        buf: &mut [u8],
        count: usize,
    ) -> Result<usize, DatatypeError> {
        view::unpack(self, packed, buf, count)
    }

    /// The serialization a peer rebuilds this type from with [`Datatype::decode`]: the
    /// constructor graph, each distinct old type once, so its size is linear in the arguments
    /// of the distinct constructors (about 8 bytes per count, displacement or reference).
    pub fn encode(&self) -> Vec<u8> {
        encode::encode(self)
    }

    /// Rebuilds a type from [`Datatype::encode`]'s bytes, which may come from an untrusted peer:
    /// malformed input is an error, never a panic, and goes through the same checked
    /// constructors as local calls, within [`MAX_DEPTH`] and bounded total size.
    pub fn decode(bytes: &[u8]) -> Result<Datatype, DatatypeError> {
        encode::decode(bytes)
    }

    fn same(a: &Datatype, b: &Datatype, proven: &mut HashSet<(usize, usize)>) -> bool {
        if Arc::ptr_eq(&a.0, &b.0) {
            return true;
        }
        let key = (Arc::as_ptr(&a.0) as usize, Arc::as_ptr(&b.0) as usize);
        if proven.contains(&key) {
            return true;
        }
        let equal = a.size() == b.size()
            && a.0.part.lb_ub() == b.0.part.lb_ub()
            && a.0
                .combiner
                .same_arguments(&b.0.combiner, &mut |x, y| Datatype::same(x, y, proven));
        if equal {
            proven.insert(key);
        }
        equal
    }
}

impl PartialEq for Combiner {
    fn eq(&self, other: &Combiner) -> bool {
        let mut proven = HashSet::new();
        self.same_arguments(other, &mut |a, b| Datatype::same(a, b, &mut proven))
    }
}

impl PartialEq for Datatype {
    /// Structural, in time linear in the distinct pairs of old types compared.
    fn eq(&self, other: &Datatype) -> bool {
        Datatype::same(self, other, &mut HashSet::new())
    }
}

impl fmt::Debug for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.combiner() {
            Combiner::Named(primitive) => return write!(f, "Datatype({primitive:?})"),
            Combiner::Contiguous { .. } => "Contiguous",
            Combiner::Vector { .. } => "Vector",
            Combiner::HVector { .. } => "HVector",
            Combiner::Indexed { .. } => "Indexed",
            Combiner::HIndexed { .. } => "HIndexed",
            Combiner::IndexedBlock { .. } => "IndexedBlock",
            Combiner::HIndexedBlock { .. } => "HIndexedBlock",
            Combiner::Struct { .. } => "Struct",
            Combiner::Resized { .. } => "Resized",
            Combiner::Subarray { .. } => "Subarray",
            Combiner::Dup(_) => "Dup",
        };
        f.debug_struct("Datatype")
            .field("combiner", &kind)
            .field("size", &self.size())
            .field("lower_bound", &self.lower_bound())
            .field("extent", &self.extent())
            .finish()
    }
}

impl AsRef<Datatype> for Datatype {
    fn as_ref(&self) -> &Datatype {
        self
    }
}

impl From<Primitive> for Datatype {
    fn from(primitive: Primitive) -> Datatype {
        Datatype::primitive(primitive)
    }
}

/// A type made by a constructor (rsmpi's name), usable wherever a [`Datatype`] is.
#[derive(Clone, Debug, PartialEq)]
pub struct UserDatatype(Datatype);

impl Deref for UserDatatype {
    type Target = Datatype;
    fn deref(&self) -> &Datatype {
        &self.0
    }
}

impl AsRef<Datatype> for UserDatatype {
    fn as_ref(&self) -> &Datatype {
        &self.0
    }
}

impl From<UserDatatype> for Datatype {
    fn from(user: UserDatatype) -> Datatype {
        user.0
    }
}

fn same_length(what: &str, a: usize, b: usize) -> Result<(), DatatypeError> {
    if a == b {
        Ok(())
    } else {
        Err(DatatypeError::InvalidArgument(format!(
            "{what}: {a} block lengths but {b} displacements"
        )))
    }
}

fn in_extents(displacements: &[isize], extent: isize) -> Result<Vec<isize>, DatatypeError> {
    displacements.iter().map(|&d| mul(d, extent)).collect()
}

impl UserDatatype {
    fn build(combiner: Combiner, part: Part) -> Result<UserDatatype, DatatypeError> {
        Datatype::new(combiner, part).map(UserDatatype)
    }

    /// `count` elements of `old` one extent apart (`MPI_Type_contiguous`).
    pub fn contiguous(
        count: usize,
        old: &impl AsRef<Datatype>,
    ) -> Result<UserDatatype, DatatypeError> {
        let old = old.as_ref();
        let part = old.part().block(count)?;
        UserDatatype::build(
            Combiner::Contiguous {
                count,
                old: old.clone(),
            },
            part,
        )
    }

    /// `count` blocks of `blocklength` elements of `old`, block starts `stride` extents of `old`
    /// apart (`MPI_Type_vector`). The stride may be negative.
    pub fn vector(
        count: usize,
        blocklength: usize,
        stride: isize,
        old: &impl AsRef<Datatype>,
    ) -> Result<UserDatatype, DatatypeError> {
        let old = old.as_ref();
        let part = old
            .part()
            .block(blocklength)?
            .repeat(count, mul(stride, old.extent())?)?;
        let combiner = Combiner::Vector {
            count,
            blocklength,
            stride,
            old: old.clone(),
        };
        UserDatatype::build(combiner, part)
    }

    /// [`UserDatatype::vector`] with the stride in bytes (`MPI_Type_create_hvector`).
    pub fn heterogeneous_vector(
        count: usize,
        blocklength: usize,
        stride_bytes: isize,
        old: &impl AsRef<Datatype>,
    ) -> Result<UserDatatype, DatatypeError> {
        let old = old.as_ref();
        let part = old.part().block(blocklength)?.repeat(count, stride_bytes)?;
        let combiner = Combiner::HVector {
            count,
            blocklength,
            stride_bytes,
            old: old.clone(),
        };
        UserDatatype::build(combiner, part)
    }

    fn indexed_part(
        blocklengths: &[usize],
        displacements_bytes: &[isize],
        old: &Datatype,
    ) -> Result<Part, DatatypeError> {
        let parts = blocklengths
            .iter()
            .zip(displacements_bytes)
            .map(|(&blocklength, &at)| Ok((at, old.part().block(blocklength)?)))
            .collect::<Result<Vec<_>, DatatypeError>>()?;
        Part::blocks(parts)
    }

    /// Blocks of `blocklengths[i]` elements of `old` starting `displacements[i]` extents of
    /// `old` from the buffer start (`MPI_Type_indexed`).
    pub fn indexed(
        blocklengths: &[usize],
        displacements: &[isize],
        old: &impl AsRef<Datatype>,
    ) -> Result<UserDatatype, DatatypeError> {
        let old = old.as_ref();
        same_length("indexed", blocklengths.len(), displacements.len())?;
        let part = UserDatatype::indexed_part(
            blocklengths,
            &in_extents(displacements, old.extent())?,
            old,
        )?;
        let combiner = Combiner::Indexed {
            blocklengths: blocklengths.to_vec(),
            displacements: displacements.to_vec(),
            old: old.clone(),
        };
        UserDatatype::build(combiner, part)
    }

    /// [`UserDatatype::indexed`] with displacements in bytes (`MPI_Type_create_hindexed`).
    pub fn heterogeneous_indexed(
        blocklengths: &[usize],
        displacements_bytes: &[isize],
        old: &impl AsRef<Datatype>,
    ) -> Result<UserDatatype, DatatypeError> {
        let old = old.as_ref();
        same_length(
            "heterogeneous_indexed",
            blocklengths.len(),
            displacements_bytes.len(),
        )?;
        let part = UserDatatype::indexed_part(blocklengths, displacements_bytes, old)?;
        let combiner = Combiner::HIndexed {
            blocklengths: blocklengths.to_vec(),
            displacements_bytes: displacements_bytes.to_vec(),
            old: old.clone(),
        };
        UserDatatype::build(combiner, part)
    }

    /// Blocks of `blocklength` elements of `old` at `displacements` extents of `old`
    /// (`MPI_Type_create_indexed_block`).
    pub fn indexed_block(
        blocklength: usize,
        displacements: &[isize],
        old: &impl AsRef<Datatype>,
    ) -> Result<UserDatatype, DatatypeError> {
        let old = old.as_ref();
        let blocklengths = vec![blocklength; displacements.len()];
        let part = UserDatatype::indexed_part(
            &blocklengths,
            &in_extents(displacements, old.extent())?,
            old,
        )?;
        let combiner = Combiner::IndexedBlock {
            blocklength,
            displacements: displacements.to_vec(),
            old: old.clone(),
        };
        UserDatatype::build(combiner, part)
    }

    /// [`UserDatatype::indexed_block`] with displacements in bytes
    /// (`MPI_Type_create_hindexed_block`).
    pub fn heterogeneous_indexed_block(
        blocklength: usize,
        displacements_bytes: &[isize],
        old: &impl AsRef<Datatype>,
    ) -> Result<UserDatatype, DatatypeError> {
        let old = old.as_ref();
        let blocklengths = vec![blocklength; displacements_bytes.len()];
        let part = UserDatatype::indexed_part(&blocklengths, displacements_bytes, old)?;
        let combiner = Combiner::HIndexedBlock {
            blocklength,
            displacements_bytes: displacements_bytes.to_vec(),
            old: old.clone(),
        };
        UserDatatype::build(combiner, part)
    }

    /// Blocks of `blocklengths[i]` elements of `types[i]` at `displacements_bytes[i]`
    /// (`MPI_Type_create_struct`). The extent is not padded for alignment: resize the result to
    /// the size of the struct it mirrors, or use [`equivalence!`](crate::equivalence).
    pub fn structured(
        blocklengths: &[usize],
        displacements_bytes: &[isize],
        types: &[Datatype],
    ) -> Result<UserDatatype, DatatypeError> {
        same_length("structured", blocklengths.len(), displacements_bytes.len())?;
        if types.len() != blocklengths.len() {
            return Err(DatatypeError::InvalidArgument(format!(
                "structured: {} block lengths but {} types",
                blocklengths.len(),
                types.len()
            )));
        }
        let parts = blocklengths
            .iter()
            .zip(displacements_bytes)
            .zip(types)
            .map(|((&blocklength, &at), old)| Ok((at, old.part().block(blocklength)?)))
            .collect::<Result<Vec<_>, DatatypeError>>()?;
        let combiner = Combiner::Struct {
            blocklengths: blocklengths.to_vec(),
            displacements_bytes: displacements_bytes.to_vec(),
            types: types.to_vec(),
        };
        UserDatatype::build(combiner, Part::blocks(parts)?)
    }

    /// `old` with its lower bound set to `lb` and its extent to `extent`, the markers of any
    /// earlier resize erased (`MPI_Type_create_resized`). The data does not move.
    pub fn resized(
        old: &impl AsRef<Datatype>,
        lb: isize,
        extent: isize,
    ) -> Result<UserDatatype, DatatypeError> {
        let old = old.as_ref();
        let part = Part {
            markers: Some((lb, add(lb, extent)?)),
            ..old.part().clone()
        };
        UserDatatype::build(
            Combiner::Resized {
                lb,
                extent,
                old: old.clone(),
            },
            part,
        )
    }

    /// The `subsizes` block starting at `starts` of an array of `sizes` elements of `old`
    /// (`MPI_Type_create_subarray`). Its lower bound is 0 and its extent the whole array's, so
    /// consecutive elements are consecutive arrays.
    pub fn subarray(
        sizes: &[usize],
        subsizes: &[usize],
        starts: &[usize],
        order: Order,
        old: &impl AsRef<Datatype>,
    ) -> Result<UserDatatype, DatatypeError> {
        let old = old.as_ref();
        let dimensions = sizes.len();
        if dimensions == 0 || dimensions > MAX_SUBARRAY_DIMENSIONS {
            return Err(DatatypeError::InvalidArgument(format!(
                "subarray: {dimensions} dimensions, need 1 to {MAX_SUBARRAY_DIMENSIONS}"
            )));
        }
        if subsizes.len() != dimensions || starts.len() != dimensions {
            return Err(DatatypeError::InvalidArgument(format!(
                "subarray: {dimensions} sizes, {} subsizes, {} starts",
                subsizes.len(),
                starts.len()
            )));
        }
        for k in 0..dimensions {
            let fits = subsizes[k] >= 1
                && starts[k]
                    .checked_add(subsizes[k])
                    .is_some_and(|end| end <= sizes[k]);
            if !fits {
                return Err(DatatypeError::InvalidArgument(format!(
                    "subarray dimension {k}: {} elements from {} do not fit in {} (and MPI wants at least one)",
                    subsizes[k], starts[k], sizes[k]
                )));
            }
        }
        let fastest_first: Vec<usize> = match order {
            Order::C => (0..dimensions).rev().collect(),
            Order::Fortran => (0..dimensions).collect(),
        };
        let mut part = old.part().clone();
        let mut stride = old.extent();
        let mut offset = 0isize;
        for &k in &fastest_first {
            part = part.repeat(subsizes[k], stride)?;
            offset = add(offset, mul(to_isize(starts[k])?, stride)?)?;
            stride = mul(stride, to_isize(sizes[k])?)?;
        }
        let mut part = Part::blocks(vec![(offset, part)])?;
        part.markers = Some((0, stride));
        let combiner = Combiner::Subarray {
            sizes: sizes.to_vec(),
            subsizes: subsizes.to_vec(),
            starts: starts.to_vec(),
            order,
            old: old.clone(),
        };
        UserDatatype::build(combiner, part)
    }

    /// The same layout under a new handle (`MPI_Type_dup`).
    ///
    /// A dup never fails: at [`MAX_DEPTH`] a dup of a dup records the type the inner dup
    /// duplicated (the layout is the same), so a chain of dups stays within one level of the
    /// limit.
    pub fn dup(old: &impl AsRef<Datatype>) -> UserDatatype {
        let mut old = old.as_ref();
        if old.0.depth >= MAX_DEPTH
            && let Combiner::Dup(inner) = old.combiner()
        {
            old = inner;
        }
        UserDatatype(Datatype(Arc::new(Inner {
            combiner: Combiner::Dup(old.clone()),
            part: old.part().clone(),
            depth: old.0.depth + 1,
            overlaps_one: OnceLock::new(),
        })))
    }
}
