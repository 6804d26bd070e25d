//! Nonblocking collectives: each starts a schedule of the runtime and returns a request, which
//! `MPI_Wait` and its relatives complete like any other.
//!
//! They take contiguous buffers (builtin datatypes, or derived ones without holes); scratch
//! memory for `MPI_IN_PLACE` stays with the request until it finishes.

use std::ffi::{c_int, c_void};

use bytemuck::Pod;
use onecopy::SimpleCommunicator;
use onecopy::collective::Operation;
use onecopy::request::StaticScope;
use onecopy::traits::*;

use crate::coll::{Typed, check_root, counts, dispatch, in_place, is_root, peers};
use crate::error::{Error, Result, call, class};
use crate::export::mpi_export;
use crate::p2p::{Req, store_request};
use crate::state;
use crate::types::{self, Ty};

/// Where `count` elements of `datatype` at `ptr` lie as one run of bytes: (offset, length).
fn run_of(ptr: *const c_void, count: usize, ty: &Ty, what: &str) -> Result<(isize, usize)> {
    types::place(ptr, count, ty)?.map_err(|_| {
        Error::new(
            class::UNSUPPORTED_OPERATION,
            format!("{what} with a non-contiguous derived datatype is not supported by onecopy"),
        )
    })
}

/// The bytes of a run, for the request's life.
///
/// # Safety
/// The program lends them until the request completes.
unsafe fn lent<'a>(ptr: *const c_void, run: (isize, usize)) -> &'a [u8] {
    // SAFETY: the caller's contract.
    unsafe { types::bytes(ptr, run.0, run.1) }
}

/// [`lent`] for writing.
///
/// # Safety
/// The program lends them for writing until the request completes.
unsafe fn lent_mut<'a>(ptr: *mut c_void, run: (isize, usize)) -> &'a mut [u8] {
    // SAFETY: the caller's contract.
    unsafe { types::bytes_mut(ptr, run.0, run.1) }
}

/// Scratch memory of at least `len` bytes, 8-byte aligned, holding `from` if given.
fn scratch(len: usize, from: Option<&[u8]>) -> Vec<u64> {
    let mut v = vec![0u64; len.div_ceil(8)];
    if let Some(from) = from {
        bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..from.len()].copy_from_slice(from);
    }
    v
}

/// Scratch memory of `len` bytes (holding `from` if given) that goes with the request in
/// `keep`, for the request's life.
fn kept(keep: &mut Vec<Vec<u64>>, len: usize, from: Option<&[u8]>) -> &'static mut [u8] {
    let mut v = scratch(len, from);
    // SAFETY: the block goes into `keep`, which the request holds until it completes.
    let b = unsafe { scratch_bytes(&mut v, len) };
    keep.push(v);
    b
}

/// The first `len` bytes of scratch memory, for the request's life (the heap block does not
/// move when the vector does).
///
/// # Safety
/// `v` is kept with the request until it completes.
unsafe fn scratch_bytes<'a>(v: &mut [u64], len: usize) -> &'a mut [u8] {
    // SAFETY: the caller keeps the block alive; `len` is within it.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), len) }
}

fn typed<T: Pod>(bytes: &[u8]) -> Result<&[T]> {
    if bytes.is_empty() {
        return Ok(&[]);
    }
    bytemuck::try_cast_slice(bytes).map_err(|e| {
        Error::new(
            class::BUFFER,
            format!("the buffer does not hold whole aligned elements: {e:?}"),
        )
    })
}

