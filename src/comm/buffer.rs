//! What a send takes ([`Buffer`]) and a receive fills ([`BufferMut`]): a slice, vector or array
//! of plain data (`bytemuck::Pod`), or a buffer with a count and a derived datatype
//! ([`View`], [`MutView`]), whose elements may lie anywhere in it.
//!
//! A layout that is one contiguous run of bytes (a slice, or a datatype without holes) takes
//! the contiguous path; any other travels as [`crate::comm::engine`]'s `layouts` describes:
//! by single copy between the two layouts when it is large, packed otherwise.

use std::marker::PhantomData;

use bytemuck::Pod;

use crate::comm::CommError;
use crate::comm::engine::layouts::Placed;
use crate::datatype::{Datatype, DatatypeError, MutView, UserDatatype, View};

/// A message as a send lends it: raw, so that persistent requests can keep it; whoever turns it
/// back into memory accesses keeps the buffer borrowed meanwhile.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// `len` contiguous bytes at `ptr`.
    Bytes { ptr: *const u8, len: usize },
    /// A non-contiguous layout.
    Laid(Placed),
}

/// A receive buffer as a receive lends it (raw, as [`Outgoing`]).
#[derive(Debug, Clone)]
pub enum Incoming {
    /// `len` contiguous bytes at `ptr`.
    Bytes { ptr: *mut u8, len: usize },
    /// A non-contiguous layout.
    Laid(Placed),
}

impl Outgoing {
    fn of(bytes: &[u8]) -> Outgoing {
        Outgoing::Bytes {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The message's length in bytes (packed).
    pub fn len(&self) -> usize {
        match self {
            Outgoing::Bytes { len, .. } => *len,
            Outgoing::Laid(p) => p.packed_len(),
        }
    }
}

impl Incoming {
    fn of(bytes: &mut [u8]) -> Incoming {
        Incoming::Bytes {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
        }
    }
}

mod sealed {
    pub trait Buffer {
        fn outgoing(&self) -> super::Outgoing;
        fn elements(&self) -> super::Elements<'_>;
    }
    pub trait BufferMut {
        fn incoming(&mut self) -> super::Incoming;
        fn elements_mut(&mut self) -> super::ElementsMut<'_>;
    }
}

/// A message a send can take: `[T]`, `Vec<T>` and `[T; N]` of any `T: Pod`, and [`View`].
pub trait Buffer: sealed::Buffer {}

/// A buffer a receive can fill: `[T]`, `Vec<T>` and `[T; N]` of any `T: Pod`, and [`MutView`].
pub trait BufferMut: sealed::BufferMut {}

impl<T: Pod> sealed::Buffer for [T] {
    fn outgoing(&self) -> Outgoing {
        Outgoing::of(bytemuck::cast_slice(self))
    }
    fn elements(&self) -> Elements<'_> {
        Elements {
            count: self.len(),
            size: std::mem::size_of::<T>(),
            data: Data::Bytes(bytemuck::cast_slice(self)),
        }
    }
}
impl<T: Pod> Buffer for [T] {}

impl<T: Pod> sealed::Buffer for Vec<T> {
    fn outgoing(&self) -> Outgoing {
        self.as_slice().outgoing()
    }
    fn elements(&self) -> Elements<'_> {
        self.as_slice().elements()
    }
}
impl<T: Pod> Buffer for Vec<T> {}

impl<T: Pod, const N: usize> sealed::Buffer for [T; N] {
    fn outgoing(&self) -> Outgoing {
        self.as_slice().outgoing()
    }
    fn elements(&self) -> Elements<'_> {
        self.as_slice().elements()
    }
}
impl<T: Pod, const N: usize> Buffer for [T; N] {}

impl<T: Pod> sealed::BufferMut for [T] {
    fn incoming(&mut self) -> Incoming {
        Incoming::of(bytemuck::cast_slice_mut(self))
    }
    fn elements_mut(&mut self) -> ElementsMut<'_> {
        ElementsMut {
            count: self.len(),
            size: std::mem::size_of::<T>(),
            data: DataMut::Bytes(bytemuck::cast_slice_mut(self)),
        }
    }
}
impl<T: Pod> BufferMut for [T] {}

impl<T: Pod> sealed::BufferMut for Vec<T> {
    fn incoming(&mut self) -> Incoming {
        self.as_mut_slice().incoming()
    }
    fn elements_mut(&mut self) -> ElementsMut<'_> {
        self.as_mut_slice().elements_mut()
    }
}
impl<T: Pod> BufferMut for Vec<T> {}

