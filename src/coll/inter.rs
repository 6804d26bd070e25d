//! Collectives on intercommunicators (MPI-2's forms): what one group contributes, the other
//! receives. Data crosses between the groups in the intercommunicator's collective context;
//! the steps inside one group (a barrier, a reduction to the group's leader, a broadcast from
//! it) run on the intercommunicator's private communicator of that group.
//!
//! | collective | how |
//! | --- | --- |
//! | barrier | each group's barrier, the leaders' exchange, each group's barrier again |
//! | broadcast | the root sends to the other group's leader, which broadcasts in its group |
//! | reduce | the other group reduces to its leader, which sends the result to the root |
//! | all-reduce | each group reduces to its leader, the leaders exchange, each broadcasts |
//! | reduce-scatter (and block) | each group reduces to its leader, the leaders exchange, each scatters the other group's result over its group |
//! | gather, scatter (and varcount) | every rank of the other group with the root directly |
//! | all-gather, all-to-all (and varcount) | every rank with every rank of the other group |

use bytemuck::Pod;

use super::{
    AtRoot, Operation, all_to_all_blocks, byte_ranges, bytes, bytes_mut, check_same_length,
    element_ranges, equal_blocks, exchange, exchange_all, gather_blocks, invalid, laid, receive,
    send, tag,
};
use crate::comm::buffer::{Elements, ElementsMut, elements, elements_mut};
use crate::comm::{CommCore, CommError, PROC_NULL, Process, ROOT, Rank};

/// A rooted collective on an intercommunicator, as one rank sees it.
pub(crate) enum Side<'a> {
    /// This rank is the root (it named itself [`ROOT`]).
    Root(&'a CommCore),
    /// Another rank of the root's group (it named [`PROC_NULL`]): no part to play.
    Idle,
    /// A rank of the other group; the root is `root` of the remote group.
    Leaf(&'a CommCore, Rank),
}

/// How the rank calling a rooted collective on `p`'s communicator takes part; `None` for an
/// intracommunicator.
pub(crate) fn side<'a>(p: &Process<'a>) -> Option<Side<'a>> {
    let core: &'a CommCore = p.core();
    if !core.is_inter() {
        return None;
    }
    Some(match p.rank() {
        ROOT => Side::Root(core),
        PROC_NULL => Side::Idle,
        r => Side::Leaf(core, r),
    })
}

/// The intercommunicator's private communicator of this rank's group.
fn local(c: &CommCore) -> Result<&CommCore, CommError> {
    c.local_group_core().map(|l| &**l)
}

/// `root` checked to be a rank of the remote group.
fn remote_root(c: &CommCore, root: Rank) -> Result<Rank, CommError> {
    c.world_of(root)?;
    Ok(root)
}

pub(crate) fn barrier(c: &CommCore) -> Result<(), CommError> {
    let l = local(c)?;
    super::barrier(l)?;
    if l.rank() == 0 {
        exchange(c, 0, &[], 0, &mut [], tag::BARRIER)?;
    }
    super::barrier(l)
}

pub(crate) fn broadcast_into<T: Pod>(side: Side<'_>, buf: &mut [T]) -> Result<(), CommError> {
    match side {
        Side::Root(c) => send(c, 0, tag::BCAST, bytes(buf)),
        Side::Idle => Ok(()),
        Side::Leaf(c, root) => {
            let root = remote_root(c, root)?;
            let l = local(c)?;
            if l.rank() == 0 {
                receive(c, root, tag::BCAST, bytes_mut(buf))?;
            }
            AtRoot { comm: l, root: 0 }.broadcast_into(buf)
        }
    }
}

/// The root receives into `recv` the reduction of the other group's `send`s.
pub(crate) fn reduce_into<T: Pod, O: Operation<T>>(
    side: Side<'_>,
    send: &[T],
    recv: &mut [T],
    op: &O,
) -> Result<(), CommError> {
    match side {
        Side::Root(c) => receive(c, 0, tag::REDUCE, bytes_mut(recv)),
        Side::Idle => Ok(()),
        Side::Leaf(c, root) => {
            let root = remote_root(c, root)?;
            let l = local(c)?;
            let at = AtRoot { comm: l, root: 0 };
            if l.rank() == 0 {
                let mut acc = vec![T::zeroed(); send.len()];
                at.reduce_into_root(send, &mut acc, op)?;
                super::send(c, root, tag::REDUCE, bytes(&acc))
            } else {
                at.reduce_into(send, op)
            }
        }
    }
}

/// Every rank receives into `recv` the reduction of the other group's `send`s.
pub(crate) fn all_reduce_into<T: Pod, O: Operation<T>>(
    c: &CommCore,
    send: &[T],
    recv: &mut [T],
    op: &O,
) -> Result<(), CommError> {
    check_same_length("all_reduce_into", send, recv)?;
    let l = local(c)?;
    let at = AtRoot { comm: l, root: 0 };
    if l.rank() == 0 {
        let mut ours = vec![T::zeroed(); send.len()];
        at.reduce_into_root(send, &mut ours, op)?;
        exchange(c, 0, bytes(&ours), 0, bytes_mut(recv), tag::ALLREDUCE)?;
    } else {
        at.reduce_into(send, op)?;
    }
    at.broadcast_into(recv)
}