fn typed_mut<T: Pod>(bytes: &mut [u8]) -> Result<&mut [T]> {
    if bytes.is_empty() {
        return Ok(&mut []);
    }
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| {
        Error::new(
            class::BUFFER,
            format!("the buffer does not hold whole aligned elements: {e:?}"),
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AllReduce,
    Reduce(c_int),
    Scan,
    Exscan,
    ReduceScatterBlock,
}

struct Reduction<'a> {
    kind: Kind,
    comm: &'a SimpleCommunicator,
    send: *const c_void,
    recv: *mut c_void,
    /// Bytes of the whole vector (of one block for reduce_scatter_block).
    bytes: usize,
    request: *mut c_int,
}

impl Typed for Reduction<'_> {
    fn run<T: Pod, O: Operation<T> + 'static>(self, op: O) -> Result {
        let c = self.comm;
        let n = c.size() as usize;
        let mut keep = Vec::new();
        let recv_len = self.bytes;
        let send_len = match self.kind {
            Kind::ReduceScatterBlock => self.bytes * n,
            _ => self.bytes,
        };
        let root_here = matches!(self.kind, Kind::Reduce(r) if r == c.rank());
        let receives = !matches!(self.kind, Kind::Reduce(_)) || root_here;
        // SAFETY: the program lends the buffers until the request completes.
        let recv: &'static mut [u8] = if receives {
            let len = if in_place(self.send) && self.kind == Kind::ReduceScatterBlock {
                send_len
            } else {
                recv_len
            };
            unsafe { lent_mut(self.recv, (0, len)) }
        } else {
            &mut []
        };
        let send: &'static [u8] = if in_place(self.send) {
            kept(&mut keep, send_len, Some(&recv[..send_len]))
        } else {
            // SAFETY: the program lends the buffer until the request completes.
            unsafe { lent(self.send, (0, send_len)) }
        };
        let recv = if self.kind == Kind::ReduceScatterBlock {
            &mut recv[..recv_len]
        } else {
            recv
        };
        if send_len > 0 && self.send.is_null() && !in_place(self.send)
            || receives && recv_len > 0 && self.recv.is_null()
        {
            return Err(Error::new(class::BUFFER, "a buffer is null"));
        }
        let (s, r) = (typed::<T>(send)?, typed_mut::<T>(recv)?);
        let req = match self.kind {
            Kind::AllReduce => c.immediate_all_reduce_into(StaticScope, s, r, op)?,
            Kind::Scan => c.immediate_scan_into(StaticScope, s, r, op)?,
            Kind::Exscan => c.immediate_exclusive_scan_into(StaticScope, s, r, op)?,
            Kind::ReduceScatterBlock => {
                c.immediate_reduce_scatter_block_into(StaticScope, s, r, op)?
            }
            Kind::Reduce(root) if root_here => {
                c.process_at_rank(root)
                    .immediate_reduce_into_root(StaticScope, s, r, op)?
            }
            Kind::Reduce(root) => {
                c.process_at_rank(root)
                    .immediate_reduce_into(StaticScope, s, op)?
            }
        };
        store_request(Req::with_scratch(req, keep), self.request)
    }
}

#[allow(clippy::too_many_arguments)]
fn reduction(
    name: &'static str,
    kind: Kind,
    send: *const c_void,
    recv: *mut c_void,
    count: c_int,
    datatype: c_int,
    op: c_int,
    comm: c_int,
    request: *mut c_int,
) -> c_int {
    call(name, Some(comm), || {
        let c = intra(comm, name)?;
        let ty = types::ty(datatype)?;
        let n = types::count(count)?;
        if let Kind::Reduce(root) = kind {
            check_root(&c, root)?;
        }
        let (_, len) = run_of(recv, n, &ty, name)?;
        dispatch(
            datatype,
            op,
            crate::coll::alignment(&[send, recv.cast_const()]),
            Reduction {
                kind,
                comm: &c,
                send,
                recv,
                bytes: len,
                request,
            },
        )
    })
}

fn intra(comm: c_int, name: &str) -> Result<SimpleCommunicator> {
    let c = state::comm(comm)?;
    if c.test_inter() {
        return Err(Error::new(
            class::UNSUPPORTED_OPERATION,
            format!("{name} on an intercommunicator is not supported by onecopy"),
        ));
    }
    Ok(c)
}

fn bytes_of(counts: Vec<usize>, size: usize) -> Vec<usize> {
    counts.into_iter().map(|c| c * size).collect()
}