impl<T: Pod, const N: usize> sealed::BufferMut for [T; N] {
    fn incoming(&mut self) -> Incoming {
        self.as_mut_slice().incoming()
    }
    fn elements_mut(&mut self) -> ElementsMut<'_> {
        self.as_mut_slice().elements_mut()
    }
}
impl<T: Pod, const N: usize> BufferMut for [T; N] {}

impl sealed::Buffer for View<'_> {
    fn outgoing(&self) -> Outgoing {
        let (datatype, count) = (self.datatype(), self.count());
        if let Some((offset, len)) = datatype.contiguous_run(count) {
            // SAFETY: the view checked that its layout lies within its buffer, so the run does.
            let bytes = unsafe { std::slice::from_raw_parts(self.as_ptr().offset(offset), len) };
            return Outgoing::of(bytes);
        }
        Outgoing::Laid(Placed {
            base: self.as_ptr(),
            span: self.buffer_len(),
            datatype: datatype.clone(),
            count,
        })
    }
    fn elements(&self) -> Elements<'_> {
        let (datatype, count) = (self.datatype(), self.count());
        let data = match self.outgoing() {
            Outgoing::Bytes { ptr, len } => {
                // SAFETY: the run lies within the view's buffer, which `self` borrows.
                Data::Bytes(unsafe { std::slice::from_raw_parts(ptr, len) })
            }
            Outgoing::Laid(placed) => Data::Laid(Laid {
                placed,
                _borrow: PhantomData,
            }),
        };
        Elements {
            count,
            size: datatype.size(),
            data,
        }
    }
}
impl Buffer for View<'_> {}

impl sealed::BufferMut for MutView<'_> {
    fn incoming(&mut self) -> Incoming {
        let (datatype, count) = (self.datatype().clone(), self.count());
        let base = self.as_mut_ptr();
        if let Some((offset, len)) = datatype.contiguous_run(count) {
            // SAFETY: the view checked that its layout lies within its buffer, which it borrows
            // mutably, so the run does.
            let bytes = unsafe { std::slice::from_raw_parts_mut(base.offset(offset), len) };
            return Incoming::of(bytes);
        }
        Incoming::Laid(Placed {
            base,
            span: self.buffer_len(),
            datatype,
            count,
        })
    }
    fn elements_mut(&mut self) -> ElementsMut<'_> {
        let (size, count) = (self.datatype().size(), self.count());
        let data = match self.incoming() {
            Incoming::Bytes { ptr, len } => {
                // SAFETY: the run lies within the view's buffer, which `self` borrows mutably.
                DataMut::Bytes(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
            }
            Incoming::Laid(placed) => DataMut::Laid(LaidMut {
                placed,
                _borrow: PhantomData,
            }),
        };
        ElementsMut { count, size, data }
    }
}
impl BufferMut for MutView<'_> {}

/// The message `buf` holds.
pub(crate) fn outgoing<B: Buffer + ?Sized>(buf: &B) -> Outgoing {
    sealed::Buffer::outgoing(buf)
}

/// The receive buffer `buf` is.
pub(crate) fn incoming<B: BufferMut + ?Sized>(buf: &mut B) -> Incoming {
    sealed::BufferMut::incoming(buf)
}

// ----- buffers as the collectives see them -----

/// A send buffer as the collectives see it: `count` elements of `size` packed bytes each,
/// contiguous or laid out by a datatype (element `i` one extent after element `i - 1`). The
/// varcount collectives count and displace in these elements.
#[derive(Clone)]
pub struct Elements<'a> {
    pub count: usize,
    pub size: usize,
    pub data: Data<'a>,
}

/// Where a send buffer's elements lie.
#[derive(Clone)]
pub enum Data<'a> {
    /// In one run of bytes, in packing order.
    Bytes(&'a [u8]),
    /// Anywhere a datatype puts them.
    Laid(Laid<'a>),
}

/// A layout in memory borrowed (shared) for `'a`.
#[derive(Clone)]
pub struct Laid<'a> {
    placed: Placed,
    _borrow: PhantomData<&'a [u8]>,
}

/// A receive buffer as the collectives see it ([`Elements`], written to).
pub struct ElementsMut<'a> {
    pub count: usize,
    pub size: usize,
    pub data: DataMut<'a>,
}

/// Where a receive buffer's elements lie.
pub enum DataMut<'a> {
    /// In one run of bytes, in packing order.
    Bytes(&'a mut [u8]),
    /// Anywhere a datatype puts them, no byte twice.
    Laid(LaidMut<'a>),
}

/// A layout in memory borrowed mutably for `'a`, which no other value of this program writes or
/// reads meanwhile (the layouts of one buffer that coexist are checked to be disjoint).
pub struct LaidMut<'a> {
    placed: Placed,
    _borrow: PhantomData<&'a mut [u8]>,
}

