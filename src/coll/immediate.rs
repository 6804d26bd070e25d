//! Nonblocking collectives (`MPI_Ibarrier`, `MPI_Ibcast`, `MPI_Iallreduce`, ...), with rsmpi's
//! `immediate_*` names, as the [`ImmediateCollectives`] and [`ImmediateRoot`] traits
//! (`use onecopy::traits::*`).
//!
//! Each call builds a *schedule* at once: rounds of sends and receives in the communicator's
//! collective context, and local steps (copies, reductions), into buffers the request borrows
//! for its scope and temporaries the schedule owns (see the engine's `schedule.rs`). The first
//! round is posted before the call returns; every later call into the runtime (a wait or test
//! of any request, any blocking operation) moves every schedule on, and a round starts once the
//! one before has finished. The request is an ordinary [`Request`]: `wait`, `test`,
//! [`crate::request::wait_all`] and its siblings, scopes and `free` work as for point to point.
//!
//! Several may be in flight at once on one communicator, with blocking collectives and point to
//! point between them: every rank numbers the nonblocking collectives of a communicator in the
//! order it issues them (MPI's rule: every rank issues them in the same order), and each one's
//! messages carry its number and kind in a tag range of their own, so that they never meet
//! another collective's.
//!
//! The algorithms are fixed by the rank count and sizes alone, so float results are the same
//! bits on every run: barrier by dissemination; broadcast down a binomial tree; reduce up a
//! binomial tree in rank order (right for non-commutative operations), then to the root;
//! all-reduce by recursive doubling, folding the ranks beyond a power of two in first; gather
//! and scatter linearly; all-gather around a ring; all-to-all all at once; scans by recursive
//! doubling that keeps operands in rank order; reduce-scatter as a reduce to rank 0 and a
//! scatter.
//!
//! Intercommunicators are not supported yet: every call on one returns
//! [`CommError::InvalidArgument`].

use std::ops::Range;
use std::rc::Rc;

use bytemuck::Pod;

use super::{Operation, all_to_all_block, check_root, check_same_length, equal_blocks, ranges};
use crate::comm::tags::immediate as kind;
use crate::comm::{Action, CommCore, CommError, Communicator, Process, Rank, RecvBuf, Schedule};
use crate::comm::{SendBuf, Shape};
use crate::request::{Request, Scope, StaticScope};

/// Memory an action of a schedule points at: a part of a buffer the request borrows, or of a
/// temporary the schedule owns.
struct Span<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Clone for Span<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Span<T> {}

impl<T: Pod> Span<T> {
    /// `data`, which schedules only read.
    fn of(data: &[T]) -> Span<T> {
        Span {
            ptr: data.as_ptr() as *mut T,
            len: data.len(),
        }
    }

    fn of_mut(data: &mut [T]) -> Span<T> {
        Span {
            ptr: data.as_mut_ptr(),
            len: data.len(),
        }
    }

    /// Elements `r` of this span (checked by the caller to lie inside it).
    fn part(self, r: Range<usize>) -> Span<T> {
        assert!(
            r.start <= r.end && r.end <= self.len,
            "{r:?} of {}",
            self.len
        );
        Span {
            ptr: self.ptr.wrapping_add(r.start),
            len: r.len(),
        }
    }

    /// The bytes `r` of this span (checked by the caller to lie inside it).
    fn bytes(self, r: Range<usize>) -> Span<T> {
        let size = std::mem::size_of::<T>().max(1);
        debug_assert!(r.start.is_multiple_of(size) && r.end.is_multiple_of(size));
        self.part(r.start / size..r.end / size)
    }

