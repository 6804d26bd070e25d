//! Non-contiguous messages: data laid out in memory by a derived datatype
//! ([`crate::datatype`]).
//!
//! A large one moves by single copy from the sender's layout straight into the receiver's: the
//! sender's RTS names where its layout's description lies in its memory ([`describe`]); the
//! receiver reads it, rebuilds the layout (it is input: checked like any peer's bytes), and
//! pulls with vectored `process_vm_readv` calls whose iovec lists on both sides come from the
//! two layouts, walked together in windows of at most `IOV_MAX` elements a side and one chunk
//! of bytes ([`Engine::pull_layouts`]). Nothing is packed on either side.
//!
//! Everything else travels packed: small messages (inline, eager), jobs without single copy,
//! and layouts whose pieces are so small that packing them is faster than handing the kernel
//! one iovec element per piece (the crossover is measured: BENCHMARKS.md, "Derived
//! datatypes"). The sender packs into a buffer its request keeps ([`Extra::keep`]); the
//! receiver receives into a staging buffer ([`Scatter`]) that is unpacked into its layout when
//! the receive finishes. Each side chooses for itself; a packed message may land directly in a
//! layout, and a laid-out one in contiguous memory.

use std::io::IoSliceMut;

use super::{CommError, Engine, RecvBuf, ReqId, Shape, Status};
use crate::comm::wire;
use crate::datatype::{Datatype, Direction, Segments, Stream};
use crate::transport::Mechanism;
use crate::vm::RemoteRange;
use crate::vm::split::IOV_MAX;

/// The longest layout description a receiver reads from a sender; a sender whose description
/// is longer packs instead.
pub(crate) const MAX_DESCRIPTION_BYTES: usize = 1 << 20;

/// A layout in this process: `count` elements of `datatype` relative to `base`, inside the
/// `span` bytes from `base` that the request borrows.
#[derive(Debug, Clone)]
pub struct Placed {
    pub base: *const u8,
    pub span: usize,
    pub datatype: Datatype,
    pub count: usize,
}

impl Placed {
    /// The bytes its elements hold.
    pub fn packed_len(&self) -> usize {
        self.datatype.pack_size(self.count)
    }
}

/// A receive into a non-contiguous layout.
#[derive(Debug)]
pub(crate) struct Scatter {
    pub target: Placed,
    /// Where packed bytes land before they are unpacked (grown to the message's length only
    /// when a message needs it).
    pub staging: Vec<u8>,
    /// Whether a single-copy message may be pulled straight into the layout (its pieces are
    /// large enough).
    pub direct: bool,
    /// Set once a message has been pulled straight into the layout, or streamed into it:
    /// nothing to unpack.
    pub landed: bool,
    /// A streamed message's walk over the layout, made at its first chunk.
    pub cursor: Option<Cursor>,
}

/// What a request with a non-contiguous message keeps until it finishes.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    /// A send's packed copy of its message, or its layout's description.
    pub keep: Vec<u8>,
    /// A streamed send's walk over its layout.
    pub gather: Option<Cursor>,
    /// A receive's layout and staging buffer.
    pub scatter: Option<Scatter>,
}

/// A walk over a layout's bytes in packed order that copies them out of it or into it a piece
/// of the stream at a time (a streamed message's chunks): a [`Stream`] that owns its datatype.
pub(crate) struct Cursor {
    /// Borrows `*datatype`, which is boxed so that it does not move; declared first so that it
    /// is dropped first.
    stream: Stream<'static>,
    base: *const u8,
    datatype: Box<Datatype>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").field("base", &self.base).finish()
    }
}

impl Cursor {
    /// A walk from the start of `placed`.
    pub fn new(placed: &Placed) -> Cursor {
        let datatype = Box::new(placed.datatype.clone());
        // SAFETY: the walk borrows the boxed datatype, which lives (at the same address) as
        // long as the cursor, and outlives the walk (field order); nothing hands the walk out.
        let stream: Stream<'static> =
            unsafe { std::mem::transmute(Stream::new(datatype.segments(placed.count))) };
        Cursor {
            stream,
            base: placed.base,
            datatype,
        }
    }

