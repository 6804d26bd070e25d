//! Communicators: a group of processes and a context of their own, so that messages and
//! collectives of one never meet those of another. [`SimpleCommunicator`] is any communicator
//! (the world, or one made from another); [`InterCommunicator`] joins two disjoint groups.
//! Everything a communicator can do is in the [`Communicator`] trait and the point-to-point and
//! collective traits built on it, each written once against the core every communicator exposes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::buffer::{Incoming, Outgoing};
use super::context;
use super::engine::{Combine, RecvBuf, ReqId, Schedule, SendBuf, Want};
use super::group::{Members, UserGroup};
use super::point_to_point::{AnyProcess, Process};
use super::runtime::Runtime;
use super::{CommError, Status};
use crate::transport::Mechanism;
use crate::vm::Process as OsProcess;

/// A rank in a communicator or group.
pub type Rank = i32;
/// A key that orders the ranks of a split.
pub type Key = i32;
/// A message tag.
pub type Tag = i32;

/// The rank of no process: sends to it and receives from it complete at once and move nothing
/// (`MPI_PROC_NULL`).
pub const PROC_NULL: Rank = -1;
/// On an intercommunicator, the root of a rooted collective names itself with this rank
/// (`MPI_ROOT`); the other members of its group pass [`PROC_NULL`].
pub const ROOT: Rank = -3;
/// MPI's "undefined" (`MPI_UNDEFINED`): the value of [`Color::undefined`].
pub const UNDEFINED: i32 = -32766;

/// A split's color: ranks of one color end in one new communicator (rsmpi's `Color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color(i32);

impl Color {
    /// The color `value` (0 or more).
    pub fn with_value(value: i32) -> Color {
        Color(value)
    }

    /// No color: the rank gets no new communicator from the split.
    pub fn undefined() -> Color {
        Color(UNDEFINED)
    }

    /// The value (`UNDEFINED` for [`Color::undefined`]).
    pub fn value(&self) -> i32 {
        self.0
    }
}

/// How two communicators relate (`MPI_Comm_compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommunicatorRelation {
    /// The same communicator.
    Identical,
    /// The same processes in the same order, another context.
    Congruent,
    /// The same processes in another order.
    Similar,
    /// Anything else.
    Unequal,
}

/// Which group of a merged intercommunicator comes first (`MPI_Intercomm_merge`'s `high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOrder {
    /// This group's ranks come first.
    Low,
    /// This group's ranks come after the other's.
    High,
}

/// The core every communicator exposes to the operations written against it: its runtime, its
/// contexts, its groups and this rank's place. Not nameable outside this crate.
pub struct CommCore {
    pub(crate) rt: Rc<Runtime>,
    pub(crate) id: u32,
    /// The generation of this use of `id` (see [`super::context`]).
    pub(crate) generation: u32,
    pub(crate) local: Rc<Members>,
    /// The other group, for an intercommunicator.
    pub(crate) remote: Option<Rc<Members>>,
    pub(crate) rank: Rank,
    pub(crate) name: RefCell<String>,
    /// An intercommunicator's private communicator of its local group, for the local parts of
    /// its collectives.
    pub(crate) local_comm: Option<SimpleCommunicator>,
    /// Whether the id comes back when this core goes (not for a core that borrows its parent's).
    pub(crate) owns_id: bool,
    /// How many nonblocking collectives this rank has started on this communicator: the next
    /// one's sequence number, which its tag carries.
    pub(crate) immediate_seq: Cell<u32>,
}

impl Drop for CommCore {
    fn drop(&mut self) {
        if self.owns_id {
            self.rt.release_context(self.id);
        }
    }
}

impl std::fmt::Debug for CommCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Communicator")
            .field("name", &self.name.borrow())
            .field("id", &self.id)
            .field("rank", &self.rank)
            .field("size", &self.size())
            .field("remote_size", &self.remote.as_ref().map(|r| r.len()))
            .finish()
    }
}

/// A tag a user may send with: 0 to [`crate::point_to_point::TAG_UB`].
pub(crate) fn send_tag(tag: Tag) -> Result<Tag, CommError> {
    if tag < 0 {
        Err(CommError::InvalidTag(tag))
    } else {
        Ok(tag)
    }
}