    fn byte_len(self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// # Safety
    /// The span's memory is valid, and nothing writes it while the slice lives.
    unsafe fn get<'x>(self) -> &'x [T] {
        // SAFETY: the caller's contract; the pointer comes from a slice of `len` elements.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// # Safety
    /// The span's memory is valid, and nothing else reads or writes it while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get_mut<'x>(self) -> &'x mut [T] {
        // SAFETY: the caller's contract; the pointer comes from a slice of `len` elements.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Which operand of a reduction step is kept.
#[derive(Clone, Copy)]
enum Fold {
    /// `acc = acc op other`: `acc` holds the lower ranks' part.
    Left,
    /// `acc = other op acc`: `other` holds the lower ranks' part.
    Right,
}

/// A schedule being built, round by round, for one collective on `comm`.
///
/// Everything an action points at is either borrowed by the request for `'a` (checked by the
/// signatures of the collectives below) or owned by the schedule, and the actions of one round
/// never write what another action of the round reads or writes (each collective's algorithm
/// below is written so). That is the contract [`Plan::start`] hands the engine.
struct Plan<'c, 'a> {
    comm: &'c Rc<CommCore>,
    schedule: Schedule,
    round: Vec<Action>,
    _borrows: std::marker::PhantomData<&'a ()>,
}

impl<'c, 'a> Plan<'c, 'a> {
    /// A schedule for the next nonblocking collective of kind `kind` on `comm`.
    fn new(comm: &'c Rc<CommCore>, kind: i32) -> Plan<'c, 'a> {
        let tag = comm.next_immediate_tag(kind);
        Plan {
            comm,
            schedule: Schedule::new(comm.coll_context(), tag),
            round: Vec::new(),
            _borrows: std::marker::PhantomData,
        }
    }

    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    /// A temporary of `len` elements, owned by the schedule.
    fn temp<T: Pod>(&mut self, len: usize) -> Span<T> {
        let mut v = vec![T::zeroed(); len];
        let span = Span::of_mut(&mut v);
        // The vector's elements stay where they are when the vector moves into the schedule.
        self.schedule.keep(Box::new(v));
        span
    }

    /// Sends `data` to rank `to` in this round.
    fn send<T: Pod>(&mut self, to: usize, data: Span<T>) -> Result<(), CommError> {
        let dest = self.comm.world_of(to as Rank)?;
        self.round.push(Action::Send {
            dest,
            data: SendBuf {
                ptr: data.ptr as *const u8,
                len: data.byte_len(),
                shape: Shape::Bytes,
            },
        });
        Ok(())
    }

    /// Receives exactly `into`'s length from rank `from` in this round.
    fn receive<T: Pod>(&mut self, from: usize, into: Span<T>) -> Result<(), CommError> {
        let source = self.comm.world_of(from as Rank)?;
        self.round.push(Action::Receive {
            source,
            buf: RecvBuf::plain(into.ptr as *mut u8, into.byte_len()),
        });
        Ok(())
    }

    /// Copies `from` into `to` (of one length) when this round starts.
    fn copy<T: Pod>(&mut self, from: Span<T>, to: Span<T>) {
        debug_assert_eq!(from.len, to.len);
        self.local(move || {
            // SAFETY: both are valid until the schedule ends, distinct buffers (or distinct
            // blocks of one), and no request of the schedule touches them while a round starts.
            unsafe { to.get_mut().copy_from_slice(from.get()) }
        });
    }

    /// Folds `other` into `acc` (of one length) with `op` when this round starts.
    fn reduce<T: Pod, O: Operation<T> + 'a>(
        &mut self,
        op: &Rc<O>,
        acc: Span<T>,
        other: Span<T>,
        into: Fold,
    ) {
        let op = op.clone();
        self.local(move || {
            // SAFETY: as in `copy`.
            let (acc, other) = unsafe { (acc.get_mut(), other.get()) };
            match into {
                Fold::Left => op.reduce_into_left(acc, other),
                Fold::Right => op.reduce_into_right(other, acc),
            }
        });
    }

    fn local(&mut self, f: impl FnMut() + 'a) {
        let f: Box<dyn FnMut() + 'a> = Box::new(f);
        // SAFETY: only the lifetime changes. The engine drops the step and what it captures when
        // the schedule ends, within the call that finishes the request (or gives it up), and a
        // request of scope `'a` finishes before `'a` ends: its scope waits for it, and dropping
        // it waits too. A plan that is never started drops the step here.
        let f: Box<dyn FnMut()> = unsafe { std::mem::transmute(f) };
        self.round.push(Action::Local(f));
    }

    /// Ends the current round: what comes next starts once it has finished.
    fn next_round(&mut self) {
        let round = std::mem::take(&mut self.round);
        self.schedule.round(round);
    }

    /// Starts the schedule: its first round is posted now.
    fn start<S: Scope<'a>>(mut self, scope: S) -> Request<'a, S> {
        self.next_round();
        // SAFETY: see the type's documentation: every span points into memory borrowed for `'a`
        // by the request made here, or owned by the schedule.
        let id = unsafe { self.comm.start_schedule(self.schedule) };
        Request::new(self.comm, id, false, scope)
    }
}

fn invalid(what: impl Into<String>) -> CommError {
    CommError::InvalidArgument(what.into())
}

/// Starts an inclusive (`exclusive`: exclusive) scan of `send` into `recv`.
fn start_scan<'a, S: Scope<'a>, T: Pod, O: Operation<T> + 'a>(
    c: &Rc<CommCore>,
    scope: S,
    send: &'a [T],
    recv: &'a mut [T],
    op: O,
    exclusive: bool,
) -> Result<Request<'a, S>, CommError> {
    let what = if exclusive {
        "immediate_exclusive_scan_into"
    } else {
        "immediate_scan_into"
    };
    intra(c, what)?;
    let mut plan = Plan::new(c, if exclusive { kind::EXSCAN } else { kind::SCAN });
    check_same_length(what, send, recv)?;
    scan(
        &mut plan,
        Span::of(send),
        Span::of_mut(recv),
        &Rc::new(op),
        exclusive,
    )?;
    Ok(plan.start(scope))
}

