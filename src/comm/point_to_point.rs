//! Point to point: the processes of a communicator as destinations ([`Destination`]) and sources
//! ([`Source`]), with every send mode (standard, synchronous, ready, buffered; blocking,
//! immediate and persistent), receives, probes and matched probes, send-receive, and the null
//! process. Names follow rsmpi's; operations return `Result`.
//!
//! Messages from one source with one tag on one communicator arrive in order. A message larger
//! than the receive buffer is [`CommError::Truncated`] for the receiver (and, for a rendezvous
//! message, [`CommError::ReceiverRefused`] for the sender), never a short delivery.

use std::rc::Rc;

use bytemuck::Pod;

use super::CommError;
use super::buffer::{Buffer, BufferMut, incoming, outgoing};
use super::communicator::{CommCore, PROC_NULL, Rank, Tag, receive_tag, send_tag};
use super::engine::RecvBuf;
use super::request::{PersistentRequest, Request, Scope, SendMode};
use crate::datatype::Datatype;

/// The largest tag (`MPI_TAG_UB`).
pub const TAG_UB: Tag = i32::MAX;
/// A receive's tag that takes any tag (`MPI_ANY_TAG`).
pub const ANY_TAG: Tag = -1;

/// What a completed operation reports (rsmpi's `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    source: i32,
    tag: i32,
    count_bytes: usize,
    cancelled: bool,
}

impl Status {
    pub(crate) fn new(source: i32, tag: i32, count_bytes: usize) -> Status {
        Status {
            source,
            tag,
            count_bytes,
            cancelled: false,
        }
    }

    /// The status of an operation with the null process: source [`PROC_NULL`], any tag, no
    /// bytes.
    pub(crate) fn null() -> Status {
        Status::new(PROC_NULL, ANY_TAG, 0)
    }

    /// The status of a cancelled receive.
    pub(crate) fn cancelled() -> Status {
        Status {
            cancelled: true,
            ..Status::null()
        }
    }

    pub(crate) fn set_source(&mut self, source: i32) {
        self.source = source;
    }

    /// The rank that sent the message (in the communicator's group, the remote one for an
    /// intercommunicator); [`PROC_NULL`] for the null process or a cancelled receive.
    pub fn source_rank(&self) -> Rank {
        self.source
    }

    /// The message's tag.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The message's length in bytes.
    pub fn count_bytes(&self) -> usize {
        self.count_bytes
    }

    /// The message's length in elements of `T` (rounded down).
    pub fn count<T>(&self) -> usize {
        self.count_bytes / std::mem::size_of::<T>().max(1)
    }

    /// The message's length in elements of `datatype` (`MPI_Get_count`); `None`
    /// (`MPI_UNDEFINED`) when it is not a whole number of them.
    pub fn count_of(&self, datatype: &impl AsRef<Datatype>) -> Option<usize> {
        datatype.as_ref().count_in(self.count_bytes)
    }

    /// The number of basic elements (the primitives `datatype` is made of) the message holds
    /// (`MPI_Get_elements`): counts a partial last element's whole primitives.
    pub fn elements_of(&self, datatype: &impl AsRef<Datatype>) -> usize {
        datatype.as_ref().primitive_elements_in(self.count_bytes)
    }

    /// Whether the operation was cancelled ([`Request::cancel`]).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }
}

/// A tag given to a receive or probe: a send tag, or [`ANY_TAG`].
fn wanted_tag(tag: Tag) -> Result<Option<Tag>, CommError> {
    receive_tag((tag != ANY_TAG).then_some(tag))
}

/// One process of a communicator (rsmpi's `Process`): a destination, a source, a root.
#[derive(Debug, Clone, Copy)]
pub struct Process<'a> {
    core: &'a Rc<CommCore>,
    rank: Rank,
}