/// A tag a user may receive with: a send tag, or any tag (`None`).
pub(crate) fn receive_tag(tag: Option<Tag>) -> Result<Option<Tag>, CommError> {
    tag.map(send_tag).transpose()
}

impl CommCore {
    /// A core for `local` (and `remote`, for an intercommunicator) with id `id` of generation
    /// `generation`.
    pub(crate) fn new(
        rt: Rc<Runtime>,
        id: u32,
        generation: u32,
        local: Members,
        remote: Option<Members>,
        name: &str,
    ) -> Result<CommCore, CommError> {
        let rank = local.my_rank().ok_or_else(|| {
            CommError::Config("this rank is not in the communicator it is making".into())
        })?;
        Ok(CommCore {
            rt,
            id,
            generation,
            local: Rc::new(local),
            remote: remote.map(Rc::new),
            rank,
            name: RefCell::new(name.to_string()),
            local_comm: None,
            owns_id: true,
            immediate_seq: Cell::new(0),
        })
    }

    /// Ranks in the local group.
    pub(crate) fn size(&self) -> Rank {
        self.local.len() as Rank
    }

    /// This rank in the local group.
    pub(crate) fn rank(&self) -> Rank {
        self.rank
    }

    /// The group messages go to: the remote one of an intercommunicator, else the local one.
    pub(crate) fn target(&self) -> &Members {
        self.remote.as_deref().unwrap_or(&self.local)
    }

    /// Ranks of the target group.
    pub(crate) fn target_size(&self) -> Rank {
        self.target().len() as Rank
    }

    pub(crate) fn is_inter(&self) -> bool {
        self.remote.is_some()
    }

    /// An intercommunicator's private communicator of this rank's group.
    pub(crate) fn local_group_core(&self) -> Result<&Rc<CommCore>, CommError> {
        self.local_comm
            .as_ref()
            .map(|l| &l.core)
            .ok_or_else(|| CommError::Config("an intercommunicator without its local group".into()))
    }

    pub(crate) fn p2p_context(&self) -> u32 {
        context::p2p(self.id, self.generation)
    }

    pub(crate) fn coll_context(&self) -> u32 {
        context::coll(self.id, self.generation)
    }

    /// The world rank of target rank `rank`.
    pub(crate) fn world_of(&self, rank: Rank) -> Result<usize, CommError> {
        usize::try_from(rank)
            .ok()
            .and_then(|r| self.target().world_rank(r))
            .ok_or(CommError::InvalidRank {
                rank,
                size: self.target_size(),
            })
    }

    /// `status` of a receive, with its source as a rank of the target group.
    pub(crate) fn translate(&self, mut status: Status) -> Status {
        if status.source_rank() >= 0 {
            let world = status.source_rank() as usize;
            status.set_source(self.target().rank_of_world(world).unwrap_or(PROC_NULL));
        }
        status
    }

    /// This communicator's local group.
    pub(crate) fn group(&self) -> UserGroup {
        UserGroup {
            members: self.local.clone(),
        }
    }

    /// How large messages move in this job.
    pub(crate) fn mode(&self) -> Mechanism {
        self.rt.engine.borrow().job.mechanism
    }

    /// The table `auto` follows in this job, and where it came from.
    pub(crate) fn auto_table(
        &self,
    ) -> (
        crate::transport::auto::AutoTable,
        crate::transport::auto::Source,
    ) {
        let engine = self.rt.engine.borrow();
        (engine.job.auto.clone(), engine.job.auto_source.clone())
    }

    // ----- point to point, in the point-to-point context -----

