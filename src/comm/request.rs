//! Requests: operations in flight, and the scopes that keep their buffers alive.
//!
//! A request lends its buffer to the runtime (and, for single copy, to the peer's kernel calls).
//! Its lifetime `'a` is its scope's: [`scope`] gives a [`LocalScope`] that does not end before
//! every request issued in it has finished (it waits for them), so buffers borrowed from the
//! caller stay borrowed until then; [`StaticScope`] takes `'static` buffers and lets requests
//! live anywhere. A request dropped without `wait` is waited for on the spot; one given up with
//! [`Request::free`] finishes on its own. So a peer never reads or writes memory that has been
//! freed or handed back to the program.
//!
//! Completion: [`Request::wait`] and [`Request::test`] for one; [`wait_any`], [`wait_some`],
//! [`wait_all`], [`test_any`], [`test_some`] and [`test_all`] for several, of any kind
//! (immediate and persistent, sends and receives, any communicators). Every call into the
//! runtime moves every pending request forward, so a program blocked on one request never
//! stalls a peer that waits on another.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::rc::Rc;

use super::buffer::{Incoming, Outgoing};
use super::communicator::{CommCore, Rank, Tag};
use super::engine::ReqId;
use super::{CommError, Status};

/// How a send completes (see [`super::point_to_point::Destination`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMode {
    /// Once the buffer may be reused.
    Standard,
    /// Once the receive has matched.
    Synchronous,
    /// To a receive already posted.
    Ready,
    /// From a copy in the attached buffer, at once.
    Buffered,
}

/// What a scope keeps track of: one request, or a persistent request's current one.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum Slot {
    Once(ReqId),
    Persistent(Rc<Cell<Option<ReqId>>>),
}

impl Slot {
    fn current(&self) -> Option<ReqId> {
        match self {
            Slot::Once(id) => Some(*id),
            Slot::Persistent(cell) => cell.get(),
        }
    }
}

mod sealed {
    pub trait Registers {
        fn register(&self, core: &std::rc::Rc<super::CommCore>, slot: super::Slot);
    }

    pub trait Completes {
        fn pending(&self) -> Option<(std::rc::Rc<super::CommCore>, super::ReqId)>;
        fn complete(
            &mut self,
            result: Result<super::Status, super::CommError>,
        ) -> Result<super::Status, super::CommError>;
    }
}

/// Where requests live: `&LocalScope<'a>` (from [`scope`]) for borrowed buffers,
/// [`StaticScope`] for `'static` ones (rsmpi's `Scope`).
pub trait Scope<'a>: sealed::Registers {}

/// The scope [`scope`] hands its closure: it waits, when the closure returns, for every request
/// issued in it that is still unfinished.
pub struct LocalScope<'a> {
    issued: RefCell<Vec<(Rc<CommCore>, Slot)>>,
    /// When `issued` is this long, finished requests are dropped from it.
    prune_at: Cell<usize>,
    _scope: PhantomData<Cell<&'a mut ()>>,
}

impl std::fmt::Debug for LocalScope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalScope")
            .field("issued", &self.issued.borrow().len())
            .finish()
    }
}

impl sealed::Registers for &LocalScope<'_> {
    fn register(&self, core: &Rc<CommCore>, slot: Slot) {
        let mut issued = self.issued.borrow_mut();
        if issued.len() >= self.prune_at.get() {
            issued.retain(|(core, slot)| slot.current().is_some_and(|id| core.rt.is_pending(id)));
            self.prune_at.set((issued.len() * 2).max(64));
        }
        issued.push((core.clone(), slot));
    }
}

impl<'a> Scope<'a> for &LocalScope<'a> {}

impl LocalScope<'_> {
    /// Waits for every request issued in this scope that is still unfinished.
    fn finish_all(&self) {
        let issued: Vec<(Rc<CommCore>, Slot)> = self.issued.borrow_mut().drain(..).collect();
        for (core, slot) in issued {
            let Some(id) = slot.current() else { continue };
            if core.rt.is_pending(id) {
                let waited = core.rt.engine().wait_done(id);
                if let Err(e) = waited {
                    core.rt.engine().abandon(id, e.clone());
                    tracing::warn!(
                        "a request of a scope ended with an error nobody collected: {e}"
                    );
                }
            }
        }
    }
}