/// An error for an intercommunicator, which these collectives do not support yet.
fn intra(comm: &CommCore, what: &str) -> Result<(), CommError> {
    if comm.is_inter() {
        return Err(invalid(format!(
            "{what}: nonblocking collectives on an intercommunicator are not supported yet"
        )));
    }
    Ok(())
}

/// The byte ranges of blocks that receives write: they must not overlap.
fn check_disjoint(blocks: &[Range<usize>], what: &str) -> Result<(), CommError> {
    let mut sorted: Vec<&Range<usize>> = blocks.iter().filter(|b| !b.is_empty()).collect();
    sorted.sort_by_key(|b| b.start);
    for pair in sorted.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(invalid(format!(
                "{what}: receive blocks {:?} and {:?} overlap",
                pair[0], pair[1]
            )));
        }
    }
    Ok(())
}

/// Dissemination: in round k every rank sends to r + 2^k and receives from r - 2^k.
fn barrier(plan: &mut Plan<'_, '_>) -> Result<(), CommError> {
    let (n, r) = (plan.size(), plan.rank());
    let empty = Span::<u8>::of(&[]);
    let mut k = 1;
    while k < n {
        plan.send((r + k) % n, empty)?;
        plan.receive((r + n - k) % n, empty)?;
        plan.next_round();
        k *= 2;
    }
    Ok(())
}

/// Down a binomial tree from `root`: receive from the parent, then send to every child at once.
fn broadcast<T: Pod>(plan: &mut Plan<'_, '_>, root: usize, buf: Span<T>) -> Result<(), CommError> {
    let (n, r) = (plan.size(), plan.rank());
    let vr = (r + n - root) % n;
    let abs = |v: usize| (v + root) % n;
    let mut mask = 1;
    while mask < n {
        if vr & mask != 0 {
            plan.receive(abs(vr - mask), buf)?;
            plan.next_round();
            break;
        }
        mask <<= 1;
    }
    mask >>= 1;
    while mask > 0 {
        if vr + mask < n {
            plan.send(abs(vr + mask), buf)?;
        }
        mask >>= 1;
    }
    Ok(())
}

/// Up a binomial tree to rank 0, in rank order: rank r combines its part with r + 1, r + 2,
/// r + 4, ... (each holding the ranks above it up to the next), then hands the result to its
/// parent. On rank 0 the result lands in `into` (of `send`'s length).
fn reduce_to_zero<'a, T: Pod, O: Operation<T> + 'a>(
    plan: &mut Plan<'_, 'a>,
    send: Span<T>,
    into: Option<Span<T>>,
    op: &Rc<O>,
) -> Result<(), CommError> {
    let (n, r) = (plan.size(), plan.rank());
    let has_children = r + 1 < n && r % 2 == 0;
    // Leaves send their own buffer; the others combine into an accumulator.
    let (acc, incoming) = if has_children || r == 0 {
        let acc = match into {
            Some(into) if r == 0 => into,
            _ => plan.temp(send.len),
        };
        plan.copy(send, acc);
        (acc, plan.temp(if has_children { send.len } else { 0 }))
    } else {
        (send, send)
    };
    let mut mask = 1;
    while mask < n {
        if r & mask != 0 {
            plan.send(r - mask, acc)?;
            plan.next_round();
            return Ok(());
        }
        if r + mask < n {
            plan.receive(r + mask, incoming)?;
            plan.next_round();
            plan.reduce(op, acc, incoming, Fold::Left);
        }
        mask <<= 1;
    }
    plan.next_round();
    Ok(())
}

/// Reduce to `root`: up the tree to rank 0, then from rank 0 to the root.
fn reduce<'a, T: Pod, O: Operation<T> + 'a>(
    plan: &mut Plan<'_, 'a>,
    root: usize,
    send: Span<T>,
    recv: Option<Span<T>>,
    op: &Rc<O>,
) -> Result<(), CommError> {
    let r = plan.rank();
    if root == 0 {
        return reduce_to_zero(plan, send, recv, op);
    }
    let on_zero = (r == 0).then(|| plan.temp(send.len));
    reduce_to_zero(plan, send, on_zero, op)?;
    match (r, on_zero, recv) {
        (0, Some(result), _) => plan.send(root, result)?,
        (_, _, Some(recv)) if r == root => plan.receive(0, recv)?,
        _ => {}
    }
    plan.next_round();
    Ok(())
}