    /// The walk as it is now, to go back to if a copy has to be redone.
    pub fn mark(&self) -> Stream<'static> {
        self.stream.clone()
    }

    /// Goes back to a [`Cursor::mark`].
    pub fn reset(&mut self, mark: Stream<'static>) {
        self.stream = mark;
    }

    /// Moves the next `n` bytes of the stream between the layout and `stream`: out of the
    /// layout into `stream` (`gather`), or from `stream` into the layout. Returns the bytes
    /// moved (fewer only at the end of the layout).
    ///
    /// # Safety
    /// `stream` is valid for `n` bytes (writable when gathering); the layout's memory is valid
    /// for reads (gathering) or writes (scattering) and does not overlap `stream`.
    pub unsafe fn copy(&mut self, stream: *mut u8, n: usize, gather: bool) -> usize {
        let direction = if gather {
            Direction::Gather
        } else {
            Direction::Scatter
        };
        debug_assert!(self.datatype.size() > 0 || n == 0);
        // SAFETY: the caller's contract; the pieces lie in the layout's memory (checked when
        // its view was made).
        unsafe { self.stream.copy(self.base.cast_mut(), stream, n, direction) }
    }
}

/// The description of `count` elements of `datatype` that a receiver rebuilds: the count as 8
/// little-endian bytes, then the datatype's encoding.
pub(crate) fn describe(datatype: &Datatype, count: usize) -> Vec<u8> {
    let mut out = (count as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&datatype.encode());
    out
}

/// The datatype and count a description holds.
fn undescribe(bytes: &[u8]) -> Result<(Datatype, usize), String> {
    let (count, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or("a layout description shorter than its count")?;
    let count = usize::try_from(u64::from_le_bytes(*count)).map_err(|_| "count too large")?;
    let datatype = Datatype::decode(rest).map_err(|e| e.to_string())?;
    Ok((datatype, count))
}

/// Whether messages of mechanism `how` can move between layouts by single copy: the `cma-*`
/// ones, whose calls take iovec lists on both sides.
pub(crate) fn moves_layouts(how: Mechanism) -> bool {
    how.is_cma()
}

/// One side of a single-copy transfer: its (address, length) pieces in order.
enum Side<'a> {
    Flat(Option<(usize, usize)>),
    Laid { base: usize, pieces: Segments<'a> },
}

/// A walk over one side's pieces, with the unmoved rest of the current piece.
struct Walk<'a> {
    side: Side<'a>,
    head: Option<(usize, usize)>,
}

impl<'a> Walk<'a> {
    fn new(side: Side<'a>) -> Walk<'a> {
        Walk { side, head: None }
    }

    /// The current piece, `None` once all are taken; an error if a piece's address overflows.
    fn peek(&mut self) -> Result<Option<(usize, usize)>, ()> {
        while self.head.is_none_or(|(_, len)| len == 0) {
            self.head = match &mut self.side {
                Side::Flat(rest) => rest.take(),
                Side::Laid { base, pieces } => match pieces.next() {
                    None => None,
                    Some((offset, len)) => {
                        let addr = base.checked_add_signed(offset).ok_or(())?;
                        addr.checked_add(len).ok_or(())?;
                        Some((addr, len))
                    }
                },
            };
            if self.head.is_none() {
                return Ok(None);
            }
        }
        Ok(self.head)
    }

    fn consume(&mut self, n: usize) {
        if let Some((addr, len)) = &mut self.head {
            *addr += n;
            *len -= n;
        }
    }
}

/// Adds `n` bytes at `addr` to a window's list, merged into its last element when they follow
/// it; false (nothing added) when the list is full.
fn add(list: &mut Vec<(usize, usize)>, addr: usize, n: usize) -> bool {
    if let Some(last) = list.last_mut()
        && last.0 + last.1 == addr
    {
        last.1 += n;
        return true;
    }
    if list.len() == IOV_MAX {
        return false;
    }
    list.push((addr, n));
    true
}

impl Engine {
    /// The message's bytes that a request for a non-contiguous message has finished with:
    /// a staged receive is unpacked into its layout (unless it landed there directly), and the
    /// buffers go back for reuse.
    #[cold]
    pub(super) fn settle(
        &mut self,
        extra: Extra,
        result: Result<Status, CommError>,
    ) -> Result<Status, CommError> {
        let Extra { keep, scatter, .. } = extra;
        if keep.capacity() > 0 {
            self.recycle(keep);
        }
        let Some(scatter) = scatter else {
            return result;
        };
        let result = match result {
            Ok(status) if !scatter.landed && status.count_bytes() > 0 => {
                let n = status.count_bytes();
                let target = &scatter.target;
                // SAFETY: the receive borrows the `span` bytes at `base` mutably until it
                // finishes, which is now; nothing else refers to them meanwhile.
                let memory =
                    unsafe { std::slice::from_raw_parts_mut(target.base.cast_mut(), target.span) };
                match scatter.staging.get(..n) {
                    Some(packed) => target
                        .datatype
                        .unpack_from(packed, memory, target.count)
                        .map(|_| status)
                        .map_err(|e| CommError::InvalidArgument(e.to_string())),
                    None => Err(CommError::InvalidArgument(format!(
                        "a staged receive of {n} bytes has {} staged",
                        scatter.staging.len()
                    ))),
                }
            }
            other => other,
        };
        self.recycle(scatter.staging);
        result
    }