impl<'a> Process<'a> {
    pub(crate) fn new(core: &'a Rc<CommCore>, rank: Rank) -> Process<'a> {
        Process { core, rank }
    }

    pub(crate) fn core(&self) -> &'a Rc<CommCore> {
        self.core
    }

    /// The process's rank.
    pub fn rank(&self) -> Rank {
        self.rank
    }

    /// Whether this is the null process.
    pub fn is_null(&self) -> bool {
        self.rank == PROC_NULL
    }

    /// Starts receiving into `len` bytes at `ptr`, which other requests may share (benchmarks
    /// that, like the OSU suite, aim a window of receives at one buffer).
    ///
    /// # Safety
    /// The memory must stay valid and unused by the program until the scope ends; its contents
    /// are unspecified when several requests share it.
    pub(crate) unsafe fn immediate_receive_into_shared<'s, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        ptr: *mut u8,
        len: usize,
    ) -> Result<Request<'s, Sc>, CommError> {
        // SAFETY: the caller keeps the memory valid until the scope ends.
        let id = unsafe {
            self.core
                .post_receive(Some(self.rank), None, RecvBuf::plain(ptr, len))?
        };
        Ok(Request::new(self.core, id, true, scope))
    }
}

/// Any process of a communicator, as a source (rsmpi's `AnyProcess`).
#[derive(Debug, Clone, Copy)]
pub struct AnyProcess<'a> {
    core: &'a Rc<CommCore>,
}

impl<'a> AnyProcess<'a> {
    pub(crate) fn new(core: &'a Rc<CommCore>) -> AnyProcess<'a> {
        AnyProcess { core }
    }
}

mod sealed {
    pub trait Endpoint<'a> {
        fn endpoint(&self) -> (&'a std::rc::Rc<super::CommCore>, Option<super::Rank>);
    }
}

impl<'a> sealed::Endpoint<'a> for Process<'a> {
    fn endpoint(&self) -> (&'a Rc<CommCore>, Option<Rank>) {
        (self.core, Some(self.rank))
    }
}

impl<'a> sealed::Endpoint<'a> for AnyProcess<'a> {
    fn endpoint(&self) -> (&'a Rc<CommCore>, Option<Rank>) {
        (self.core, None)
    }
}

/// A message a matched probe found: it can be received by [`Message::matched_receive_into`]
/// and by nothing else. Dropped unreceived, it is discarded (a large message's sender is told
/// its send was refused).
#[derive(Debug)]
pub struct Message {
    core: Rc<CommCore>,
    /// The engine's key for it; `None` for the null process's message.
    key: Option<u64>,
}

impl Message {
    /// Whether this is the message of the null process (`MPI_MESSAGE_NO_PROC`).
    pub fn is_no_proc(&self) -> bool {
        self.key.is_none()
    }

    /// Receives the message into `buf`.
    pub fn matched_receive_into<B: BufferMut + ?Sized>(
        mut self,
        buf: &mut B,
    ) -> Result<Status, CommError> {
        let Some(key) = self.key.take() else {
            return Ok(Status::null());
        };
        // SAFETY: `buf` is borrowed until the receive is waited for, below.
        let id = unsafe { self.core.post_matched_receive(key, incoming(buf))? };
        self.core.rt.wait(id).map(|s| self.core.translate(s))
    }

    /// Receives the message into a vector of as many `T` as it holds.
    pub fn matched_receive_vec<T: Pod>(
        self,
        status: &Status,
    ) -> Result<(Vec<T>, Status), CommError> {
        let mut v = vec![
            T::zeroed();
            status
                .count_bytes()
                .div_ceil(std::mem::size_of::<T>().max(1))
        ];
        let got = self.matched_receive_into(&mut v)?;
        v.truncate(got.count::<T>());
        Ok((v, got))
    }

