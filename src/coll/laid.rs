//! Collectives over buffers that a derived datatype lays out ([`View`], [`MutView`]), and
//! `MPI_Alltoallw`. The contiguous case never comes here: slices, vectors, arrays and views
//! whose layout is one run of bytes take the byte algorithms of `coll` unchanged.
//!
//! Every rank of a collective picks the same algorithm from sizes alone, whatever its own
//! buffers look like, so a rank with a view meets ranks with slices message for message:
//!
//! | collective | a non-contiguous buffer travels |
//! | --- | --- |
//! | broadcast | packed into scratch memory at the root, broadcast as bytes, unpacked |
//! | gather, scatter (and varcount) | as a layout: each rank's block whole, to or from the root, by single copy from where it lies when large (the root's own block copied locally) |
//! | all-gather (and varcount), small blocks on more than two ranks | as layouts, every block to every rank at once |
//! | all-gather (and varcount), otherwise | packed into scratch memory in rank order, moved around the ring as bytes, unpacked |
//! | all-to-all (and varcount), all-to-all-w | as layouts, every block posted at once (the own block packed and unpacked locally) |
//! | reductions (`*_view_*`) | packed into a vector of the operation's element type, reduced by the slice forms' algorithms, unpacked |
//!
//! A layout sent whole moves as point to point moves it ([`crate::comm::buffer`]): packed
//! when small, from its pieces straight into the receiver's by single copy when large.

use std::ops::Range;

use bytemuck::Pod;

use super::{Slot, check_length, invalid, linear_bytes, ring_all_gather, tag, with_scratch};
use crate::comm::buffer::{self, Elements, ElementsMut, TypedBlock};
use crate::comm::{CommCore, CommError, PROC_NULL, Process, ROOT, Rank};
use crate::datatype::{MutView, View};

