//! Collectives: every blocking collective with its v forms, scans, reduce_scatter, local
//! reduction, and user operations.
//!
//! Data-moving collectives take the same buffers point to point does (bytes, or a view over a
//! derived datatype). Reductions need the element type: the datatype's primitive picks the Rust
//! type and the operation handle picks the operation ([`dispatch`]).

use std::ffi::{c_int, c_void};

use bytemuck::Pod;
use onecopy::SimpleCommunicator;
use onecopy::collective::{
    LocationOperation, Operation, SystemOperation, UserOperation, ValueIndex,
};
use onecopy::datatype::Primitive;
use onecopy::traits::*;

use crate::error::{Error, Result, call, class};
use crate::export::mpi_export;
use crate::handles::{self, MPI_IN_PLACE, MPI_OP_NULL, MPI_PROC_NULL, MPI_ROOT, Object};
use crate::p2p::{incoming, outgoing, with_in, with_out};
use crate::state;
use crate::types::{self, Ty};

/// The predefined operations, in MPICH's order from 0x58000001.
const OPS: [&str; 14] = [
    "MPI_MAX",
    "MPI_MIN",
    "MPI_SUM",
    "MPI_PROD",
    "MPI_LAND",
    "MPI_BAND",
    "MPI_LOR",
    "MPI_BOR",
    "MPI_LXOR",
    "MPI_BXOR",
    "MPI_MINLOC",
    "MPI_MAXLOC",
    "MPI_REPLACE",
    "MPI_NO_OP",
];

/// The C signature of a user operation (`MPI_User_function`).
pub type UserFn = unsafe extern "C" fn(
    invec: *mut c_void,
    inoutvec: *mut c_void,
    len: *mut c_int,
    datatype: *mut c_int,
);

/// A user operation behind a handle.
#[derive(Debug, Clone, Copy)]
pub struct UserOp {
    /// The function.
    pub func: UserFn,
    /// Whether it commutes.
    pub commute: bool,
}

/// An operation as a reduction uses it.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A predefined one: its index in [`OPS`].
    Builtin(usize),
    /// A user operation.
    User(UserOp),
}

fn op_of(handle: c_int) -> Result<Op> {
    if handles::is_builtin(Object::Op, handle) {
        let i = (handle & 0xff) as usize;
        if (1..=OPS.len()).contains(&i) {
            return Ok(Op::Builtin(i - 1));
        }
    }
    if handle == MPI_OP_NULL {
        return Err(Error::new(class::OP, "the operation is MPI_OP_NULL"));
    }
    let user = handles::direct_index(Object::Op, handle)
        .and_then(|i| state::with(|s| Ok(s.ops.get(i).copied())).ok().flatten());
    user.map(Op::User).ok_or_else(|| {
        Error::new(
            class::OP,
            format!("{handle:#x} is not an operation (freed, another kind of handle, or garbage)"),
        )
    })
}

/// A reduction to run once its element type and operation are known.
pub trait Typed {
    /// Runs with elements of `T` and operation `op`.
    fn run<T: Pod, O: Operation<T> + 'static>(self, op: O) -> Result;
}

fn bad_op(op: usize, ty: &Ty) -> Error {
    Error::new(
        class::OP,
        format!(
            "{} is not defined for this datatype ({} bytes, {:?})",
            OPS[op],
            ty.size(),
            ty.primitive()
        ),
    )
}

fn integer<T: onecopy::collective::Integer, J: Typed>(op: usize, ty: &Ty, job: J) -> Result {
    match op {
        0 => job.run::<T, _>(SystemOperation::max()),
        1 => job.run::<T, _>(SystemOperation::min()),
        2 => job.run::<T, _>(SystemOperation::sum()),
        3 => job.run::<T, _>(SystemOperation::product()),
        4 => job.run::<T, _>(SystemOperation::logical_and()),
        5 => job.run::<T, _>(SystemOperation::bitwise_and()),
        6 => job.run::<T, _>(SystemOperation::logical_or()),
        7 => job.run::<T, _>(SystemOperation::bitwise_or()),
        8 => job.run::<T, _>(SystemOperation::logical_xor()),
        9 => job.run::<T, _>(SystemOperation::bitwise_xor()),
        _ => Err(bad_op(op, ty)),
    }
}

fn float<T: onecopy::collective::Number, J: Typed>(op: usize, ty: &Ty, job: J) -> Result {
    match op {
        0 => job.run::<T, _>(SystemOperation::max()),
        1 => job.run::<T, _>(SystemOperation::min()),
        2 => job.run::<T, _>(SystemOperation::sum()),
        3 => job.run::<T, _>(SystemOperation::product()),
        _ => Err(bad_op(op, ty)),
    }
}

fn location<J: Typed>(op: usize, handle: c_int, ty: &Ty, job: J) -> Result {
    let l = match op {
        10 => LocationOperation::MinLoc,
        11 => LocationOperation::MaxLoc,
        _ => return Err(bad_op(op, ty)),
    };
    match handle as u32 {
        0x8c000000 => job.run::<ValueIndex<f32>, _>(l),
        0x8c000001 => job.run::<ValueIndex<f64>, _>(l),
        0x8c000002 => job.run::<ValueIndex<i64>, _>(l),
        0x8c000003 => job.run::<ValueIndex<i16>, _>(l),
        0x4c000816 => job.run::<ValueIndex<i32>, _>(l),
        _ => Err(Error::new(
            class::UNSUPPORTED_OPERATION,
            "MINLOC/MAXLOC on MPI_LONG_DOUBLE_INT is not supported by onecopy",
        )),
    }
}