    /// Whether `placed`'s pieces average at least `piece` bytes, in a job with single copy.
    fn pieces_reach(&self, placed: &Placed, piece: usize) -> bool {
        let pieces = placed.datatype.segment_count(placed.count).max(1);
        moves_layouts(self.job.mechanism) && placed.packed_len() / pieces >= piece
    }

    /// Starts sending `count` elements of a non-contiguous layout to `dest`:
    /// - small (an inline or eager message): packed, into memory the request keeps;
    /// - large, of a size that the job moves by single copy (under `auto`, where its table
    ///   says so), with pieces of at least the send threshold: described, and
    ///   pulled by the receiver straight from where the pieces lie (one iovec element a piece on
    ///   the sender's side, which the kernel pins one by one);
    /// - else streamed through the eager slots, packed chunk by chunk as the slots free, so
    ///   that the receiver unpacks one chunk while this rank packs the next: both ranks copy at
    ///   once, which measured faster than one single copy for one message at every piece size
    ///   up to 64 KiB (BENCHMARKS.md, "Derived datatypes").
    ///
    /// # Safety
    /// `placed` describes memory the caller lends unchanged until the request finishes.
    pub(crate) unsafe fn post_laid_send(
        &mut self,
        dest: usize,
        context: u32,
        tag: i32,
        placed: &Placed,
        sync: bool,
    ) -> Result<ReqId, CommError> {
        let len = placed.packed_len();
        let small = self.job.limits.eager.max(self.job.limits.inline);
        if dest != self.job.me && len > small {
            let send = |shape| super::SendBuf {
                ptr: placed.base,
                len,
                shape,
            };
            // As a contiguous message of its size would move (under `auto`, as the table
            // says), and only if its pieces are large.
            if self.job.mechanism_for(len, self.send_pattern()) != Mechanism::ShmCopy
                && self.pieces_reach(placed, self.job.limits.layout_send_piece)
            {
                let description = describe(&placed.datatype, placed.count);
                if description.len() <= MAX_DESCRIPTION_BYTES {
                    let data = send(Shape::Described(description.as_ptr(), description.len()));
                    let extra = Extra {
                        keep: description,
                        ..Extra::default()
                    };
                    return self.post_send_with(
                        dest,
                        context,
                        tag,
                        data,
                        sync,
                        Some(Box::new(extra)),
                    );
                }
            }
            let extra = Extra {
                gather: Some(Cursor::new(placed)),
                ..Extra::default()
            };
            return self.post_send_with(
                dest,
                context,
                tag,
                send(Shape::Gathered),
                sync,
                Some(Box::new(extra)),
            );
        }
        // SAFETY: the caller's contract.
        let packed = unsafe { self.pack(placed)? };
        let id = self.post_send(dest, context, tag, super::SendBuf::of(&packed), sync)?;
        // Sent already (copied into the ring or a slot), or to itself (copied too).
        self.recycle(packed);
        Ok(id)
    }