    /// Starts receiving the message into `buf`.
    pub fn immediate_matched_receive_into<'s, B: BufferMut + ?Sized, Sc: Scope<'s>>(
        mut self,
        scope: Sc,
        buf: &'s mut B,
    ) -> Result<Request<'s, Sc>, CommError> {
        let core = self.core.clone();
        let id = match self.key.take() {
            // SAFETY: `buf` is borrowed for the scope's lifetime, which the request cannot
            // outlive unfinished (the scope waits for it).
            Some(key) => unsafe { core.post_matched_receive(key, incoming(buf))? },
            None => core.completed(Status::null()),
        };
        Ok(Request::new(&core, id, true, scope))
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some(key) = self.key.take()
            && let Err(e) = self.core.rt.engine().discard_message(key)
        {
            tracing::warn!("discarding a probed message failed: {e}");
        }
    }
}

/// Something that can be the source of a receive or probe (rsmpi's `Source`): a
/// [`Process`] or [`AnyProcess`].
pub trait Source<'a>: sealed::Endpoint<'a> {
    /// The source's rank, or `None` for any.
    fn source_rank(&self) -> Option<Rank> {
        self.endpoint().1
    }

    /// Waits for a message with `tag` ([`ANY_TAG`]: any) and returns its status, leaving it to
    /// a receive (`MPI_Probe`).
    fn probe_with_tag(&self, tag: Tag) -> Result<Status, CommError> {
        let (core, rank) = self.endpoint();
        if rank == Some(PROC_NULL) {
            return Ok(Status::null());
        }
        let want = core.want(rank, wanted_tag(tag)?)?;
        let watch = match want.source {
            Some(w) => super::engine::Watch::Rank(w),
            None => super::engine::Watch::Any,
        };
        let mut found = None;
        core.rt.engine().wait_until(watch, |e| {
            found = e.probe(&want);
            found.is_some()
        })?;
        found
            .map(|s| core.translate(s))
            .ok_or_else(|| CommError::Config("probe ended without a message".into()))
    }

    /// [`Source::probe_with_tag`] for any tag.
    fn probe(&self) -> Result<Status, CommError> {
        self.probe_with_tag(ANY_TAG)
    }

    /// The status of a message with `tag` that has arrived, if one has (`MPI_Iprobe`).
    fn immediate_probe_with_tag(&self, tag: Tag) -> Result<Option<Status>, CommError> {
        let (core, rank) = self.endpoint();
        if rank == Some(PROC_NULL) {
            return Ok(Some(Status::null()));
        }
        let want = core.want(rank, wanted_tag(tag)?)?;
        let mut engine = core.rt.engine();
        engine.progress()?;
        Ok(engine.probe(&want).map(|s| core.translate(s)))
    }

    /// [`Source::immediate_probe_with_tag`] for any tag.
    fn immediate_probe(&self) -> Result<Option<Status>, CommError> {
        self.immediate_probe_with_tag(ANY_TAG)
    }

    /// Waits for a message with `tag` and takes it for one [`Message::matched_receive_into`],
    /// so that no other receive can take it (`MPI_Mprobe`).
    fn matched_probe_with_tag(&self, tag: Tag) -> Result<(Message, Status), CommError> {
        let (core, rank) = self.endpoint();
        if rank == Some(PROC_NULL) {
            return Ok((
                Message {
                    core: core.clone(),
                    key: None,
                },
                Status::null(),
            ));
        }
        let want = core.want(rank, wanted_tag(tag)?)?;
        let watch = match want.source {
            Some(w) => super::engine::Watch::Rank(w),
            None => super::engine::Watch::Any,
        };
        let mut found = None;
        core.rt.engine().wait_until(watch, |e| {
            found = e.matched_probe(&want);
            found.is_some()
        })?;
        let (key, status) =
            found.ok_or_else(|| CommError::Config("probe ended without a message".into()))?;
        let message = Message {
            core: core.clone(),
            key: Some(key),
        };
        Ok((message, core.translate(status)))
    }