/// The elements `buf` holds.
pub(crate) fn elements<B: Buffer + ?Sized>(buf: &B) -> Elements<'_> {
    sealed::Buffer::elements(buf)
}

/// The elements `buf` receives into.
pub(crate) fn elements_mut<B: BufferMut + ?Sized>(buf: &mut B) -> ElementsMut<'_> {
    sealed::BufferMut::elements_mut(buf)
}

fn datatype_error(e: DatatypeError) -> CommError {
    CommError::InvalidArgument(e.to_string())
}

/// Elements `first..first + count` of `placed`, as one element of a type of their own relative
/// to the same base, so that the sub-layout stays inside the bytes `placed` lies in.
fn sub_layout(placed: &Placed, first: usize, count: usize) -> Result<Placed, CommError> {
    if first == 0 && count == placed.count {
        return Ok(placed.clone());
    }
    let at = isize::try_from(first)
        .ok()
        .and_then(|f| f.checked_mul(placed.datatype.extent()))
        .ok_or_else(|| datatype_error(DatatypeError::Overflow))?;
    let datatype = UserDatatype::heterogeneous_indexed_block(count, &[at], &placed.datatype)
        .map_err(datatype_error)?;
    Ok(Placed {
        base: placed.base,
        span: placed.span,
        datatype: datatype.into(),
        count: 1,
    })
}

/// `placed`'s contiguous run, if its layout is one: offset checked to lie in its span.
fn run_of(placed: &Placed) -> Result<Option<(usize, usize)>, CommError> {
    let Some((offset, len)) = placed.datatype.contiguous_run(placed.count) else {
        return Ok(None);
    };
    match usize::try_from(offset) {
        Ok(start) if start.checked_add(len).is_some_and(|end| end <= placed.span) => {
            Ok(Some((start, len)))
        }
        _ => Err(datatype_error(DatatypeError::OutOfBounds {
            lower: offset,
            upper: offset.saturating_add_unsigned(len),
            buffer_len: placed.span,
        })),
    }
}

/// `first..first + count` checked to lie within `total` elements.
fn check_range(first: usize, count: usize, total: usize) -> Result<(), CommError> {
    match first.checked_add(count) {
        Some(end) if end <= total => Ok(()),
        _ => Err(CommError::InvalidArgument(format!(
            "elements {first}..{} lie outside a buffer of {total} elements",
            first.saturating_add(count)
        ))),
    }
}

impl<'a> Elements<'a> {
    /// Bytes the elements pack into.
    pub fn packed_len(&self) -> usize {
        self.count * self.size
    }

    /// The elements' bytes, if they lie in one run.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self.data {
            Data::Bytes(b) => Some(b),
            Data::Laid(_) => None,
        }
    }

    /// Elements `first..first + count`.
    pub fn range(&self, first: usize, count: usize) -> Result<Elements<'a>, CommError> {
        check_range(first, count, self.count)?;
        let size = self.size;
        let data = match &self.data {
            Data::Bytes(b) => Data::Bytes(&b[first * size..][..count * size]),
            Data::Laid(laid) => {
                let placed = sub_layout(&laid.placed, first, count)?;
                match run_of(&placed)? {
                    // SAFETY: the run lies in the span the layout borrows for `'a`.
                    Some((start, len)) => Data::Bytes(unsafe {
                        std::slice::from_raw_parts(placed.base.add(start), len)
                    }),
                    None => Data::Laid(Laid {
                        placed,
                        _borrow: PhantomData,
                    }),
                }
            }
        };
        Ok(Elements { count, size, data })
    }

    /// The message these elements make, to post; valid while `'a` lasts.
    pub fn outgoing(&self) -> Outgoing {
        match &self.data {
            Data::Bytes(b) => Outgoing::of(b),
            Data::Laid(laid) => Outgoing::Laid(laid.placed.clone()),
        }
    }

    /// Packs the elements into `out`, which holds exactly [`Elements::packed_len`] bytes.
    pub fn pack_into(&self, out: &mut [u8]) -> Result<(), CommError> {
        match &self.data {
            Data::Bytes(b) => {
                out.copy_from_slice(b);
                Ok(())
            }
            Data::Laid(laid) => {
                let p = &laid.placed;
                // SAFETY: the layout borrows the `span` bytes at `base` for `'a`, shared.
                let memory = unsafe { std::slice::from_raw_parts(p.base, p.span) };
                p.datatype
                    .pack_into(memory, p.count, out)
                    .map(|_| ())
                    .map_err(datatype_error)
            }
        }
    }
}

