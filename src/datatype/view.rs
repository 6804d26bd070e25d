//! Buffers seen through a datatype, and packing between a layout and a contiguous stream.
//!
//! A view checks once, when it is made, that every byte its layout touches lies inside its
//! buffer (and, for a receive view, that no byte is written twice), so the transports can turn
//! its segments into iovecs without checking again.

use bytemuck::Pod;

use super::layout::{Direction, Stream};
use super::{Datatype, DatatypeError};

/// Fails unless every data byte of `count` elements lies in `0..buffer_len`.
fn check_within(datatype: &Datatype, count: usize, buffer_len: usize) -> Result<(), DatatypeError> {
    let Some((lower, upper)) = datatype.layout_bounds(count)? else {
        return Ok(());
    };
    if lower < 0 || upper.unsigned_abs() > buffer_len {
        return Err(DatatypeError::OutOfBounds {
            lower,
            upper,
            buffer_len,
        });
    }
    Ok(())
}

fn packed_len(datatype: &Datatype, count: usize) -> Result<usize, DatatypeError> {
    datatype
        .size()
        .checked_mul(count)
        .ok_or(DatatypeError::Overflow)
}

pub(super) fn pack(
    datatype: &Datatype,
    buf: &[u8],
    count: usize,
    out: &mut [u8],
) -> Result<usize, DatatypeError> {
    let total = packed_len(datatype, count)?;
    if out.len() < total {
        return Err(DatatypeError::LengthMismatch {
            expected: total,
            actual: out.len(),
        });
    }
    check_within(datatype, count, buf.len())?;
    let mut stream = Stream::new(datatype.segments(count));
    // SAFETY: every piece lies within `buf` (checked above), `out` holds `total` bytes, and the
    // two are different borrows; gathering only reads `buf`.
    let written = unsafe {
        stream.copy(
            buf.as_ptr().cast_mut(),
            out.as_mut_ptr(),
            total,
            Direction::Gather,
        )
    };
    Ok(written)
}

pub(super) fn unpack(
    datatype: &Datatype,
    packed: &[u8],
    buf: &mut [u8],
    count: usize,
) -> Result<usize, DatatypeError> {
    let total = packed_len(datatype, count)?;
    if packed.len() > total {
        return Err(DatatypeError::LengthMismatch {
            expected: total,
            actual: packed.len(),
        });
    }
    check_within(datatype, count, buf.len())?;
    let mut stream = Stream::new(datatype.segments(count));
    // SAFETY: every piece lies within `buf` (checked above), which is borrowed mutably, and
    // `packed` is a different borrow of `packed.len()` bytes that scattering only reads.
    let read = unsafe {
        stream.copy(
            buf.as_mut_ptr(),
            packed.as_ptr().cast_mut(),
            packed.len(),
            Direction::Scatter,
        )
    };
    Ok(read)
}

/// A buffer to send from: `count` elements of a datatype, offsets relative to the buffer start.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    buf: &'a [u8],
    count: usize,
    datatype: &'a Datatype,
}

impl<'a> View<'a> {
    /// Sees `buf` as `count` elements of `datatype`; fails with [`DatatypeError::OutOfBounds`]
    /// unless every data byte of the layout (true lower bound to true upper bound of the `count`
    /// elements) lies inside `buf`.
    pub fn with_count_and_datatype<T: Pod>(
        buf: &'a [T],
        count: usize,
        datatype: &'a impl AsRef<Datatype>,
    ) -> Result<View<'a>, DatatypeError> {
        let buf: &[u8] = bytemuck::cast_slice(buf);
        let datatype = datatype.as_ref();
        check_within(datatype, count, buf.len())?;
        packed_len(datatype, count)?;
        Ok(View {
            buf,
            count,
            datatype,
        })
    }

    /// The layout of one element.
    pub fn datatype(&self) -> &Datatype {
        self.datatype
    }

    /// Elements.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The buffer start, to which the layout's offsets are relative.
    pub fn as_ptr(&self) -> *const u8 {
        self.buf.as_ptr()
    }

    /// Bytes in the buffer.
    pub fn buffer_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the elements pack into.
    pub fn packed_len(&self) -> usize {
        self.datatype.size() * self.count
    }

    /// Packs the elements into the front of `out`; returns the bytes written.
    pub fn pack_into(&self, out: &mut [u8]) -> Result<usize, DatatypeError> {
        pack(self.datatype, self.buf, self.count, out)
    }
}

/// A buffer to receive into: `count` elements of a datatype that writes no byte twice.
#[derive(Debug)]
pub struct MutView<'a> {
    buf: &'a mut [u8],
    count: usize,
    datatype: &'a Datatype,
}

impl<'a> MutView<'a> {
    /// Sees `buf` as `count` elements of `datatype`; fails with [`DatatypeError::OutOfBounds`]
    /// like [`View::with_count_and_datatype`], and with [`DatatypeError::Overlap`] if the
    /// elements write some byte twice (cost: [`Datatype::overlaps`]).
    pub fn with_count_and_datatype<T: Pod>(
        buf: &'a mut [T],
        count: usize,
        datatype: &'a impl AsRef<Datatype>,
    ) -> Result<MutView<'a>, DatatypeError> {
        let buf: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let datatype = datatype.as_ref();
        check_within(datatype, count, buf.len())?;
        packed_len(datatype, count)?;
        if datatype.overlaps(count) {
            return Err(DatatypeError::Overlap);
        }
        Ok(MutView {
            buf,
            count,
            datatype,
        })
    }

    /// The layout of one element.
    pub fn datatype(&self) -> &Datatype {
        self.datatype
    }

    /// Elements.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The buffer start, to which the layout's offsets are relative.
    pub fn as_ptr(&self) -> *const u8 {
        self.buf.as_ptr()
    }

    /// The buffer start, for writing.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.buf.as_mut_ptr()
    }

    /// Bytes in the buffer.
    pub fn buffer_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the elements pack into.
    pub fn packed_len(&self) -> usize {
        self.datatype.size() * self.count
    }

    /// Unpacks a packed stream, possibly shorter than the elements (a short message), into the
    /// buffer; returns the bytes consumed.
    pub fn unpack_from(&mut self, packed: &[u8]) -> Result<usize, DatatypeError> {
        unpack(self.datatype, packed, self.buf, self.count)
    }
}