    /// A packed copy of `placed`, in reused memory.
    ///
    /// # Safety
    /// `placed` describes memory valid for reads.
    pub(crate) unsafe fn pack(&mut self, placed: &Placed) -> Result<Vec<u8>, CommError> {
        let mut packed = self.spare_buffer(placed.packed_len());
        // SAFETY: the caller's contract: `span` bytes at `base` are readable.
        let memory = unsafe { std::slice::from_raw_parts(placed.base, placed.span) };
        placed
            .datatype
            .pack_into(memory, placed.count, &mut packed)
            .map_err(|e| CommError::InvalidArgument(e.to_string()))?;
        Ok(packed)
    }

    /// Staging memory for a receive into `target`: as long as the largest message that can
    /// arrive without a rendezvous (grown later if a longer one comes).
    pub(crate) fn scatter_for(&mut self, target: Placed) -> (RecvBuf, Box<Extra>) {
        let direct = self.pieces_reach(&target, self.job.limits.layout_recv_piece);
        let small = self.job.limits.eager.max(self.job.limits.inline);
        let mut staging = self.spare_buffer(target.packed_len().min(small));
        let buf = RecvBuf::plain(staging.as_mut_ptr(), staging.len());
        let scatter = Scatter {
            target,
            staging,
            direct,
            landed: false,
            cursor: None,
        };
        let extra = Extra {
            scatter: Some(scatter),
            ..Extra::default()
        };
        (buf, Box::new(extra))
    }

    /// The bytes receive `id` (posted with `buf`) can take: its layout's, for a staged one.
    pub(super) fn capacity(&mut self, id: ReqId, buf: RecvBuf) -> usize {
        self.extra_mut(id)
            .and_then(|x| x.scatter.as_ref())
            .map_or(buf.cap, |s| s.target.packed_len())
    }

    /// The buffer a rendezvous message of `len` bytes (no more than the receive's
    /// [`Engine::capacity`]) lands in for receive `id`: its own, or for a staged receive its
    /// staging memory, grown to `len`.
    pub(super) fn landing(&mut self, id: ReqId, buf: RecvBuf, len: usize) -> RecvBuf {
        let staged = self
            .extra_mut(id)
            .and_then(|x| x.scatter.as_mut())
            .map(|s| {
                if s.staging.len() < len {
                    s.staging.resize(len, 0);
                }
                RecvBuf::plain(s.staging.as_mut_ptr(), s.staging.len())
            });
        staged.unwrap_or(buf)
    }

    /// Receive `id`'s layout and staging, if it is a staged receive.
    pub(super) fn requests_scatter(&mut self, id: ReqId) -> Option<&mut Scatter> {
        self.extra_mut(id).and_then(|x| x.scatter.as_mut())
    }

    /// Whether receive `id` takes single-copy messages straight into its layout.
    pub(super) fn lands_directly(&mut self, id: ReqId) -> bool {
        self.extra_mut(id)
            .and_then(|x| x.scatter.as_ref())
            .is_some_and(|s| s.direct)
    }

    /// Moves rendezvous message `rts` from `source` by single copy, between the sender's
    /// layout (or contiguous buffer) and receive `id`'s layout (when it lands directly) or
    /// buffer `buf`, `len` bytes in all.
    pub(super) fn pull_layouts(
        &mut self,
        id: ReqId,
        source: usize,
        rts: &wire::Rts,
        buf: RecvBuf,
        len: usize,
    ) -> Result<(), CommError> {
        let remote_layout = if rts.is_typed() {
            Some(self.read_layout(source, rts, len)?)
        } else {
            None
        };
        let direct = self.lands_directly(id);
        let local_layout = if direct {
            self.extra_mut(id)
                .and_then(|x| x.scatter.as_ref())
                .map(|s| s.target.clone())
        } else {
            None
        };
        let remote = match &remote_layout {
            Some((datatype, count)) => Side::Laid {
                base: rts.addr as usize,
                pieces: datatype.segments(*count),
            },
            None => Side::Flat(Some((rts.addr as usize, len))),
        };
        let local = match &local_layout {
            Some(p) => Side::Laid {
                base: p.base as usize,
                pieces: p.datatype.segments(p.count),
            },
            None => Side::Flat(Some((buf.ptr as usize, len))),
        };
        self.pull_between(source, Walk::new(local), Walk::new(remote), len)?;
        if let Some(s) = self.extra_mut(id).and_then(|x| x.scatter.as_mut()) {
            s.landed = direct;
        }
        Ok(())
    }