    /// [`Source::matched_probe_with_tag`] for any tag.
    fn matched_probe(&self) -> Result<(Message, Status), CommError> {
        self.matched_probe_with_tag(ANY_TAG)
    }

    /// The message with `tag`, taken for one receive, if one has arrived (`MPI_Improbe`).
    fn immediate_matched_probe_with_tag(
        &self,
        tag: Tag,
    ) -> Result<Option<(Message, Status)>, CommError> {
        let (core, rank) = self.endpoint();
        if rank == Some(PROC_NULL) {
            return self.matched_probe_with_tag(tag).map(Some);
        }
        let want = core.want(rank, wanted_tag(tag)?)?;
        let mut engine = core.rt.engine();
        engine.progress()?;
        Ok(engine.matched_probe(&want).map(|(key, status)| {
            let message = Message {
                core: core.clone(),
                key: Some(key),
            };
            (message, core.translate(status))
        }))
    }

    /// [`Source::immediate_matched_probe_with_tag`] for any tag.
    fn immediate_matched_probe(&self) -> Result<Option<(Message, Status)>, CommError> {
        self.immediate_matched_probe_with_tag(ANY_TAG)
    }

    /// Receives a message with `tag` into `buf`.
    fn receive_into_with_tag<B: BufferMut + ?Sized>(
        &self,
        buf: &mut B,
        tag: Tag,
    ) -> Result<Status, CommError> {
        let (core, rank) = self.endpoint();
        // SAFETY: `buf` is borrowed until the receive is waited for, below.
        let id = unsafe { core.post_receive_message(rank, wanted_tag(tag)?, incoming(buf))? };
        core.rt.wait(id).map(|s| core.translate(s))
    }

    /// Receives a message with any tag into `buf`.
    fn receive_into<B: BufferMut + ?Sized>(&self, buf: &mut B) -> Result<Status, CommError> {
        self.receive_into_with_tag(buf, ANY_TAG)
    }

    /// Receives a message with `tag` that holds one `T`.
    fn receive_with_tag<T: Pod>(&self, tag: Tag) -> Result<(T, Status), CommError> {
        let mut value = [T::zeroed()];
        let status = self.receive_into_with_tag(&mut value, tag)?;
        Ok((value[0], status))
    }

    /// Receives a message with any tag that holds one `T`.
    fn receive<T: Pod>(&self) -> Result<(T, Status), CommError> {
        self.receive_with_tag(ANY_TAG)
    }

    /// Receives a message with `tag` of any length into a new vector (a matched probe, then its
    /// receive).
    fn receive_vec_with_tag<T: Pod>(&self, tag: Tag) -> Result<(Vec<T>, Status), CommError> {
        let (message, status) = self.matched_probe_with_tag(tag)?;
        message.matched_receive_vec(&status)
    }

    /// Receives a message with any tag of any length into a new vector.
    fn receive_vec<T: Pod>(&self) -> Result<(Vec<T>, Status), CommError> {
        self.receive_vec_with_tag(ANY_TAG)
    }

    /// Starts receiving a message with `tag` into `buf`; `scope` keeps `buf` borrowed until the
    /// receive finishes.
    fn immediate_receive_into_with_tag<'s, B: BufferMut + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s mut B,
        tag: Tag,
    ) -> Result<Request<'s, Sc>, CommError> {
        let (core, rank) = self.endpoint();
        // SAFETY: `buf` is borrowed for the scope's lifetime, which the request cannot outlive
        // unfinished (the scope waits for it).
        let id = unsafe { core.post_receive_message(rank, wanted_tag(tag)?, incoming(buf))? };
        Ok(Request::new(core, id, true, scope))
    }

    /// Starts receiving a message with any tag into `buf`.
    fn immediate_receive_into<'s, B: BufferMut + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s mut B,
    ) -> Result<Request<'s, Sc>, CommError> {
        self.immediate_receive_into_with_tag(scope, buf, ANY_TAG)
    }

    /// A persistent receive of a message with `tag` into `buf`: started with
    /// [`PersistentRequest::start`] as often as wanted (`MPI_Recv_init`).
    fn receive_init_with_tag<'s, B: BufferMut + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s mut B,
        tag: Tag,
    ) -> Result<PersistentRequest<'s, Sc>, CommError> {
        let (core, rank) = self.endpoint();
        if let Some(r) = rank.filter(|&r| r != PROC_NULL) {
            core.world_of(r)?;
        }
        Ok(PersistentRequest::receive(
            core,
            rank,
            wanted_tag(tag)?,
            incoming(buf),
            scope,
        ))
    }

    /// [`Source::receive_init_with_tag`] for any tag.
    fn receive_init<'s, B: BufferMut + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s mut B,
    ) -> Result<PersistentRequest<'s, Sc>, CommError> {
        self.receive_init_with_tag(scope, buf, ANY_TAG)
    }
}