    /// Sends `data` to target rank `rank` and returns once `data` may be reused; a message that
    /// fits a ring record needs no request. `sync`: only once the receive has matched.
    pub(crate) fn send(
        &self,
        rank: Rank,
        tag: Tag,
        data: &[u8],
        sync: bool,
    ) -> Result<(), CommError> {
        if rank == PROC_NULL {
            return Ok(());
        }
        let dest = self.world_of(rank)?;
        let mut engine = self.rt.engine();
        let started = if sync {
            Some(engine.post_send(dest, self.p2p_context(), tag, SendBuf::of(data), true)?)
        } else {
            engine.send_now(dest, self.p2p_context(), tag, data)?
        };
        match started {
            Some(id) => engine.wait(id).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Starts sending `data` to target rank `rank`.
    ///
    /// # Safety
    /// `data` must stay alive and unchanged until the request finishes.
    pub(crate) unsafe fn post_send(
        &self,
        rank: Rank,
        tag: Tag,
        data: SendBuf,
        sync: bool,
    ) -> Result<ReqId, CommError> {
        if rank == PROC_NULL {
            return Ok(self.completed(Status::null()));
        }
        let dest = self.world_of(rank)?;
        self.rt
            .engine()
            .post_send(dest, self.p2p_context(), tag, data, sync)
    }

    /// Sends `message` to target rank `rank` and returns once its buffer may be reused.
    pub(crate) fn send_message(
        &self,
        rank: Rank,
        tag: Tag,
        message: Outgoing,
        sync: bool,
    ) -> Result<(), CommError> {
        match message {
            Outgoing::Bytes { ptr, len } => {
                // SAFETY: the caller's buffer, borrowed for this call.
                let data = unsafe { std::slice::from_raw_parts(ptr, len) };
                self.send(rank, tag, data, sync)
            }
            laid => {
                // SAFETY: the caller's buffer, borrowed until the wait below.
                let id = unsafe { self.post_send_message(rank, tag, &laid, sync)? };
                self.rt.wait(id).map(|_| ())
            }
        }
    }

    /// Starts sending `message` to target rank `rank`.
    ///
    /// # Safety
    /// The message's memory must stay alive and unchanged until the request finishes.
    pub(crate) unsafe fn post_send_message(
        &self,
        rank: Rank,
        tag: Tag,
        message: &Outgoing,
        sync: bool,
    ) -> Result<ReqId, CommError> {
        match message {
            &Outgoing::Bytes { ptr, len } => {
                // SAFETY: the caller's contract.
                let data = unsafe { std::slice::from_raw_parts(ptr, len) };
                // SAFETY: the caller's contract.
                unsafe { self.post_send(rank, tag, SendBuf::of(data), sync) }
            }
            Outgoing::Laid(placed) => {
                if rank == PROC_NULL {
                    return Ok(self.completed(Status::null()));
                }
                let dest = self.world_of(rank)?;
                // SAFETY: the caller's contract.
                unsafe {
                    self.rt
                        .engine()
                        .post_laid_send(dest, self.p2p_context(), tag, placed, sync)
                }
            }
        }
    }

    /// Sends a copy of `message` from the attached buffer (`MPI_Bsend`), packed if it is laid
    /// out by a datatype.
    pub(crate) fn buffered_send_message(
        &self,
        rank: Rank,
        tag: Tag,
        message: Outgoing,
    ) -> Result<(), CommError> {
        match message {
            Outgoing::Bytes { ptr, len } => {
                // SAFETY: the caller's buffer, borrowed for this call.
                let data = unsafe { std::slice::from_raw_parts(ptr, len) };
                self.buffered_send(rank, tag, data)
            }
            Outgoing::Laid(placed) => {
                // SAFETY: the caller's buffer, borrowed for this call.
                let packed = unsafe { self.rt.engine().pack(&placed)? };
                self.buffered_send(rank, tag, &packed)
            }
        }
    }

    /// Starts receiving into `buf` a message from `rank` (`None`: any) with `tag` (`None`: any);
    /// a non-contiguous layout is staged, or filled directly by single copy.
    ///
    /// # Safety
    /// `buf`'s memory must stay alive and otherwise unused until the request finishes.
    pub(crate) unsafe fn post_receive_message(
        &self,
        rank: Option<Rank>,
        tag: Option<Tag>,
        buf: Incoming,
    ) -> Result<ReqId, CommError> {
        match buf {
            // SAFETY: the caller's contract.
            Incoming::Bytes { ptr, len } => unsafe {
                self.post_receive(rank, tag, RecvBuf::plain(ptr, len))
            },
            Incoming::Laid(target) => {
                if rank == Some(PROC_NULL) {
                    return Ok(self.completed(Status::null()));
                }
                let want = self.want(rank, tag)?;
                let mut engine = self.rt.engine();
                let (recv, extra) = engine.scatter_for(target);
                engine.post_receive_with(want, recv, Some(extra))
            }
        }
    }

    /// Receives into `buf` the message a matched probe took (its engine key).
    ///
    /// # Safety
    /// As [`CommCore::post_receive_message`].
    pub(crate) unsafe fn post_matched_receive(
        &self,
        key: u64,
        buf: Incoming,
    ) -> Result<ReqId, CommError> {
        let mut engine = self.rt.engine();
        match buf {
            Incoming::Bytes { ptr, len } => {
                engine.post_matched_receive(key, RecvBuf::plain(ptr, len), None)
            }
            Incoming::Laid(target) => {
                let (recv, extra) = engine.scatter_for(target);
                engine.post_matched_receive(key, recv, Some(extra))
            }
        }
    }

    /// Sends a copy of `data` from the attached buffer (`MPI_Bsend`).
    pub(crate) fn buffered_send(&self, rank: Rank, tag: Tag, data: &[u8]) -> Result<(), CommError> {
        if rank == PROC_NULL {
            return Ok(());
        }
        let dest = self.world_of(rank)?;
        self.rt
            .engine()
            .post_buffered_send(dest, self.p2p_context(), tag, data)
    }

    /// What a receive from `rank` (a target rank, or `None` for any) with `tag` takes.
    pub(crate) fn want(&self, rank: Option<Rank>, tag: Option<Tag>) -> Result<Want, CommError> {
        Ok(Want {
            context: self.p2p_context(),
            source: rank.map(|r| self.world_of(r)).transpose()?,
            tag,
        })
    }

    /// Starts receiving into `buf` a message from `rank` (`None`: any) with `tag` (`None`: any).
    ///
    /// # Safety
    /// `buf` must stay alive and otherwise unused until the request finishes.
    pub(crate) unsafe fn post_receive(
        &self,
        rank: Option<Rank>,
        tag: Option<Tag>,
        buf: RecvBuf,
    ) -> Result<ReqId, CommError> {
        if rank == Some(PROC_NULL) {
            return Ok(self.completed(Status::null()));
        }
        let want = self.want(rank, tag)?;
        self.rt.engine().post_receive(want, buf)
    }

    /// A request that has finished already with `status`.
    pub(crate) fn completed(&self, status: Status) -> ReqId {
        self.rt.engine().completed(status)
    }

    // ----- the collectives' messages, in the collective context -----

    /// Whether a message of `len` bytes travels in a ring record itself, so that a blocking
    /// send of it returns at once.
    pub(crate) fn fits_record(&self, len: usize) -> bool {
        len <= self.rt.engine.borrow().job.limits.inline
    }

    /// Sends a collective's message `data` to `rank` with `tag` and returns once `data` may be
    /// reused.
    pub(crate) fn send_blocking(&self, rank: Rank, tag: Tag, data: &[u8]) -> Result<(), CommError> {
        let dest = self.world_of(rank)?;
        let mut engine = self.rt.engine();
        match engine.send_now(dest, self.coll_context(), tag, data)? {
            Some(id) => engine.wait(id).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Posts a collective's send; the caller waits for it before `data` goes.
    pub(crate) fn post_send_reserved(
        &self,
        rank: Rank,
        tag: Tag,
        data: &[u8],
    ) -> Result<ReqId, CommError> {
        let dest = self.world_of(rank)?;
        self.rt
            .engine()
            .post_send(dest, self.coll_context(), tag, SendBuf::of(data), false)
    }

    /// Posts a collective's receive from `rank` with exactly `tag`; the caller waits for it
    /// before `buf` goes.
    pub(crate) fn post_receive_reserved(
        &self,
        rank: Rank,
        tag: Tag,
        buf: &mut [u8],
    ) -> Result<ReqId, CommError> {
        let want = Want {
            context: self.coll_context(),
            source: Some(self.world_of(rank)?),
            tag: Some(tag),
        };
        self.rt
            .engine()
            .post_receive(want, RecvBuf::plain(buf.as_mut_ptr(), buf.len()))
    }

    /// Posts a collective's send of `message`, contiguous or laid out by a datatype (which moves
    /// as point to point moves it: packed when small, by single copy from where it lies when
    /// large and its pieces are).
    ///
    /// # Safety
    /// The message's memory must stay alive and unchanged until the request finishes.
    pub(crate) unsafe fn post_send_message_reserved(
        &self,
        rank: Rank,
        tag: Tag,
        message: &Outgoing,
    ) -> Result<ReqId, CommError> {
        let dest = self.world_of(rank)?;
        let mut engine = self.rt.engine();
        match message {
            &Outgoing::Bytes { ptr, len } => {
                // SAFETY: the caller's contract.
                let data = unsafe { std::slice::from_raw_parts(ptr, len) };
                engine.post_send(dest, self.coll_context(), tag, SendBuf::of(data), false)
            }
            // SAFETY: the caller's contract.
            Outgoing::Laid(placed) => unsafe {
                engine.post_laid_send(dest, self.coll_context(), tag, placed, false)
            },
        }
    }

    /// Posts a collective's receive into `buf` (contiguous, or a layout that is staged or filled
    /// directly by single copy) from `rank` with exactly `tag`.
    ///
    /// # Safety
    /// `buf`'s memory must stay alive and otherwise unused until the request finishes.
    pub(crate) unsafe fn post_receive_message_reserved(
        &self,
        rank: Rank,
        tag: Tag,
        buf: Incoming,
    ) -> Result<ReqId, CommError> {
        let want = Want {
            context: self.coll_context(),
            source: Some(self.world_of(rank)?),
            tag: Some(tag),
        };
        let mut engine = self.rt.engine();
        match buf {
            Incoming::Bytes { ptr, len } => engine.post_receive(want, RecvBuf::plain(ptr, len)),
            Incoming::Laid(target) => {
                let (recv, extra) = engine.scatter_for(target);
                engine.post_receive_with(want, recv, Some(extra))
            }
        }
    }

    /// Receives a collective's message from `rank` into `buf`, returning once it has; one that
    /// arrived early needs no request. For receives that usually find their message early (a
    /// broadcast's: 2 ranks, 8 B, 0.057 µs a call with a request, 0.039 without); in exchanges,
    /// where the message mostly comes later, the extra look cost more than it saved.
    pub(crate) fn receive_collective(
        &self,
        rank: Rank,
        tag: Tag,
        buf: &mut [u8],
    ) -> Result<Status, CommError> {
        let source = self.world_of(rank)?;
        let early = self
            .rt
            .engine()
            .receive_early(source, self.coll_context(), tag, buf);
        match early {
            Some(done) => done,
            None => {
                let id = self.post_receive_reserved(rank, tag, buf)?;
                self.wait(id)
            }
        }
    }

    /// Posts a collective's receive from `rank` with exactly `tag` that folds the message into
    /// `buf` with `combine` as it arrives; `None` (nothing posted) when this job moves messages
    /// in pieces that are not whole `elem`-byte elements.
    pub(crate) fn post_receive_combining(
        &self,
        rank: Rank,
        tag: Tag,
        buf: &mut [u8],
        elem: usize,
        combine: Combine,
    ) -> Result<Option<ReqId>, CommError> {
        let want = Want {
            context: self.coll_context(),
            source: Some(self.world_of(rank)?),
            tag: Some(tag),
        };
        let mut engine = self.rt.engine();
        if !engine.pieces_hold(elem) || !buf.len().is_multiple_of(elem) {
            return Ok(None);
        }
        let recv = RecvBuf {
            ptr: buf.as_mut_ptr(),
            cap: buf.len(),
            combine: Some(combine),
        };
        engine.post_receive(want, recv).map(Some)
    }

    // ----- nonblocking collectives -----

    /// The tag of this communicator's next nonblocking collective, of kind `kind`
    /// ([`super::tags::immediate`]): every rank numbers them in the order it issues them.
    pub(crate) fn next_immediate_tag(&self, kind: i32) -> Tag {
        let seq = self.immediate_seq.get();
        self.immediate_seq.set(seq.wrapping_add(1));
        super::tags::immediate_tag(seq, kind)
    }

    /// Starts a nonblocking collective's schedule, in this communicator's collective context.
    ///
    /// # Safety
    /// As [`super::engine::Engine::start_schedule`]'s.
    pub(crate) unsafe fn start_schedule(&self, schedule: Schedule) -> ReqId {
        // SAFETY: the caller's contract.
        unsafe { self.rt.engine().start_schedule(schedule) }
    }

    /// Waits for request `id`.
    pub(crate) fn wait(&self, id: ReqId) -> Result<Status, CommError> {
        self.rt.wait(id)
    }

    /// One round of progress.
    pub(crate) fn progress(&self) -> Result<bool, CommError> {
        self.rt.progress()
    }

    /// Runs `f` with target rank `rank`'s process, for single-copy reads outside the message
    /// protocols (the collectives' fused read-reduce); `None` for this rank itself, or when the
    /// job has no single copy.
    pub(crate) fn with_peer_process<R>(
        &self,
        rank: Rank,
        f: impl FnOnce(&OsProcess) -> R,
    ) -> Option<R> {
        let world = self.world_of(rank).ok()?;
        let engine = self.rt.engine.borrow();
        Some(f(engine.peer_process(world)?))
    }
}

pub(crate) mod sealed {
    /// Access to a communicator's core; implemented by this crate's communicators only.
    pub trait AsCore {
        /// The core.
        fn core(&self) -> &std::rc::Rc<super::CommCore>;
    }
}

/// What every communicator offers (rsmpi's `Communicator`; `use onecopy::traits::*`). Local
/// queries return values; operations that communicate return `Result`.
pub trait Communicator: sealed::AsCore {
    /// The number of ranks in the (local) group.
    fn size(&self) -> Rank {
        self.core().size()
    }

    /// This process's rank in the (local) group.
    fn rank(&self) -> Rank {
        self.core().rank()
    }

    /// The number of ranks messages can go to: the remote group's size for an
    /// intercommunicator, else [`Communicator::size`].
    fn target_size(&self) -> Rank {
        self.core().target_size()
    }

    /// The process at `rank` (of the remote group, for an intercommunicator; [`PROC_NULL`]
    /// for none; [`ROOT`] for this process as an intercommunicator collective's root), to send
    /// to, receive from, or use as a root. A rank outside the group is an error when used.
    fn process_at_rank(&self, rank: Rank) -> Process<'_> {
        Process::new(self.core(), rank)
    }

    /// Any process of the (remote) group, as a source.
    fn any_process(&self) -> AnyProcess<'_> {
        AnyProcess::new(self.core())
    }

    /// This process (of an intracommunicator).
    fn this_process(&self) -> Process<'_> {
        Process::new(self.core(), self.rank())
    }

    /// No process ([`PROC_NULL`]).
    fn null_process(&self) -> Process<'_> {
        Process::new(self.core(), PROC_NULL)
    }

