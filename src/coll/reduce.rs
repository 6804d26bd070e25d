//! Reduce and all-reduce, and the step they repeat: combining a peer's contribution into this
//! rank's accumulator.
//!
//! A step can move the peer's data three ways ([`ReduceStep`]):
//! - `Copy`: an ordinary message received by a *combining receive*: the runtime folds each piece
//!   into the accumulator as it arrives (out of each shared-memory chunk, or each 64 KiB
//!   `process_vm_readv` read), so the reduction is the receiving copy itself;
//! - `ReadThenReduce`: the peer sends its buffer's address; this rank pulls it whole with
//!   `process_vm_readv` into a temporary buffer, then combines;
//! - `Fused`: the same pull, in cache-sized chunks into one small scratch buffer, each chunk
//!   combined at once while it is still in cache, so the peer's data never lands in memory as
//!   a whole ("reduce while copying").
//!
//! In the two single-copy steps the peer waits for a completion message before it may reuse
//! or free the buffer it lent. `Copy` is the default (it measured fastest, on 2 and on 16
//! cores); the others are chosen with `ONECOPY_REDUCE` (`copy`, `read`, `fused`) or
//! [`set_step`].

use std::sync::atomic::{AtomicU8, Ordering};

use bytemuck::Pod;

use super::AtRoot;
use super::{
    Operation, Slot, bytes, bytes_mut, check_same_length, exchange, invalid, receive, send, tag,
    with_scratch,
};
use crate::comm::{Combine, CommCore, CommError};
use crate::transport::Mechanism;

pub use crate::config::ReduceStep;

/// Bytes read per `process_vm_readv` call in a fused step, so that the chunk and the
/// accumulator's part stay in a 1 MiB L2 (16 KiB to 512 KiB measured alike;
/// `ONECOPY_REDUCE_CHUNK` sets another).
pub const FUSED_CHUNK_BYTES: usize = 64 << 10;

/// All-reduces of at least this many bytes with a commutative operation use a ring
/// (reduce-scatter then all-gather) instead of recursive doubling.
pub const ALLREDUCE_RING_BYTES: usize = 256 << 10;

/// [`ALLREDUCE_RING_BYTES`] for two ranks, where the ring is one exchange of half the data each
/// way and the combination of half: faster than one exchange of all of it from 32 KiB (64 KiB:
/// 3.4 µs against 4.0; 128 KiB: 6.8 against 7.9).
pub const ALLREDUCE_RING_BYTES_TWO_RANKS: usize = 32 << 10;

/// 0: as the configuration says; 1: automatic; 2 + step: forced by [`set_step`].
static STEP: AtomicU8 = AtomicU8::new(0);

/// Forces every reduce step of this process to `step` (`None`: choose by size), over what
/// `ONECOPY_REDUCE` says, for measurements and tests. Every rank of a job must make the same
/// choice.
pub fn set_step(step: Option<ReduceStep>) {
    STEP.store(encode(step), Ordering::Relaxed);
}

fn encode(step: Option<ReduceStep>) -> u8 {
    match step {
        None => 1,
        Some(ReduceStep::Copy) => 2,
        Some(ReduceStep::ReadThenReduce) => 3,
        Some(ReduceStep::Fused) => 4,
    }
}

fn forced(comm: &CommCore) -> Option<ReduceStep> {
    match STEP.load(Ordering::Relaxed) {
        0 => comm.rt.config.reduce_step,
        2 => Some(ReduceStep::Copy),
        3 => Some(ReduceStep::ReadThenReduce),
        4 => Some(ReduceStep::Fused),
        _ => None,
    }
}

fn chunk_bytes(comm: &CommCore) -> usize {
    comm.rt.config.reduce_chunk_bytes
}

/// The step in this job: every rank computes the same.
fn step_for(comm: &CommCore) -> ReduceStep {
    if comm.mode() == Mechanism::ShmCopy {
        return ReduceStep::Copy;
    }
    // Measured on the reference machine (BENCHMARKS.md, "Fused read-reduce"): once early
    // messages reuse their buffers, the copy step is faster at every size from 16 KiB to 1 MiB
    // and level beyond, so it is the default; the single-copy steps stay available by name.
    forced(comm).unwrap_or(ReduceStep::Copy)
}

/// The tags of one tree reduction's messages: a child's part (or the address it lends), and
/// the parent's word that it has finished reading a lent buffer.
#[derive(Clone, Copy)]
pub(super) struct TreeTags {
    pub part: i32,
    pub done: i32,
}