/// Recursive doubling over the largest power of two of ranks; the first 2 × (n - that) ranks
/// fold pairwise into one first (the even one hands its part to the odd one above it, and gets
/// the result back at the end). Pairs combine the same operands in the same order, so every rank
/// gets the same bits.
fn all_reduce<'a, T: Pod, O: Operation<T> + 'a>(
    plan: &mut Plan<'_, 'a>,
    send: Span<T>,
    acc: Span<T>,
    op: &Rc<O>,
) -> Result<(), CommError> {
    let (n, r) = (plan.size(), plan.rank());
    if n == 1 {
        plan.copy(send, acc);
        return Ok(());
    }
    let pof2 = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let rem = n - pof2;
    if r < 2 * rem && r % 2 == 0 {
        // Folded into r + 1, which sends the result back.
        plan.send(r + 1, send)?;
        plan.receive(r + 1, acc)?;
        plan.next_round();
        return Ok(());
    }
    let incoming = plan.temp(send.len);
    plan.copy(send, acc);
    let me = if r < 2 * rem {
        plan.receive(r - 1, incoming)?;
        plan.next_round();
        plan.reduce(op, acc, incoming, Fold::Right);
        r / 2
    } else {
        r - rem
    };
    let mut mask = 1;
    while mask < pof2 {
        let partner = me ^ mask;
        let dst = if partner < rem {
            partner * 2 + 1
        } else {
            partner + rem
        };
        plan.send(dst, acc)?;
        plan.receive(dst, incoming)?;
        plan.next_round();
        let into = if dst < r { Fold::Right } else { Fold::Left };
        plan.reduce(op, acc, incoming, into);
        mask <<= 1;
    }
    if r < 2 * rem {
        plan.send(r - 1, acc)?;
    }
    plan.next_round();
    Ok(())
}

/// Inclusive (`exclusive == false`) or exclusive prefix reduction by recursive doubling: in
/// step k rank r trades its partial result with r xor 2^k; the lower one's part goes on the
/// left. Whether this rank's result holds anything yet is known when the schedule is built.
fn scan<'a, T: Pod, O: Operation<T> + 'a>(
    plan: &mut Plan<'_, 'a>,
    send: Span<T>,
    recv: Span<T>,
    op: &Rc<O>,
    exclusive: bool,
) -> Result<(), CommError> {
    let (n, r) = (plan.size(), plan.rank());
    if !exclusive {
        plan.copy(send, recv);
    }
    if n == 1 {
        return Ok(());
    }
    let partial = plan.temp(send.len);
    let incoming = plan.temp(send.len);
    plan.copy(send, partial);
    let mut has_result = !exclusive;
    let mut mask = 1;
    while mask < n {
        let dst = r ^ mask;
        if dst < n {
            plan.send(dst, partial)?;
            plan.receive(dst, incoming)?;
            plan.next_round();
            if r > dst {
                plan.reduce(op, partial, incoming, Fold::Right);
                if has_result {
                    plan.reduce(op, recv, incoming, Fold::Right);
                } else {
                    plan.copy(incoming, recv);
                    has_result = true;
                }
            } else {
                plan.reduce(op, partial, incoming, Fold::Left);
            }
        }
        mask <<= 1;
    }
    plan.next_round();
    Ok(())
}

/// Linear gather to `root`: the root posts every receive at once. `blocks`: byte ranges of
/// `recv` per rank (on the root).
fn gather<T: Pod>(
    plan: &mut Plan<'_, '_>,
    root: usize,
    send: Span<T>,
    recv: Option<(Span<T>, Vec<Range<usize>>)>,
) -> Result<(), CommError> {
    let r = plan.rank();
    match recv {
        Some((recv, blocks)) => {
            for (i, b) in blocks.into_iter().enumerate() {
                if i == r {
                    plan.copy(send, recv.bytes(b));
                } else {
                    plan.receive(i, recv.bytes(b))?;
                }
            }
        }
        None => plan.send(root, send)?,
    }
    plan.next_round();
    Ok(())
}

/// Linear scatter from `root`: the root posts every send at once. `blocks`: byte ranges of
/// `send` per rank (on the root).
fn scatter<T: Pod>(
    plan: &mut Plan<'_, '_>,
    root: usize,
    send: Option<(Span<T>, Vec<Range<usize>>)>,
    recv: Span<T>,
) -> Result<(), CommError> {
    let r = plan.rank();
    match send {
        Some((send, blocks)) => {
            for (i, b) in blocks.into_iter().enumerate() {
                if i == r {
                    plan.copy(send.bytes(b), recv);
                } else {
                    plan.send(i, send.bytes(b))?;
                }
            }
        }
        None => plan.receive(root, recv)?,
    }
    plan.next_round();
    Ok(())
}

/// Ring all-gather: rank r's block goes to `recv`'s block r, then in step k each rank passes
/// block r - k to the next rank and takes block r - k - 1 from the previous one.
fn all_gather<T: Pod>(
    plan: &mut Plan<'_, '_>,
    send: Span<T>,
    recv: Span<T>,
    blocks: &[Range<usize>],
) -> Result<(), CommError> {
    let (n, r) = (plan.size(), plan.rank());
    plan.copy(send, recv.bytes(blocks[r].clone()));
    let (next, prev) = ((r + 1) % n, (r + n - 1) % n);
    for k in 0..n - 1 {
        plan.send(next, recv.bytes(blocks[(r + n - k) % n].clone()))?;
        plan.receive(prev, recv.bytes(blocks[(r + 2 * n - k - 1) % n].clone()))?;
        plan.next_round();
    }
    plan.next_round();
    Ok(())
}