/// The pair types MINLOC and MAXLOC take.
fn is_pair(handle: c_int) -> bool {
    matches!(handle as u32, 0x8c000000..=0x8c000004 | 0x4c000816)
}

/// Runs a user operation over elements of `size` bytes, as arrays of the widest word that
/// divides the size and the buffers' alignment (`align`), so that the program's function sees
/// its elements as aligned as it gave them.
fn user<J: Typed>(u: UserOp, datatype: c_int, size: usize, align: usize, job: J) -> Result {
    macro_rules! run {
        ($t:ty) => {{
            let f = move |left: &[$t], right: &mut [$t]| {
                let mut len = left.len() as c_int;
                let mut dt = datatype;
                // SAFETY: the program's function, given `len` elements of its datatype in each
                // buffer (the input is only read).
                unsafe {
                    (u.func)(
                        left.as_ptr().cast_mut().cast(),
                        right.as_mut_ptr().cast(),
                        &mut len,
                        &mut dt,
                    )
                };
            };
            if u.commute {
                job.run::<$t, _>(UserOperation::commutative(f))
            } else {
                job.run::<$t, _>(UserOperation::non_commutative(f))
            }
        }};
    }
    let word = [8, 4, 2, 1]
        .into_iter()
        .find(|&w| size.is_multiple_of(w) && align.is_multiple_of(w))
        .unwrap_or(1);
    match (word, size / word) {
        (8, 1) => run!(u64),
        (8, 2) => run!([u64; 2]),
        (8, 3) => run!([u64; 3]),
        (8, 4) => run!([u64; 4]),
        (8, 6) => run!([u64; 6]),
        (8, 8) => run!([u64; 8]),
        (4, 1) => run!(u32),
        (4, 2) => run!([u32; 2]),
        (4, 3) => run!([u32; 3]),
        (4, 4) => run!([u32; 4]),
        (4, 6) => run!([u32; 6]),
        (4, 8) => run!([u32; 8]),
        (4, 12) => run!([u32; 12]),
        (4, 16) => run!([u32; 16]),
        (2, 1) => run!(u16),
        (2, 2) => run!([u16; 2]),
        (2, 3) => run!([u16; 3]),
        (2, 4) => run!([u16; 4]),
        (2, 6) => run!([u16; 6]),
        (2, 8) => run!([u16; 8]),
        (1, 1) => run!(u8),
        (1, 2) => run!([u8; 2]),
        (1, 3) => run!([u8; 3]),
        (1, 4) => run!([u8; 4]),
        (1, 6) => run!([u8; 6]),
        (1, 8) => run!([u8; 8]),
        (1, 12) => run!([u8; 12]),
        (1, 16) => run!([u8; 16]),
        _ => Err(Error::new(
            class::UNSUPPORTED_OPERATION,
            format!(
                "user operations on {size}-byte elements aligned to {word} are not supported by onecopy (up to 64 bytes in words of 8, 4, 2 or 1 bytes)"
            ),
        )),
    }
}

/// The alignment the buffers share, up to 8 (null and `MPI_IN_PLACE` do not count).
pub(crate) fn alignment(buffers: &[*const c_void]) -> usize {
    buffers
        .iter()
        .filter(|p| !p.is_null() && !in_place(**p))
        .map(|p| 1usize << (*p as usize).trailing_zeros().min(3))
        .min()
        .unwrap_or(8)
}

/// Runs `job` with the Rust type of `datatype` and the operation of `op`.
pub fn dispatch<J: Typed>(datatype: c_int, op: c_int, align: usize, job: J) -> Result {
    let ty = state::with(|s| types::resolve(s, datatype, true))?;
    match op_of(op)? {
        Op::User(u) => {
            if let Ty::Laid(d) = &ty
                && (d.contiguous_run(1).is_none() || d.size() as isize != d.extent())
                && !is_pair(datatype)
            {
                return Err(Error::new(
                    class::UNSUPPORTED_OPERATION,
                    "user operations on non-contiguous derived datatypes are not supported by onecopy",
                ));
            }
            let size = if is_pair(datatype) {
                ty.extent().1 as usize
            } else {
                ty.size()
            };
            user(u, datatype, size, align, job)
        }
        Op::Builtin(o) if o == 10 || o == 11 => location(o, datatype, &ty, job),
        Op::Builtin(o) => {
            let Some(p) = ty.primitive() else {
                return Err(Error::new(
                    class::UNSUPPORTED_OPERATION,
                    format!("{} on this datatype is not supported by onecopy", OPS[o]),
                ));
            };
            if let Ty::Laid(d) = &ty
                && d.contiguous_run(1)
                    .is_none_or(|(o, l)| o != 0 || l as isize != d.extent())
            {
                return Err(Error::new(
                    class::UNSUPPORTED_OPERATION,
                    "reductions on non-contiguous derived datatypes are not supported by onecopy",
                ));
            }
            match p {
                Primitive::I8 => integer::<i8, J>(o, &ty, job),
                Primitive::U8 | Primitive::Bool | Primitive::Byte => integer::<u8, J>(o, &ty, job),
                Primitive::I16 => integer::<i16, J>(o, &ty, job),
                Primitive::U16 => integer::<u16, J>(o, &ty, job),
                Primitive::I32 => integer::<i32, J>(o, &ty, job),
                Primitive::U32 => integer::<u32, J>(o, &ty, job),
                Primitive::I64 => integer::<i64, J>(o, &ty, job),
                Primitive::U64 => integer::<u64, J>(o, &ty, job),
                Primitive::F32 => float::<f32, J>(o, &ty, job),
                Primitive::F64 => float::<f64, J>(o, &ty, job),
            }
        }
    }
}