    /// How this communicator relates to `other` (`MPI_Comm_compare`).
    fn compare(&self, other: &dyn Communicator) -> CommunicatorRelation {
        let (a, b) = (self.core(), other.core());
        if Rc::ptr_eq(a, b) {
            return CommunicatorRelation::Identical;
        }
        let same = |x: &Members, y: &Members| x.world_ranks() == y.world_ranks();
        let similar = |x: &Members, y: &Members| {
            x.len() == y.len()
                && x.world_ranks()
                    .iter()
                    .all(|&w| y.rank_of_world(w).is_some())
        };
        match (&a.remote, &b.remote) {
            (None, None) if same(&a.local, &b.local) => CommunicatorRelation::Congruent,
            (None, None) if similar(&a.local, &b.local) => CommunicatorRelation::Similar,
            (Some(ra), Some(rb)) if same(&a.local, &b.local) && same(ra, rb) => {
                CommunicatorRelation::Congruent
            }
            (Some(ra), Some(rb)) if similar(&a.local, &b.local) && similar(ra, rb) => {
                CommunicatorRelation::Similar
            }
            _ => CommunicatorRelation::Unequal,
        }
    }

    /// A new communicator with the same group(s) and a context of its own (`MPI_Comm_dup`);
    /// collective.
    fn duplicate(&self) -> Result<SimpleCommunicator, CommError> {
        super::create::duplicate(self.core())
    }