/// All-to-all with every send and receive posted at once; this rank's own block is copied.
fn all_to_all<T: Pod>(
    plan: &mut Plan<'_, '_>,
    send: Span<T>,
    send_blocks: &[Range<usize>],
    recv: Span<T>,
    recv_blocks: &[Range<usize>],
) -> Result<(), CommError> {
    let (n, r) = (plan.size(), plan.rank());
    let own = (
        send.bytes(send_blocks[r].clone()),
        recv.bytes(recv_blocks[r].clone()),
    );
    if own.0.len != own.1.len {
        return Err(invalid(format!(
            "all_to_all_varcount_into: {} elements to send to this rank, {} to receive from it",
            own.0.len, own.1.len
        )));
    }
    plan.copy(own.0, own.1);
    // Sends first: those that fit a ring record are on their way before the receives' work.
    for k in 1..n {
        let to = (r + k) % n;
        plan.send(to, send.bytes(send_blocks[to].clone()))?;
    }
    for k in 1..n {
        let from = (r + n - k) % n;
        plan.receive(from, recv.bytes(recv_blocks[from].clone()))?;
    }
    plan.next_round();
    Ok(())
}

/// Nonblocking collectives of a whole communicator (rsmpi's `immediate_*` methods of
/// `CommunicatorCollectives`; `use onecopy::traits::*`). Each returns a request that borrows
/// its buffers for `scope`; every rank must issue the same nonblocking collectives on a
/// communicator in the same order. Intracommunicators only, for now: on an intercommunicator
/// each returns [`CommError::InvalidArgument`].
///
/// ```no_run
/// use onecopy::collective::SystemOperation;
/// use onecopy::traits::*;
/// let universe = onecopy::initialize().expect("run me with `onecopy run`");
/// let world = universe.world();
/// let mine = [world.rank() as i64; 4];
/// let mut sum = [0i64; 4];
/// onecopy::request::scope(|scope| -> Result<(), onecopy::CommError> {
///     let reduced = world.immediate_all_reduce_into(scope, &mine, &mut sum, SystemOperation::sum())?;
///     // ... work that does not touch `sum` ...
///     reduced.wait()?;
///     Ok(())
/// })?;
/// # Ok::<(), onecopy::CommError>(())
/// ```
pub trait ImmediateCollectives: Communicator {
    /// Starts a barrier (`MPI_Ibarrier`): the request finishes once every rank has started it.
    fn immediate_barrier(&self) -> Result<Request<'static, StaticScope>, CommError> {
        let c = self.core();
        intra(c, "immediate_barrier")?;
        let mut plan = Plan::new(c, kind::BARRIER);
        barrier(&mut plan)?;
        Ok(plan.start(StaticScope))
    }

    /// Starts an all-reduce (`MPI_Iallreduce`): `recv = x0 op x1 op ... op x(n-1)` over every
    /// rank's `send`, the same bits on every rank.
    fn immediate_all_reduce_into<'a, S: Scope<'a>, T: Pod, O: Operation<T> + 'a>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
        op: O,
    ) -> Result<Request<'a, S>, CommError> {
        let c = self.core();
        intra(c, "immediate_all_reduce_into")?;
        let mut plan = Plan::new(c, kind::ALLREDUCE);
        check_same_length("immediate_all_reduce_into", send, recv)?;
        all_reduce(&mut plan, Span::of(send), Span::of_mut(recv), &Rc::new(op))?;
        Ok(plan.start(scope))
    }

    /// Starts an all-gather (`MPI_Iallgather`): every rank's `send` (one length everywhere)
    /// lands in every rank's `recv`, in rank order.
    fn immediate_all_gather_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError> {
        let c = self.core();
        intra(c, "immediate_all_gather_into")?;
        let mut plan = Plan::new(c, kind::ALLGATHER);
        let (n, each) = (c.size() as usize, send.len());
        if recv.len() != n * each {
            return Err(invalid(format!(
                "immediate_all_gather_into: {} receive elements for {n} ranks of {each}",
                recv.len()
            )));
        }
        let (counts, displs) = equal_blocks(n, each);
        let blocks = ranges::<T>(n, &counts, &displs, recv.len(), "immediate_all_gather_into")?;
        all_gather(&mut plan, Span::of(send), Span::of_mut(recv), &blocks)?;
        Ok(plan.start(scope))
    }

    /// Starts a variable-count all-gather (`MPI_Iallgatherv`): rank `i`'s `send`
    /// (`counts[i]` elements) lands at `recv[displs[i]..]` on every rank.
    fn immediate_all_gather_varcount_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<Request<'a, S>, CommError> {
        let c = self.core();
        let what = "immediate_all_gather_varcount_into";
        intra(c, what)?;
        let mut plan = Plan::new(c, kind::ALLGATHER);
        let (n, r) = (c.size() as usize, c.rank() as usize);
        let blocks = ranges::<T>(n, counts, displs, recv.len(), what)?;
        check_disjoint(&blocks, what)?;
        if send.len() != counts[r] {
            return Err(invalid(format!(
                "{what}: {} elements to send, counts[{r}] is {}",
                send.len(),
                counts[r]
            )));
        }
        all_gather(&mut plan, Span::of(send), Span::of_mut(recv), &blocks)?;
        Ok(plan.start(scope))
    }

    /// Starts an all-to-all (`MPI_Ialltoall`): rank `i` sends block `j` of its `send` to rank
    /// `j`, which stores it as block `i` of its `recv`; blocks are `send.len() / size` elements.
    fn immediate_all_to_all_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError> {
        let c = self.core();
        intra(c, "immediate_all_to_all_into")?;
        let mut plan = Plan::new(c, kind::ALLTOALL);
        let n = c.size() as usize;
        let each = all_to_all_block(n, send, recv)?;
        let (counts, displs) = equal_blocks(n, each);
        let blocks = ranges::<T>(n, &counts, &displs, send.len(), "immediate_all_to_all_into")?;
        let (s, r) = (Span::of(send), Span::of_mut(recv));
        all_to_all(&mut plan, s, &blocks, r, &blocks)?;
        Ok(plan.start(scope))
    }

    /// Starts a variable-count all-to-all (`MPI_Ialltoallv`): rank `i` sends
    /// `send[send_displs[j]..][..send_counts[j]]` to rank `j`, which stores it at
    /// `recv[recv_displs[i]..][..recv_counts[i]]`.
    #[allow(clippy::too_many_arguments)]
    fn immediate_all_to_all_varcount_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        send_counts: &[usize],
        send_displs: &[usize],
        recv: &'a mut [T],
        recv_counts: &[usize],
        recv_displs: &[usize],
    ) -> Result<Request<'a, S>, CommError> {
        let c = self.core();
        let what = "immediate_all_to_all_varcount_into";
        intra(c, what)?;
        let mut plan = Plan::new(c, kind::ALLTOALL);
        let n = c.size() as usize;
        let send_blocks = ranges::<T>(n, send_counts, send_displs, send.len(), what)?;
        let recv_blocks = ranges::<T>(n, recv_counts, recv_displs, recv.len(), what)?;
        check_disjoint(&recv_blocks, what)?;
        let (s, r) = (Span::of(send), Span::of_mut(recv));
        all_to_all(&mut plan, s, &send_blocks, r, &recv_blocks)?;
        Ok(plan.start(scope))
    }

    /// Starts an inclusive scan (`MPI_Iscan`): rank r's `recv = x0 op x1 op ... op xr`.
    fn immediate_scan_into<'a, S: Scope<'a>, T: Pod, O: Operation<T> + 'a>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
        op: O,
    ) -> Result<Request<'a, S>, CommError> {
        start_scan(self.core(), scope, send, recv, op, false)
    }

    /// Starts an exclusive scan (`MPI_Iexscan`): rank r's `recv = x0 op ... op x(r-1)`; rank
    /// 0's `recv` is left as it was.
    fn immediate_exclusive_scan_into<'a, S: Scope<'a>, T: Pod, O: Operation<T> + 'a>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
        op: O,
    ) -> Result<Request<'a, S>, CommError> {
        start_scan(self.core(), scope, send, recv, op, true)
    }

    /// Starts a reduce-scatter of equal blocks (`MPI_Ireduce_scatter_block`): `send` holds
    /// `size` blocks of `recv.len()` elements, and rank r gets block r of the reduction of every
    /// rank's `send`.
    fn immediate_reduce_scatter_block_into<'a, S: Scope<'a>, T: Pod, O: Operation<T> + 'a>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
        op: O,
    ) -> Result<Request<'a, S>, CommError> {
        let c = self.core();
        let what = "immediate_reduce_scatter_block_into";
        intra(c, what)?;
        let mut plan = Plan::new(c, kind::REDUCE_SCATTER);
        let (n, each) = (c.size() as usize, recv.len());
        if send.len() != n * each {
            return Err(invalid(format!(
                "{what}: {} send elements for {n} ranks of {each}",
                send.len()
            )));
        }
        let op = Rc::new(op);
        let whole = (c.rank() == 0).then(|| plan.temp::<T>(send.len()));
        reduce_to_zero(&mut plan, Span::of(send), whole, &op)?;
        let (counts, displs) = equal_blocks(n, each);
        let blocks = ranges::<T>(n, &counts, &displs, send.len(), what)?;
        scatter(&mut plan, 0, whole.map(|w| (w, blocks)), Span::of_mut(recv))?;
        Ok(plan.start(scope))
    }
}