impl TreeTags {
    /// A reduce to `root`.
    fn reduce(root: i32) -> TreeTags {
        TreeTags {
            part: tag::rooted(tag::REDUCE, root),
            done: tag::rooted(tag::REDUCE_DONE, root),
        }
    }
}

/// Hands `data` to `parent`, which combines it into its accumulator; returns once `data` may
/// be reused.
fn give<T: Pod>(
    comm: &CommCore,
    parent: i32,
    data: &[T],
    step: ReduceStep,
    tags: TreeTags,
) -> Result<(), CommError> {
    let data = bytes(data);
    if step == ReduceStep::Copy {
        return send(comm, parent, tags.part, data);
    }
    let lent = [data.as_ptr() as u64, data.len() as u64];
    send(comm, parent, tags.part, bytes(&lent))?;
    // `data` stays borrowed, untouched, until the parent says it has finished reading it.
    let mut done = [0u8; 1];
    receive(comm, parent, tags.done, &mut done)?;
    if done[0] != 0 {
        return Err(CommError::Mismatch {
            rank: parent,
            what: format!(
                "rank {parent} could not use this rank's {} bytes",
                data.len()
            ),
        });
    }
    Ok(())
}

/// What a combining receive's `apply` reads through its context pointer.
struct Folding<'a, O> {
    op: &'a O,
    /// The arriving part is the left operand (it holds lower ranks) rather than the right.
    incoming_left: bool,
}

impl<O> Folding<'_, O> {
    fn apply<T: Pod>(&self, acc: &mut [T], incoming: &[T])
    where
        O: Operation<T>,
    {
        if self.incoming_left {
            self.op.reduce_into_right(incoming, acc);
        } else {
            self.op.reduce_into_left(acc, incoming);
        }
    }
}

/// [`Combine::apply`] for elements `T` and operation `O`.
///
/// # Safety
/// `ctx` points to a live `Folding<O>`; `dst` is valid, aligned and unaliased for `len` bytes of
/// whole `T`s; `src` is valid for `len` bytes.
unsafe fn fold_bytes<T: Pod, O: Operation<T>>(
    ctx: *const (),
    dst: *mut u8,
    src: *const u8,
    len: usize,
) {
    // SAFETY: the caller's contract.
    let folding = unsafe { &*(ctx as *const Folding<'_, O>) };
    let count = len / std::mem::size_of::<T>();
    debug_assert!((dst as usize).is_multiple_of(std::mem::align_of::<T>()));
    // SAFETY: the caller's contract.
    let acc = unsafe { std::slice::from_raw_parts_mut(dst as *mut T, count) };
    if (src as usize).is_multiple_of(std::mem::align_of::<T>()) {
        // SAFETY: valid for `len` bytes (the caller's contract) and aligned (checked).
        let incoming = unsafe { std::slice::from_raw_parts(src as *const T, count) };
        folding.apply(acc, incoming);
    } else {
        let mut incoming = vec![T::zeroed(); count];
        // SAFETY: `src` is valid for `len` bytes; `incoming` holds `count` elements.
        unsafe { std::ptr::copy_nonoverlapping(src, incoming.as_mut_ptr() as *mut u8, len) };
        folding.apply(acc, &incoming);
    }
}

/// Receives `source`'s part (exactly as long as `acc`) and folds it into `acc` while it arrives:
/// out of each shared-memory chunk, or each single-copy read, straight into `acc` (reduce while
/// copying), so it is never stored whole. `send` is sent meanwhile (it must not overlap `acc`).
/// Where the runtime's pieces are not whole elements, the part is received, then folded.
fn fold_from<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    source: i32,
    acc: &mut [T],
    folding: &Folding<'_, O>,
    send: Option<(i32, &[u8])>,
    tag: i32,
) -> Result<(), CommError> {
    let combine = Combine {
        apply: fold_bytes::<T, O>,
        ctx: folding as *const Folding<'_, O> as *const (),
    };
    let want = std::mem::size_of_val(acc);
    let elem = std::mem::size_of::<T>();
    let Some(received) = comm.post_receive_combining(source, tag, bytes_mut(acc), elem, combine)?
    else {
        return with_scratch(Slot::Incoming, acc.len(), |got: &mut [T]| {
            match send {
                Some((dest, out)) => exchange(comm, dest, out, source, bytes_mut(got), tag)?,
                None => receive(comm, source, tag, bytes_mut(got))?,
            }
            folding.apply(acc, got);
            Ok(())
        });
    };
    // Both requests are waited for before `acc` and `folding` go, also when one fails.
    super::complete_exchange(comm, received, source, want, send, tag)
}

/// `acc = acc op (child's contribution)`.
fn take<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    child: i32,
    acc: &mut [T],
    op: &O,
    step: ReduceStep,
    tags: TreeTags,
) -> Result<(), CommError> {
    if step == ReduceStep::Copy {
        let folding = Folding {
            op,
            incoming_left: false,
        };
        return fold_from(comm, child, acc, &folding, None, tags.part);
    }
    let mut lent = [0u64; 2];
    receive(comm, child, tags.part, bytes_mut(&mut lent))?;
    let want = std::mem::size_of_val(acc);
    let result = if lent[1] != want as u64 {
        Err(CommError::Mismatch {
            rank: child,
            what: format!(
                "contribution of {} bytes where {want} were expected",
                lent[1]
            ),
        })
    } else {
        pull(comm, child, lent[0] as usize, acc, op, step)
    };
    // The child waits for this whatever happened here, or it would never free its buffer.
    let done = [u8::from(result.is_err())];
    send(comm, child, tags.done, &done)?;
    result
}