mpi_export! {
    /// `MPI_Ibarrier`.
    fn MPI_Ibarrier / PMPI_Ibarrier(comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Ibarrier", Some(comm), || {
            let c = intra(comm, "MPI_Ibarrier")?;
            store_request(Req::with_scratch(c.immediate_barrier()?, Vec::new()), request)
        })
    }

    /// `MPI_Ibcast`.
    fn MPI_Ibcast / PMPI_Ibcast(buf: *mut c_void, count: c_int, datatype: c_int, root: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Ibcast", Some(comm), || {
            let c = intra(comm, "MPI_Ibcast")?;
            let ty = types::ty(datatype)?;
            check_root(&c, root)?;
            let run = run_of(buf, types::count(count)?, &ty, "MPI_Ibcast")?;
            // SAFETY: the program lends the buffer until the request completes.
            let b = unsafe { lent_mut(buf, run) };
            let r = c.process_at_rank(root).immediate_broadcast_into(StaticScope, b)?;
            store_request(Req::with_scratch(r, Vec::new()), request)
        })
    }

    /// `MPI_Iallreduce`.
    fn MPI_Iallreduce / PMPI_Iallreduce(sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: c_int, op: c_int, comm: c_int, request: *mut c_int) -> c_int {
        reduction("MPI_Iallreduce", Kind::AllReduce, sendbuf, recvbuf, count, datatype, op, comm, request)
    }

    /// `MPI_Ireduce`.
    fn MPI_Ireduce / PMPI_Ireduce(sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: c_int, op: c_int, root: c_int, comm: c_int, request: *mut c_int) -> c_int {
        reduction("MPI_Ireduce", Kind::Reduce(root), sendbuf, recvbuf, count, datatype, op, comm, request)
    }

    /// `MPI_Iscan`.
    fn MPI_Iscan / PMPI_Iscan(sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: c_int, op: c_int, comm: c_int, request: *mut c_int) -> c_int {
        reduction("MPI_Iscan", Kind::Scan, sendbuf, recvbuf, count, datatype, op, comm, request)
    }

    /// `MPI_Iexscan`.
    fn MPI_Iexscan / PMPI_Iexscan(sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: c_int, op: c_int, comm: c_int, request: *mut c_int) -> c_int {
        reduction("MPI_Iexscan", Kind::Exscan, sendbuf, recvbuf, count, datatype, op, comm, request)
    }

    /// `MPI_Ireduce_scatter_block`.
    fn MPI_Ireduce_scatter_block / PMPI_Ireduce_scatter_block(sendbuf: *const c_void, recvbuf: *mut c_void, recvcount: c_int, datatype: c_int, op: c_int, comm: c_int, request: *mut c_int) -> c_int {
        reduction("MPI_Ireduce_scatter_block", Kind::ReduceScatterBlock, sendbuf, recvbuf, recvcount, datatype, op, comm, request)
    }

    /// `MPI_Igather`.
    fn MPI_Igather / PMPI_Igather(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, root: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Igather", Some(comm), || {
            let c = intra(comm, "MPI_Igather")?;
            check_root(&c, root)?;
            let at = c.process_at_rank(root);
            let mut keep = Vec::new();
            let r = if is_root(&c, root) {
                let rt = types::ty(recvtype)?;
                let rn = types::count(recvcount)?;
                let run = run_of(recvbuf, rn * peers(&c), &rt, "MPI_Igather")?;
                // SAFETY: the program lends the buffer until the request completes.
                let recv = unsafe { lent_mut(recvbuf, run) };
                let send: &'static [u8] = if in_place(sendbuf) {
                    let block = rn * rt.size();
                    let me = c.rank() as usize;
                    kept(&mut keep, block, Some(&recv[me * block..(me + 1) * block]))
                } else {
                    let st = types::ty(sendtype)?;
                    // SAFETY: the program lends the buffer until the request completes.
                    unsafe { lent(sendbuf, run_of(sendbuf, types::count(sendcount)?, &st, "MPI_Igather")?) }
                };
                at.immediate_gather_into_root(StaticScope, send, recv)?
            } else {
                let st = types::ty(sendtype)?;
                // SAFETY: the program lends the buffer until the request completes.
                let send = unsafe { lent(sendbuf, run_of(sendbuf, types::count(sendcount)?, &st, "MPI_Igather")?) };
                at.immediate_gather_into(StaticScope, send)?
            };
            store_request(Req::with_scratch(r, keep), request)
        })
    }

    /// `MPI_Igatherv`.
    fn MPI_Igatherv / PMPI_Igatherv(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcounts: *const c_int, displs: *const c_int, recvtype: c_int, root: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Igatherv", Some(comm), || {
            let c = intra(comm, "MPI_Igatherv")?;
            check_root(&c, root)?;
            let at = c.process_at_rank(root);
            let mut keep = Vec::new();
            let r = if is_root(&c, root) {
                let rt = types::ty(recvtype)?;
                let size = rt.size();
                if !matches!(rt, Ty::Basic { .. }) {
                    return Err(Error::new(class::UNSUPPORTED_OPERATION, "MPI_Igatherv with a derived datatype is not supported by onecopy"));
                }
                let n = peers(&c);
                // SAFETY: the program passes one count and displacement per rank.
                let (rc, rd) = unsafe { (counts(recvcounts, n, "recvcounts")?, counts(displs, n, "displs")?) };
                let (rc, rd) = (bytes_of(rc, size), bytes_of(rd, size));
                let span = crate::coll::span(&rc, &rd);
                // SAFETY: the program lends the buffer until the request completes.
                let recv = unsafe { lent_mut(recvbuf, run_of(recvbuf, span, &Ty::Basic { handle: 0, size: 1, primitive: None }, "MPI_Igatherv")?) };
                let send: &'static [u8] = if in_place(sendbuf) {
                    let me = c.rank() as usize;
                    kept(&mut keep, rc[me], Some(&recv[rd[me]..rd[me] + rc[me]]))
                } else {
                    let st = types::ty(sendtype)?;
                    // SAFETY: the program lends the buffer until the request completes.
                    unsafe { lent(sendbuf, run_of(sendbuf, types::count(sendcount)?, &st, "MPI_Igatherv")?) }
                };
                at.immediate_gather_varcount_into_root(StaticScope, send, recv, &rc, &rd)?
            } else {
                let st = types::ty(sendtype)?;
                // SAFETY: the program lends the buffer until the request completes.
                let send = unsafe { lent(sendbuf, run_of(sendbuf, types::count(sendcount)?, &st, "MPI_Igatherv")?) };
                at.immediate_gather_varcount_into(StaticScope, send)?
            };
            store_request(Req::with_scratch(r, keep), request)
        })
    }

    /// `MPI_Iscatter`.
    fn MPI_Iscatter / PMPI_Iscatter(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, root: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Iscatter", Some(comm), || {
            let c = intra(comm, "MPI_Iscatter")?;
            check_root(&c, root)?;
            let at = c.process_at_rank(root);
            let mut keep = Vec::new();
            let r = if is_root(&c, root) {
                let st = types::ty(sendtype)?;
                let sn = types::count(sendcount)?;
                // SAFETY: the program lends the buffer until the request completes.
                let send = unsafe { lent(sendbuf, run_of(sendbuf, sn * peers(&c), &st, "MPI_Iscatter")?) };
                let recv: &'static mut [u8] = if in_place(recvbuf) {
                    let block = sn * st.size();
                    kept(&mut keep, block, None)
                } else {
                    let rt = types::ty(recvtype)?;
                    // SAFETY: the program lends the buffer until the request completes.
                    unsafe { lent_mut(recvbuf, run_of(recvbuf, types::count(recvcount)?, &rt, "MPI_Iscatter")?) }
                };
                at.immediate_scatter_into_root(StaticScope, send, recv)?
            } else {
                let rt = types::ty(recvtype)?;
                // SAFETY: the program lends the buffer until the request completes.
                let recv = unsafe { lent_mut(recvbuf, run_of(recvbuf, types::count(recvcount)?, &rt, "MPI_Iscatter")?) };
                at.immediate_scatter_into(StaticScope, recv)?
            };
            store_request(Req::with_scratch(r, keep), request)
        })
    }

    /// `MPI_Iscatterv`.
    fn MPI_Iscatterv / PMPI_Iscatterv(sendbuf: *const c_void, sendcounts: *const c_int, displs: *const c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, root: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Iscatterv", Some(comm), || {
            let c = intra(comm, "MPI_Iscatterv")?;
            check_root(&c, root)?;
            let at = c.process_at_rank(root);
            let mut keep = Vec::new();
            let r = if is_root(&c, root) {
                let st = types::ty(sendtype)?;
                if !matches!(st, Ty::Basic { .. }) {
                    return Err(Error::new(class::UNSUPPORTED_OPERATION, "MPI_Iscatterv with a derived datatype is not supported by onecopy"));
                }
                let n = peers(&c);
                // SAFETY: the program passes one count and displacement per rank.
                let (sc, sd) = unsafe { (counts(sendcounts, n, "sendcounts")?, counts(displs, n, "displs")?) };
                let (sc, sd) = (bytes_of(sc, st.size()), bytes_of(sd, st.size()));
                let span = crate::coll::span(&sc, &sd);
                // SAFETY: the program lends the buffer until the request completes.
                let send = unsafe { lent(sendbuf, run_of(sendbuf, span, &Ty::Basic { handle: 0, size: 1, primitive: None }, "MPI_Iscatterv")?) };
                let recv: &'static mut [u8] = if in_place(recvbuf) {
                    let mine = sc[c.rank() as usize];
                    kept(&mut keep, mine, None)
                } else {
                    let rt = types::ty(recvtype)?;
                    // SAFETY: the program lends the buffer until the request completes.
                    unsafe { lent_mut(recvbuf, run_of(recvbuf, types::count(recvcount)?, &rt, "MPI_Iscatterv")?) }
                };
                at.immediate_scatter_varcount_into_root(StaticScope, send, &sc, &sd, recv)?
            } else {
                let rt = types::ty(recvtype)?;
                // SAFETY: the program lends the buffer until the request completes.
                let recv = unsafe { lent_mut(recvbuf, run_of(recvbuf, types::count(recvcount)?, &rt, "MPI_Iscatterv")?) };
                at.immediate_scatter_varcount_into(StaticScope, recv)?
            };
            store_request(Req::with_scratch(r, keep), request)
        })
    }

    /// `MPI_Iallgather`.
    fn MPI_Iallgather / PMPI_Iallgather(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Iallgather", Some(comm), || {
            let c = intra(comm, "MPI_Iallgather")?;
            let rt = types::ty(recvtype)?;
            let rn = types::count(recvcount)?;
            // SAFETY: the program lends the buffer until the request completes.
            let recv = unsafe { lent_mut(recvbuf, run_of(recvbuf, rn * peers(&c), &rt, "MPI_Iallgather")?) };
            let mut keep = Vec::new();
            let send: &'static [u8] = if in_place(sendbuf) {
                let block = rn * rt.size();
                let me = c.rank() as usize;
                kept(&mut keep, block, Some(&recv[me * block..(me + 1) * block]))
            } else {
                let st = types::ty(sendtype)?;
                // SAFETY: the program lends the buffer until the request completes.
                unsafe { lent(sendbuf, run_of(sendbuf, types::count(sendcount)?, &st, "MPI_Iallgather")?) }
            };
            let r = c.immediate_all_gather_into(StaticScope, send, recv)?;
            store_request(Req::with_scratch(r, keep), request)
        })
    }

    /// `MPI_Iallgatherv`.
    fn MPI_Iallgatherv / PMPI_Iallgatherv(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcounts: *const c_int, displs: *const c_int, recvtype: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Iallgatherv", Some(comm), || {
            let c = intra(comm, "MPI_Iallgatherv")?;
            let rt = types::ty(recvtype)?;
            if !matches!(rt, Ty::Basic { .. }) {
                return Err(Error::new(class::UNSUPPORTED_OPERATION, "MPI_Iallgatherv with a derived datatype is not supported by onecopy"));
            }
            let n = peers(&c);
            // SAFETY: the program passes one count and displacement per rank.
            let (rc, rd) = unsafe { (counts(recvcounts, n, "recvcounts")?, counts(displs, n, "displs")?) };
            let (rc, rd) = (bytes_of(rc, rt.size()), bytes_of(rd, rt.size()));
            let span = crate::coll::span(&rc, &rd);
            // SAFETY: the program lends the buffer until the request completes.
            let recv = unsafe { lent_mut(recvbuf, run_of(recvbuf, span, &Ty::Basic { handle: 0, size: 1, primitive: None }, "MPI_Iallgatherv")?) };
            let mut keep = Vec::new();
            let send: &'static [u8] = if in_place(sendbuf) {
                let me = c.rank() as usize;
                kept(&mut keep, rc[me], Some(&recv[rd[me]..rd[me] + rc[me]]))
            } else {
                let st = types::ty(sendtype)?;
                // SAFETY: the program lends the buffer until the request completes.
                unsafe { lent(sendbuf, run_of(sendbuf, types::count(sendcount)?, &st, "MPI_Iallgatherv")?) }
            };
            let r = c.immediate_all_gather_varcount_into(StaticScope, send, recv, &rc, &rd)?;
            store_request(Req::with_scratch(r, keep), request)
        })
    }

    /// `MPI_Ialltoall`.
    fn MPI_Ialltoall / PMPI_Ialltoall(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Ialltoall", Some(comm), || {
            let c = intra(comm, "MPI_Ialltoall")?;
            let rt = types::ty(recvtype)?;
            let rn = types::count(recvcount)?;
            // SAFETY: the program lends the buffer until the request completes.
            let recv = unsafe { lent_mut(recvbuf, run_of(recvbuf, rn * peers(&c), &rt, "MPI_Ialltoall")?) };
            let mut keep = Vec::new();
            let send: &'static [u8] = if in_place(sendbuf) {
                let mut copy = scratch(recv.len(), Some(recv));
                // SAFETY: `copy` goes with the request.
                let b = unsafe { scratch_bytes(&mut copy, recv.len()) };
                keep.push(copy);
                b
            } else {
                let st = types::ty(sendtype)?;
                // SAFETY: the program lends the buffer until the request completes.
                unsafe { lent(sendbuf, run_of(sendbuf, types::count(sendcount)? * peers(&c), &st, "MPI_Ialltoall")?) }
            };
            let r = c.immediate_all_to_all_into(StaticScope, send, recv)?;
            store_request(Req::with_scratch(r, keep), request)
        })
    }

    /// `MPI_Ialltoallv`.
    fn MPI_Ialltoallv / PMPI_Ialltoallv(sendbuf: *const c_void, sendcounts: *const c_int, sdispls: *const c_int, sendtype: c_int, recvbuf: *mut c_void, recvcounts: *const c_int, rdispls: *const c_int, recvtype: c_int, comm: c_int, request: *mut c_int) -> c_int {
        call("MPI_Ialltoallv", Some(comm), || {
            let c = intra(comm, "MPI_Ialltoallv")?;
            let (st, rt) = (types::ty(sendtype)?, types::ty(recvtype)?);
            if !matches!(st, Ty::Basic { .. }) || !matches!(rt, Ty::Basic { .. }) || in_place(sendbuf) {
                return Err(Error::new(class::UNSUPPORTED_OPERATION, "MPI_Ialltoallv in place or with derived datatypes is not supported by onecopy"));
            }
            let n = peers(&c);
            // SAFETY: the program passes one count and displacement per rank.
            let (sc, sd, rc, rd) = unsafe {
                (counts(sendcounts, n, "sendcounts")?, counts(sdispls, n, "sdispls")?, counts(recvcounts, n, "recvcounts")?, counts(rdispls, n, "rdispls")?)
            };
            let (sc, sd) = (bytes_of(sc, st.size()), bytes_of(sd, st.size()));
            let (rc, rd) = (bytes_of(rc, rt.size()), bytes_of(rd, rt.size()));
            let byte = Ty::Basic { handle: 0, size: 1, primitive: None };
            // SAFETY: the program lends the buffers until the request completes.
            let send = unsafe { lent(sendbuf, run_of(sendbuf, crate::coll::span(&sc, &sd), &byte, "MPI_Ialltoallv")?) };
            // SAFETY: as above.
            let recv = unsafe { lent_mut(recvbuf, run_of(recvbuf, crate::coll::span(&rc, &rd), &byte, "MPI_Ialltoallv")?) };
            let r = c.immediate_all_to_all_varcount_into(StaticScope, send, &sc, &sd, recv, &rc, &rd)?;
            store_request(Req::with_scratch(r, Vec::new()), request)
        })
    }
}