    /// The layout a typed RTS describes, read out of the sender's memory and checked: it must
    /// hold exactly the message's `len` bytes.
    fn read_layout(
        &self,
        source: usize,
        rts: &wire::Rts,
        len: usize,
    ) -> Result<(Datatype, usize), CommError> {
        let n = rts.layout_len as usize;
        if n > MAX_DESCRIPTION_BYTES {
            return Err(self.protocol(
                source,
                format!("a layout description of {n} bytes (at most {MAX_DESCRIPTION_BYTES})"),
            ));
        }
        let mut bytes = vec![0u8; n];
        let peer = self.peer(source)?;
        peer.read_exact(rts.layout_addr as usize, &mut bytes)
            .map_err(|e| self.move_failure(source, e.into()))?;
        let (datatype, count) = undescribe(&bytes)
            .map_err(|e| self.protocol(source, format!("a bad layout description: {e}")))?;
        if datatype.pack_size(count) != len {
            return Err(self.protocol(
                source,
                format!(
                    "a layout of {} bytes for a message of {len}",
                    datatype.pack_size(count)
                ),
            ));
        }
        Ok((datatype, count))
    }

    /// Pulls `len` bytes from `source` with the two walks in step: each call takes up to
    /// `IOV_MAX` pieces a side and one chunk of bytes.
    fn pull_between(
        &self,
        source: usize,
        mut local: Walk<'_>,
        mut remote: Walk<'_>,
        len: usize,
    ) -> Result<(), CommError> {
        let peer = self.peer(source)?;
        let chunk = self.job.limits.chunk.max(1);
        let bad = |what: &str| self.protocol(source, format!("{what} address overflows"));
        let (mut l, mut r) = (Vec::new(), Vec::new());
        let mut moved = 0;
        while moved < len {
            l.clear();
            r.clear();
            let mut total = 0;
            while total < chunk && moved + total < len {
                let Some(a) = local.peek().map_err(|()| bad("a local piece's"))? else {
                    break;
                };
                let Some(b) = remote.peek().map_err(|()| bad("a remote piece's"))? else {
                    break;
                };
                let n = a.1.min(b.1).min(chunk - total).min(len - moved - total);
                let (l_len, r_len) = (l.len(), r.len());
                if !add(&mut l, a.0, n) {
                    break;
                }
                if !add(&mut r, b.0, n) {
                    // Undo the local side's addition.
                    if l.len() > l_len {
                        l.pop();
                    } else if let Some(last) = l.last_mut() {
                        last.1 -= n;
                    }
                    debug_assert_eq!(r.len(), r_len);
                    break;
                }
                local.consume(n);
                remote.consume(n);
                total += n;
            }
            if total == 0 {
                return Err(self.protocol(
                    source,
                    format!("a layout ended after {moved} of {len} bytes"),
                ));
            }
            // SAFETY: the local pieces lie in memory the receive borrows mutably until it
            // finishes (a receive layout was checked to lie in its buffer and not to overlap
            // itself; a contiguous buffer holds `len` bytes), and no two of them overlap.
            let mut slices: Vec<IoSliceMut<'_>> = l
                .iter()
                .map(|&(addr, n)| unsafe {
                    IoSliceMut::new(std::slice::from_raw_parts_mut(addr as *mut u8, n))
                })
                .collect();
            let ranges: Vec<RemoteRange> = r
                .iter()
                .map(|&(addr, n)| RemoteRange::new(addr, n))
                .collect();
            let n = peer
                .read_vectored(&mut slices, &ranges)
                .map_err(|e| self.move_failure(source, e.into()))?;
            if n != total {
                return Err(self.move_failure(
                    source,
                    crate::transport::TransportError::Short {
                        moved: moved + n,
                        wanted: len,
                    },
                ));
            }
            moved += total;
        }
        Ok(())
    }
}