    /// Splits the communicator: ranks that give the same color get one new communicator,
    /// ordered by their rank here; [`Color::undefined`] gets `None` (`MPI_Comm_split`);
    /// collective.
    fn split_by_color(&self, color: Color) -> Result<Option<SimpleCommunicator>, CommError> {
        self.split_by_color_with_key(color, 0)
    }

    /// [`Communicator::split_by_color`], ordering each new communicator by `key`, then by rank
    /// here.
    fn split_by_color_with_key(
        &self,
        color: Color,
        key: Key,
    ) -> Result<Option<SimpleCommunicator>, CommError> {
        super::create::split(self.core(), color, key)
    }

    /// The ranks that can share memory, ordered by `key` (`MPI_Comm_split_type` with
    /// `MPI_COMM_TYPE_SHARED`): on one node, every rank; collective.
    fn split_shared(&self, key: Key) -> Result<SimpleCommunicator, CommError> {
        let split = super::create::split(self.core(), Color::with_value(0), key)?;
        split.ok_or_else(|| CommError::Config("the shared split left this rank out".into()))
    }

    /// A communicator of the ranks of `group` (a subgroup of this one; every rank passes the
    /// same group), `None` for ranks outside it (`MPI_Comm_create`); collective over this
    /// communicator.
    fn split_by_subgroup_collective(
        &self,
        group: &dyn super::group::Group,
    ) -> Result<Option<SimpleCommunicator>, CommError> {
        super::create::create(self.core(), group)
    }