/// The scope of requests whose buffers are `'static`: they may live anywhere (rsmpi's
/// `StaticScope`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticScope;

impl sealed::Registers for StaticScope {
    fn register(&self, _: &Rc<CommCore>, _: Slot) {}
}

impl Scope<'static> for StaticScope {}

/// Runs `f` with a scope for requests; returns after every request issued in it has finished.
///
/// ```no_run
/// use onecopy::traits::*;
/// let universe = onecopy::initialize().expect("run me with `onecopy run`");
/// let world = universe.world();
/// let data = [1.0f64; 1024];
/// let mut back = [0.0f64; 1024];
/// onecopy::request::scope(|scope| -> Result<(), onecopy::CommError> {
///     let peer = world.process_at_rank(1 - world.rank());
///     let sent = peer.immediate_send(scope, &data)?;
///     let received = peer.immediate_receive_into(scope, &mut back)?;
///     sent.wait()?;
///     received.wait()?;
///     Ok(())
/// })
/// .expect("exchange");
/// ```
pub fn scope<'a, F, R>(f: F) -> R
where
    F: FnOnce(&LocalScope<'a>) -> R,
{
    let scope = LocalScope {
        issued: RefCell::new(Vec::new()),
        prune_at: Cell::new(64),
        _scope: PhantomData,
    };
    // Even if `f` panics, the buffers it lent stay untouched until every request has finished.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&scope)));
    scope.finish_all();
    match result {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The status a finished request reports: a receive's source as a rank of its communicator, a
/// send's as this rank.
fn reported(
    core: &CommCore,
    receive: bool,
    result: Result<Status, CommError>,
) -> Result<Status, CommError> {
    result.map(|mut s| {
        if receive {
            core.translate(s)
        } else {
            s.set_source(core.rank());
            s
        }
    })
}

/// An operation in flight (rsmpi's `Request`). Wait for it with [`Request::wait`]; dropping it
/// waits too.
#[must_use = "a request must be waited on; dropping it blocks until it finishes"]
pub struct Request<'a, S: Scope<'a> = StaticScope> {
    core: Rc<CommCore>,
    id: ReqId,
    receive: bool,
    finished: bool,
    _scope: PhantomData<(S, &'a ())>,
}

impl<'a, S: Scope<'a>> std::fmt::Debug for Request<'a, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("receive", &self.receive)
            .finish()
    }
}

impl<'a, S: Scope<'a>> Request<'a, S> {
    pub(crate) fn new(core: &Rc<CommCore>, id: ReqId, receive: bool, scope: S) -> Self {
        sealed::Registers::register(&scope, core, Slot::Once(id));
        Request {
            core: core.clone(),
            id,
            receive,
            finished: false,
            _scope: PhantomData,
        }
    }

    /// Blocks until the operation finishes (`MPI_Wait`).
    pub fn wait(mut self) -> Result<Status, CommError> {
        self.finished = true;
        let result = self.core.rt.wait(self.id);
        reported(&self.core, self.receive, result)
    }

    /// The result if the operation has finished, or the request back if not (`MPI_Test`).
    pub fn test(mut self) -> Result<Result<Status, CommError>, Self> {
        match self.core.rt.test(self.id) {
            Some(result) => {
                self.finished = true;
                Ok(reported(&self.core, self.receive, result))
            }
            None => Err(self),
        }
    }

    /// The result if the operation has finished, without completing the request
    /// (`MPI_Request_get_status`): it is still to be waited for.
    pub fn get_status(&self) -> Option<Result<Status, CommError>> {
        let mut engine = self.core.rt.engine();
        let _ = engine.progress();
        let result = engine.result_of(self.id)?;
        Some(reported(&self.core, self.receive, result))
    }

    /// Cancels a receive that has not matched a message yet (`MPI_Cancel`): it finishes at once
    /// and its status says [`Status::is_cancelled`]. A send, or a receive already matched,
    /// finishes as it would have.
    pub fn cancel(&self) {
        self.core.rt.engine().cancel(self.id);
    }

    /// Gives the request up (`MPI_Request_free`): the operation still finishes, and a send's
    /// buffer is read to its end, but nobody learns its result. In a [`LocalScope`] the scope
    /// still waits for it.
    pub fn free(mut self) {
        self.finished = true;
        self.core.rt.engine().detach(self.id);
    }
}

impl<'a, S: Scope<'a>> Drop for Request<'a, S> {
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = self.core.rt.wait(self.id)
        {
            tracing::warn!("a dropped request finished with an error: {e}");
        }
    }
}

