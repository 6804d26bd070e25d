//! What a send takes ([`Buffer`]) and a receive fills ([`BufferMut`]): a slice, vector or array
//! of plain data (`bytemuck::Pod`), or a buffer with a count and a derived datatype
//! ([`View`], [`MutView`]), whose elements may lie anywhere in it.
//!
//! A layout that is one contiguous run of bytes (a slice, or a datatype without holes) takes
//! the contiguous path; any other travels as [`crate::comm::engine`]'s `layouts` describes:
//! by single copy between the two layouts when it is large, packed otherwise.

use bytemuck::Pod;

use crate::comm::engine::layouts::Placed;
use crate::datatype::{MutView, View};

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
    }
    pub trait BufferMut {
        fn incoming(&mut self) -> super::Incoming;
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
}
impl<T: Pod> Buffer for [T] {}

impl<T: Pod> sealed::Buffer for Vec<T> {
    fn outgoing(&self) -> Outgoing {
        self.as_slice().outgoing()
    }
}
impl<T: Pod> Buffer for Vec<T> {}

impl<T: Pod, const N: usize> sealed::Buffer for [T; N] {
    fn outgoing(&self) -> Outgoing {
        self.as_slice().outgoing()
    }
}
impl<T: Pod, const N: usize> Buffer for [T; N] {}

impl<T: Pod> sealed::BufferMut for [T] {
    fn incoming(&mut self) -> Incoming {
        Incoming::of(bytemuck::cast_slice_mut(self))
    }
}
impl<T: Pod> BufferMut for [T] {}

impl<T: Pod> sealed::BufferMut for Vec<T> {
    fn incoming(&mut self) -> Incoming {
        self.as_mut_slice().incoming()
    }
}
impl<T: Pod> BufferMut for Vec<T> {}

impl<T: Pod, const N: usize> sealed::BufferMut for [T; N] {
    fn incoming(&mut self) -> Incoming {
        self.as_mut_slice().incoming()
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
