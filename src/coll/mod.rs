//! Collectives on any communicator: barrier, broadcast, reduce, all-reduce, gather, scatter,
//! all-gather, all-to-all and their variable-count forms, reduce-scatter (`reduce_scatter`),
//! inclusive and exclusive scans (`scan`), and the in-place forms MPI has (`MPI_IN_PLACE`),
//! with rsmpi's names, as the [`CommunicatorCollectives`] and [`Root`] traits
//! (`use onecopy::traits::*`). Written once against the communicator core; intercommunicators
//! get MPI's intercommunicator forms (`inter`). The operations are in `op` and, for `MINLOC`
//! and `MAXLOC`, `location`.
//!
//! They are built on the runtime's point-to-point messages in each communicator's collective
//! context, which no user receive matches, with tags that name the collective and its root.
//! Every rank must call the same collectives in the same order. The algorithm is chosen from
//! the rank count and size alone (the table is in README.md, "Collective algorithms"), so all ranks
//! choose alike and float reductions are deterministic. Reduction steps combine while copying:
//! the runtime folds the peer's data into the accumulator as it arrives (see
//! [`reduce`](mod@reduce)).
//!
//! The non-reduction collectives take any buffer point to point takes ([`Buffer`],
//! [`BufferMut`]): slices, vectors, arrays, and views through derived datatypes, which may
//! differ between ranks as long as they pack into the same bytes. Contiguous ones run the byte
//! algorithms here; how a non-contiguous one travels (whole as a layout, or packed), and
//! `MPI_Alltoallw` and the reductions over views, are in `laid`.
//!
//! Arguments that do not agree between ranks are reported, not trusted: every message's length
//! is checked against the receiver's own expectation, so different counts end as
//! [`CommError::Mismatch`] or [`CommError::Truncated`] on the rank that sees the difference
//! (its peers then see that rank fail); a collective's tag names the collective and its root,
//! and a rank that meets another collective's message gets [`CommError::Mismatch`]. This module
//! does not own the message protocols (`comm`) nor the kernel calls (`vm`).

mod immediate;
mod inter;
mod laid;
mod location;
mod op;
pub mod reduce;
mod reduce_scatter;
mod scan;

use std::ops::Range;

use bytemuck::Pod;

use crate::comm::buffer::{Elements, ElementsMut, elements, elements_mut};
use crate::comm::{Buffer, BufferMut, CommCore, CommError, Communicator, Process, Rank};
use crate::datatype::{MutView, View};

pub use crate::comm::buffer::TypedBlock;
pub use immediate::{ImmediateCollectives, ImmediateRoot};
pub use location::{LocationOperation, LocationValue, ValueIndex};
pub use op::{Integer, IntegerOperation, Number, Operation, SystemOperation, UserOperation};

use crate::comm::tags as tag;

/// Broadcasts of at least this many bytes (and more than two ranks) scatter the buffer and
/// gather it back around a ring, so the root sends each byte once instead of log2(n) times.
pub const BCAST_SCATTER_BYTES: usize = 512 << 10;

/// All-to-all blocks and all-gather blocks of at most this many bytes are exchanged by posting
/// every send and receive at once rather than in n - 1 paired steps
/// (BENCHMARKS.md, "Collectives").
pub const LINEAR_BYTES: usize = 1 << 10;

/// All-to-alls on up to this many ranks post everything at once at every size: with few peers
/// nobody is read or written by many at once, and a rank that holds a CPU keeps all its
/// transfers going (4 ranks on 2 cores: 8 MiB in 5.3-5.6 ms against 6.0 paired).
pub const LINEAR_ALL_TO_ALL_RANKS: usize = 4;

fn linear_bytes(comm: &CommCore) -> usize {
    comm.rt.config.coll_linear_bytes
}

/// Scratch memory kept between calls, one buffer per [`Slot`].
///
/// A fresh buffer per call costs a page fault per 4 KiB page, which on a VM took longer than
/// moving the data (BENCHMARKS.md, "Fused read-reduce"), so collectives reuse these.
struct Scratch {
    slots: [Vec<u128>; 2],
}

/// Which scratch buffer: the accumulator of a reduction, or a peer's incoming part.
#[derive(Clone, Copy)]
enum Slot {
    Accumulator = 0,
    Incoming = 1,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> =
        const { std::cell::RefCell::new(Scratch { slots: [Vec::new(), Vec::new()] }) };
}

/// Buffers larger than this are freed after use rather than kept.
const SCRATCH_KEEP_BYTES: usize = 64 << 20;

/// Runs `f` with `len` elements of scratch memory (contents unspecified).
fn with_scratch<T: Pod, R>(slot: Slot, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let size = std::mem::size_of::<T>();
    let mut store = SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut().slots[slot as usize]));
    let words = (len * size).div_ceil(16);
    if store.len() < words {
        store.resize(words, 0);
    }
    let raw: &mut [u8] = bytemuck::cast_slice_mut(&mut store[..words]);
    // u128 storage suits every primitive's alignment; a type with a larger one (or no size)
    // gets a buffer of its own.
    let result = match bytemuck::try_cast_slice_mut::<u8, T>(&mut raw[..len * size]) {
        Ok(typed) if size > 0 => f(typed),
        _ => f(&mut vec![T::zeroed(); len]),
    };
    if store.len() * 16 <= SCRATCH_KEEP_BYTES {
        SCRATCH.with(|s| {
            let kept = &mut s.borrow_mut().slots[slot as usize];
            if kept.len() < store.len() {
                *kept = store;
            }
        });
    }
    result
}

fn bytes<T: Pod>(s: &[T]) -> &[u8] {
    bytemuck::cast_slice(s)
}

fn bytes_mut<T: Pod>(s: &mut [T]) -> &mut [u8] {
    bytemuck::cast_slice_mut(s)
}

fn invalid(what: impl Into<String>) -> CommError {
    CommError::InvalidArgument(what.into())
}

/// `recv` as long as `send`, as a reduction needs; else an error naming `what`.
fn check_same_length<T>(what: &str, send: &[T], recv: &[T]) -> Result<(), CommError> {
    if recv.len() == send.len() {
        return Ok(());
    }
    Err(invalid(format!(
        "{what}: {} receive elements for {} sent",
        recv.len(),
        send.len()
    )))
}

/// `inout = input op inout`, element by element, on this rank alone (`MPI_Reduce_local`):
/// `input` is the left operand, as the lower ranks' part is in a reduction.
///
/// ```
/// use onecopy::collective::{SystemOperation, reduce_local_into};
/// let mut inout = [10, 20];
/// reduce_local_into(&[1, 2], &mut inout, SystemOperation::sum())?;
/// assert_eq!(inout, [11, 22]);
/// # Ok::<(), onecopy::CommError>(())
/// ```
pub fn reduce_local_into<T: Pod, O: Operation<T>>(
    input: &[T],
    inout: &mut [T],
    op: O,
) -> Result<(), CommError> {
    check_same_length("reduce_local_into", input, inout)?;
    op.reduce_into_right(input, inout);
    Ok(())
}

/// `comm`, if it is an intracommunicator; else the error for `what`, which MPI defines (as
/// `mpi_name`) on intracommunicators only.
fn intra_only<'a>(
    comm: &'a CommCore,
    what: &str,
    mpi_name: &str,
) -> Result<&'a CommCore, CommError> {
    if comm.is_inter() {
        return Err(invalid(format!(
            "{what}: MPI defines {mpi_name} on intracommunicators only, not on an intercommunicator"
        )));
    }
    Ok(comm)
}

/// The error for an in-place form (`MPI_IN_PLACE`) called on an intercommunicator.
fn no_in_place_on_inter(what: &str) -> CommError {
    invalid(format!(
        "{what}: MPI defines the in-place form (MPI_IN_PLACE) on intracommunicators only; \
         on an intercommunicator pass separate send and receive buffers"
    ))
}

/// The block length of an all-to-all over `n` ranks: `send` and `recv` of one length that `n`
/// equal blocks make up; else an error.
fn all_to_all_block<T>(n: usize, send: &[T], recv: &[T]) -> Result<usize, CommError> {
    if n == 0 || !send.len().is_multiple_of(n) || recv.len() != send.len() {
        return Err(invalid(format!(
            "all_to_all_into: {} send and {} receive elements do not make {n} equal blocks",
            send.len(),
            recv.len()
        )));
    }
    Ok(send.len() / n)
}