/// What a persistent request does each time it is started.
#[derive(Debug, Clone)]
enum Op {
    Send {
        rank: Rank,
        tag: Tag,
        data: Outgoing,
        mode: SendMode,
    },
    Receive {
        rank: Option<Rank>,
        tag: Option<Tag>,
        buf: Incoming,
    },
}

/// A communication set up once and started many times (`MPI_Send_init`, `MPI_Recv_init` and
/// their modes, `MPI_Start`): made by [`super::point_to_point::Destination::send_init`] and
/// [`super::point_to_point::Source::receive_init`]. Between a start and the completion of that
/// operation it is active; waiting on an inactive one returns at once with an empty status.
pub struct PersistentRequest<'a, S: Scope<'a> = StaticScope> {
    core: Rc<CommCore>,
    op: Op,
    active: Rc<Cell<Option<ReqId>>>,
    _scope: PhantomData<(S, &'a ())>,
}

impl<'a, S: Scope<'a>> std::fmt::Debug for PersistentRequest<'a, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentRequest")
            .field("op", &self.op)
            .field("active", &self.active.get())
            .finish()
    }
}

impl<'a, S: Scope<'a>> PersistentRequest<'a, S> {
    fn new(core: &Rc<CommCore>, op: Op, scope: S) -> Self {
        let active = Rc::new(Cell::new(None));
        sealed::Registers::register(&scope, core, Slot::Persistent(active.clone()));
        PersistentRequest {
            core: core.clone(),
            op,
            active,
            _scope: PhantomData,
        }
    }

    pub(crate) fn send(
        core: &Rc<CommCore>,
        rank: Rank,
        tag: Tag,
        data: Outgoing,
        mode: SendMode,
        scope: S,
    ) -> Self {
        PersistentRequest::new(
            core,
            Op::Send {
                rank,
                tag,
                data,
                mode,
            },
            scope,
        )
    }

    pub(crate) fn receive(
        core: &Rc<CommCore>,
        rank: Option<Rank>,
        tag: Option<Tag>,
        buf: Incoming,
        scope: S,
    ) -> Self {
        PersistentRequest::new(core, Op::Receive { rank, tag, buf }, scope)
    }

    /// Whether it has been started and not completed since.
    pub fn is_active(&self) -> bool {
        self.active.get().is_some()
    }

    /// Starts the operation (`MPI_Start`); an error if it is active already.
    pub fn start(&mut self) -> Result<(), CommError> {
        if self.is_active() {
            return Err(CommError::InvalidArgument(
                "a persistent request was started again before it completed".into(),
            ));
        }
        let core = &self.core;
        // SAFETY: the buffers were borrowed for the scope's lifetime when the request was made;
        // the scope does not end while the operation is active (it waits for it).
        let id = unsafe {
            match &self.op {
                Op::Send {
                    rank,
                    tag,
                    data,
                    mode: SendMode::Buffered,
                } => {
                    core.buffered_send_message(*rank, *tag, data.clone())?;
                    core.completed(Status::new(core.rank(), *tag, data.len()))
                }
                Op::Send {
                    rank,
                    tag,
                    data,
                    mode,
                } => core.post_send_message(*rank, *tag, data, *mode == SendMode::Synchronous)?,
                Op::Receive { rank, tag, buf } => {
                    core.post_receive_message(*rank, *tag, buf.clone())?
                }
            }
        };
        self.active.set(Some(id));
        Ok(())
    }

    fn receives(&self) -> bool {
        matches!(self.op, Op::Receive { .. })
    }

    /// Waits for the active operation; at once, with an empty status, if none is active.
    pub fn wait(&mut self) -> Result<Status, CommError> {
        let Some(id) = self.active.take() else {
            return Ok(Status::null());
        };
        let result = self.core.rt.wait(id);
        reported(&self.core, self.receives(), result)
    }

    /// The active operation's result if it has finished (then the request is inactive again);
    /// `Some` empty status if none is active.
    pub fn test(&mut self) -> Result<Option<Status>, CommError> {
        let Some(id) = self.active.get() else {
            return Ok(Some(Status::null()));
        };
        match self.core.rt.test(id) {
            Some(result) => {
                self.active.set(None);
                reported(&self.core, self.receives(), result).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Cancels the active operation if it is a receive not matched yet.
    pub fn cancel(&self) {
        if let Some(id) = self.active.get() {
            self.core.rt.engine().cancel(id);
        }
    }
}

impl<'a, S: Scope<'a>> Drop for PersistentRequest<'a, S> {
    fn drop(&mut self) {
        if self.is_active()
            && let Err(e) = self.wait()
        {
            tracing::warn!("a dropped persistent request finished with an error: {e}");
        }
    }
}

/// Starts every request of `requests` (`MPI_Startall`); stops at the first that fails.
pub fn start_all<'a, S: Scope<'a>>(
    requests: &mut [PersistentRequest<'a, S>],
) -> Result<(), CommError> {
    requests.iter_mut().try_for_each(PersistentRequest::start)
}

/// Something [`wait_any`] and its siblings complete: a request slot (`Option<Request>`, `None`
/// once completed, as `MPI_REQUEST_NULL`) or a [`PersistentRequest`].
pub trait Completion: sealed::Completes {}

impl<'a, S: Scope<'a>> sealed::Completes for Option<Request<'a, S>> {
    fn pending(&self) -> Option<(Rc<CommCore>, ReqId)> {
        self.as_ref().map(|r| (r.core.clone(), r.id))
    }

    fn complete(&mut self, result: Result<Status, CommError>) -> Result<Status, CommError> {
        match self.take() {
            Some(mut r) => {
                r.finished = true;
                reported(&r.core, r.receive, result)
            }
            None => result,
        }
    }
}

impl<'a, S: Scope<'a>> Completion for Option<Request<'a, S>> {}

impl<'a, S: Scope<'a>> sealed::Completes for PersistentRequest<'a, S> {
    fn pending(&self) -> Option<(Rc<CommCore>, ReqId)> {
        self.active.get().map(|id| (self.core.clone(), id))
    }

    fn complete(&mut self, result: Result<Status, CommError>) -> Result<Status, CommError> {
        self.active.set(None);
        reported(&self.core, self.receives(), result)
    }
}