/// `n` elements of `T` at `p`, checked for null and alignment.
///
/// # Safety
/// The program lends the memory for reading for `'a`.
pub(crate) unsafe fn slice<'a, T: Pod>(p: *const c_void, n: usize) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::new(class::BUFFER, "the buffer is null"));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::new(
            class::BUFFER,
            format!(
                "the buffer is not aligned to {} bytes, as its datatype needs",
                std::mem::align_of::<T>()
            ),
        ));
    }
    // SAFETY: the caller's contract; checked non-null and aligned.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<T>(), n) })
}

/// [`slice`] for writing.
///
/// # Safety
/// The program lends the memory for writing for `'a`.
pub(crate) unsafe fn slice_mut<'a, T: Pod>(p: *mut c_void, n: usize) -> Result<&'a mut [T]> {
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Error::new(class::BUFFER, "the buffer is null"));
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::new(
            class::BUFFER,
            format!(
                "the buffer is not aligned to {} bytes, as its datatype needs",
                std::mem::align_of::<T>()
            ),
        ));
    }
    // SAFETY: the caller's contract; checked non-null and aligned.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<T>(), n) })
}

pub(crate) fn in_place(p: *const c_void) -> bool {
    p == MPI_IN_PLACE
}

pub(crate) fn check_root(comm: &SimpleCommunicator, root: c_int) -> Result {
    if comm.test_inter() {
        if root == MPI_ROOT || root == MPI_PROC_NULL || (0..comm.target_size()).contains(&root) {
            return Ok(());
        }
    } else if (0..comm.size()).contains(&root) {
        return Ok(());
    }
    Err(Error::new(
        class::ROOT,
        format!(
            "root {root} is not a rank of the communicator of {} ranks",
            comm.target_size()
        ),
    ))
}

/// What kind of reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AllReduce,
    Reduce(c_int),
    Scan,
    Exscan,
    ReduceScatterBlock,
    Local,
}

/// A reduction's buffers and communicator.
struct Reduction<'a> {
    kind: Kind,
    comm: Option<&'a SimpleCommunicator>,
    send: *const c_void,
    recv: *mut c_void,
    /// Elements in `send` (the whole vector).
    count: usize,
    /// Elements in `recv` (the block, for reduce_scatter).
    recv_count: usize,
}