/// The block lengths (in each side's elements) of an all-to-all over `n` ranks: `send` and
/// `recv` each `n` equal blocks, of the same bytes; else an error.
fn all_to_all_blocks(
    n: usize,
    send: &Elements<'_>,
    recv: &ElementsMut<'_>,
) -> Result<(usize, usize), CommError> {
    if n == 0
        || !send.count.is_multiple_of(n)
        || !recv.count.is_multiple_of(n)
        || recv.packed_len() != send.packed_len()
    {
        return Err(invalid(format!(
            "all_to_all_into: {} send and {} receive elements do not make {n} equal blocks",
            send.count, recv.count
        )));
    }
    Ok((send.count / n, recv.count / n))
}

/// The blocks of `count` elements each, of a gather or all-gather over `n` ranks whose
/// receive buffer is `recv` and whose blocks come from sends like `send`; else the error
/// for `what`.
fn gather_blocks(
    what: &str,
    n: usize,
    send: &Elements<'_>,
    recv: &ElementsMut<'_>,
) -> Result<usize, CommError> {
    if n == 0 || !recv.count.is_multiple_of(n) || recv.packed_len() != n * send.packed_len() {
        return Err(invalid(format!(
            "{what}: {} receive elements for {n} ranks of {}",
            recv.count, send.count
        )));
    }
    Ok(recv.count / n)
}

fn check_root(comm: &CommCore, root: i32) -> Result<i32, CommError> {
    if (0..comm.size()).contains(&root) {
        Ok(root)
    } else {
        Err(CommError::InvalidRank {
            rank: root,
            size: comm.size(),
        })
    }
}

fn check_length(from: i32, got: usize, want: usize) -> Result<(), CommError> {
    if got == want {
        Ok(())
    } else {
        Err(CommError::Mismatch {
            rank: from,
            what: format!("received {got} bytes where {want} were expected"),
        })
    }
}

/// Sends `data` to `rank` and waits until it may be reused.
fn send(comm: &CommCore, rank: i32, tag: i32, data: &[u8]) -> Result<(), CommError> {
    comm.send_blocking(rank, tag, data)
}

/// Receives exactly `buf.len()` bytes from `rank`.
fn receive(comm: &CommCore, rank: i32, tag: i32, buf: &mut [u8]) -> Result<(), CommError> {
    let want = buf.len();
    let id = comm.post_receive_reserved(rank, tag, buf)?;
    let status = comm.wait(id)?;
    check_length(rank, status.count_bytes(), want)
}