/// Reads the child's `acc.len()` elements at `addr` and combines them into `acc`.
fn pull<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    child: i32,
    addr: usize,
    acc: &mut [T],
    op: &O,
    step: ReduceStep,
) -> Result<(), CommError> {
    let size = std::mem::size_of::<T>().max(1);
    let per = match step {
        ReduceStep::Fused => (chunk_bytes(comm) / size).max(1),
        _ => acc.len().max(1),
    };
    with_scratch(Slot::Incoming, per.min(acc.len()), |scratch: &mut [T]| {
        let outcome = comm.with_peer_process(child, |process| -> Result<(), CommError> {
            let mut at = 0;
            for part in acc.chunks_mut(per) {
                let got = &mut scratch[..part.len()];
                process.read_exact(addr + at, bytes_mut(got))?;
                op.reduce_into_left(part, got);
                at += std::mem::size_of_val(part);
            }
            Ok(())
        });
        outcome.unwrap_or_else(|| {
            Err(CommError::Config(format!(
                "no single copy to rank {child} for a reduce step"
            )))
        })
    })
}

/// Binomial tree towards rank 0 in which every parent holds the lower ranks: on rank 0 `acc`
/// ends as `x0 op x1 op ... op x(n-1)`. `acc` is as long as `send`; ranks other than 0 pass
/// `None` and use scratch memory when they have children.
pub(super) fn tree_reduce<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    send: &[T],
    acc: Option<&mut [T]>,
    op: &O,
    tags: TreeTags,
) -> Result<(), CommError> {
    let (n, r) = (comm.size(), comm.rank());
    let has_children = r % 2 == 0 && r + 1 < n;
    let climb = |acc: &mut [T]| {
        acc.copy_from_slice(send);
        tree_reduce_in_place(comm, acc, op, tags)
    };
    match acc {
        Some(acc) => climb(acc),
        None if has_children => with_scratch(Slot::Accumulator, send.len(), climb),
        // A leaf lends its own buffer: nothing to combine into.
        None => give(comm, r & (r - 1), send, step_for(comm), tags),
    }
}

/// [`tree_reduce`] with this rank's contribution already in `acc`, where it is combined.
pub(super) fn tree_reduce_in_place<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    acc: &mut [T],
    op: &O,
    tags: TreeTags,
) -> Result<(), CommError> {
    let (n, r) = (comm.size(), comm.rank());
    let step = step_for(comm);
    let mut mask = 1;
    while mask < n {
        if r & mask != 0 {
            return give(comm, r - mask, acc, step, tags);
        }
        if r + mask < n {
            take(comm, r + mask, acc, op, step, tags)?;
        }
        mask <<= 1;
    }
    Ok(())
}

