//! Prefix reductions on intracommunicators: the inclusive scan (`MPI_Scan`: rank r gets
//! `x0 op ... op xr`) and the exclusive scan (`MPI_Exscan`: rank r gets `x0 op ... op x(r-1)`).
//! MPI defines neither on an intercommunicator; the trait methods refuse one before anything
//! is sent.
//!
//! Both run by recursive doubling: in round k (mask m = 2^k) rank r exchanges its *partial*,
//! the reduction of the aligned run of m ranks it belongs to, with rank r xor m. The lower
//! run's partial is always the left operand, so non-commutative operations come out in rank
//! order, and both partners combine the same two operands in the same order: the same bits on
//! both. Cost: ceil(log2 n) rounds, each one exchange of the whole buffer with one partner and
//! one or two combinations of it; a chain (rank r waits for r - 1) would take n - 1 latencies.
//!
//! The grouping is fixed by the rank count alone: with `P(s, m)` the reduction of the aligned
//! run `s .. s+m`, grouped as `P(s, m/2) op P(s + m/2, m/2)`, rank r's inclusive result is
//! `P(b_j) op (... op (P(b_1) op xr))`, where `b_1 .. b_j` are the runs of sizes 1, 2, 4, ...
//! just below r, one for each bit set in r, lowest bit first; the exclusive result is the same
//! without `xr`. Float results are therefore the same bits on every run.

use bytemuck::Pod;

use super::{Operation, Slot, bytes, bytes_mut, check_same_length, exchange, with_scratch};
use crate::comm::{CommCore, CommError, tags as tag};

/// Rank r's `recv` becomes `x0 op x1 op ... op xr`, the reduction of the `send`s of ranks 0
/// to r (`MPI_Scan`).
pub(crate) fn scan_into<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    send: &[T],
    recv: &mut [T],
    op: O,
) -> Result<(), CommError> {
    check_same_length("scan_into", send, recv)?;
    recv.copy_from_slice(send);
    scan_in_place(comm, recv, op)
}

/// [`scan_into`] with this rank's contribution in `buf`, which receives the result.
pub(crate) fn scan_in_place<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    buf: &mut [T],
    op: O,
) -> Result<(), CommError> {
    doubling(comm, buf, &op, Prefix::Inclusive)
}

/// Rank r's `recv` becomes `x0 op ... op x(r-1)` (`MPI_Exscan`); rank 0's is left as it was.
pub(crate) fn exclusive_scan_into<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    send: &[T],
    recv: &mut [T],
    op: O,
) -> Result<(), CommError> {
    check_same_length("exclusive_scan_into", send, recv)?;
    with_scratch(Slot::Accumulator, send.len(), |partial: &mut [T]| {
        partial.copy_from_slice(send);
        with_scratch(Slot::Incoming, send.len(), |other: &mut [T]| {
            rounds(comm, partial, recv, other, &op, Prefix::Exclusive)
        })
    })
}

/// [`exclusive_scan_into`] with this rank's contribution in `buf`, which receives the result;
/// rank 0's `buf` keeps its contribution.
pub(crate) fn exclusive_scan_in_place<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    buf: &mut [T],
    op: O,
) -> Result<(), CommError> {
    doubling(comm, buf, &op, Prefix::Exclusive)
}

#[derive(Clone, Copy, PartialEq)]
enum Prefix {
    Inclusive,
    Exclusive,
}

/// Recursive doubling with this rank's contribution in `buf`, which receives the result.
fn doubling<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    buf: &mut [T],
    op: &O,
    prefix: Prefix,
) -> Result<(), CommError> {
    if comm.size() == 1 {
        return Ok(());
    }
    with_scratch(Slot::Accumulator, buf.len(), |partial: &mut [T]| {
        partial.copy_from_slice(buf);
        with_scratch(Slot::Incoming, buf.len(), |other: &mut [T]| {
            rounds(comm, partial, buf, other, op, prefix)
        })
    })
}

/// The rounds of the recursive doubling. `partial` starts as this rank's contribution and
/// `result` as its inclusive result so far (its contribution; anything, for an exclusive scan,
/// until the first lower run arrives); `other` receives the partner's partial.
fn rounds<T: Pod, O: Operation<T>>(
    comm: &CommCore,
    partial: &mut [T],
    result: &mut [T],
    other: &mut [T],
    op: &O,
    prefix: Prefix,
) -> Result<(), CommError> {
    let (n, r) = (comm.size(), comm.rank());
    let tag = match prefix {
        Prefix::Inclusive => tag::SCAN,
        Prefix::Exclusive => tag::EXSCAN,
    };
    // Whether `result` holds a lower run yet (an exclusive scan starts with nothing).
    let mut started = prefix == Prefix::Inclusive;
    let mut mask = 1;
    while mask < n {
        let partner = r ^ mask;
        // The partial is needed again only if a later round follows.
        let later = mask << 1 < n;
        if partner < n {
            exchange(
                comm,
                partner,
                bytes(partial),
                partner,
                bytes_mut(other),
                tag,
            )?;
            if partner < r {
                // The partner's run holds the ranks just below this rank's run.
                if started {
                    op.reduce_into_right(other, result);
                } else {
                    result.copy_from_slice(other);
                    started = true;
                }
                if later {
                    op.reduce_into_right(other, partial);
                }
            } else if later {
                op.reduce_into_left(partial, other);
            }
        }
        mask <<= 1;
    }
    Ok(())
}