/// Posts every receive (`recvs`: source and buffer) and every send (`sends`: destination and
/// elements), contiguous or laid out, then waits for all of them, also when one fails, before
/// the buffers are handed back; returns the first error. A receive that gets another length
/// than its buffer's is [`CommError::Mismatch`] (or [`CommError::Truncated`], when longer).
pub(super) fn exchange_elements(
    comm: &CommCore,
    tag: i32,
    recvs: Vec<(Rank, ElementsMut<'_>)>,
    sends: Vec<(Rank, Elements<'_>)>,
) -> Result<(), CommError> {
    let mut pending: Vec<(u64, Rank, Option<usize>)> = Vec::new();
    let mut first = None;
    for (source, mut buf) in recvs {
        let want = buf.packed_len();
        // SAFETY: `buf` borrows its memory for longer than this call, which waits for the
        // receive before it returns.
        match unsafe { comm.post_receive_message_reserved(source, tag, buf.incoming()) } {
            Ok(id) => pending.push((id, source, Some(want))),
            Err(e) => {
                first = Some(e);
                break;
            }
        }
    }
    if first.is_none() {
        for (dest, data) in &sends {
            // SAFETY: as for the receives: `sends` outlives the waits below.
            match unsafe { comm.post_send_message_reserved(*dest, tag, &data.outgoing()) } {
                Ok(id) => pending.push((id, *dest, None)),
                Err(e) => {
                    first = Some(e);
                    break;
                }
            }
        }
    }
    for (id, rank, want) in pending {
        let done = comm.wait(id).and_then(|status| match want {
            Some(want) => check_length(rank, status.count_bytes(), want),
            None => Ok(()),
        });
        if let Err(e) = done {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Copies `src` into `dst` on this rank (`rank`): packs straight into contiguous memory, or
/// unpacks straight from it, else through scratch memory.
pub(super) fn copy_elements(
    rank: Rank,
    src: &Elements<'_>,
    dst: &mut ElementsMut<'_>,
) -> Result<(), CommError> {
    check_length(rank, src.packed_len(), dst.packed_len())?;
    if let Some(to) = dst.bytes_mut() {
        return src.pack_into(to);
    }
    if let Some(from) = src.bytes() {
        return dst.unpack_from(from);
    }
    with_scratch(Slot::Incoming, src.packed_len(), |tmp: &mut [u8]| {
        src.pack_into(tmp)?;
        dst.unpack_from(tmp)
    })
}

/// Broadcast into a non-contiguous `buf` (`p`: the root): the root packs, the bytes are
/// broadcast as a slice would be, and the other ranks unpack.
pub(super) fn broadcast_into(p: &Process<'_>, mut buf: ElementsMut<'_>) -> Result<(), CommError> {
    let core = p.core();
    let source = if core.is_inter() {
        if p.rank() == PROC_NULL {
            return Ok(());
        }
        p.rank() == ROOT
    } else {
        p.rank() == core.rank()
    };
    with_scratch(Slot::Incoming, buf.packed_len(), |tmp: &mut [u8]| {
        if source {
            buf.as_elements().pack_into(tmp)?;
        }
        super::Root::broadcast_into(p, tmp)?;
        if !source {
            buf.unpack_from(tmp)?;
        }
        Ok(())
    })
}

/// Sends `send` whole to `rank` and waits until it is gone.
pub(super) fn send_one(
    comm: &CommCore,
    rank: Rank,
    tag: i32,
    send: Elements<'_>,
) -> Result<(), CommError> {
    exchange_elements(comm, tag, Vec::new(), vec![(rank, send)])
}

/// Receives exactly `recv`'s elements from `rank`.
pub(super) fn receive_one(
    comm: &CommCore,
    rank: Rank,
    tag: i32,
    recv: ElementsMut<'_>,
) -> Result<(), CommError> {
    exchange_elements(comm, tag, vec![(rank, recv)], Vec::new())
}

/// The elements `blocks` of `send`, one buffer each.
fn ranges_of<'a>(
    send: &Elements<'a>,
    blocks: &[Range<usize>],
) -> Result<Vec<Elements<'a>>, CommError> {
    blocks
        .iter()
        .map(|b| send.range(b.start, b.len()))
        .collect()
}

/// The root's part of an intracommunicator gather: its own `send` copied to its block, then
/// every other rank's block received where `blocks` puts it, one rank at a time in rank
/// order (as the contiguous gather does), each whole.
pub(super) fn gather_at_root(
    comm: &CommCore,
    root: Rank,
    tag: i32,
    send: Elements<'_>,
    recv: ElementsMut<'_>,
    blocks: &[Range<usize>],
) -> Result<(), CommError> {
    let mut parts = recv.split(blocks)?;
    copy_elements(root, &send, &mut parts[root as usize])?;
    for (i, part) in parts.into_iter().enumerate() {
        if i != root as usize {
            receive_one(comm, i as Rank, tag, part)?;
        }
    }
    Ok(())
}

/// The root's part of an intracommunicator scatter: block `i` of `send` (`blocks[i]`) goes
/// whole to rank `i`, all at once; its own is copied into `recv`.
pub(super) fn scatter_at_root(
    comm: &CommCore,
    root: Rank,
    tag: i32,
    send: Elements<'_>,
    blocks: &[Range<usize>],
    mut recv: ElementsMut<'_>,
) -> Result<(), CommError> {
    let mut out = ranges_of(&send, blocks)?;
    copy_elements(root, &out[root as usize], &mut recv)?;
    let sends = out
        .drain(..)
        .enumerate()
        .filter(|&(i, _)| i != root as usize)
        .map(|(i, b)| (i as Rank, b))
        .collect();
    exchange_elements(comm, tag, Vec::new(), sends)
}

/// Every block `parts[i]` received from target rank `i`, all at once (an intercommunicator
/// gather's root).
pub(super) fn receive_all(
    comm: &CommCore,
    tag: i32,
    parts: Vec<ElementsMut<'_>>,
) -> Result<(), CommError> {
    let recvs = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (i as Rank, p))
        .collect();
    exchange_elements(comm, tag, recvs, Vec::new())
}

/// Block `blocks[i]` of `send` to target rank `i`, all at once (an intercommunicator
/// scatter's root).
pub(super) fn send_all(
    comm: &CommCore,
    tag: i32,
    send: Elements<'_>,
    blocks: &[Range<usize>],
) -> Result<(), CommError> {
    let sends = ranges_of(&send, blocks)?
        .into_iter()
        .enumerate()
        .map(|(i, b)| (i as Rank, b))
        .collect();
    exchange_elements(comm, tag, Vec::new(), sends)
}

/// Intracommunicator all-gather with a non-contiguous side: rank `i`'s `send` lands in
/// elements `blocks[i]` of every rank's `recv`. `linear` (chosen from sizes by the caller, as
/// the contiguous form chooses): every block to every rank at once, whole; else the ring of
/// the contiguous form over the packed blocks in rank order, in scratch memory unless `recv`
/// is contiguous itself.
pub(super) fn all_gather(
    comm: &CommCore,
    send: Elements<'_>,
    mut recv: ElementsMut<'_>,
    blocks: &[Range<usize>],
    linear: bool,
) -> Result<(), CommError> {
    let (n, r) = (comm.size() as usize, comm.rank() as usize);
    let size = recv.size;
    check_length(r as Rank, send.packed_len(), blocks[r].len() * size)?;
    if linear {
        let mut parts = recv.split(blocks)?;
        copy_elements(r as Rank, &send, &mut parts[r])?;
        let recvs = parts
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| i != r)
            .map(|(i, p)| (i as Rank, p))
            .collect();
        let sends = (1..n)
            .map(|k| (((r + k) % n) as Rank, send.clone()))
            .collect();
        return exchange_elements(comm, tag::ALLGATHER, recvs, sends);
    }
    if let Some(into) = recv.bytes_mut() {
        let bytes: Vec<Range<usize>> = blocks
            .iter()
            .map(|b| b.start * size..b.end * size)
            .collect();
        send.pack_into(&mut into[bytes[r].clone()])?;
        return ring_all_gather(comm, into, |i| bytes[i].clone(), 0, tag::ALLGATHER);
    }
    let mut packed = Vec::with_capacity(n);
    let mut at = 0;
    for b in blocks {
        packed.push(at..at + b.len() * size);
        at += b.len() * size;
    }
    let mut parts = recv.split(blocks)?;
    with_scratch(Slot::Incoming, at, |tmp: &mut [u8]| {
        send.pack_into(&mut tmp[packed[r].clone()])?;
        ring_all_gather(comm, tmp, |i| packed[i].clone(), 0, tag::ALLGATHER)?;
        for (part, range) in parts.iter_mut().zip(&packed) {
            part.unpack_from(&tmp[range.clone()])?;
        }
        Ok(())
    })
}

/// All-to-all with a non-contiguous side: elements `out[j]` of `send` go to target rank `j`,
/// which stores them at elements `inn[i]` (`i` this rank) of its `recv`.
pub(super) fn all_to_all(
    comm: &CommCore,
    send: Elements<'_>,
    out: &[Range<usize>],
    recv: ElementsMut<'_>,
    inn: &[Range<usize>],
) -> Result<(), CommError> {
    all_to_all_parts(comm, ranges_of(&send, out)?, recv.split(inn)?)
}

/// `outgoing[j]` to target rank `j`, `parts[j]` from it, every message posted at once; on an
/// intracommunicator this rank's own block is copied (each rank starts with the rank after
/// it, as the contiguous form does, so that the first messages do not all go to one).
fn all_to_all_parts(
    comm: &CommCore,
    outgoing: Vec<Elements<'_>>,
    mut parts: Vec<ElementsMut<'_>>,
) -> Result<(), CommError> {
    let n = comm.target_size() as usize;
    let r = comm.rank() as usize;
    let own = (!comm.is_inter()).then_some(r);
    if let Some(r) = own {
        copy_elements(r as Rank, &outgoing[r], &mut parts[r])?;
    }
    let recvs = parts
        .into_iter()
        .enumerate()
        .filter(|&(i, _)| Some(i) != own)
        .map(|(i, p)| (i as Rank, p))
        .collect();
    let sends = (0..n)
        .map(|k| (r + k) % n)
        .filter(|&d| Some(d) != own)
        .map(|d| (d as Rank, outgoing[d].clone()))
        .collect();
    exchange_elements(comm, tag::ALLTOALL, recvs, sends)
}

/// `MPI_Alltoallw` on bytes: `send_blocks[j]` of `send` to target rank `j`, which stores it
/// as `recv_blocks[i]` of its `recv`.
pub(super) fn all_to_all_w_into(
    comm: &CommCore,
    send: &[u8],
    send_blocks: &[TypedBlock<'_>],
    recv: &mut [u8],
    recv_blocks: &[TypedBlock<'_>],
) -> Result<(), CommError> {
    let n = comm.target_size() as usize;
    if send_blocks.len() != n || recv_blocks.len() != n {
        return Err(invalid(format!(
            "all_to_all_w_into: {} send and {} receive blocks for {n} ranks",
            send_blocks.len(),
            recv_blocks.len()
        )));
    }
    let what = |side: &str, e: CommError| match e {
        CommError::InvalidArgument(m) => invalid(format!("all_to_all_w_into ({side}): {m}")),
        other => other,
    };
    let outgoing = buffer::typed_blocks(send, send_blocks).map_err(|e| what("send", e))?;
    let parts = buffer::typed_blocks_mut(recv, recv_blocks).map_err(|e| what("recv", e))?;
    all_to_all_parts(comm, outgoing, parts)
}

/// Whether an all-gather over `n` ranks whose widest block is `widest` bytes posts every
/// block at once: the contiguous forms' choice (`fixed`: the fixed-count form, which takes
/// the ring for empty blocks).
pub(super) fn all_gather_is_linear(comm: &CommCore, widest: usize, fixed: bool) -> bool {
    comm.size() > 2 && widest <= linear_bytes(comm) && (widest > 0 || !fixed)
}

// ----- reductions over views -----

/// Elements of `T` in `bytes` packed bytes; an error naming `what` unless they are a whole
/// number.
fn count_as<T>(what: &str, bytes: usize) -> Result<usize, CommError> {
    let size = std::mem::size_of::<T>();
    if size == 0 || !bytes.is_multiple_of(size) {
        return Err(invalid(format!(
            "{what}: the view packs into {bytes} bytes, not a whole number of {size}-byte \
             elements of the operation's type"
        )));
    }
    Ok(bytes / size)
}

/// `view`'s elements packed and read as `T`s.
pub(super) fn packed_as<T: Pod>(what: &str, view: &View<'_>) -> Result<Vec<T>, CommError> {
    let mut out = vec![T::zeroed(); count_as::<T>(what, view.packed_len())?];
    view.pack_into(bytemuck::cast_slice_mut(&mut out))
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    Ok(out)
}

/// As many zero `T`s as `view` packs into.
pub(super) fn zeroed_as<T: Pod>(what: &str, view: &MutView<'_>) -> Result<Vec<T>, CommError> {
    Ok(vec![T::zeroed(); count_as::<T>(what, view.packed_len())?])
}

/// Unpacks `data` into `view`.
pub(super) fn unpack_as<T: Pod>(
    what: &str,
    view: &mut MutView<'_>,
    data: &[T],
) -> Result<(), CommError> {
    view.unpack_from(bytemuck::cast_slice(data))
        .map(|_| ())
        .map_err(|e| invalid(format!("{what}: {e}")))
}