impl<'a> Source<'a> for Process<'a> {}
impl<'a> Source<'a> for AnyProcess<'a> {}

/// Something that can be the destination of a send (rsmpi's `Destination`): a [`Process`].
///
/// Modes: standard ([`Destination::send`]) returns once the buffer may be reused (small
/// messages at once, large ones when the receiver has taken them); synchronous returns only once
/// the receive has matched; ready assumes the receive is posted (here it is a standard send,
/// which MPI allows); buffered copies the message into the attached buffer
/// ([`crate::Universe::set_buffer_size`]) and returns at once.
pub trait Destination<'a>: sealed::Endpoint<'a> {
    /// The destination's rank.
    fn destination_rank(&self) -> Rank {
        self.endpoint().1.unwrap_or(PROC_NULL)
    }

    /// Sends `buf` with `tag`; returns once `buf` may be reused.
    fn send_with_tag<B: Buffer + ?Sized>(&self, buf: &B, tag: Tag) -> Result<(), CommError> {
        let (core, rank) = self.endpoint();
        core.send_message(
            rank.unwrap_or(PROC_NULL),
            send_tag(tag)?,
            outgoing(buf),
            false,
        )
    }

    /// Sends `buf` with tag 0.
    fn send<B: Buffer + ?Sized>(&self, buf: &B) -> Result<(), CommError> {
        self.send_with_tag(buf, 0)
    }

    /// Sends `buf` with `tag`; returns once the receiver's receive has matched it (`MPI_Ssend`).
    fn synchronous_send_with_tag<B: Buffer + ?Sized>(
        &self,
        buf: &B,
        tag: Tag,
    ) -> Result<(), CommError> {
        let (core, rank) = self.endpoint();
        core.send_message(
            rank.unwrap_or(PROC_NULL),
            send_tag(tag)?,
            outgoing(buf),
            true,
        )
    }

    /// [`Destination::synchronous_send_with_tag`] with tag 0.
    fn synchronous_send<B: Buffer + ?Sized>(&self, buf: &B) -> Result<(), CommError> {
        self.synchronous_send_with_tag(buf, 0)
    }

    /// Sends `buf` with `tag` to a receive that is already posted (`MPI_Rsend`).
    fn ready_send_with_tag<B: Buffer + ?Sized>(&self, buf: &B, tag: Tag) -> Result<(), CommError> {
        self.send_with_tag(buf, tag)
    }

    /// [`Destination::ready_send_with_tag`] with tag 0.
    fn ready_send<B: Buffer + ?Sized>(&self, buf: &B) -> Result<(), CommError> {
        self.ready_send_with_tag(buf, 0)
    }

    /// Copies `buf` into the attached buffer and sends it from there (`MPI_Bsend`);
    /// [`CommError::BufferTooSmall`] when the attached buffer cannot hold it now.
    fn buffered_send_with_tag<B: Buffer + ?Sized>(
        &self,
        buf: &B,
        tag: Tag,
    ) -> Result<(), CommError> {
        let (core, rank) = self.endpoint();
        core.buffered_send_message(rank.unwrap_or(PROC_NULL), send_tag(tag)?, outgoing(buf))
    }