/// Sends every `(rank, data)` of `parts` at once and waits for all of them, also when one fails,
/// before the data is handed back; returns the first error.
fn send_all<'a>(
    comm: &CommCore,
    tag: i32,
    parts: impl IntoIterator<Item = (i32, &'a [u8])>,
) -> Result<(), CommError> {
    let mut sent = Vec::new();
    let mut first = None;
    for (rank, data) in parts {
        match comm.post_send_reserved(rank, tag, data) {
            Ok(id) => sent.push(id),
            Err(e) => {
                first = Some(e);
                break;
            }
        }
    }
    for id in sent {
        if let Err(e) = comm.wait(id) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Sends `out` to `dest` while receiving exactly `inn.len()` bytes from `source`.
///
/// The two requests are waited for here, before `out` and `inn` are handed back, also when one
/// of them fails (a scope would do the same, at a cost that shows at small sizes).
///
/// A message that fits a ring record goes first, before the receive is posted: it is on its
/// way one receive's bookkeeping sooner, and the peer is waiting for it (2-rank 64-byte
/// all-to-all 0.49 µs a call against 0.39 when the CPUs share no cache, 0.14 against 0.12
/// when they do; Open MPI 0.47 and 0.15). Larger messages wait for the receive to be posted
/// first, so that the peer's finds it there.
fn exchange(
    comm: &CommCore,
    dest: i32,
    out: &[u8],
    source: i32,
    inn: &mut [u8],
    tag: i32,
) -> Result<(), CommError> {
    if comm.fits_record(out.len()) {
        comm.send_blocking(dest, tag, out)?;
        return receive(comm, source, tag, inn);
    }
    let want = inn.len();
    let received = comm.post_receive_reserved(source, tag, inn)?;
    complete_exchange(comm, received, source, want, Some((dest, out)), tag)
}

/// Sends `send` (if any) while the posted receive `received` (of exactly `want` bytes from
/// `source`) completes. Both requests are waited for before this returns, also when one fails,
/// so neither buffer is lent any longer.
fn complete_exchange(
    comm: &CommCore,
    received: u64,
    source: i32,
    want: usize,
    send: Option<(i32, &[u8])>,
    tag: i32,
) -> Result<(), CommError> {
    let sent = match send.map(|(dest, out)| comm.post_send_reserved(dest, tag, out)) {
        Some(Err(e)) => {
            let _ = comm.wait(received);
            return Err(e);
        }
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let got = comm.wait(received);
    let gone = sent.map(|id| comm.wait(id));
    let status = got?;
    if let Some(gone) = gone {
        gone?;
    }
    check_length(source, status.count_bytes(), want)
}

/// Posts every receive (`recvs`: source and buffer) and every send (`sends`: destination and
/// data) at once, then waits for all of them, also when one fails, before the buffers are handed
/// back; returns the first error. A rank that runs while its peers are descheduled hands all its
/// messages over in one go instead of one step per peer.
fn exchange_all<'a>(
    comm: &CommCore,
    tag: i32,
    recvs: impl IntoIterator<Item = (i32, &'a mut [u8])>,
    sends: impl IntoIterator<Item = (i32, &'a [u8])>,
    own: Option<(&mut [u8], &[u8])>,
) -> Result<(), CommError> {
    let mut pending: Vec<(u64, i32, Option<usize>)> = Vec::new();
    let mut first = None;
    // Messages that fit a ring record go first (see `exchange`); the others after the receives.
    let mut later = Vec::new();
    for (dest, data) in sends {
        if first.is_some() || !comm.fits_record(data.len()) {
            later.push((dest, data));
        } else if let Err(e) = comm.send_blocking(dest, tag, data) {
            first = Some(e);
        }
    }
    for (source, buf) in recvs.into_iter().take_while(|_| first.is_none()) {
        let want = buf.len();
        match comm.post_receive_reserved(source, tag, buf) {
            Ok(id) => pending.push((id, source, Some(want))),
            Err(e) => {
                first = Some(e);
                break;
            }
        }
    }
    if first.is_none() {
        for (dest, data) in later {
            match comm.post_send_reserved(dest, tag, data) {
                Ok(id) => pending.push((id, dest, None)),
                Err(e) => {
                    first = Some(e);
                    break;
                }
            }
        }
    }
    if let Some((dst, src)) = own
        && let Err(e) = copy_while_progressing(comm, dst, src)
    {
        first.get_or_insert(e);
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

/// Own blocks from this size on are copied while an all-to-all's messages move.
const OWN_WHILE_MOVING_FROM: usize = 1 << 20;

/// Copies `src` into `dst` (an all-to-all's own block, after its messages were posted): from
/// 1 MiB in pieces, with a round of progress after each, so that the copy fills the time this
/// rank would otherwise wait for slots and chunks. The 2-rank 8 MiB all-to-all went from
/// 975-1000 µs (copy first) to 811-862, the 4-rank one from 5366-5470 to 5096-5241.
fn copy_while_progressing(comm: &CommCore, dst: &mut [u8], src: &[u8]) -> Result<(), CommError> {
    const PIECE: usize = 128 << 10;
    if src.len() < OWN_WHILE_MOVING_FROM {
        dst.copy_from_slice(src);
        return Ok(());
    }
    for (d, s) in dst.chunks_mut(PIECE).zip(src.chunks(PIECE)) {
        d.copy_from_slice(s);
        comm.progress()?;
    }
    Ok(())
}

/// The blocks `ranges` of `buf` as separate mutable slices, in the order given; an error if two
/// non-empty ones overlap.
fn disjoint_mut<'a>(
    buf: &'a mut [u8],
    ranges: &[Range<usize>],
) -> Result<Vec<&'a mut [u8]>, CommError> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i].start);
    let mut parts: Vec<&'a mut [u8]> = ranges.iter().map(|_| <&mut [u8]>::default()).collect();
    let mut rest = buf;
    let mut at = 0;
    for i in order {
        let r = &ranges[i];
        if r.is_empty() {
            continue;
        }
        if r.start < at {
            return Err(invalid(format!(
                "receive blocks overlap at byte {} (block {i} is {r:?})",
                r.start
            )));
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
        let (part, tail) = tail.split_at_mut(r.len());
        parts[i] = part;
        rest = tail;
        at = r.end;
    }
    Ok(parts)
}

/// Counts and displacements of `n` consecutive blocks of `c` elements, for the fixed-count forms
/// that go through their `varcount` twins.
fn equal_blocks(n: usize, c: usize) -> (Vec<usize>, Vec<usize>) {
    (vec![c; n], (0..n).map(|i| i * c).collect())
}

/// Block `i` of `n` nearly equal blocks of `len` items.
fn block(len: usize, n: usize, i: usize) -> Range<usize> {
    (len * i / n)..(len * (i + 1) / n)
}

/// The part `out` and the part `inn` of `buf`, which must not overlap.
fn split_two(
    buf: &mut [u8],
    out: Range<usize>,
    inn: Range<usize>,
) -> Result<(&[u8], &mut [u8]), CommError> {
    if inn.is_empty() {
        return Ok((&buf[out], &mut []));
    }
    if out.is_empty() {
        return Ok((&[], &mut buf[inn]));
    }
    if out.end <= inn.start {
        let (low, high) = buf.split_at_mut(inn.start);
        return Ok((&low[out], &mut high[..inn.len()]));
    }
    if inn.end <= out.start {
        let (low, high) = buf.split_at_mut(out.start);
        return Ok((&high[..out.len()], &mut low[inn]));
    }
    Err(invalid(format!(
        "blocks {out:?} and {inn:?} of the receive buffer overlap"
    )))
}

/// Ring all-gather of byte blocks: rank `r` holds block `(r + shift) % n` of `buf` and ends with
/// all of them; `block(i)` is block `i`'s place in `buf`.
fn ring_all_gather(
    comm: &CommCore,
    buf: &mut [u8],
    block: impl Fn(usize) -> Range<usize>,
    shift: usize,
    tag: i32,
) -> Result<(), CommError> {
    let n = comm.size() as usize;
    let r = comm.rank() as usize;
    let next = ((r + 1) % n) as i32;
    let prev = ((r + n - 1) % n) as i32;
    for k in 0..n.saturating_sub(1) {
        let out = block((r + shift + n - k) % n);
        let inn = block((r + shift + 2 * n - k - 1) % n);
        let (out, inn) = split_two(buf, out, inn)?;
        exchange(comm, next, out, prev, inn, tag)?;
    }
    Ok(())
}

/// Checks that `counts` and `displs` (in elements of `T`) have one entry per rank and fit
/// `len`; returns the byte ranges.
fn ranges<T>(
    n: usize,
    counts: &[usize],
    displs: &[usize],
    len: usize,
    what: &str,
) -> Result<Vec<Range<usize>>, CommError> {
    let blocks = element_ranges(n, counts, displs, len, what)?;
    Ok(byte_ranges(&blocks, std::mem::size_of::<T>()))
}

/// Checks that `counts` and `displs` (in elements) have one entry per rank and fit `len`
/// elements; returns the element ranges.
fn element_ranges(
    n: usize,
    counts: &[usize],
    displs: &[usize],
    len: usize,
    what: &str,
) -> Result<Vec<Range<usize>>, CommError> {
    if counts.len() != n || displs.len() != n {
        return Err(invalid(format!(
            "{what}: {} counts and {} displacements for {n} ranks",
            counts.len(),
            displs.len()
        )));
    }
    counts
        .iter()
        .zip(displs)
        .enumerate()
        .map(|(i, (&c, &d))| match d.checked_add(c) {
            Some(end) if end <= len => Ok(d..end),
            _ => Err(invalid(format!(
                "{what}: block {i} ({c} elements at {d}) lies outside the {len}-element buffer"
            ))),
        })
        .collect()
}

/// Element ranges `blocks` as byte ranges, for elements of `size` bytes.
fn byte_ranges(blocks: &[Range<usize>], size: usize) -> Vec<Range<usize>> {
    blocks
        .iter()
        .map(|b| b.start * size..b.end * size)
        .collect()
}

/// Returns when every rank has called it: log2(n) rounds of empty messages, exchanged with
/// rank r xor 2^k when n is a power of two (recursive doubling), else sent to r + 2^k and
/// received from r - 2^k (dissemination). Pairs that exchange wait for one rank each round,
/// which lets a rank on an oversubscribed machine spin for it (4 ranks on 2 CPUs: 1.8 µs a
/// call, 3.3 by dissemination).
pub(crate) fn barrier(comm: &CommCore) -> Result<(), CommError> {
    let n = comm.size();
    let r = comm.rank();
    let mut k = 1;
    while k < n {
        let (to, from) = if (n as u32).is_power_of_two() {
            (r ^ k, r ^ k)
        } else {
            ((r + k) % n, (r - k + n) % n)
        };
        exchange(comm, to, &[], from, &mut [], tag::BARRIER)?;
        k *= 2;
    }
    Ok(())
}

/// Every rank's `send` (the same length everywhere) lands in every rank's `recv`, in rank
/// order; `recv` holds `size` blocks of `send`'s bytes.
pub(crate) fn all_gather_into(
    comm: &CommCore,
    send: Elements<'_>,
    mut recv: ElementsMut<'_>,
) -> Result<(), CommError> {
    let n = comm.size() as usize;
    let k = gather_blocks("all_gather_into", n, &send, &recv)?;
    let each = send.packed_len();
    let r = comm.rank() as usize;
    if let (Some(out), Some(into)) = (send.bytes(), recv.bytes_mut()) {
        into[r * each..][..each].copy_from_slice(out);
        return all_gather_blocks(comm, into, each);
    }
    let (_, displs) = equal_blocks(n, k);
    let blocks: Vec<_> = displs.iter().map(|&d| d..d + k).collect();
    let linear = laid::all_gather_is_linear(comm, each, true);
    laid::all_gather(comm, send, recv, &blocks, linear)
}

/// Every rank's block of `buf` (`buf.len() / size` elements, rank r's at block r, already in
/// place) lands in every rank's `buf` (`MPI_IN_PLACE`).
pub(crate) fn all_gather_in_place<T: Pod>(comm: &CommCore, buf: &mut [T]) -> Result<(), CommError> {
    let n = comm.size() as usize;
    if !buf.len().is_multiple_of(n) {
        return Err(invalid(format!(
            "all_gather_in_place: {} elements do not make {n} equal blocks",
            buf.len()
        )));
    }
    let each = std::mem::size_of_val(buf) / n;
    all_gather_blocks(comm, bytes_mut(buf), each)
}

/// All-gather of blocks of `each` bytes, this rank's already in place in `recv`.
fn all_gather_blocks(comm: &CommCore, recv: &mut [u8], each: usize) -> Result<(), CommError> {
    let n = comm.size() as usize;
    if n > 2 && each > 0 && each <= linear_bytes(comm) {
        return linear_all_gather_in_place(comm, recv.chunks_mut(each).collect());
    }
    ring_all_gather(comm, recv, |i| i * each..(i + 1) * each, 0, tag::ALLGATHER)
}

/// Rank `i`'s `send` (`counts[i]` elements of `recv`) lands at `recv`'s elements
/// `displs[i]..` on every rank (a ring: each rank sends to the next, receives from the
/// previous, n - 1 steps).
pub(crate) fn all_gather_varcount_into(
    comm: &CommCore,
    send: Elements<'_>,
    mut recv: ElementsMut<'_>,
    counts: &[usize],
    displs: &[usize],
) -> Result<(), CommError> {
    let n = comm.size() as usize;
    let r = comm.rank() as usize;
    let what = "all_gather_varcount_into";
    let elems = element_ranges(n, counts, displs, recv.count, what)?;
    let size = recv.size;
    if send.packed_len() != counts[r] * size {
        return Err(invalid(format!(
            "{what}: {} elements ({} bytes) to send, counts[{r}] is {} ({} bytes)",
            send.count,
            send.packed_len(),
            counts[r],
            counts[r] * size
        )));
    }
    let blocks = byte_ranges(&elems, size);
    // Every rank has the same counts, so every rank picks the same algorithm.
    let widest = blocks.iter().map(|b| b.len()).max().unwrap_or(0);
    let linear = laid::all_gather_is_linear(comm, widest, false);
    let (Some(out), Some(into)) = (send.bytes(), recv.bytes_mut()) else {
        return laid::all_gather(comm, send, recv, &elems, linear);
    };
    if linear {
        let parts = disjoint_mut(into, &blocks)?;
        return linear_all_gather(comm, out, parts);
    }
    into[blocks[r].clone()].copy_from_slice(out);
    ring_all_gather(comm, into, |i| blocks[i].clone(), 0, tag::ALLGATHER)
}

/// Rank `i` sends block `j` of its `send` to rank `j`, which stores it as block `i` of its
/// `recv`; blocks are `send.len() / size` elements.
pub(crate) fn all_to_all_into(
    comm: &CommCore,
    send: Elements<'_>,
    mut recv: ElementsMut<'_>,
) -> Result<(), CommError> {
    let n = comm.size() as usize;
    let (ks, kr) = all_to_all_blocks(n, &send, &recv)?;
    let each = ks * send.size;
    let (Some(send), Some(recv)) = (send.bytes(), recv.bytes_mut()) else {
        let out: Vec<_> = (0..n).map(|i| i * ks..(i + 1) * ks).collect();
        let inn: Vec<_> = (0..n).map(|i| i * kr..(i + 1) * kr).collect();
        return laid::all_to_all(comm, send, &out, recv, &inn);
    };
    if each > 0 && all_to_all_at_once(comm, n, each) {
        let out = send.chunks(each).map(|b| b as &[u8]);
        return linear_all_to_all(comm, out, recv.chunks_mut(each).collect());
    }
    let block = |i: usize| i * each..(i + 1) * each;
    pairwise_all_to_all(comm, send, block, recv, block)
}

/// Block `j` of `buf` goes to rank `j` and is replaced by rank `j`'s block for this rank
/// (`MPI_IN_PLACE`). The outgoing blocks are first copied aside into scratch memory, then
/// moved as [`all_to_all_into`] moves them: one extra copy of the buffer, and every message
/// as concurrent as in the other form.
pub(crate) fn all_to_all_in_place<T: Pod>(comm: &CommCore, buf: &mut [T]) -> Result<(), CommError> {
    all_to_all_block(comm.size() as usize, buf, buf)?;
    with_scratch(Slot::Accumulator, buf.len(), |out: &mut [T]| {
        out.copy_from_slice(buf);
        all_to_all_into(comm, elements(out), elements_mut(buf))
    })
}

/// Rank `i` sends `send[send_displs[j]..][..send_counts[j]]` to rank `j`, which stores it at
/// `recv[recv_displs[i]..][..recv_counts[i]]`: every message posted at once for small blocks
/// or few ranks, else pairwise steps (see [`LINEAR_BYTES`]).
pub(crate) fn all_to_all_varcount_into(
    comm: &CommCore,
    send: Elements<'_>,
    send_counts: &[usize],
    send_displs: &[usize],
    mut recv: ElementsMut<'_>,
    recv_counts: &[usize],
    recv_displs: &[usize],
) -> Result<(), CommError> {
    let n = comm.size() as usize;
    let r = comm.rank() as usize;
    let out = element_ranges(n, send_counts, send_displs, send.count, "all_to_all (send)")?;
    let inn = element_ranges(n, recv_counts, recv_displs, recv.count, "all_to_all (recv)")?;
    let (ss, rs) = (send.size, recv.size);
    check_length(r as i32, out[r].len() * ss, inn[r].len() * rs)?;
    let (Some(send), Some(recv)) = (send.bytes(), recv.bytes_mut()) else {
        return laid::all_to_all(comm, send, &out, recv, &inn);
    };
    let (out, inn) = (byte_ranges(&out, ss), byte_ranges(&inn, rs));
    // Ranks may choose differently here (their counts differ): either way each pair
    // exchanges one message each way, matched in order, so the two algorithms mix.
    let widest = out.iter().chain(&inn).map(|b| b.len()).max().unwrap_or(0);
    if all_to_all_at_once(comm, n, widest) {
        let outgoing = out.iter().map(|b| &send[b.clone()]);
        return linear_all_to_all(comm, outgoing, disjoint_mut(recv, &inn)?);
    }
    pairwise_all_to_all(comm, send, |i| out[i].clone(), recv, |i| inn[i].clone())
}
/// Whether an all-to-all whose largest block is `widest` bytes posts everything at once.
fn all_to_all_at_once(comm: &CommCore, n: usize, widest: usize) -> bool {
    n > 2 && (widest <= linear_bytes(comm) || n <= LINEAR_ALL_TO_ALL_RANKS)
}

/// Pairwise exchange: at step k rank r sends its block for r + k (`out(r + k)` of `send`) and
/// receives the block from r - k (into `inn(r - k)` of `recv`), so no rank is read by more than
/// one other at a time. This rank's own block is copied; the caller checked it fits.
fn pairwise_all_to_all(
    comm: &CommCore,
    send: &[u8],
    out: impl Fn(usize) -> Range<usize>,
    recv: &mut [u8],
    inn: impl Fn(usize) -> Range<usize>,
) -> Result<(), CommError> {
    let (n, r) = (comm.size() as usize, comm.rank() as usize);
    let mut first = 1;
    if n > 1 && out(r).len() >= OWN_WHILE_MOVING_FROM {
        // The first step copies this rank's own block while its messages move.
        let (dest, source) = ((r + 1) % n, (r + n - 1) % n);
        let mut parts = disjoint_mut(recv, &[inn(r), inn(source)])?.into_iter();
        let (mine, from) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        exchange_all(
            comm,
            tag::ALLTOALL,
            [(source as i32, from)],
            [(dest as i32, &send[out(dest)])],
            Some((mine, &send[out(r)])),
        )?;
        first = 2;
    } else {
        recv[inn(r)].copy_from_slice(&send[out(r)]);
    }
    for k in first..n {
        let (dest, source) = ((r + k) % n, (r + n - k) % n);
        let (data, into) = (&send[out(dest)], &mut recv[inn(source)]);
        exchange(comm, dest as i32, data, source as i32, into, tag::ALLTOALL)?;
    }
    Ok(())
}

/// `parts[i]` paired with rank `i`, for every rank but `r`: the receives of a linear exchange.
fn from_others(parts: Vec<&mut [u8]>, r: usize) -> impl Iterator<Item = (i32, &mut [u8])> {
    parts
        .into_iter()
        .enumerate()
        .filter(move |&(i, _)| i != r)
        .map(|(i, p)| (i as i32, p))
}

/// All-gather by posting everything at once: `own` goes to every other rank, and `parts[i]`
/// (one per rank) receives rank i's block; this rank's own part is copied locally.
fn linear_all_gather(
    comm: &CommCore,
    own: &[u8],
    mut parts: Vec<&mut [u8]>,
) -> Result<(), CommError> {
    let r = comm.rank() as usize;
    check_length(r as i32, own.len(), parts[r].len())?;
    parts[r].copy_from_slice(own);
    linear_all_gather_in_place(comm, parts)
}

/// [`linear_all_gather`] with this rank's block already in its part.
fn linear_all_gather_in_place(comm: &CommCore, mut parts: Vec<&mut [u8]>) -> Result<(), CommError> {
    let (n, r) = (comm.size() as usize, comm.rank() as usize);
    let own: &[u8] = std::mem::take::<&mut [u8]>(&mut parts[r]);
    let others = (1..n).map(|k| ((r + k) % n) as i32);
    let recvs = from_others(parts, r);
    exchange_all(comm, tag::ALLGATHER, recvs, others.map(|d| (d, own)), None)
}

/// All-to-all by posting everything at once: block `i` of `out` goes to rank `i`, and
/// `parts[i]` receives rank `i`'s block for this rank.
fn linear_all_to_all<'a>(
    comm: &CommCore,
    out: impl Iterator<Item = &'a [u8]>,
    mut parts: Vec<&mut [u8]>,
) -> Result<(), CommError> {
    let (n, r) = (comm.size() as usize, comm.rank() as usize);
    let out: Vec<&[u8]> = out.collect();
    check_length(r as i32, out[r].len(), parts[r].len())?;
    let mine = std::mem::take(&mut parts[r]);
    // Each rank starts with the rank after it, so the first messages do not all go to one.
    let sends = (1..n).map(|k| {
        let d = (r + k) % n;
        (d as i32, out[d])
    });
    let recvs = from_others(parts, r);
    exchange_all(comm, tag::ALLTOALL, recvs, sends, Some((mine, out[r])))
}

impl AtRoot<'_> {
    /// Copies the root's (this peer's) `buf` into every rank's `buf`.
    pub(crate) fn broadcast_into<T: Pod>(&self, buf: &mut [T]) -> Result<(), CommError> {
        let comm = self.comm;
        let root = check_root(comm, self.root)?;
        broadcast_bytes(comm, root, bytes_mut(buf), tag::rooted(tag::BCAST, root))
    }

    /// On the root: gathers every rank's `send` into `recv` in rank order.
    pub(crate) fn gather_into_root(
        &self,
        send: Elements<'_>,
        recv: ElementsMut<'_>,
    ) -> Result<(), CommError> {
        let n = self.comm.size() as usize;
        let k = gather_blocks("gather_into_root", n, &send, &recv)?;
        let (counts, displs) = equal_blocks(n, k);
        self.gather_varcount_into_root(send, recv, &counts, &displs)
    }

    /// On a rank other than the root: contributes `send` to a gather.
    pub(crate) fn gather_into(&self, send: Elements<'_>) -> Result<(), CommError> {
        let comm = self.comm;
        let root = self.non_root(comm, "gather_into")?;
        let gather = tag::rooted(tag::GATHER, root);
        match send.bytes() {
            Some(out) => self::send(comm, root, gather, out),
            None => laid::send_one(comm, root, gather, send),
        }
    }

    /// On the root: rank `i`'s `send` lands at `recv`'s elements `displs[i]..` (`counts[i]` of
    /// them).
    pub(crate) fn gather_varcount_into_root(
        &self,
        send: Elements<'_>,
        mut recv: ElementsMut<'_>,
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError> {
        let comm = self.comm;
        let root = self.at_root(comm, "gather_varcount_into_root")?;
        let gather = tag::rooted(tag::GATHER, root);
        let n = comm.size() as usize;
        let elems = element_ranges(n, counts, displs, recv.count, "gather_varcount_into_root")?;
        let size = recv.size;
        check_length(root, send.packed_len(), elems[root as usize].len() * size)?;
        let (Some(out), Some(recv)) = (send.bytes(), recv.bytes_mut()) else {
            return laid::gather_at_root(comm, root, gather, send, recv, &elems);
        };
        let blocks = byte_ranges(&elems, size);
        recv[blocks[root as usize].clone()].copy_from_slice(out);
        // Linear, in rank order: the root takes one sender at a time, which keeps it from
        // being read by many at once.
        for (i, b) in blocks.iter().enumerate() {
            if i != root as usize {
                receive(comm, i as i32, gather, &mut recv[b.clone()])?;
            }
        }
        Ok(())
    }

    /// On the root: block `i` of `send` (`recv`'s bytes each) goes to rank `i`.
    pub(crate) fn scatter_into_root(
        &self,
        send: Elements<'_>,
        recv: ElementsMut<'_>,
    ) -> Result<(), CommError> {
        let n = self.comm.size() as usize;
        if !send.count.is_multiple_of(n) || send.packed_len() != n * recv.packed_len() {
            return Err(invalid(format!(
                "scatter_into_root: {} send elements for {n} ranks of {}",
                send.count, recv.count
            )));
        }
        let (counts, displs) = equal_blocks(n, send.count / n);
        self.scatter_varcount_into_root(send, &counts, &displs, recv)
    }

    /// On a rank other than the root: receives this rank's block of a scatter.
    pub(crate) fn scatter_into(&self, mut recv: ElementsMut<'_>) -> Result<(), CommError> {
        let comm = self.comm;
        let root = self.non_root(comm, "scatter_into")?;
        let scatter = tag::rooted(tag::SCATTER, root);
        match recv.bytes_mut() {
            Some(into) => receive(comm, root, scatter, into),
            None => laid::receive_one(comm, root, scatter, recv),
        }
    }

    /// On the root: `send`'s elements `displs[i]..` (`counts[i]` of them) go to rank `i`.
    pub(crate) fn scatter_varcount_into_root(
        &self,
        send: Elements<'_>,
        counts: &[usize],
        displs: &[usize],
        mut recv: ElementsMut<'_>,
    ) -> Result<(), CommError> {
        let comm = self.comm;
        let root = self.at_root(comm, "scatter_varcount_into_root")?;
        let scatter = tag::rooted(tag::SCATTER, root);
        let n = comm.size() as usize;
        let elems = element_ranges(n, counts, displs, send.count, "scatter_varcount_into_root")?;
        let size = send.size;
        let own = elems[root as usize].len() * size;
        check_length(root, own, recv.packed_len())?;
        let (Some(send), Some(recv)) = (send.bytes(), recv.bytes_mut()) else {
            return laid::scatter_at_root(comm, root, scatter, send, &elems, recv);
        };
        let blocks = byte_ranges(&elems, size);
        recv.copy_from_slice(&send[blocks[root as usize].clone()]);
        let others = blocks
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != root as usize);
        send_all(
            comm,
            scatter,
            others.map(|(i, b)| (i as i32, &send[b.clone()])),
        )
    }

    /// The root's rank, checked to be in the comm and to be this rank.
    fn at_root(&self, comm: &CommCore, what: &str) -> Result<i32, CommError> {
        let root = check_root(comm, self.root)?;
        if root != comm.rank() {
            return Err(invalid(format!(
                "{what} is for the root (rank {root}); rank {} is not it",
                comm.rank()
            )));
        }
        Ok(root)
    }

    /// The root's rank, checked to be in the comm and not to be this rank.
    fn non_root(&self, comm: &CommCore, what: &str) -> Result<i32, CommError> {
        let root = check_root(comm, self.root)?;
        if root == comm.rank() {
            return Err(invalid(format!(
                "{what} is for ranks other than the root; rank {root} is the root"
            )));
        }
        Ok(root)
    }
}

/// Broadcast of bytes from `root`: a binomial tree, or for large buffers on more than two ranks
/// a scatter from the root followed by a ring all-gather (van de Geijn).
fn broadcast_bytes(comm: &CommCore, root: i32, buf: &mut [u8], tag: i32) -> Result<(), CommError> {
    let n = comm.size();
    if n == 1 {
        return Ok(());
    }
    let r = comm.rank();
    let vr = (r - root + n) % n;
    let abs = |v: i32| (v + root) % n;
    if buf.len() >= BCAST_SCATTER_BYTES && n > 2 {
        let nu = n as usize;
        // Relative rank v owns block v; `ring_all_gather` works in absolute ranks, so block
        // `i` of its list is relative block (i - root).
        let blocks: Vec<Range<usize>> = (0..nu)
            .map(|i| block(buf.len(), nu, (i + nu - root as usize) % nu))
            .collect();
        if vr == 0 {
            let parts = (1..n).map(|v| (abs(v), &buf[block(buf.len(), nu, v as usize)]));
            send_all(comm, tag, parts)?;
        } else {
            let b = block(buf.len(), nu, vr as usize);
            receive(comm, root, tag, &mut buf[b])?;
        }
        return ring_all_gather(comm, buf, |i| blocks[i].clone(), 0, tag);
    }
    let mut mask = 1;
    while mask < n {
        if vr & mask != 0 {
            // The root usually runs ahead: the message is often here already.
            let from = abs(vr - mask);
            let status = comm.receive_collective(from, tag, buf)?;
            check_length(from, status.count_bytes(), buf.len())?;
            break;
        }
        mask <<= 1;
    }
    mask >>= 1;
    while mask > 0 {
        if vr + mask < n {
            send(comm, abs(vr + mask), tag, buf)?;
        }
        mask >>= 1;
    }
    Ok(())
}

/// A rooted collective seen from one rank: the communicator and the root's rank.
pub(crate) struct AtRoot<'a> {
    pub comm: &'a CommCore,
    pub root: Rank,
}

/// Collectives of a whole communicator (rsmpi's `CommunicatorCollectives`). On an
/// intercommunicator each group receives what the other group sent: MPI's intercommunicator
/// forms.
pub trait CommunicatorCollectives: Communicator {
    /// Returns when every rank (of both groups, on an intercommunicator) has called it: log2(n)
    /// rounds of empty messages, exchanged with rank r xor 2^k when n is a power of two
    /// (recursive doubling), else sent to r + 2^k and received from r - 2^k (dissemination).
    fn barrier(&self) -> Result<(), CommError> {
        let c = self.core();
        if c.is_inter() {
            inter::barrier(c)
        } else {
            barrier(c)
        }
    }

    /// Every rank's `send` (the same length everywhere) lands in every rank's `recv`, in rank
    /// order; `recv` holds `size` blocks of `send`'s length (the remote group's, on an
    /// intercommunicator).
    ///
    /// Small blocks on more than two ranks: every block posted to every rank at once; else a
    /// ring of n - 1 steps (each rank sends to the next the block it last received). A
    /// [`View`] or [`MutView`] that is not one run of bytes: as a whole layout to every rank
    /// in the first case (by single copy from where it lies when large); packed into scratch
    /// memory around the ring in the second (one pack and one unpack of the buffer).
    fn all_gather_into<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        recv: &mut R,
    ) -> Result<(), CommError> {
        let c = self.core();
        let (send, recv) = (elements(send), elements_mut(recv));
        if c.is_inter() {
            inter::all_gather_into(c, send, recv)
        } else {
            all_gather_into(c, send, recv)
        }
    }

    /// Rank `i`'s `send` (`counts[i]` elements of `recv`) lands at `recv`'s elements
    /// `displs[i]..` on every rank (a ring: each rank sends to the next, receives from the
    /// previous, n - 1 steps; small blocks on more than two ranks: all at once). With a
    /// [`MutView`], counts and displacements are in elements of its datatype (displacements in
    /// multiples of its extent), as in `MPI_Allgatherv`, and its count must cover every block;
    /// a non-contiguous buffer travels as in [`all_gather_into`](Self::all_gather_into).
    fn all_gather_varcount_into<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        recv: &mut R,
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError> {
        let c = self.core();
        let (send, recv) = (elements(send), elements_mut(recv));
        if c.is_inter() {
            inter::all_gather_varcount_into(c, send, recv, counts, displs)
        } else {
            all_gather_varcount_into(c, send, recv, counts, displs)
        }
    }

    /// Rank `i` sends block `j` of its `send` to rank `j`, which stores it as block `i` of its
    /// `recv`; each side holds `size` equal blocks of its elements, of the same bytes (`size` of
    /// the remote group, on an intercommunicator).
    ///
    /// Every message posted at once for small blocks or few ranks, else pairwise steps (see
    /// [`LINEAR_BYTES`]). A non-contiguous [`View`] or [`MutView`]: every block posted at once,
    /// each as a layout (by single copy between the two layouts when large); the own block
    /// packed and unpacked locally.
    fn all_to_all_into<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        recv: &mut R,
    ) -> Result<(), CommError> {
        let c = self.core();
        let (send, recv) = (elements(send), elements_mut(recv));
        if c.is_inter() {
            inter::all_to_all_into(c, send, recv)
        } else {
            all_to_all_into(c, send, recv)
        }
    }

    /// Rank `i` sends `send`'s elements `send_displs[j]..` (`send_counts[j]` of them) to rank
    /// `j`, which stores them at `recv`'s elements `recv_displs[i]..` (`recv_counts[i]`):
    /// every message posted at once for small blocks or few ranks, else pairwise steps (see
    /// [`LINEAR_BYTES`]). With a view, counts and displacements are in elements of its
    /// datatype (displacements in multiples of its extent), as in `MPI_Alltoallv`, and its
    /// count must cover every block; a non-contiguous one travels as in
    /// [`all_to_all_into`](Self::all_to_all_into).
    fn all_to_all_varcount_into<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        send_counts: &[usize],
        send_displs: &[usize],
        recv: &mut R,
        recv_counts: &[usize],
        recv_displs: &[usize],
    ) -> Result<(), CommError> {
        let c = self.core();
        let (send, recv) = (elements(send), elements_mut(recv));
        if c.is_inter() {
            inter::all_to_all_varcount_into(
                c,
                send,
                send_counts,
                send_displs,
                recv,
                recv_counts,
                recv_displs,
            )
        } else {
            all_to_all_varcount_into(
                c,
                send,
                send_counts,
                send_displs,
                recv,
                recv_counts,
                recv_displs,
            )
        }
    }

    /// `MPI_Alltoallw`: this rank sends `send_blocks[j]` of `send` to rank `j` (of the remote
    /// group, on an intercommunicator), which stores it as `recv_blocks[i]` of its `recv`
    /// (`i` this rank). Each block has a datatype, a count and a displacement in bytes from
    /// the start of its buffer ([`TypedBlock`]); zero counts move nothing. The two sides of a
    /// pair must pack into the same bytes (else [`CommError::Mismatch`] or
    /// [`CommError::Truncated`] on the receiver).
    ///
    /// Every block is checked to lie within its buffer, and the receive blocks not to write
    /// any byte twice, neither one with another nor one with itself: MPI leaves such receive
    /// layouts undefined, and here they are [`CommError::InvalidArgument`], before anything
    /// moves. Every receive and send is posted at once, each block as a layout (packed when
    /// small, by single copy between the two layouts when large), then all are waited for;
    /// the block to itself is packed and unpacked locally. Cost: one message per peer each
    /// way, plus building each block's layout and the receive side's overlap check
    /// ([`Datatype::overlaps`](crate::datatype::Datatype::overlaps) of all of them together).
    fn all_to_all_w_into<S: Pod, R: Pod>(
        &self,
        send: &[S],
        send_blocks: &[TypedBlock<'_>],
        recv: &mut [R],
        recv_blocks: &[TypedBlock<'_>],
    ) -> Result<(), CommError> {
        laid::all_to_all_w_into(
            self.core(),
            bytes(send),
            send_blocks,
            bytes_mut(recv),
            recv_blocks,
        )
    }

    /// [`all_reduce_into`](Self::all_reduce_into) over views: each side's elements, packed, are
    /// read as `T`s (a strided column of `f64` reduced as `f64`, a `#[repr(C)]` struct type
    /// reduced with a [`UserOperation`] over the struct), so each must pack into a whole number
    /// of `T`s, and the two the same number. `send` is packed into a vector, reduced by the
    /// slice form's algorithms, and the result unpacked into `recv`: one pack and one unpack
    /// on top of the slice form's cost.
    fn all_reduce_view_into<T: Pod, O: Operation<T>>(
        &self,
        send: &View<'_>,
        recv: &mut MutView<'_>,
        op: O,
    ) -> Result<(), CommError> {
        let what = "all_reduce_view_into";
        let send = laid::packed_as::<T>(what, send)?;
        let mut acc = laid::zeroed_as::<T>(what, recv)?;
        self.all_reduce_into(&send, &mut acc, op)?;
        laid::unpack_as(what, recv, &acc)
    }

    /// [`scan_into`](Self::scan_into) over views, packed and unpacked as in
    /// [`all_reduce_view_into`](Self::all_reduce_view_into).
    fn scan_view_into<T: Pod, O: Operation<T>>(
        &self,
        send: &View<'_>,
        recv: &mut MutView<'_>,
        op: O,
    ) -> Result<(), CommError> {
        let what = "scan_view_into";
        let send = laid::packed_as::<T>(what, send)?;
        let mut acc = laid::zeroed_as::<T>(what, recv)?;
        self.scan_into(&send, &mut acc, op)?;
        laid::unpack_as(what, recv, &acc)
    }

    /// [`exclusive_scan_into`](Self::exclusive_scan_into) over views, packed and unpacked as in
    /// [`all_reduce_view_into`](Self::all_reduce_view_into); rank 0's `recv` is left unchanged.
    fn exclusive_scan_view_into<T: Pod, O: Operation<T>>(
        &self,
        send: &View<'_>,
        recv: &mut MutView<'_>,
        op: O,
    ) -> Result<(), CommError> {
        let what = "exclusive_scan_view_into";
        let send = laid::packed_as::<T>(what, send)?;
        let mut acc = laid::zeroed_as::<T>(what, recv)?;
        self.exclusive_scan_into(&send, &mut acc, op)?;
        if self.core().rank() == 0 {
            return Ok(());
        }
        laid::unpack_as(what, recv, &acc)
    }

    /// [`reduce_scatter_block_into`](Self::reduce_scatter_block_into) over views: `send` packs
    /// into `size` blocks of as many `T`s as `recv` packs into; packed and unpacked as in
    /// [`all_reduce_view_into`](Self::all_reduce_view_into).
    fn reduce_scatter_block_view_into<T: Pod, O: Operation<T>>(
        &self,
        send: &View<'_>,
        recv: &mut MutView<'_>,
        op: O,
    ) -> Result<(), CommError> {
        let what = "reduce_scatter_block_view_into";
        let send = laid::packed_as::<T>(what, send)?;
        let mut acc = laid::zeroed_as::<T>(what, recv)?;
        self.reduce_scatter_block_into(&send, &mut acc, op)?;
        laid::unpack_as(what, recv, &acc)
    }

    /// `recv = x0 op x1 op ... op x(n-1)` over every rank's `send`, on every rank (the same bits
    /// everywhere); on an intercommunicator, over the remote group's ranks.
    ///
    /// Recursive doubling below [`reduce::ALLREDUCE_RING_BYTES`] or for a non-commutative
    /// operation; above, a ring reduce-scatter and a ring all-gather, which move 2(n-1)/n of
    /// the data per rank instead of log2(n) times all of it.
    fn all_reduce_into<T: Pod, O: Operation<T>>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        let c = self.core();
        if c.is_inter() {
            inter::all_reduce_into(c, send, recv, &op)
        } else {
            reduce::all_reduce_into(c, send, recv, op)
        }
    }

    /// [`all_reduce_into`](Self::all_reduce_into) with this rank's contribution in `buf`, which
    /// receives the result (`MPI_IN_PLACE`); the same algorithms. Intracommunicators only, as
    /// in MPI.
    fn all_reduce_in_place<T: Pod, O: Operation<T>>(
        &self,
        buf: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        let c = self.core();
        if c.is_inter() {
            return Err(no_in_place_on_inter("all_reduce_in_place"));
        }
        reduce::all_reduce_in_place(c, buf, op)
    }

    /// [`all_gather_into`](Self::all_gather_into) in place (`MPI_IN_PLACE`): `buf` holds `size`
    /// equal blocks, rank r's own already at block r, and ends with every rank's. The same
    /// algorithms, with nothing to copy first. Intracommunicators only, as in MPI.
    fn all_gather_in_place<T: Pod>(&self, buf: &mut [T]) -> Result<(), CommError> {
        let c = self.core();
        if c.is_inter() {
            return Err(no_in_place_on_inter("all_gather_in_place"));
        }
        all_gather_in_place(c, buf)
    }

    /// [`all_to_all_into`](Self::all_to_all_into) in place (`MPI_IN_PLACE`): block `j` of `buf`
    /// goes to rank `j` and is replaced by rank `j`'s block for this rank. The outgoing blocks
    /// are copied aside first (one copy of `buf`), then moved as the other form moves them.
    /// Intracommunicators only, as in MPI.
    fn all_to_all_in_place<T: Pod>(&self, buf: &mut [T]) -> Result<(), CommError> {
        let c = self.core();
        if c.is_inter() {
            return Err(no_in_place_on_inter("all_to_all_in_place"));
        }
        all_to_all_in_place(c, buf)
    }

    /// Inclusive prefix reduction (`MPI_Scan`): rank r's `recv` becomes `x0 op x1 op ... op xr`
    /// over the `send`s of ranks 0 to r, in rank order (non-commutative operations are
    /// right). Recursive doubling: ceil(log2 n) exchanges of the whole buffer, with a grouping
    /// fixed by the rank count, so floats give the same bits on every run (the grouping is in
    /// the `scan` module's documentation). MPI defines scans on intracommunicators only: on
    /// an intercommunicator this is [`CommError::InvalidArgument`].
    fn scan_into<T: Pod, O: Operation<T>>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        scan::scan_into(
            intra_only(self.core(), "scan_into", "MPI_Scan")?,
            send,
            recv,
            op,
        )
    }

    /// [`scan_into`](Self::scan_into) with this rank's contribution in `buf`, which receives
    /// the result (`MPI_IN_PLACE`).
    fn scan_in_place<T: Pod, O: Operation<T>>(
        &self,
        buf: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        scan::scan_in_place(
            intra_only(self.core(), "scan_in_place", "MPI_Scan")?,
            buf,
            op,
        )
    }

    /// Exclusive prefix reduction (`MPI_Exscan`): rank r's `recv` becomes
    /// `x0 op ... op x(r-1)`, in rank order. Rank 0's `recv` is left unchanged: MPI leaves it
    /// undefined, and nothing is written to it. The same recursive doubling as
    /// [`scan_into`](Self::scan_into); intracommunicators only.
    fn exclusive_scan_into<T: Pod, O: Operation<T>>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        let c = intra_only(self.core(), "exclusive_scan_into", "MPI_Exscan")?;
        scan::exclusive_scan_into(c, send, recv, op)
    }

    /// [`exclusive_scan_into`](Self::exclusive_scan_into) with this rank's contribution in
    /// `buf`, which receives the result (`MPI_IN_PLACE`); rank 0's `buf` keeps its own
    /// contribution (undefined in MPI).
    fn exclusive_scan_in_place<T: Pod, O: Operation<T>>(
        &self,
        buf: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        let c = intra_only(self.core(), "exclusive_scan_in_place", "MPI_Exscan")?;
        scan::exclusive_scan_in_place(c, buf, op)
    }

    /// `MPI_Reduce_scatter`: every rank's `send` holds `counts[0] + ... + counts[n-1]`
    /// elements (`counts` the same on every rank, zeros allowed); the element-wise reduction
    /// over all ranks is cut into blocks of `counts[i]`, and rank i's `recv` (`counts[i]`
    /// elements) gets block i.
    ///
    /// A commutative operation takes the ring of the large all-reduce (n - 1 steps, each
    /// sending and folding one block; block j combined along the ring from rank j + 1); a
    /// non-commutative one a rank-order tree reduce to rank 0 and a scatter of the blocks
    /// (module `reduce_scatter`). On an intercommunicator, `counts` has one entry per local
    /// rank and the result reduces the other group's vectors (reduced to that group's leader,
    /// exchanged between the leaders, scattered by each in its group).
    fn reduce_scatter_into<T: Pod, O: Operation<T>>(
        &self,
        send: &[T],
        recv: &mut [T],
        counts: &[usize],
        op: O,
    ) -> Result<(), CommError> {
        let c = self.core();
        if c.is_inter() {
            inter::reduce_scatter_into(c, send, recv, counts, &op)
        } else {
            reduce_scatter::reduce_scatter_into(c, send, recv, counts, op)
        }
    }

    /// [`reduce_scatter_into`](Self::reduce_scatter_into) in place (`MPI_IN_PLACE`): `buf`
    /// holds this rank's whole vector; its block lands in `buf[..counts[rank]]`, and the rest
    /// of `buf` is left undefined. Intracommunicators only, as in MPI.
    fn reduce_scatter_in_place<T: Pod, O: Operation<T>>(
        &self,
        buf: &mut [T],
        counts: &[usize],
        op: O,
    ) -> Result<(), CommError> {
        let c = self.core();
        if c.is_inter() {
            return Err(no_in_place_on_inter("reduce_scatter_in_place"));
        }
        reduce_scatter::reduce_scatter_in_place(c, buf, counts, op)
    }

    /// `MPI_Reduce_scatter_block`: [`reduce_scatter_into`](Self::reduce_scatter_into) with
    /// every block `recv.len()` elements, so `send` holds `size × recv.len()` (the local
    /// group's size, on an intercommunicator).
    fn reduce_scatter_block_into<T: Pod, O: Operation<T>>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        let counts = vec![recv.len(); self.core().size() as usize];
        self.reduce_scatter_into(send, recv, &counts, op)
    }

    /// [`reduce_scatter_block_into`](Self::reduce_scatter_block_into) in place
    /// (`MPI_IN_PLACE`): `buf` holds this rank's `size × k` elements, and block r of the
    /// result lands in `buf[..k]`; the rest of `buf` is left undefined. Intracommunicators
    /// only, as in MPI.
    fn reduce_scatter_block_in_place<T: Pod, O: Operation<T>>(
        &self,
        buf: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        let n = self.core().size() as usize;
        if !buf.len().is_multiple_of(n) {
            return Err(invalid(format!(
                "reduce_scatter_block_in_place: {} elements do not make {n} equal blocks",
                buf.len()
            )));
        }
        self.reduce_scatter_in_place(buf, &vec![buf.len() / n; n], op)
    }
}