    /// A communicator of the ranks of `group`, made by them alone (`MPI_Comm_create_group`):
    /// only the members call it; `tag` keeps concurrent creations apart.
    fn split_by_subgroup_with_tag(
        &self,
        group: &dyn super::group::Group,
        tag: Tag,
    ) -> Result<Option<SimpleCommunicator>, CommError> {
        super::create::create_group(self.core(), group, tag)
    }

    /// [`Communicator::split_by_subgroup_with_tag`] with tag 0.
    fn split_by_subgroup(
        &self,
        group: &dyn super::group::Group,
    ) -> Result<Option<SimpleCommunicator>, CommError> {
        self.split_by_subgroup_with_tag(group, 0)
    }

    /// The (local) group.
    fn group(&self) -> UserGroup {
        self.core().group()
    }

    /// Whether this is an intercommunicator.
    fn test_inter(&self) -> bool {
        self.core().is_inter()
    }

    /// Ends the whole job with `code` (`MPI_Abort`): this process exits with it, and the
    /// launcher stops every other rank. A code whose low 8 bits are 0 would read as success,
    /// so the process exits 1 instead.
    fn abort(&self, code: i32) -> ! {
        let core = self.core();
        eprintln!(
            "onecopy: rank {} of {} called abort({code}) on {}",
            core.rt.world_rank,
            core.rt.world_size,
            core.name.borrow()
        );
        std::process::exit(if code & 0xff == 0 { 1 } else { code })
    }

