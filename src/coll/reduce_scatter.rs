//! Reduce-scatter (`MPI_Reduce_scatter` and `MPI_Reduce_scatter_block`): every rank
//! contributes a vector of `counts[0] + ... + counts[n-1]` elements; the element-wise
//! reduction over all ranks is cut into blocks of `counts[i]` elements, and rank i gets block
//! i. The intercommunicator form is in `inter`.
//!
//! Two algorithms, chosen from the operation alone, so every rank chooses alike:
//! - commutative operations: the ring reduce-scatter of all-reduce
//!   ([`ring_reduce_scatter`]), with the blocks arranged so that rank r ends with block r.
//!   Block j is combined along the ring from rank j + 1, `x(j+1) op x(j+2) op ... op xj`
//!   (indices mod n), a fixed order, so float results are the same bits on every run. Cost:
//!   n - 1 steps, each sending one block and folding one in while it arrives; each rank sends
//!   and combines everything but its own block once, with no root to queue at.
//! - non-commutative operations: the rank-order binomial tree of reduce to rank 0
//!   ([`tree_reduce`]), then rank 0 sends every rank its block at once (a scatterv). Cost:
//!   log2(n) steps of the whole vector, then n - 1 messages of one block from rank 0.

use bytemuck::Pod;

use super::reduce::{TreeTags, ring_reduce_scatter, tree_reduce, tree_reduce_in_place};
use super::{Operation, Slot, bytes, bytes_mut, invalid, receive, send_all, with_scratch};
use crate::comm::{CommCore, CommError, tags as tag};

/// The tags of a reduce-scatter's tree, as a reduce's are for its root.
const TREE_TAGS: TreeTags = TreeTags {
    part: tag::REDUCE_SCATTER,
    done: tag::REDUCE_SCATTER_DONE,
};

/// The element ranges of the blocks `counts` (one per rank of `n`), checked against the send
/// vector's length `total` and this rank's receive length `mine` (`None`: in place, the result
/// goes to the start of the vector).
pub(crate) fn blocks(
    what: &str,
    n: usize,
    r: usize,
    counts: &[usize],
    total: usize,
    mine: Option<usize>,
) -> Result<Vec<std::ops::Range<usize>>, CommError> {
    if counts.len() != n {
        return Err(invalid(format!(
            "{what}: {} counts for {n} ranks",
            counts.len()
        )));
    }
    let mut at = 0usize;
    let mut out = Vec::with_capacity(n);
    for &c in counts {
        let end = at
            .checked_add(c)
            .ok_or_else(|| invalid(format!("{what}: the counts overflow")))?;
        out.push(at..end);
        at = end;
    }
    if at != total {
        return Err(invalid(format!(
            "{what}: {total} send elements, the counts add up to {at}"
        )));
    }
    if let Some(mine) = mine
        && mine != counts[r]
    {
        return Err(invalid(format!(
            "{what}: {mine} receive elements, counts[{r}] is {}",
            counts[r]
        )));
    }
    Ok(out)
}

/// `recv` becomes block `r` (`counts[r]` elements) of the reduction of every rank's `send`.
pub(crate) fn reduce_scatter_into<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    send: &[T],
    recv: &mut [T],
    counts: &[usize],
    op: O,
) -> Result<(), CommError> {
    let (n, r) = (comm.size() as usize, comm.rank() as usize);
    let what = "reduce_scatter_into";
    let blocks = blocks(what, n, r, counts, send.len(), Some(recv.len()))?;
    let ring_order = n == 1 || op.is_commutative();
    if !ring_order && r != 0 {
        tree_reduce(comm, send, None, &op, TREE_TAGS)?;
        return receive(comm, 0, tag::REDUCE_SCATTER, bytes_mut(recv));
    }
    with_scratch(Slot::Accumulator, send.len(), |acc: &mut [T]| {
        acc.copy_from_slice(send);
        if ring_order {
            ring(comm, acc, &blocks, &op)?;
        } else {
            tree_reduce_in_place(comm, acc, &op, TREE_TAGS)?;
            scatter_blocks(comm, acc, &blocks)?;
        }
        recv.copy_from_slice(&acc[blocks[r].clone()]);
        Ok(())
    })
}

/// [`reduce_scatter_into`] with this rank's vector in `buf`; block `r` of the result lands in
/// `buf[..counts[r]]` and the rest of `buf` is left undefined (`MPI_IN_PLACE`).
pub(crate) fn reduce_scatter_in_place<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    buf: &mut [T],
    counts: &[usize],
    op: O,
) -> Result<(), CommError> {
    let (n, r) = (comm.size() as usize, comm.rank() as usize);
    let what = "reduce_scatter_in_place";
    let blocks = blocks(what, n, r, counts, buf.len(), None)?;
    if n == 1 || op.is_commutative() {
        ring(comm, buf, &blocks, &op)?;
        buf.copy_within(blocks[r].clone(), 0);
        return Ok(());
    }
    if r == 0 {
        // Block 0 already starts the vector.
        tree_reduce_in_place(comm, buf, &op, TREE_TAGS)?;
        scatter_blocks(comm, buf, &blocks)
    } else {
        // `buf` is free again once the tree has taken it.
        tree_reduce(comm, buf, None, &op, TREE_TAGS)?;
        receive(
            comm,
            0,
            tag::REDUCE_SCATTER,
            bytes_mut(&mut buf[..counts[r]]),
        )
    }
}

/// The ring reduce-scatter over `blocks`, shifted so that rank r ends with block r complete
/// (the ring leaves rank r with its list's block r + 1).
fn ring<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    acc: &mut [T],
    blocks: &[std::ops::Range<usize>],
    op: &O,
) -> Result<(), CommError> {
    let n = blocks.len();
    if n == 1 {
        return Ok(());
    }
    let shifted: Vec<_> = (0..n).map(|i| blocks[(i + n - 1) % n].clone()).collect();
    ring_reduce_scatter(comm, acc, &shifted, op, tag::REDUCE_SCATTER)
}

/// On rank 0: sends every other rank its block of the reduced vector `acc`, all at once.
fn scatter_blocks<T: Pod>(
    comm: &CommCore,
    acc: &[T],
    blocks: &[std::ops::Range<usize>],
) -> Result<(), CommError> {
    let parts = blocks
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, b)| (i as i32, bytes(&acc[b.clone()])));
    send_all(comm, tag::REDUCE_SCATTER, parts)
}