    /// [`Destination::buffered_send_with_tag`] with tag 0.
    fn buffered_send<B: Buffer + ?Sized>(&self, buf: &B) -> Result<(), CommError> {
        self.buffered_send_with_tag(buf, 0)
    }

    /// Starts sending `buf` with `tag` in `mode`.
    #[doc(hidden)]
    fn immediate_send_in<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
        tag: Tag,
        mode: SendMode,
    ) -> Result<Request<'s, Sc>, CommError> {
        let (core, rank) = self.endpoint();
        let rank = rank.unwrap_or(PROC_NULL);
        let tag = send_tag(tag)?;
        let message = outgoing(buf);
        let id = match mode {
            SendMode::Buffered => {
                let len = message.len();
                core.buffered_send_message(rank, tag, message)?;
                core.completed(Status::new(core.rank(), tag, len))
            }
            // SAFETY: `buf` is borrowed for the scope's lifetime, which the request cannot
            // outlive unfinished (the scope waits for it).
            _ => unsafe {
                core.post_send_message(rank, tag, &message, mode == SendMode::Synchronous)?
            },
        };
        Ok(Request::new(core, id, false, scope))
    }

    /// Starts sending `buf` with `tag`; `scope` keeps `buf` borrowed until the send finishes
    /// (`MPI_Isend`).
    fn immediate_send_with_tag<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
        tag: Tag,
    ) -> Result<Request<'s, Sc>, CommError> {
        self.immediate_send_in(scope, buf, tag, SendMode::Standard)
    }

    /// [`Destination::immediate_send_with_tag`] with tag 0.
    fn immediate_send<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
    ) -> Result<Request<'s, Sc>, CommError> {
        self.immediate_send_with_tag(scope, buf, 0)
    }

    /// Starts a synchronous send (`MPI_Issend`): it finishes once the receive has matched.
    fn immediate_synchronous_send_with_tag<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
        tag: Tag,
    ) -> Result<Request<'s, Sc>, CommError> {
        self.immediate_send_in(scope, buf, tag, SendMode::Synchronous)
    }

    /// [`Destination::immediate_synchronous_send_with_tag`] with tag 0.
    fn immediate_synchronous_send<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
    ) -> Result<Request<'s, Sc>, CommError> {
        self.immediate_synchronous_send_with_tag(scope, buf, 0)
    }

    /// Starts a ready send (`MPI_Irsend`).
    fn immediate_ready_send_with_tag<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
        tag: Tag,
    ) -> Result<Request<'s, Sc>, CommError> {
        self.immediate_send_in(scope, buf, tag, SendMode::Ready)
    }

    /// [`Destination::immediate_ready_send_with_tag`] with tag 0.
    fn immediate_ready_send<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
    ) -> Result<Request<'s, Sc>, CommError> {
        self.immediate_ready_send_with_tag(scope, buf, 0)
    }

    /// Starts a buffered send (`MPI_Ibsend`): the copy is made at once, so the request is
    /// finished when it is returned.
    fn immediate_buffered_send_with_tag<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
        tag: Tag,
    ) -> Result<Request<'s, Sc>, CommError> {
        self.immediate_send_in(scope, buf, tag, SendMode::Buffered)
    }

    /// [`Destination::immediate_buffered_send_with_tag`] with tag 0.
    fn immediate_buffered_send<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
    ) -> Result<Request<'s, Sc>, CommError> {
        self.immediate_buffered_send_with_tag(scope, buf, 0)
    }

    /// A persistent send of `buf` with `tag` in `mode` (`MPI_Send_init`, `MPI_Ssend_init`,
    /// `MPI_Rsend_init`, `MPI_Bsend_init`), started with [`PersistentRequest::start`].
    fn send_init_in<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
        tag: Tag,
        mode: SendMode,
    ) -> Result<PersistentRequest<'s, Sc>, CommError> {
        let (core, rank) = self.endpoint();
        let rank = rank.unwrap_or(PROC_NULL);
        if rank != PROC_NULL {
            core.world_of(rank)?;
        }
        Ok(PersistentRequest::send(
            core,
            rank,
            send_tag(tag)?,
            outgoing(buf),
            mode,
            scope,
        ))
    }

    /// A persistent standard send of `buf` with `tag`.
    fn send_init_with_tag<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
        tag: Tag,
    ) -> Result<PersistentRequest<'s, Sc>, CommError> {
        self.send_init_in(scope, buf, tag, SendMode::Standard)
    }

    /// A persistent standard send of `buf` with tag 0.
    fn send_init<'s, B: Buffer + ?Sized, Sc: Scope<'s>>(
        &self,
        scope: Sc,
        buf: &'s B,
    ) -> Result<PersistentRequest<'s, Sc>, CommError> {
        self.send_init_with_tag(scope, buf, 0)
    }
}