impl<'a, S: Scope<'a>> Completion for PersistentRequest<'a, S> {}

impl<T: sealed::Completes + ?Sized> sealed::Completes for &mut T {
    fn pending(&self) -> Option<(Rc<CommCore>, ReqId)> {
        (**self).pending()
    }

    fn complete(&mut self, result: Result<Status, CommError>) -> Result<Status, CommError> {
        (**self).complete(result)
    }
}

impl<T: Completion + ?Sized> Completion for &mut T {}

/// The pending requests of `requests`: (index, core, id).
fn pending<C: Completion>(requests: &[C]) -> Vec<(usize, Rc<CommCore>, ReqId)> {
    requests
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.pending().map(|(core, id)| (i, core, id)))
        .collect()
}

/// Completes the finished ones of `live`, at most `most`; their indices and results.
fn collect_done<C: Completion>(
    requests: &mut [C],
    live: &[(usize, Rc<CommCore>, ReqId)],
    most: usize,
) -> Vec<(usize, Result<Status, CommError>)> {
    let mut done = Vec::new();
    for (i, core, id) in live {
        if done.len() == most {
            break;
        }
        let result = {
            let mut engine = core.rt.engine();
            if !engine.is_done(*id) {
                continue;
            }
            engine
                .take(*id)
                .unwrap_or_else(|| Err(CommError::Config(format!("request {id} is not known"))))
        };
        done.push((*i, requests[*i].complete(result)));
    }
    done
}