impl<C: Communicator + ?Sized> ImmediateCollectives for C {}

/// Nonblocking rooted collectives, called on the root's [`Process`] (rsmpi's `immediate_*`
/// methods of `Root`): every rank names the same root. Intracommunicators only, for now.
pub trait ImmediateRoot {
    /// Starts a broadcast (`MPI_Ibcast`) of the root's `buf` into every rank's `buf`.
    fn immediate_broadcast_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        buf: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError>;

    /// On the root: starts a reduce (`MPI_Ireduce`), `recv = x0 op x1 op ... op x(n-1)`.
    fn immediate_reduce_into_root<'a, S: Scope<'a>, T: Pod, O: Operation<T> + 'a>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
        op: O,
    ) -> Result<Request<'a, S>, CommError>;

    /// On a rank other than the root: starts contributing `send` to a reduce.
    fn immediate_reduce_into<'a, S: Scope<'a>, T: Pod, O: Operation<T> + 'a>(
        &self,
        scope: S,
        send: &'a [T],
        op: O,
    ) -> Result<Request<'a, S>, CommError>;

    /// On the root: starts a gather (`MPI_Igather`) of every rank's `send` into `recv`, in rank
    /// order.
    fn immediate_gather_into_root<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError>;

    /// On a rank other than the root: starts contributing `send` to a gather.
    fn immediate_gather_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
    ) -> Result<Request<'a, S>, CommError>;

    /// On the root: starts a variable-count gather (`MPI_Igatherv`): rank `i`'s `send` lands at
    /// `recv[displs[i]..][..counts[i]]`.
    fn immediate_gather_varcount_into_root<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<Request<'a, S>, CommError>;

    /// On a rank other than the root: starts contributing `send` to a variable-count gather.
    fn immediate_gather_varcount_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
    ) -> Result<Request<'a, S>, CommError>;

    /// On the root: starts a scatter (`MPI_Iscatter`): block `i` of `send` (`recv.len()`
    /// elements each) goes to rank `i`.
    fn immediate_scatter_into_root<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError>;

    /// On a rank other than the root: starts receiving this rank's block of a scatter.
    fn immediate_scatter_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError>;

    /// On the root: starts a variable-count scatter (`MPI_Iscatterv`):
    /// `send[displs[i]..][..counts[i]]` goes to rank `i`.
    fn immediate_scatter_varcount_into_root<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        counts: &[usize],
        displs: &[usize],
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError>;

    /// On a rank other than the root: starts receiving this rank's block of a variable-count
    /// scatter.
    fn immediate_scatter_varcount_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError>;
}