impl<C: Communicator + ?Sized> CommunicatorCollectives for C {}

/// Rooted collectives, called on the root's [`Process`] (rsmpi's `Root`): every rank names the
/// same root. On an intercommunicator the root names itself [`crate::topology::ROOT`], the rest
/// of its group [`crate::topology::PROC_NULL`] (their calls do nothing), and the other group
/// the root's rank in the root's group.
pub trait Root {
    /// Copies the root's `buf` into every rank's `buf`: a binomial tree, or for large buffers on
    /// more than two ranks a scatter from the root and a ring all-gather. A non-contiguous
    /// [`MutView`] is packed into scratch memory at the root, broadcast as bytes, and unpacked
    /// on the other ranks (ranks may mix layouts that pack into the same bytes).
    fn broadcast_into<B: BufferMut + ?Sized>(&self, buf: &mut B) -> Result<(), CommError>;

    /// On the root: gathers every rank's `send` into `recv` in rank order (the remote group's,
    /// on an intercommunicator, where `send` is not used); `recv` holds `size` blocks of
    /// `send`'s length. Linear: the root receives one rank at a time. A non-contiguous view
    /// travels whole, as a layout (by single copy from where it lies, when large): each rank's
    /// `send`, and each block of the root's `recv`.
    fn gather_into_root<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        recv: &mut R,
    ) -> Result<(), CommError>;

    /// On a rank other than the root: contributes `send` to a gather.
    fn gather_into<S: Buffer + ?Sized>(&self, send: &S) -> Result<(), CommError>;

    /// On the root: rank `i`'s `send` lands at `recv`'s elements `displs[i]..` (`counts[i]`
    /// of them). With a [`MutView`], counts and displacements are in elements of its datatype
    /// (displacements in multiples of its extent), as in `MPI_Gatherv`, and its count must
    /// cover every block. Moves as [`gather_into_root`](Self::gather_into_root).
    fn gather_varcount_into_root<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        recv: &mut R,
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError>;

    /// On a rank other than the root: contributes `send` to a variable-count gather.
    fn gather_varcount_into<S: Buffer + ?Sized>(&self, send: &S) -> Result<(), CommError>;

    /// On the root: block `i` of `send` (`send` holds `size` blocks of `recv`'s length) goes to
    /// rank `i`. Every block posted at once; a non-contiguous view travels whole, as a layout,
    /// as in [`gather_into_root`](Self::gather_into_root).
    fn scatter_into_root<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        recv: &mut R,
    ) -> Result<(), CommError>;

    /// On a rank other than the root: receives this rank's block of a scatter.
    fn scatter_into<R: BufferMut + ?Sized>(&self, recv: &mut R) -> Result<(), CommError>;

    /// On the root: `send`'s elements `displs[i]..` (`counts[i]` of them) go to rank `i`;
    /// counts and displacements of a [`View`] as in
    /// [`gather_varcount_into_root`](Self::gather_varcount_into_root) (`MPI_Scatterv`).
    fn scatter_varcount_into_root<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        counts: &[usize],
        displs: &[usize],
        recv: &mut R,
    ) -> Result<(), CommError>;

    /// On a rank other than the root: receives this rank's block of a variable-count scatter.
    fn scatter_varcount_into<R: BufferMut + ?Sized>(&self, recv: &mut R) -> Result<(), CommError>;

    /// On the root: `recv = x0 op x1 op ... op x(n-1)` over every rank's `send` (the remote
    /// group's, on an intercommunicator, where `send` is not used).
    fn reduce_into_root<T: Pod, O: Operation<T>>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: O,
    ) -> Result<(), CommError>;

    /// On a rank other than the root: contributes `send` to a reduction.
    fn reduce_into<T: Pod, O: Operation<T>>(&self, send: &[T], op: O) -> Result<(), CommError>;

    /// On the root: [`reduce_into_root`](Self::reduce_into_root) with the root's contribution
    /// in `buf`, which receives the result (`MPI_IN_PLACE` at the root); the other ranks call
    /// [`reduce_into`](Self::reduce_into). Intracommunicators only, as in MPI.
    fn reduce_into_root_in_place<T: Pod, O: Operation<T>>(
        &self,
        buf: &mut [T],
        op: O,
    ) -> Result<(), CommError>;

    /// On the root: [`reduce_into_root`](Self::reduce_into_root) over views, each side's
    /// elements packed and read as `T`s (a whole number of them, the same on both sides), as
    /// in [`CommunicatorCollectives::all_reduce_view_into`]: `send` packed into a vector,
    /// reduced by the slice form's algorithms, the result unpacked into `recv`.
    fn reduce_view_into_root<T: Pod, O: Operation<T>>(
        &self,
        send: &View<'_>,
        recv: &mut MutView<'_>,
        op: O,
    ) -> Result<(), CommError> {
        let what = "reduce_view_into_root";
        let send = laid::packed_as::<T>(what, send)?;
        let mut acc = laid::zeroed_as::<T>(what, recv)?;
        self.reduce_into_root(&send, &mut acc, op)?;
        laid::unpack_as(what, recv, &acc)
    }

    /// On a rank other than the root: contributes `send`'s elements, packed and read as `T`s,
    /// to a reduction ([`reduce_view_into_root`](Self::reduce_view_into_root)).
    fn reduce_view_into<T: Pod, O: Operation<T>>(
        &self,
        send: &View<'_>,
        op: O,
    ) -> Result<(), CommError> {
        let send = laid::packed_as::<T>("reduce_view_into", send)?;
        self.reduce_into(&send, op)
    }
}