impl Typed for Reduction<'_> {
    fn run<T: Pod, O: Operation<T> + 'static>(self, op: O) -> Result {
        let place = in_place(self.send);
        // SAFETY: the program lends its buffers for the call.
        unsafe {
            let c = self.comm;
            match self.kind {
                Kind::Local => {
                    let input = slice::<T>(self.send, self.count)?;
                    let inout = slice_mut::<T>(self.recv, self.count)?;
                    onecopy::collective::reduce_local_into(input, inout, op)?;
                }
                Kind::AllReduce => {
                    let c = c.expect("a communicator");
                    if place {
                        c.all_reduce_in_place(slice_mut::<T>(self.recv, self.count)?, op)?;
                    } else {
                        c.all_reduce_into(
                            slice::<T>(self.send, self.count)?,
                            slice_mut::<T>(self.recv, self.count)?,
                            op,
                        )?;
                    }
                }
                Kind::Reduce(root) => {
                    let c = c.expect("a communicator");
                    let at = c.process_at_rank(root);
                    let me = if c.test_inter() {
                        root == MPI_ROOT
                    } else {
                        root == c.rank()
                    };
                    if c.test_inter() && root == MPI_PROC_NULL {
                        return Ok(());
                    }
                    if me && place {
                        at.reduce_into_root_in_place(slice_mut::<T>(self.recv, self.count)?, op)?;
                    } else if me && c.test_inter() {
                        // The root group of an intercommunicator contributes nothing.
                        at.reduce_into_root(&[], slice_mut::<T>(self.recv, self.count)?, op)?;
                    } else if me {
                        at.reduce_into_root(
                            slice::<T>(self.send, self.count)?,
                            slice_mut::<T>(self.recv, self.count)?,
                            op,
                        )?;
                    } else {
                        at.reduce_into(slice::<T>(self.send, self.count)?, op)?;
                    }
                }
                Kind::Scan => {
                    let c = c.expect("a communicator");
                    if place {
                        c.scan_in_place(slice_mut::<T>(self.recv, self.count)?, op)?;
                    } else {
                        c.scan_into(
                            slice::<T>(self.send, self.count)?,
                            slice_mut::<T>(self.recv, self.count)?,
                            op,
                        )?;
                    }
                }
                Kind::Exscan => {
                    let c = c.expect("a communicator");
                    if place {
                        c.exclusive_scan_in_place(slice_mut::<T>(self.recv, self.count)?, op)?;
                    } else {
                        c.exclusive_scan_into(
                            slice::<T>(self.send, self.count)?,
                            slice_mut::<T>(self.recv, self.count)?,
                            op,
                        )?;
                    }
                }
                Kind::ReduceScatterBlock => {
                    let c = c.expect("a communicator");
                    if place {
                        let all = slice_mut::<T>(self.recv, self.recv_count * c.size() as usize)?;
                        c.reduce_scatter_block_in_place(all, op)?;
                    } else {
                        c.reduce_scatter_block_into(
                            slice::<T>(self.send, self.recv_count * c.size() as usize)?,
                            slice_mut::<T>(self.recv, self.recv_count)?,
                            op,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `MPI_Reduce_scatter`'s buffers.
struct ReduceScatter<'a> {
    comm: &'a SimpleCommunicator,
    send: *const c_void,
    recv: *mut c_void,
    counts: Vec<usize>,
}

impl Typed for ReduceScatter<'_> {
    fn run<T: Pod, O: Operation<T> + 'static>(self, op: O) -> Result {
        let total: usize = self.counts.iter().sum();
        let mine = self.counts[self.comm.rank() as usize];
        // SAFETY: the program lends its buffers for the call.
        unsafe {
            if in_place(self.send) {
                self.comm.reduce_scatter_in_place(
                    slice_mut::<T>(self.recv, total)?,
                    &self.counts,
                    op,
                )?;
            } else {
                self.comm.reduce_scatter_into(
                    slice::<T>(self.send, total)?,
                    slice_mut::<T>(self.recv, mine)?,
                    &self.counts,
                    op,
                )?;
            }
        }
        Ok(())
    }
}

// MPI's own argument list.
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
) -> c_int {
    call(name, Some(comm), || {
        let c = state::comm(comm)?;
        let n = types::count(count)?;
        if let Kind::Reduce(root) = kind {
            check_root(&c, root)?;
        }
        if in_place(send) && c.test_inter() {
            return Err(Error::new(
                class::ARG,
                "MPI_IN_PLACE is not allowed on an intercommunicator",
            ));
        }
        dispatch(
            datatype,
            op,
            alignment(&[send, recv.cast_const()]),
            Reduction {
                kind,
                comm: Some(&c),
                send,
                recv,
                count: n,
                recv_count: n,
            },
        )
    })
}

/// `counts` ints at `p`, as element counts.
///
/// # Safety
/// `p` holds `n` ints.
pub(crate) unsafe fn counts(p: *const c_int, n: usize, what: &str) -> Result<Vec<usize>> {
    if n > 0 && p.is_null() {
        return Err(Error::new(class::ARG, format!("the {what} array is null")));
    }
    (0..n)
        .map(|i| {
            // SAFETY: the caller's contract.
            let v = unsafe { *p.add(i) };
            usize::try_from(v)
                .map_err(|_| Error::new(class::COUNT, format!("{what}[{i}] = {v} is negative")))
        })
        .collect()
}

/// Scales element counts to the unit a buffer's elements are in (bytes for a builtin type).
pub(crate) fn unit(counts: Vec<usize>, ty: &Ty) -> Vec<usize> {
    match ty {
        Ty::Basic { size, .. } => counts.into_iter().map(|c| c * size).collect(),
        Ty::Laid(_) => counts,
    }
}

/// Bytes (or elements) a buffer spans for displacements `displs` and counts `counts`.
pub(crate) fn span(counts: &[usize], displs: &[usize]) -> usize {
    counts
        .iter()
        .zip(displs)
        .map(|(c, d)| c + d)
        .max()
        .unwrap_or(0)
}

/// The group size collectives address (the remote group on an intercommunicator).
pub(crate) fn peers(c: &SimpleCommunicator) -> usize {
    c.target_size() as usize
}

/// Whether this rank is the root of a rooted collective.
pub(crate) fn is_root(c: &SimpleCommunicator, root: c_int) -> bool {
    if c.test_inter() {
        root == MPI_ROOT
    } else {
        root == c.rank()
    }
}

mpi_export! {
    /// `MPI_Barrier`.
    fn MPI_Barrier / PMPI_Barrier(comm: c_int) -> c_int {
        call("MPI_Barrier", Some(comm), || Ok(state::comm(comm)?.barrier()?))
    }

    /// `MPI_Bcast`.
    fn MPI_Bcast / PMPI_Bcast(buf: *mut c_void, count: c_int, datatype: c_int, root: c_int, comm: c_int) -> c_int {
        call("MPI_Bcast", Some(comm), || {
            let c = state::comm(comm)?;
            let ty = types::ty(datatype)?;
            let n = types::count(count)?;
            check_root(&c, root)?;
            if c.test_inter() && root == MPI_PROC_NULL {
                return Ok(());
            }
            // SAFETY: the program lends the buffer for the call.
            let mut i = unsafe { incoming(buf, n, &ty)? };
            with_in!(i, |b| c.process_at_rank(root).broadcast_into(b))?;
            Ok(())
        })
    }

    /// `MPI_Reduce`.
    fn MPI_Reduce / PMPI_Reduce(sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: c_int, op: c_int, root: c_int, comm: c_int) -> c_int {
        reduction("MPI_Reduce", Kind::Reduce(root), sendbuf, recvbuf, count, datatype, op, comm)
    }

    /// `MPI_Allreduce`.
    fn MPI_Allreduce / PMPI_Allreduce(sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: c_int, op: c_int, comm: c_int) -> c_int {
        reduction("MPI_Allreduce", Kind::AllReduce, sendbuf, recvbuf, count, datatype, op, comm)
    }

    /// `MPI_Scan`.
    fn MPI_Scan / PMPI_Scan(sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: c_int, op: c_int, comm: c_int) -> c_int {
        reduction("MPI_Scan", Kind::Scan, sendbuf, recvbuf, count, datatype, op, comm)
    }

    /// `MPI_Exscan`.
    fn MPI_Exscan / PMPI_Exscan(sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: c_int, op: c_int, comm: c_int) -> c_int {
        reduction("MPI_Exscan", Kind::Exscan, sendbuf, recvbuf, count, datatype, op, comm)
    }

    /// `MPI_Reduce_scatter_block`.
    fn MPI_Reduce_scatter_block / PMPI_Reduce_scatter_block(sendbuf: *const c_void, recvbuf: *mut c_void, recvcount: c_int, datatype: c_int, op: c_int, comm: c_int) -> c_int {
        reduction("MPI_Reduce_scatter_block", Kind::ReduceScatterBlock, sendbuf, recvbuf, recvcount, datatype, op, comm)
    }

    /// `MPI_Reduce_scatter`.
    fn MPI_Reduce_scatter / PMPI_Reduce_scatter(sendbuf: *const c_void, recvbuf: *mut c_void, recvcounts: *const c_int, datatype: c_int, op: c_int, comm: c_int) -> c_int {
        call("MPI_Reduce_scatter", Some(comm), || {
            let c = state::comm(comm)?;
            if c.test_inter() {
                return Err(Error::new(class::UNSUPPORTED_OPERATION, "MPI_Reduce_scatter on an intercommunicator is not supported by onecopy"));
            }
            // SAFETY: the program passes one count per rank.
            let counts = unsafe { counts(recvcounts, c.size() as usize, "recvcounts")? };
            dispatch(datatype, op, alignment(&[sendbuf, recvbuf.cast_const()]), ReduceScatter { comm: &c, send: sendbuf, recv: recvbuf, counts })
        })
    }

    /// `MPI_Reduce_local`.
    fn MPI_Reduce_local / PMPI_Reduce_local(inbuf: *const c_void, inoutbuf: *mut c_void, count: c_int, datatype: c_int, op: c_int) -> c_int {
        call("MPI_Reduce_local", None, || {
            let n = types::count(count)?;
            dispatch(datatype, op, alignment(&[inbuf, inoutbuf.cast_const()]), Reduction { kind: Kind::Local, comm: None, send: inbuf, recv: inoutbuf, count: n, recv_count: n })
        })
    }

    /// `MPI_Op_create`.
    fn MPI_Op_create / PMPI_Op_create(func: Option<UserFn>, commute: c_int, op: *mut c_int) -> c_int {
        call("MPI_Op_create", None, || {
            let func = func.ok_or_else(|| Error::new(class::ARG, "the function is null"))?;
            if op.is_null() {
                return Err(Error::new(class::ARG, "the operation output is null"));
            }
            let i = state::with(|s| s.ops.insert(UserOp { func, commute: commute != 0 }).ok_or_else(|| Error::new(class::INTERN, "too many operations")))?;
            // SAFETY: non-null.
            unsafe { *op = handles::direct(Object::Op, i) };
            Ok(())
        })
    }

    /// `MPI_Op_free`.
    fn MPI_Op_free / PMPI_Op_free(op: *mut c_int) -> c_int {
        call("MPI_Op_free", None, || {
            if op.is_null() {
                return Err(Error::new(class::ARG, "the operation argument is null"));
            }
            // SAFETY: non-null.
            let h = unsafe { *op };
            if handles::is_builtin(Object::Op, h) {
                return Err(Error::new(class::OP, "a predefined operation cannot be freed"));
            }
            state::with(|s| {
                handles::direct_index(Object::Op, h)
                    .and_then(|i| s.ops.remove(i))
                    .map(|_| ())
                    .ok_or_else(|| Error::new(class::OP, format!("{h:#x} is not a user operation")))
            })?;
            // SAFETY: non-null.
            unsafe { *op = MPI_OP_NULL };
            Ok(())
        })
    }

    /// `MPI_Op_commutative`.
    fn MPI_Op_commutative / PMPI_Op_commutative(op: c_int, commute: *mut c_int) -> c_int {
        call("MPI_Op_commutative", None, || {
            let c = match op_of(op)? {
                Op::Builtin(_) => true,
                Op::User(u) => u.commute,
            };
            if commute.is_null() {
                return Err(Error::new(class::ARG, "commute is null"));
            }
            // SAFETY: non-null.
            unsafe { *commute = c as c_int };
            Ok(())
        })
    }

    /// `MPI_Gather`.
    fn MPI_Gather / PMPI_Gather(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, root: c_int, comm: c_int) -> c_int {
        call("MPI_Gather", Some(comm), || {
            let c = state::comm(comm)?;
            check_root(&c, root)?;
            if c.test_inter() && root == MPI_PROC_NULL {
                return Ok(());
            }
            let at = c.process_at_rank(root);
            if is_root(&c, root) {
                let rt = types::ty(recvtype)?;
                let rn = types::count(recvcount)?;
                // SAFETY: the program lends the buffers for the call.
                let mut i = unsafe { incoming(recvbuf, rn * peers(&c), &rt)? };
                if c.test_inter() {
                    let none: [u8; 0] = [];
                    with_in!(i, |r| at.gather_into_root(&none[..], r))?;
                } else if in_place(sendbuf) {
                    // Our block is already in place: send a copy of it to ourselves.
                    let own = own_block(recvbuf, rn, &rt, c.rank() as usize)?;
                    with_in!(i, |r| at.gather_into_root(&own[..], r))?;
                } else {
                    let st = types::ty(sendtype)?;
                    // SAFETY: the program lends the buffer for the call.
                    let o = unsafe { outgoing(sendbuf, types::count(sendcount)?, &st)? };
                    with_in!(i, |r| with_out!(o, |s| at.gather_into_root(s, r)))?;
                }
            } else {
                let st = types::ty(sendtype)?;
                // SAFETY: the program lends the buffer for the call.
                let o = unsafe { outgoing(sendbuf, types::count(sendcount)?, &st)? };
                with_out!(o, |s| at.gather_into(s))?;
            }
            Ok(())
        })
    }

    /// `MPI_Gatherv`.
    fn MPI_Gatherv / PMPI_Gatherv(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcounts: *const c_int, displs: *const c_int, recvtype: c_int, root: c_int, comm: c_int) -> c_int {
        call("MPI_Gatherv", Some(comm), || {
            let c = state::comm(comm)?;
            check_root(&c, root)?;
            if c.test_inter() && root == MPI_PROC_NULL {
                return Ok(());
            }
            let at = c.process_at_rank(root);
            if is_root(&c, root) {
                let rt = types::ty(recvtype)?;
                let n = peers(&c);
                // SAFETY: the program passes one count and displacement per rank.
                let (rc, rd) = unsafe { (counts(recvcounts, n, "recvcounts")?, counts(displs, n, "displs")?) };
                // SAFETY: the program lends the buffer for the call.
                let mut i = unsafe { incoming(recvbuf, span(&rc, &rd), &rt)? };
                let (rc, rd) = (unit(rc, &rt), unit(rd, &rt));
                if c.test_inter() {
                    let none: [u8; 0] = [];
                    with_in!(i, |r| at.gather_varcount_into_root(&none[..], r, &rc, &rd))?;
                } else if in_place(sendbuf) {
                    let me = c.rank() as usize;
                    // SAFETY: the program passes one count and displacement per rank.
                    let (mc, md) = unsafe { (*recvcounts.add(me), *displs.add(me)) };
                    let own = own_block_at(recvbuf, types::count(mc)?, &rt, types::count(md)?)?;
                    with_in!(i, |r| at.gather_varcount_into_root(&own[..], r, &rc, &rd))?;
                } else {
                    let st = types::ty(sendtype)?;
                    // SAFETY: the program lends the buffer for the call.
                    let o = unsafe { outgoing(sendbuf, types::count(sendcount)?, &st)? };
                    with_in!(i, |r| with_out!(o, |s| at.gather_varcount_into_root(s, r, &rc, &rd)))?;
                }
            } else {
                let st = types::ty(sendtype)?;
                // SAFETY: the program lends the buffer for the call.
                let o = unsafe { outgoing(sendbuf, types::count(sendcount)?, &st)? };
                with_out!(o, |s| at.gather_varcount_into(s))?;
            }
            Ok(())
        })
    }

    /// `MPI_Scatter`.
    fn MPI_Scatter / PMPI_Scatter(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, root: c_int, comm: c_int) -> c_int {
        call("MPI_Scatter", Some(comm), || {
            let c = state::comm(comm)?;
            check_root(&c, root)?;
            if c.test_inter() && root == MPI_PROC_NULL {
                return Ok(());
            }
            let at = c.process_at_rank(root);
            if is_root(&c, root) {
                let st = types::ty(sendtype)?;
                let sn = types::count(sendcount)?;
                // SAFETY: the program lends the buffers for the call.
                let o = unsafe { outgoing(sendbuf, sn * peers(&c), &st)? };
                if c.test_inter() || in_place(recvbuf) {
                    // Our own block stays where it is: receive it into scratch.
                    let mut scratch = vec![0u8; if c.test_inter() { 0 } else { st.size() * sn }];
                    with_out!(o, |s| at.scatter_into_root(s, &mut scratch[..]))?;
                } else {
                    let rt = types::ty(recvtype)?;
                    // SAFETY: the program lends the buffer for the call.
                    let mut i = unsafe { incoming(recvbuf, types::count(recvcount)?, &rt)? };
                    with_in!(i, |r| with_out!(o, |s| at.scatter_into_root(s, r)))?;
                }
            } else {
                let rt = types::ty(recvtype)?;
                // SAFETY: the program lends the buffer for the call.
                let mut i = unsafe { incoming(recvbuf, types::count(recvcount)?, &rt)? };
                with_in!(i, |r| at.scatter_into(r))?;
            }
            Ok(())
        })
    }

    /// `MPI_Scatterv`.
    fn MPI_Scatterv / PMPI_Scatterv(sendbuf: *const c_void, sendcounts: *const c_int, displs: *const c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, root: c_int, comm: c_int) -> c_int {
        call("MPI_Scatterv", Some(comm), || {
            let c = state::comm(comm)?;
            check_root(&c, root)?;
            if c.test_inter() && root == MPI_PROC_NULL {
                return Ok(());
            }
            let at = c.process_at_rank(root);
            if is_root(&c, root) {
                let st = types::ty(sendtype)?;
                let n = peers(&c);
                // SAFETY: the program passes one count and displacement per rank.
                let (sc, sd) = unsafe { (counts(sendcounts, n, "sendcounts")?, counts(displs, n, "displs")?) };
                // SAFETY: the program lends the buffer for the call.
                let o = unsafe { outgoing(sendbuf, span(&sc, &sd), &st)? };
                let mine = if c.test_inter() { 0 } else { sc[c.rank() as usize] * st.size() };
                let (sc, sd) = (unit(sc, &st), unit(sd, &st));
                if c.test_inter() || in_place(recvbuf) {
                    let mut scratch = vec![0u8; mine];
                    with_out!(o, |s| at.scatter_varcount_into_root(s, &sc, &sd, &mut scratch[..]))?;
                } else {
                    let rt = types::ty(recvtype)?;
                    // SAFETY: the program lends the buffer for the call.
                    let mut i = unsafe { incoming(recvbuf, types::count(recvcount)?, &rt)? };
                    with_in!(i, |r| with_out!(o, |s| at.scatter_varcount_into_root(s, &sc, &sd, r)))?;
                }
            } else {
                let rt = types::ty(recvtype)?;
                // SAFETY: the program lends the buffer for the call.
                let mut i = unsafe { incoming(recvbuf, types::count(recvcount)?, &rt)? };
                with_in!(i, |r| at.scatter_varcount_into(r))?;
            }
            Ok(())
        })
    }

    /// `MPI_Allgather`.
    fn MPI_Allgather / PMPI_Allgather(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, comm: c_int) -> c_int {
        call("MPI_Allgather", Some(comm), || {
            let c = state::comm(comm)?;
            let rt = types::ty(recvtype)?;
            let rn = types::count(recvcount)?;
            if in_place(sendbuf) {
                if c.test_inter() {
                    return Err(Error::new(class::ARG, "MPI_IN_PLACE is not allowed on an intercommunicator"));
                }
                if let Ty::Basic { size, .. } = rt {
                    // SAFETY: the program lends the buffer for the call.
                    let all = unsafe { types::bytes_mut(recvbuf, 0, size * rn * peers(&c)) };
                    if !all.is_empty() || rn == 0 {
                        c.all_gather_in_place(all)?;
                    }
                    return Ok(());
                }
                let own = own_block(recvbuf, rn, &rt, c.rank() as usize)?;
                // SAFETY: the program lends the buffer for the call.
                let mut i = unsafe { incoming(recvbuf, rn * peers(&c), &rt)? };
                with_in!(i, |r| c.all_gather_into(&own[..], r))?;
                return Ok(());
            }
            let st = types::ty(sendtype)?;
            // SAFETY: the program lends the buffers for the call.
            let o = unsafe { outgoing(sendbuf, types::count(sendcount)?, &st)? };
            // SAFETY: as above.
            let mut i = unsafe { incoming(recvbuf, rn * peers(&c), &rt)? };
            with_in!(i, |r| with_out!(o, |s| c.all_gather_into(s, r)))?;
            Ok(())
        })
    }

    /// `MPI_Allgatherv`.
    fn MPI_Allgatherv / PMPI_Allgatherv(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcounts: *const c_int, displs: *const c_int, recvtype: c_int, comm: c_int) -> c_int {
        call("MPI_Allgatherv", Some(comm), || {
            let c = state::comm(comm)?;
            let rt = types::ty(recvtype)?;
            let n = peers(&c);
            // SAFETY: the program passes one count and displacement per rank.
            let (rc, rd) = unsafe { (counts(recvcounts, n, "recvcounts")?, counts(displs, n, "displs")?) };
            // SAFETY: the program lends the buffer for the call.
            let mut i = unsafe { incoming(recvbuf, span(&rc, &rd), &rt)? };
            if in_place(sendbuf) {
                if c.test_inter() {
                    return Err(Error::new(class::ARG, "MPI_IN_PLACE is not allowed on an intercommunicator"));
                }
                let me = c.rank() as usize;
                let own = own_block_at(recvbuf, rc[me], &rt, rd[me])?;
                let (rc, rd) = (unit(rc, &rt), unit(rd, &rt));
                with_in!(i, |r| c.all_gather_varcount_into(&own[..], r, &rc, &rd))?;
                return Ok(());
            }
            let (rc, rd) = (unit(rc, &rt), unit(rd, &rt));
            let st = types::ty(sendtype)?;
            // SAFETY: the program lends the buffer for the call.
            let o = unsafe { outgoing(sendbuf, types::count(sendcount)?, &st)? };
            with_in!(i, |r| with_out!(o, |s| c.all_gather_varcount_into(s, r, &rc, &rd)))?;
            Ok(())
        })
    }

    /// `MPI_Alltoall`.
    fn MPI_Alltoall / PMPI_Alltoall(sendbuf: *const c_void, sendcount: c_int, sendtype: c_int, recvbuf: *mut c_void, recvcount: c_int, recvtype: c_int, comm: c_int) -> c_int {
        call("MPI_Alltoall", Some(comm), || {
            let c = state::comm(comm)?;
            let rt = types::ty(recvtype)?;
            let rn = types::count(recvcount)?;
            if in_place(sendbuf) {
                if c.test_inter() {
                    return Err(Error::new(class::ARG, "MPI_IN_PLACE is not allowed on an intercommunicator"));
                }
                let Ty::Basic { size, .. } = rt else {
                    return Err(Error::new(class::UNSUPPORTED_OPERATION, "MPI_Alltoall in place with a derived datatype is not supported by onecopy"));
                };
                // SAFETY: the program lends the buffer for the call.
                let all = unsafe { types::bytes_mut(recvbuf, 0, size * rn * peers(&c)) };
                c.all_to_all_in_place(all)?;
                return Ok(());
            }
            let st = types::ty(sendtype)?;
            // SAFETY: the program lends the buffers for the call.
            let o = unsafe { outgoing(sendbuf, types::count(sendcount)? * peers(&c), &st)? };
            // SAFETY: as above.
            let mut i = unsafe { incoming(recvbuf, rn * peers(&c), &rt)? };
            with_in!(i, |r| with_out!(o, |s| c.all_to_all_into(s, r)))?;
            Ok(())
        })
    }

    /// `MPI_Alltoallv`.
    fn MPI_Alltoallv / PMPI_Alltoallv(sendbuf: *const c_void, sendcounts: *const c_int, sdispls: *const c_int, sendtype: c_int, recvbuf: *mut c_void, recvcounts: *const c_int, rdispls: *const c_int, recvtype: c_int, comm: c_int) -> c_int {
        call("MPI_Alltoallv", Some(comm), || {
            let c = state::comm(comm)?;
            let n = peers(&c);
            let rt = types::ty(recvtype)?;
            // SAFETY: the program passes one count and displacement per rank.
            let (rc, rd) = unsafe { (counts(recvcounts, n, "recvcounts")?, counts(rdispls, n, "rdispls")?) };
            if in_place(sendbuf) {
                return Err(Error::new(class::UNSUPPORTED_OPERATION, "MPI_Alltoallv in place is not supported by onecopy"));
            }
            let st = types::ty(sendtype)?;
            // SAFETY: as above.
            let (sc, sd) = unsafe { (counts(sendcounts, n, "sendcounts")?, counts(sdispls, n, "sdispls")?) };
            // SAFETY: the program lends the buffers for the call.
            let o = unsafe { outgoing(sendbuf, span(&sc, &sd), &st)? };
            // SAFETY: as above.
            let mut i = unsafe { incoming(recvbuf, span(&rc, &rd), &rt)? };
            let (sc, sd, rc, rd) = (unit(sc, &st), unit(sd, &st), unit(rc, &rt), unit(rd, &rt));
            with_in!(i, |r| with_out!(o, |s| c.all_to_all_varcount_into(s, &sc, &sd, r, &rc, &rd)))?;
            Ok(())
        })
    }
}

/// A copy of block `index` of `count` elements of `ty` in `buf`, packed.
fn own_block(buf: *mut c_void, count: usize, ty: &Ty, index: usize) -> Result<Vec<u8>> {
    own_block_at(buf, count, ty, index * count)
}

/// A copy of `count` elements of `ty` starting `at` elements into `buf`, packed.
fn own_block_at(buf: *mut c_void, count: usize, ty: &Ty, at: usize) -> Result<Vec<u8>> {
    let (_, extent) = ty.extent();
    let start = buf
        .cast::<u8>()
        .wrapping_offset(extent * at as isize)
        .cast::<c_void>();
    // SAFETY: the program lends the buffer for the call.
    let o = unsafe { outgoing(start, count, ty)? };
    let mut packed = vec![0u8; ty.size() * count];
    match &o.view_ref() {
        None => packed.copy_from_slice(o.bytes_ref()),
        Some(v) => {
            v.pack_into(&mut packed)?;
        }
    }
    Ok(packed)
}

/// A block of `MPI_Alltoallw`: count, byte displacement, datatype.
type WBlock = (usize, usize, onecopy::datatype::Datatype);

/// One side of `MPI_Alltoallw`: a datatype, count and byte displacement per rank, and the
/// bytes the blocks span from the buffer start.
fn w_blocks(
    n: usize,
    counts: *const c_int,
    displs: *const c_int,
    types: *const c_int,
    what: &str,
) -> Result<(Vec<WBlock>, usize)> {
    // SAFETY: the program passes one count, displacement and type per rank.
    let (c, d) = unsafe {
        (
            self::counts(counts, n, what)?,
            self::counts(displs, n, what)?,
        )
    };
    if n > 0 && types.is_null() {
        return Err(Error::new(
            class::ARG,
            format!("the {what} types array is null"),
        ));
    }
    let mut blocks = Vec::with_capacity(n);
    let mut span = 0usize;
    for i in 0..n {
        // SAFETY: the program passes `n` types.
        let t = types::ty(unsafe { *types.add(i) })?;
        let datatype = t.datatype();
        if let Some((lb, ub)) = datatype.layout_bounds(c[i])? {
            if d[i] as isize + lb < 0 {
                return Err(Error::new(
                    class::UNSUPPORTED_OPERATION,
                    format!(
                        "{what}: a block before its buffer's start is not supported by onecopy"
                    ),
                ));
            }
            span = span.max((d[i] as isize + ub) as usize);
        }
        blocks.push((c[i], d[i], datatype));
    }
    Ok((blocks, span))
}

mpi_export! {
    /// `MPI_Alltoallw`: a datatype per block, displacements in bytes.
    fn MPI_Alltoallw / PMPI_Alltoallw(sendbuf: *const c_void, sendcounts: *const c_int, sdispls: *const c_int, sendtypes: *const c_int, recvbuf: *mut c_void, recvcounts: *const c_int, rdispls: *const c_int, recvtypes: *const c_int, comm: c_int) -> c_int {
        call("MPI_Alltoallw", Some(comm), || {
            let c = state::comm(comm)?;
            if in_place(sendbuf) {
                return Err(Error::new(class::UNSUPPORTED_OPERATION, "MPI_Alltoallw in place is not supported by onecopy"));
            }
            let n = peers(&c);
            let (sb, sspan) = w_blocks(n, sendcounts, sdispls, sendtypes, "sendcounts")?;
            let (rb, rspan) = w_blocks(n, recvcounts, rdispls, recvtypes, "recvcounts")?;
            let sends: Vec<onecopy::collective::TypedBlock<'_>> = sb.iter().map(|(k, d, t)| onecopy::collective::TypedBlock::new(*k, *d, t)).collect();
            let recvs: Vec<onecopy::collective::TypedBlock<'_>> = rb.iter().map(|(k, d, t)| onecopy::collective::TypedBlock::new(*k, *d, t)).collect();
            if (sspan > 0 && sendbuf.is_null()) || (rspan > 0 && recvbuf.is_null()) {
                return Err(Error::new(class::BUFFER, "a buffer is null"));
            }
            // SAFETY: the program lends the buffers for the call, spanning the blocks.
            let (s, r) = unsafe { (types::bytes(sendbuf, 0, sspan), types::bytes_mut(recvbuf, 0, rspan)) };
            c.all_to_all_w_into(s, &sends, r, &recvs)?;
            Ok(())
        })
    }
}