impl<'a> ElementsMut<'a> {
    /// Bytes the elements pack into.
    pub fn packed_len(&self) -> usize {
        self.count * self.size
    }

    /// The elements' bytes, if they lie in one run.
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        match &mut self.data {
            DataMut::Bytes(b) => Some(b),
            DataMut::Laid(_) => None,
        }
    }

    /// The receive buffer these elements make, to post; valid while `self` is not used.
    pub fn incoming(&mut self) -> Incoming {
        match &mut self.data {
            DataMut::Bytes(b) => Incoming::of(b),
            DataMut::Laid(laid) => Incoming::Laid(laid.placed.clone()),
        }
    }

    /// Unpacks `packed`, exactly [`ElementsMut::packed_len`] bytes, into the elements.
    pub fn unpack_from(&mut self, packed: &[u8]) -> Result<(), CommError> {
        match &mut self.data {
            DataMut::Bytes(b) => {
                b.copy_from_slice(packed);
                Ok(())
            }
            DataMut::Laid(laid) => {
                let p = &laid.placed;
                // SAFETY: the layout borrows the `span` bytes at `base` mutably for `'a`, and no
                // other layout that coexists with it touches its bytes.
                let memory = unsafe { std::slice::from_raw_parts_mut(p.base.cast_mut(), p.span) };
                p.datatype
                    .unpack_from(packed, memory, p.count)
                    .map(|_| ())
                    .map_err(datatype_error)
            }
        }
    }

    /// The element ranges `blocks` as buffers of their own, in the order given; an error if
    /// two non-empty ones overlap or one lies outside.
    pub fn split(
        self,
        blocks: &[std::ops::Range<usize>],
    ) -> Result<Vec<ElementsMut<'a>>, CommError> {
        let mut order: Vec<usize> = (0..blocks.len()).collect();
        order.sort_by_key(|&i| blocks[i].start);
        let mut at = 0;
        for &i in &order {
            let b = &blocks[i];
            check_range(b.start, b.len(), self.count)?;
            if b.is_empty() {
                continue;
            }
            if b.start < at {
                return Err(CommError::InvalidArgument(format!(
                    "receive blocks overlap at element {} (block {i} is {b:?})",
                    b.start
                )));
            }
            at = b.end;
        }
        let size = self.size;
        let empty = |count| ElementsMut {
            count,
            size,
            data: DataMut::Bytes(&mut []),
        };
        let mut parts: Vec<ElementsMut<'a>> = blocks.iter().map(|_| empty(0)).collect();
        match self.data {
            DataMut::Bytes(buf) => {
                let mut rest = buf;
                let mut at = 0;
                for i in order {
                    let b = &blocks[i];
                    if b.is_empty() {
                        continue;
                    }
                    let tail = std::mem::take(&mut rest);
                    let (_, tail) = tail.split_at_mut((b.start - at) * size);
                    let (part, tail) = tail.split_at_mut(b.len() * size);
                    parts[i] = ElementsMut {
                        count: b.len(),
                        size,
                        data: DataMut::Bytes(part),
                    };
                    rest = tail;
                    at = b.end;
                }
            }
            DataMut::Laid(laid) => {
                for (i, b) in blocks.iter().enumerate() {
                    if b.is_empty() {
                        continue;
                    }
                    let placed = sub_layout(&laid.placed, b.start, b.len())?;
                    parts[i] = ElementsMut {
                        count: b.len(),
                        size,
                        data: laid_mut(placed)?,
                    };
                }
            }
        }
        Ok(parts)
    }

    /// The elements, to read (a receive buffer that also serves as a send buffer).
    pub fn as_elements(&self) -> Elements<'_> {
        let data = match &self.data {
            DataMut::Bytes(b) => Data::Bytes(b),
            DataMut::Laid(laid) => Data::Laid(Laid {
                placed: laid.placed.clone(),
                _borrow: PhantomData,
            }),
        };
        Elements {
            count: self.count,
            size: self.size,
            data,
        }
    }
}

/// A receive layout, as bytes when it is one run.
fn laid_mut<'a>(placed: Placed) -> Result<DataMut<'a>, CommError> {
    Ok(match run_of(&placed)? {
        // SAFETY: the run lies in the span the layout borrows mutably for `'a`, and the
        // layouts that coexist with it are disjoint (the caller's contract).
        Some((start, len)) => DataMut::Bytes(unsafe {
            std::slice::from_raw_parts_mut(placed.base.cast_mut().add(start), len)
        }),
        None => DataMut::Laid(LaidMut {
            placed,
            _borrow: PhantomData,
        }),
    })
}