    /// Names the communicator (`MPI_Comm_set_name`).
    fn set_name(&self, name: &str) {
        *self.core().name.borrow_mut() = name.to_string();
    }

    /// The communicator's name (`MPI_Comm_get_name`): `MPI_COMM_WORLD` for the world, empty for
    /// a new one until named.
    fn get_name(&self) -> String {
        self.core().name.borrow().clone()
    }
}

/// A communicator (rsmpi's `SimpleCommunicator`): the world, or one made from another. Cloning
/// gives another handle to the same communicator; its id comes back when the last handle goes.
#[derive(Clone)]
pub struct SimpleCommunicator {
    pub(crate) core: Rc<CommCore>,
}

/// The world communicator's type, by its older name.
pub type World = SimpleCommunicator;

impl std::fmt::Debug for SimpleCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt(f)
    }
}

impl sealed::AsCore for SimpleCommunicator {
    fn core(&self) -> &Rc<CommCore> {
        &self.core
    }
}

impl Communicator for SimpleCommunicator {}

impl<C: sealed::AsCore + ?Sized> sealed::AsCore for &C {
    fn core(&self) -> &Rc<CommCore> {
        (**self).core()
    }
}

impl<C: Communicator + ?Sized> Communicator for &C {}

impl SimpleCommunicator {
    pub(crate) fn from_core(core: CommCore) -> SimpleCommunicator {
        SimpleCommunicator {
            core: Rc::new(core),
        }
    }