impl Root for Process<'_> {
    fn broadcast_into<B: BufferMut + ?Sized>(&self, buf: &mut B) -> Result<(), CommError> {
        let mut buf = elements_mut(buf);
        let Some(bytes) = buf.bytes_mut() else {
            return laid::broadcast_into(self, buf);
        };
        match inter::side(self) {
            Some(side) => inter::broadcast_into(side, bytes),
            None => self.at_root().broadcast_into(bytes),
        }
    }

    fn gather_into_root<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        recv: &mut R,
    ) -> Result<(), CommError> {
        let (send, recv) = (elements(send), elements_mut(recv));
        match inter::side(self) {
            Some(side) => inter::gather_into(side, send, recv),
            None => self.at_root().gather_into_root(send, recv),
        }
    }

    fn gather_into<S: Buffer + ?Sized>(&self, send: &S) -> Result<(), CommError> {
        let send = elements(send);
        match inter::side(self) {
            Some(side) => inter::gather_varcount_into(side, send),
            None => self.at_root().gather_into(send),
        }
    }

    fn gather_varcount_into_root<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        recv: &mut R,
        counts: &[usize],
        displs: &[usize],
    ) -> Result<(), CommError> {
        let (send, recv) = (elements(send), elements_mut(recv));
        match inter::side(self) {
            Some(side) => inter::gather_varcount_into_root(side, recv, counts, displs),
            None => self
                .at_root()
                .gather_varcount_into_root(send, recv, counts, displs),
        }
    }

    fn gather_varcount_into<S: Buffer + ?Sized>(&self, send: &S) -> Result<(), CommError> {
        self.gather_into(send)
    }

    fn scatter_into_root<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        recv: &mut R,
    ) -> Result<(), CommError> {
        let (send, recv) = (elements(send), elements_mut(recv));
        match inter::side(self) {
            Some(side) => inter::scatter_into(side, send, recv),
            None => self.at_root().scatter_into_root(send, recv),
        }
    }

    fn scatter_into<R: BufferMut + ?Sized>(&self, recv: &mut R) -> Result<(), CommError> {
        let recv = elements_mut(recv);
        match inter::side(self) {
            Some(side) => inter::scatter_varcount_into(side, recv),
            None => self.at_root().scatter_into(recv),
        }
    }

    fn scatter_varcount_into_root<S: Buffer + ?Sized, R: BufferMut + ?Sized>(
        &self,
        send: &S,
        counts: &[usize],
        displs: &[usize],
        recv: &mut R,
    ) -> Result<(), CommError> {
        let (send, recv) = (elements(send), elements_mut(recv));
        match inter::side(self) {
            Some(side) => inter::scatter_varcount_into_root(side, send, counts, displs),
            None => self
                .at_root()
                .scatter_varcount_into_root(send, counts, displs, recv),
        }
    }

    fn scatter_varcount_into<R: BufferMut + ?Sized>(&self, recv: &mut R) -> Result<(), CommError> {
        self.scatter_into(recv)
    }

    fn reduce_into_root<T: Pod, O: Operation<T>>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        match inter::side(self) {
            Some(side) => inter::reduce_into(side, send, recv, &op),
            None => self.at_root().reduce_into_root(send, recv, op),
        }
    }

    fn reduce_into<T: Pod, O: Operation<T>>(&self, send: &[T], op: O) -> Result<(), CommError> {
        match inter::side(self) {
            Some(side) => inter::reduce_into(side, send, &mut [], &op),
            None => self.at_root().reduce_into(send, op),
        }
    }

    fn reduce_into_root_in_place<T: Pod, O: Operation<T>>(
        &self,
        buf: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        match inter::side(self) {
            Some(_) => Err(no_in_place_on_inter("reduce_into_root_in_place")),
            None => self.at_root().reduce_into_root_in_place(buf, op),
        }
    }
}

impl<'a> Process<'a> {
    /// This process as the root of an intracommunicator's rooted collective.
    fn at_root(&self) -> AtRoot<'a> {
        AtRoot {
            comm: self.core(),
            root: self.rank(),
        }
    }
}