/// Every rank receives into `recv` its block (`counts[i]` elements for local rank i) of the
/// reduction of the other group's `send`s, each `counts[0] + ... + counts[n-1]` elements (`n`
/// the local group's size; both groups' totals must agree). Each group reduces its vectors to
/// its leader in rank order, the leaders swap the results, and each leader scatters the other
/// group's over its own group: log2(n) steps of the whole vector in each group, one exchange
/// of it between the leaders, and n - 1 blocks from each leader (MPICH's
/// "remote reduce, local scatter").
pub(crate) fn reduce_scatter_into<T: Pod, O: Operation<T>>(
    c: &CommCore,
    send: &[T],
    recv: &mut [T],
    counts: &[usize],
    op: &O,
) -> Result<(), CommError> {
    let l = local(c)?;
    let (n, r) = (l.size() as usize, l.rank() as usize);
    let what = "reduce_scatter_into";
    let blocks = super::reduce_scatter::blocks(what, n, r, counts, send.len(), Some(recv.len()))?;
    let displs: Vec<usize> = blocks.iter().map(|b| b.start).collect();
    let at = AtRoot { comm: l, root: 0 };
    if r == 0 {
        let mut ours = vec![T::zeroed(); send.len()];
        at.reduce_into_root(send, &mut ours, op)?;
        let mut theirs = vec![T::zeroed(); send.len()];
        let (out, inn) = (bytes(&ours), bytes_mut(&mut theirs));
        exchange(c, 0, out, 0, inn, tag::REDUCE_SCATTER)?;
        at.scatter_varcount_into_root(elements(&theirs), counts, &displs, elements_mut(recv))
    } else {
        at.reduce_into(send, op)?;
        at.scatter_into(elements_mut(recv))
    }
}

/// The root's `recv` gets every remote rank's `send`, in rank order (each sends its own).
pub(crate) fn gather_into(
    side: Side<'_>,
    send: Elements<'_>,
    recv: ElementsMut<'_>,
) -> Result<(), CommError> {
    if let Side::Root(c) = side {
        let n = c.target_size() as usize;
        if n == 0 || !recv.count.is_multiple_of(n) {
            return Err(invalid(format!(
                "gather_into_root: {} receive elements for {n} remote ranks",
                recv.count
            )));
        }
        let (counts, displs) = equal_blocks(n, recv.count / n);
        return gather_varcount_into_root(Side::Root(c), recv, &counts, &displs);
    }
    gather_varcount_into(side, send)
}

pub(crate) fn gather_varcount_into_root(
    side: Side<'_>,
    mut recv: ElementsMut<'_>,
    counts: &[usize],
    displs: &[usize],
) -> Result<(), CommError> {
    let Side::Root(c) = side else {
        return Err(invalid(
            "gather_varcount_into_root on an intercommunicator is for the root (ROOT)",
        ));
    };
    let n = c.target_size() as usize;
    let elems = element_ranges(n, counts, displs, recv.count, "gather_varcount_into_root")?;
    let size = recv.size;
    let Some(into) = recv.bytes_mut() else {
        return laid::receive_all(c, tag::GATHER, recv.split(&elems)?);
    };
    let parts = super::disjoint_mut(into, &byte_ranges(&elems, size))?;
    let recvs = parts.into_iter().enumerate().map(|(i, p)| (i as Rank, p));
    exchange_all(c, tag::GATHER, recvs, std::iter::empty(), None)
}

pub(crate) fn gather_varcount_into(side: Side<'_>, send: Elements<'_>) -> Result<(), CommError> {
    match side {
        Side::Root(_) => Err(invalid(
            "gather_varcount_into on an intercommunicator is for the ranks of the other group",
        )),
        Side::Idle => Ok(()),
        Side::Leaf(c, root) => {
            let root = remote_root(c, root)?;
            match send.bytes() {
                Some(out) => super::send(c, root, tag::GATHER, out),
                None => laid::send_one(c, root, tag::GATHER, send),
            }
        }
    }
}

/// The root's `send` holds one block per remote rank; each gets its own in `recv`.
pub(crate) fn scatter_into(
    side: Side<'_>,
    send: Elements<'_>,
    recv: ElementsMut<'_>,
) -> Result<(), CommError> {
    if let Side::Root(c) = side {
        let n = c.target_size() as usize;
        if n == 0 || !send.count.is_multiple_of(n) {
            return Err(invalid(format!(
                "scatter_into_root: {} send elements for {n} remote ranks",
                send.count
            )));
        }
        let (counts, displs) = equal_blocks(n, send.count / n);
        return scatter_varcount_into_root(Side::Root(c), send, &counts, &displs);
    }
    scatter_varcount_into(side, recv)
}