impl<'a> Destination<'a> for Process<'a> {}

/// The communicator two endpoints share, or an error.
fn shared_core<'a>(
    a: &'a Rc<CommCore>,
    b: &'a Rc<CommCore>,
) -> Result<&'a Rc<CommCore>, CommError> {
    if Rc::ptr_eq(a, b) {
        Ok(a)
    } else {
        Err(CommError::InvalidArgument(
            "send-receive: the destination and the source are of different communicators".into(),
        ))
    }
}

/// Sends `msg` to `destination` with `send_tag` while receiving into `buf` a message from
/// `source` with `receive_tag` (`MPI_Sendrecv`); both finish before it returns.
pub fn send_receive_into_with_tags<'a, M: Buffer + ?Sized, B: BufferMut + ?Sized>(
    msg: &M,
    destination: &Process<'a>,
    send_tag: Tag,
    buf: &mut B,
    source: &impl Source<'a>,
    receive_tag: Tag,
) -> Result<Status, CommError> {
    shared_core(destination.core, source.endpoint().0)?;
    super::request::scope(|scope| -> Result<Status, CommError> {
        let received = source.immediate_receive_into_with_tag(scope, buf, receive_tag)?;
        let sent = destination.immediate_send_with_tag(scope, msg, send_tag);
        let got = received.wait();
        sent?.wait()?;
        got
    })
}

/// [`send_receive_into_with_tags`] with send tag 0 and any receive tag.
pub fn send_receive_into<'a, M: Buffer + ?Sized, B: BufferMut + ?Sized>(
    msg: &M,
    destination: &Process<'a>,
    buf: &mut B,
    source: &impl Source<'a>,
) -> Result<Status, CommError> {
    send_receive_into_with_tags(msg, destination, 0, buf, source, ANY_TAG)
}

/// Sends `buf` to `destination` with `send_tag` and replaces it with the message received from
/// `source` with `receive_tag` (`MPI_Sendrecv_replace`); a message longer than `buf` is
/// [`CommError::Truncated`].
pub fn send_receive_replace_into_with_tags<'a, B: Pod>(
    buf: &mut [B],
    destination: &Process<'a>,
    send_tag: Tag,
    source: &impl Source<'a>,
    receive_tag: Tag,
) -> Result<Status, CommError> {
    let out = buf.to_vec();
    send_receive_into_with_tags(&out, destination, send_tag, buf, source, receive_tag)
}

/// [`send_receive_replace_into_with_tags`] with send tag 0 and any receive tag.
pub fn send_receive_replace_into<'a, B: Pod>(
    buf: &mut [B],
    destination: &Process<'a>,
    source: &impl Source<'a>,
) -> Result<Status, CommError> {
    send_receive_replace_into_with_tags(buf, destination, 0, source, ANY_TAG)
}