/// Waits until one of `requests` has finished and completes it (`MPI_Waitany`): its index
/// and result; `None` when none is pending.
pub fn wait_any<C: Completion>(requests: &mut [C]) -> Option<(usize, Result<Status, CommError>)> {
    let live = pending(requests);
    let (_, core, _) = live.first()?;
    let ids: Vec<ReqId> = live.iter().map(|l| l.2).collect();
    core.rt.engine().wait_any_of(&ids);
    collect_done(requests, &live, 1)
        .into_iter()
        .next()
        .or_else(|| {
            // Every listed request belongs to this process's one runtime, so one finished.
            Some((
                live[0].0,
                requests[live[0].0].complete(Err(CommError::Config(
                    "a request finished in another runtime".into(),
                ))),
            ))
        })
}

/// Waits until at least one of `requests` has finished and completes every finished one
/// (`MPI_Waitsome`): their indices and results, empty when none is pending.
pub fn wait_some<C: Completion>(requests: &mut [C]) -> Vec<(usize, Result<Status, CommError>)> {
    let live = pending(requests);
    let Some((_, core, _)) = live.first() else {
        return Vec::new();
    };
    let ids: Vec<ReqId> = live.iter().map(|l| l.2).collect();
    core.rt.engine().wait_any_of(&ids);
    collect_done(requests, &live, usize::MAX)
}

/// Waits for every one of `requests` (`MPI_Waitall`): each one's result in order, an empty
/// status for those not pending.
pub fn wait_all<C: Completion>(requests: &mut [C]) -> Vec<Result<Status, CommError>> {
    let mut results: Vec<Result<Status, CommError>> =
        (0..requests.len()).map(|_| Ok(Status::null())).collect();
    loop {
        let done = wait_some(requests);
        if done.is_empty() {
            return results;
        }
        for (i, r) in done {
            results[i] = r;
        }
    }
}

/// Completes one finished request of `requests` after a round of progress (`MPI_Testany`).
pub fn test_any<C: Completion>(requests: &mut [C]) -> Option<(usize, Result<Status, CommError>)> {
    test_at_most(requests, 1).into_iter().next()
}

/// Completes every finished request of `requests` after a round of progress (`MPI_Testsome`).
pub fn test_some<C: Completion>(requests: &mut [C]) -> Vec<(usize, Result<Status, CommError>)> {
    test_at_most(requests, usize::MAX)
}

/// Completes at most `most` finished requests of `requests` after a round of progress.
fn test_at_most<C: Completion>(
    requests: &mut [C],
    most: usize,
) -> Vec<(usize, Result<Status, CommError>)> {
    let live = pending(requests);
    let Some((_, core, _)) = live.first() else {
        return Vec::new();
    };
    let progressed = core.rt.progress();
    if let Err(e) = progressed {
        tracing::debug!("progress failed while testing requests: {e}");
    }
    collect_done(requests, &live, most)
}

/// After a round of progress, every result if all of `requests` have finished (they are then
/// completed); `None`, leaving them all pending, if any has not (`MPI_Testall`).
pub fn test_all<C: Completion>(requests: &mut [C]) -> Option<Vec<Result<Status, CommError>>> {
    let live = pending(requests);
    if let Some((_, core, _)) = live.first() {
        let _ = core.rt.progress();
        if live.iter().any(|(_, c, id)| !c.rt.engine().is_done(*id)) {
            return None;
        }
    }
    Some(wait_all(requests))
}