pub(crate) fn scatter_varcount_into_root(
    side: Side<'_>,
    send: Elements<'_>,
    counts: &[usize],
    displs: &[usize],
) -> Result<(), CommError> {
    let Side::Root(c) = side else {
        return Err(invalid(
            "scatter_varcount_into_root on an intercommunicator is for the root (ROOT)",
        ));
    };
    let n = c.target_size() as usize;
    let elems = element_ranges(n, counts, displs, send.count, "scatter_varcount_into_root")?;
    let Some(out) = send.bytes() else {
        return laid::send_all(c, tag::SCATTER, send, &elems);
    };
    let blocks = byte_ranges(&elems, send.size);
    super::send_all(
        c,
        tag::SCATTER,
        blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (i as Rank, &out[b.clone()])),
    )
}

pub(crate) fn scatter_varcount_into(
    side: Side<'_>,
    mut recv: ElementsMut<'_>,
) -> Result<(), CommError> {
    match side {
        Side::Root(_) => Err(invalid(
            "scatter_into on an intercommunicator is for the ranks of the other group",
        )),
        Side::Idle => Ok(()),
        Side::Leaf(c, root) => {
            let root = remote_root(c, root)?;
            match recv.bytes_mut() {
                Some(into) => receive(c, root, tag::SCATTER, into),
                None => laid::receive_one(c, root, tag::SCATTER, recv),
            }
        }
    }
}

/// Every rank's `send` goes to every rank of the other group; `recv` holds the other group's,
/// in rank order.
pub(crate) fn all_gather_into(
    c: &CommCore,
    send: Elements<'_>,
    recv: ElementsMut<'_>,
) -> Result<(), CommError> {
    let n = c.target_size() as usize;
    let k = gather_blocks("all_gather_into", n, &send, &recv)?;
    let (counts, displs) = equal_blocks(n, k);
    all_gather_varcount_into(c, send, recv, &counts, &displs)
}

pub(crate) fn all_gather_varcount_into(
    c: &CommCore,
    send: Elements<'_>,
    mut recv: ElementsMut<'_>,
    counts: &[usize],
    displs: &[usize],
) -> Result<(), CommError> {
    let n = c.target_size() as usize;
    let elems = element_ranges(n, counts, displs, recv.count, "all_gather_varcount_into")?;
    let size = recv.size;
    let (Some(out), Some(into)) = (send.bytes(), recv.bytes_mut()) else {
        let recvs = recv.split(&elems)?.into_iter().enumerate();
        let sends = (0..n).map(|k| (((c.rank() as usize + k) % n) as Rank, send.clone()));
        let recvs = recvs.map(|(i, p)| (i as Rank, p)).collect();
        return laid::exchange_elements(c, tag::ALLGATHER, recvs, sends.collect());
    };
    let parts = super::disjoint_mut(into, &byte_ranges(&elems, size))?;
    let recvs = parts.into_iter().enumerate().map(|(i, p)| (i as Rank, p));
    let sends = (0..n).map(|k| (((c.rank() as usize + k) % n) as Rank, out));
    exchange_all(c, tag::ALLGATHER, recvs, sends, None)
}

/// Block `j` of `send` goes to rank `j` of the other group, which stores it as block `i` (this
/// rank's) of its `recv`.
pub(crate) fn all_to_all_into(
    c: &CommCore,
    send: Elements<'_>,
    recv: ElementsMut<'_>,
) -> Result<(), CommError> {
    let n = c.target_size() as usize;
    let (ks, kr) = all_to_all_blocks(n, &send, &recv)?;
    let (send_counts, send_displs) = equal_blocks(n, ks);
    let (recv_counts, recv_displs) = equal_blocks(n, kr);
    all_to_all_varcount_into(
        c,
        send,
        &send_counts,
        &send_displs,
        recv,
        &recv_counts,
        &recv_displs,
    )
}

pub(crate) fn all_to_all_varcount_into(
    c: &CommCore,
    send: Elements<'_>,
    send_counts: &[usize],
    send_displs: &[usize],
    mut recv: ElementsMut<'_>,
    recv_counts: &[usize],
    recv_displs: &[usize],
) -> Result<(), CommError> {
    let n = c.target_size() as usize;
    let out = element_ranges(n, send_counts, send_displs, send.count, "all_to_all (send)")?;
    let inn = element_ranges(n, recv_counts, recv_displs, recv.count, "all_to_all (recv)")?;
    let (ss, rs) = (send.size, recv.size);
    let (Some(send), Some(recv)) = (send.bytes(), recv.bytes_mut()) else {
        return laid::all_to_all(c, send, &out, recv, &inn);
    };
    let (out, inn) = (byte_ranges(&out, ss), byte_ranges(&inn, rs));
    let parts = super::disjoint_mut(recv, &inn)?;
    let recvs = parts.into_iter().enumerate().map(|(i, p)| (i as Rank, p));
    let r = c.rank() as usize;
    let sends = (0..n).map(|k| {
        let d = (r + k) % n;
        (d as Rank, &send[out[d].clone()])
    });
    exchange_all(c, tag::ALLTOALL, recvs, sends, None)
}