/// The communicator and root of a rooted nonblocking collective, checked: an intracommunicator,
/// a root inside it, and this rank the root (`at_root`) or not, as the call is for.
fn rooted<'p>(
    p: &Process<'p>,
    what: &str,
    at_root: bool,
) -> Result<(&'p Rc<CommCore>, usize), CommError> {
    let c = p.core();
    intra(c, what)?;
    let root = check_root(c, p.rank())?;
    if (root == c.rank()) != at_root {
        return Err(invalid(if at_root {
            format!(
                "{what} is for the root (rank {root}); rank {} is not it",
                c.rank()
            )
        } else {
            format!("{what} is for ranks other than the root; rank {root} is the root")
        }));
    }
    Ok((c, root as usize))
}

impl ImmediateRoot for Process<'_> {
    fn immediate_broadcast_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        buf: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError> {
        let c = self.core();
        intra(c, "immediate_broadcast_into")?;
        let root = check_root(c, self.rank())? as usize;
        let mut plan = Plan::new(c, kind::BCAST);
        broadcast(&mut plan, root, Span::of_mut(buf))?;
        Ok(plan.start(scope))
    }

    fn immediate_reduce_into_root<'a, S: Scope<'a>, T: Pod, O: Operation<T> + 'a>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
        op: O,
    ) -> Result<Request<'a, S>, CommError> {
        let what = "immediate_reduce_into_root";
        let (c, root) = rooted(self, what, true)?;
        let mut plan = Plan::new(c, kind::REDUCE);
        check_same_length(what, send, recv)?;
        let (s, r) = (Span::of(send), Span::of_mut(recv));
        reduce(&mut plan, root, s, Some(r), &Rc::new(op))?;
        Ok(plan.start(scope))
    }

    fn immediate_reduce_into<'a, S: Scope<'a>, T: Pod, O: Operation<T> + 'a>(
        &self,
        scope: S,
        send: &'a [T],
        op: O,
    ) -> Result<Request<'a, S>, CommError> {
        let (c, root) = rooted(self, "immediate_reduce_into", false)?;
        let mut plan = Plan::new(c, kind::REDUCE);
        reduce(&mut plan, root, Span::of(send), None, &Rc::new(op))?;
        Ok(plan.start(scope))
    }

    fn immediate_gather_into_root<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError> {
        let what = "immediate_gather_into_root";
        let (c, root) = rooted(self, what, true)?;
        let mut plan = Plan::new(c, kind::GATHER);
        let (n, each) = (c.size() as usize, send.len());
        if recv.len() != n * each {
            return Err(invalid(format!(
                "{what}: {} receive elements for {n} ranks of {each}",
                recv.len()
            )));
        }
        let (counts, displs) = equal_blocks(n, each);
        let blocks = ranges::<T>(n, &counts, &displs, recv.len(), what)?;
        gather(
            &mut plan,
            root,
            Span::of(send),
            Some((Span::of_mut(recv), blocks)),
        )?;
        Ok(plan.start(scope))
    }

    fn immediate_gather_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
    ) -> Result<Request<'a, S>, CommError> {
        let (c, root) = rooted(self, "immediate_gather_into", false)?;
        let mut plan = Plan::new(c, kind::GATHER);
        gather(&mut plan, root, Span::of(send), None)?;
        Ok(plan.start(scope))
    }

    fn immediate_gather_varcount_into_root<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
        counts: &[usize],
        displs: &[usize],
    ) -> Result<Request<'a, S>, CommError> {
        let what = "immediate_gather_varcount_into_root";
        let (c, root) = rooted(self, what, true)?;
        let mut plan = Plan::new(c, kind::GATHER);
        let n = c.size() as usize;
        let blocks = ranges::<T>(n, counts, displs, recv.len(), what)?;
        check_disjoint(&blocks, what)?;
        if send.len() != counts[root] {
            return Err(invalid(format!(
                "{what}: {} elements to send, counts[{root}] is {}",
                send.len(),
                counts[root]
            )));
        }
        gather(
            &mut plan,
            root,
            Span::of(send),
            Some((Span::of_mut(recv), blocks)),
        )?;
        Ok(plan.start(scope))
    }

    fn immediate_gather_varcount_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
    ) -> Result<Request<'a, S>, CommError> {
        let (c, root) = rooted(self, "immediate_gather_varcount_into", false)?;
        let mut plan = Plan::new(c, kind::GATHER);
        gather(&mut plan, root, Span::of(send), None)?;
        Ok(plan.start(scope))
    }

    fn immediate_scatter_into_root<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError> {
        let what = "immediate_scatter_into_root";
        let (c, root) = rooted(self, what, true)?;
        let mut plan = Plan::new(c, kind::SCATTER);
        let (n, each) = (c.size() as usize, recv.len());
        if send.len() != n * each {
            return Err(invalid(format!(
                "{what}: {} send elements for {n} ranks of {each}",
                send.len()
            )));
        }
        let (counts, displs) = equal_blocks(n, each);
        let blocks = ranges::<T>(n, &counts, &displs, send.len(), what)?;
        scatter(
            &mut plan,
            root,
            Some((Span::of(send), blocks)),
            Span::of_mut(recv),
        )?;
        Ok(plan.start(scope))
    }

    fn immediate_scatter_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError> {
        let (c, root) = rooted(self, "immediate_scatter_into", false)?;
        let mut plan = Plan::new(c, kind::SCATTER);
        scatter(&mut plan, root, None, Span::of_mut(recv))?;
        Ok(plan.start(scope))
    }

    fn immediate_scatter_varcount_into_root<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        send: &'a [T],
        counts: &[usize],
        displs: &[usize],
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError> {
        let what = "immediate_scatter_varcount_into_root";
        let (c, root) = rooted(self, what, true)?;
        let mut plan = Plan::new(c, kind::SCATTER);
        let n = c.size() as usize;
        let blocks = ranges::<T>(n, counts, displs, send.len(), what)?;
        if counts[root] != recv.len() {
            return Err(invalid(format!(
                "{what}: counts[{root}] is {}, the receive buffer holds {}",
                counts[root],
                recv.len()
            )));
        }
        scatter(
            &mut plan,
            root,
            Some((Span::of(send), blocks)),
            Span::of_mut(recv),
        )?;
        Ok(plan.start(scope))
    }

    fn immediate_scatter_varcount_into<'a, S: Scope<'a>, T: Pod>(
        &self,
        scope: S,
        recv: &'a mut [T],
    ) -> Result<Request<'a, S>, CommError> {
        let (c, root) = rooted(self, "immediate_scatter_varcount_into", false)?;
        let mut plan = Plan::new(c, kind::SCATTER);
        scatter(&mut plan, root, None, Span::of_mut(recv))?;
        Ok(plan.start(scope))
    }
}