impl AtRoot<'_> {
    /// On the root: `recv = x0 op x1 op ... op x(n-1)` over every rank's `send`.
    pub(crate) fn reduce_into_root<T: Pod, O: Operation<T>>(
        &self,
        send: &[T],
        recv: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        let comm = self.comm;
        let root = self.checked_root(comm)?;
        if root != comm.rank() {
            return Err(invalid(format!(
                "reduce_into_root is for the root (rank {root}); rank {} is not it",
                comm.rank()
            )));
        }
        check_same_length("reduce_into_root", send, recv)?;
        let tags = TreeTags::reduce(root);
        if root == 0 {
            tree_reduce(comm, send, Some(recv), &op, tags)
        } else {
            tree_reduce(comm, send, None, &op, tags)?;
            // The tree keeps rank order by ending on rank 0; the result then moves once.
            receive(
                comm,
                0,
                tag::rooted(tag::REDUCE_RESULT, root),
                bytes_mut(recv),
            )
        }
    }

    /// On the root: `buf` is this rank's contribution and becomes `x0 op x1 op ... op x(n-1)`
    /// (`MPI_IN_PLACE` at the root).
    pub(crate) fn reduce_into_root_in_place<T: Pod, O: Operation<T>>(
        &self,
        buf: &mut [T],
        op: O,
    ) -> Result<(), CommError> {
        let comm = self.comm;
        let root = self.checked_root(comm)?;
        if root != comm.rank() {
            return Err(invalid(format!(
                "reduce_into_root_in_place is for the root (rank {root}); rank {} is not it",
                comm.rank()
            )));
        }
        let tags = TreeTags::reduce(root);
        if root == 0 {
            return tree_reduce_in_place(comm, buf, &op, tags);
        }
        // `buf` is lent or copied up the tree, and free again, before the result lands in it.
        tree_reduce(comm, buf, None, &op, tags)?;
        receive(
            comm,
            0,
            tag::rooted(tag::REDUCE_RESULT, root),
            bytes_mut(buf),
        )
    }

    /// On a rank other than the root: contributes `send` to a reduction.
    pub(crate) fn reduce_into<T: Pod, O: Operation<T>>(
        &self,
        send: &[T],
        op: O,
    ) -> Result<(), CommError> {
        let comm = self.comm;
        let root = self.checked_root(comm)?;
        if root == comm.rank() {
            return Err(invalid(format!(
                "reduce_into is for ranks other than the root; rank {root} is the root"
            )));
        }
        let tags = TreeTags::reduce(root);
        if comm.rank() == 0 {
            with_scratch(Slot::Accumulator, send.len(), |acc: &mut [T]| {
                tree_reduce(comm, send, Some(acc), &op, tags)?;
                send_result(comm, root, acc)
            })
        } else {
            tree_reduce(comm, send, None, &op, tags)
        }
    }

    fn checked_root(&self, comm: &CommCore) -> Result<i32, CommError> {
        super::check_root(comm, self.root)
    }
}

fn send_result<T: Pod>(comm: &CommCore, root: i32, acc: &[T]) -> Result<(), CommError> {
    send(
        comm,
        root,
        tag::rooted(tag::REDUCE_RESULT, root),
        bytes(acc),
    )
}

/// `recv = x0 op x1 op ... op x(n-1)` over every rank's `send`, on every rank (the same bits
/// everywhere).
///
/// Recursive doubling below [`ALLREDUCE_RING_BYTES`] or for a non-commutative operation;
/// above, a ring reduce-scatter and a ring all-gather, which move 2(n-1)/n of the data per
/// rank instead of log2(n) times all of it.
pub(crate) fn all_reduce_into<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    send: &[T],
    recv: &mut [T],
    op: O,
) -> Result<(), CommError> {
    check_same_length("all_reduce_into", send, recv)?;
    recv.copy_from_slice(send);
    all_reduce_in_place(comm, recv, op)
}

/// [`all_reduce_into`] with this rank's contribution in `buf`, which receives the result
/// (`MPI_IN_PLACE`); the same algorithms.
pub(crate) fn all_reduce_in_place<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    buf: &mut [T],
    op: O,
) -> Result<(), CommError> {
    let n = comm.size() as usize;
    if n == 1 {
        return Ok(());
    }
    let ring_from = if n == 2 {
        ALLREDUCE_RING_BYTES_TWO_RANKS
    } else {
        ALLREDUCE_RING_BYTES
    };
    if std::mem::size_of_val(buf) >= ring_from && op.is_commutative() && buf.len() >= n {
        ring_all_reduce(comm, buf, &op)
    } else {
        recursive_doubling(comm, buf, &op)
    }
}
/// Recursive doubling; with n not a power of two, the first 2·(n - p) ranks pair up first
/// (even into odd) so that p ranks remain, each holding a run of consecutive ranks.
fn recursive_doubling<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    acc: &mut [T],
    op: &O,
) -> Result<(), CommError> {
    with_scratch(Slot::Incoming, acc.len(), |other: &mut [T]| {
        doubling_rounds(comm, acc, other, op)
    })
}