/// One peer's block of an all-to-all-w
/// ([`all_to_all_w_into`](crate::collective::CommunicatorCollectives::all_to_all_w_into),
/// `MPI_Alltoallw`): `count` elements of `datatype`, element 0 at `displacement_bytes` from the
/// start of the buffer and element `i` `i` extents after it.
#[derive(Clone, Copy, Debug)]
pub struct TypedBlock<'d> {
    /// Elements of `datatype` (0: nothing moves).
    pub count: usize,
    /// Bytes from the buffer start to element 0's origin (MPI's byte displacement).
    pub displacement_bytes: usize,
    /// The layout of one element.
    pub datatype: &'d Datatype,
}

impl<'d> TypedBlock<'d> {
    /// `count` elements of `datatype` from `displacement_bytes` on.
    pub fn new(
        count: usize,
        displacement_bytes: usize,
        datatype: &'d impl AsRef<Datatype>,
    ) -> TypedBlock<'d> {
        TypedBlock {
            count,
            displacement_bytes,
            datatype: datatype.as_ref(),
        }
    }
}

/// `block` of a buffer of `span` bytes at `base`, checked to lie within it.
fn typed_layout(base: *const u8, span: usize, block: &TypedBlock<'_>) -> Result<Placed, CommError> {
    let at = isize::try_from(block.displacement_bytes)
        .map_err(|_| datatype_error(DatatypeError::Overflow))?;
    let datatype = UserDatatype::heterogeneous_indexed_block(block.count, &[at], block.datatype)
        .map_err(datatype_error)?;
    let datatype: Datatype = datatype.into();
    if let Some((lower, upper)) = datatype.layout_bounds(1).map_err(datatype_error)?
        && (lower < 0 || upper.unsigned_abs() > span)
    {
        return Err(datatype_error(DatatypeError::OutOfBounds {
            lower,
            upper,
            buffer_len: span,
        }));
    }
    Ok(Placed {
        base,
        span,
        datatype,
        count: 1,
    })
}

/// The send blocks `blocks` of `buf`, each checked to lie within it.
pub(crate) fn typed_blocks<'a>(
    buf: &'a [u8],
    blocks: &[TypedBlock<'_>],
) -> Result<Vec<Elements<'a>>, CommError> {
    blocks
        .iter()
        .map(|b| {
            let placed = typed_layout(buf.as_ptr(), buf.len(), b)?;
            let data = match run_of(&placed)? {
                Some((start, len)) => Data::Bytes(&buf[start..start + len]),
                None => Data::Laid(Laid {
                    placed,
                    _borrow: PhantomData,
                }),
            };
            Ok(Elements {
                count: b.count,
                size: b.datatype.size(),
                data,
            })
        })
        .collect()
}

/// The receive blocks `blocks` of `buf`, each checked to lie within it and no two (nor one
/// with itself) to write the same byte.
pub(crate) fn typed_blocks_mut<'a>(
    buf: &'a mut [u8],
    blocks: &[TypedBlock<'_>],
) -> Result<Vec<ElementsMut<'a>>, CommError> {
    let (base, span) = (buf.as_mut_ptr().cast_const(), buf.len());
    let layouts = blocks
        .iter()
        .map(|b| typed_layout(base, span, b))
        .collect::<Result<Vec<Placed>, CommError>>()?;
    // All of them as one type: it overlaps exactly when some byte is written twice.
    let whole = UserDatatype::structured(
        &blocks.iter().map(|b| b.count).collect::<Vec<_>>(),
        &blocks
            .iter()
            .map(|b| b.displacement_bytes as isize)
            .collect::<Vec<_>>(),
        &blocks
            .iter()
            .map(|b| b.datatype.clone())
            .collect::<Vec<_>>(),
    )
    .map_err(datatype_error)?;
    if whole.overlaps(1) {
        return Err(CommError::InvalidArgument(
            "receive blocks write some byte twice (MPI leaves overlapping receive layouts \
             undefined; onecopy refuses them)"
                .into(),
        ));
    }
    layouts
        .into_iter()
        .zip(blocks)
        .map(|(placed, b)| {
            Ok(ElementsMut {
                count: b.count,
                size: b.datatype.size(),
                data: laid_mut(placed)?,
            })
        })
        .collect()
}