    /// The single-copy mechanism this job probed (`shm-copy` where it has none): with an
    /// explicit transport, how every large message moves.
    pub fn mode(&self) -> Mechanism {
        self.core.mode()
    }

    /// The size and pattern → mechanism table large messages follow in this job (with `auto`,
    /// measured by `onecopy tune` or built in), and where it came from.
    pub fn auto_table(
        &self,
    ) -> (
        crate::transport::auto::AutoTable,
        crate::transport::auto::Source,
    ) {
        self.core.auto_table()
    }

    /// How often this rank has slept while waiting, so far.
    pub fn sleep_stats(&self) -> super::SleepStats {
        self.core.rt.engine.borrow().sleeps
    }

    /// Why this job does not use single copy although asked to, if it does not.
    pub fn fallback_reason(&self) -> Option<String> {
        self.core.rt.fallback.clone()
    }

    /// This communicator as an intercommunicator, if it is one.
    pub fn into_inter(self) -> Option<InterCommunicator> {
        self.core
            .is_inter()
            .then_some(InterCommunicator { comm: self })
    }
}

/// A communicator between two disjoint groups (`MPI_Intercomm_create`): ranks address the other
/// group, and collectives move data from one group to the other.
#[derive(Clone, Debug)]
pub struct InterCommunicator {
    comm: SimpleCommunicator,
}

impl sealed::AsCore for InterCommunicator {
    fn core(&self) -> &Rc<CommCore> {
        &self.comm.core
    }
}

impl Communicator for InterCommunicator {}

impl InterCommunicator {
    /// Joins the group of `local` with another group: `local_leader` (a rank of `local`) and
    /// `remote_leader` (the other group's leader, a rank of `peer`, which both leaders belong
    /// to) agree over `peer` with `tag` (`MPI_Intercomm_create`); collective over `local`,
    /// and `peer` is used by the leaders only.
    pub fn create(
        local: &dyn Communicator,
        local_leader: Rank,
        peer: &dyn Communicator,
        remote_leader: Rank,
        tag: Tag,
    ) -> Result<InterCommunicator, CommError> {
        super::create::intercomm(local.core(), local_leader, peer.core(), remote_leader, tag)
    }

    /// The number of ranks in the remote group.
    pub fn remote_size(&self) -> Rank {
        self.comm.core.target_size()
    }

    /// The remote group.
    pub fn remote_group(&self) -> UserGroup {
        UserGroup {
            members: self.comm.core.target_members(),
        }
    }

    /// One intracommunicator of both groups (`MPI_Intercomm_merge`): the group that says
    /// [`MergeOrder::Low`] comes first; collective over both groups.
    pub fn merge(&self, order: MergeOrder) -> Result<SimpleCommunicator, CommError> {
        super::create::merge(&self.comm.core, order)
    }

    /// This intercommunicator as any communicator.
    pub fn as_simple(&self) -> &SimpleCommunicator {
        &self.comm
    }
}

impl CommCore {
    /// The target group's members, shared.
    pub(crate) fn target_members(&self) -> Rc<Members> {
        self.remote.clone().unwrap_or_else(|| self.local.clone())
    }
}