fn doubling_rounds<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    acc: &mut [T],
    other: &mut [T],
    op: &O,
) -> Result<(), CommError> {
    let (n, r) = (comm.size(), comm.rank());
    let p = 1 << (31 - n.leading_zeros());
    let rem = n - p;
    let new_rank = if r < 2 * rem {
        if r % 2 == 0 {
            send(comm, r + 1, tag::ALLREDUCE, bytes(acc))?;
            None
        } else {
            receive(comm, r - 1, tag::ALLREDUCE, bytes_mut(other))?;
            op.reduce_into_right(other, acc);
            Some(r / 2)
        }
    } else {
        Some(r - rem)
    };
    if let Some(me) = new_rank {
        let mut mask = 1;
        while mask < p {
            let partner_new = me ^ mask;
            let partner = if partner_new < rem {
                partner_new * 2 + 1
            } else {
                partner_new + rem
            };
            exchange(
                comm,
                partner,
                bytes(acc),
                partner,
                bytes_mut(other),
                tag::ALLREDUCE,
            )?;
            // Both partners compute (lower op higher) from the same two operands: same bits.
            if partner_new < me {
                op.reduce_into_right(other, acc);
            } else {
                op.reduce_into_left(acc, other);
            }
            mask <<= 1;
        }
    }
    if r < 2 * rem {
        if r % 2 == 1 {
            send(comm, r - 1, tag::ALLREDUCE, bytes(acc))?;
        } else {
            receive(comm, r + 1, tag::ALLREDUCE, bytes_mut(acc))?;
        }
    }
    Ok(())
}

/// Ring reduce-scatter (block b is combined along the ring starting after rank b, a fixed
/// order) followed by a ring all-gather of the reduced blocks.
fn ring_all_reduce<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    acc: &mut [T],
    op: &O,
) -> Result<(), CommError> {
    let n = comm.size() as usize;
    let blocks: Vec<_> = (0..n).map(|i| super::block(acc.len(), n, i)).collect();
    ring_reduce_scatter(comm, acc, &blocks, op, tag::ALLREDUCE)?;
    // Rank r now holds block r + 1 complete.
    let size = std::mem::size_of::<T>();
    let byte_block = |i: usize| blocks[i].start * size..blocks[i].end * size;
    super::ring_all_gather(comm, bytes_mut(acc), byte_block, 1, tag::ALLREDUCE)
}

/// Ring reduce-scatter of `acc`, cut into `blocks` (one per rank, disjoint, any may be empty):
/// in n - 1 steps each rank sends one block to the next rank and folds the one from the
/// previous rank into its own as it arrives. Block b is combined along the ring from rank b,
/// `x(b) op x(b+1) op ... op x(b-1)` (indices mod n), and ends complete on rank b - 1, so
/// rank r holds block r + 1. Each rank sends and combines every block but one once:
/// (n - 1) latencies, and about (n - 1)/n of the data when the blocks are even.
pub(super) fn ring_reduce_scatter<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    acc: &mut [T],
    blocks: &[std::ops::Range<usize>],
    op: &O,
    tag: i32,
) -> Result<(), CommError> {
    let n = comm.size() as usize;
    let r = comm.rank() as usize;
    let next = ((r + 1) % n) as i32;
    let prev = ((r + n - 1) % n) as i32;
    let folding = Folding {
        op,
        incoming_left: true,
    };
    let size = std::mem::size_of::<T>();
    for k in 0..n - 1 {
        let out = &blocks[(r + n - k) % n];
        let inn = &blocks[(r + 2 * n - k - 1) % n];
        let (out, inn) = super::split_two(
            bytes_mut(acc),
            out.start * size..out.end * size,
            inn.start * size..inn.end * size,
        )?;
        // The block arriving from the previous rank holds the lower ranks' part.
        let inn: &mut [T] = if inn.is_empty() {
            &mut []
        } else {
            bytemuck::cast_slice_mut(inn)
        };
        fold_from(comm, prev, inn, &folding, Some((next, out)), tag)?;
    }
    Ok(())
}
