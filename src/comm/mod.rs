//! The MPI-style runtime: ranks started by `onecopy run`, point-to-point messages with inline,
//! eager and single-copy rendezvous protocols, and non-blocking requests in scopes.
//!
//! Names follow rsmpi (the `mpi` crate): [`initialize`], [`Universe::world`],
//! [`World::process_at_rank`], [`Peer::send`], [`Peer::receive_into`], [`World::any_process`],
//! [`Peer::immediate_send`] inside [`scope`]. Unlike rsmpi, operations return `Result`: a dead
//! peer, a truncated message or a corrupt record is an error value, not an abort.
//!
//! This module owns the rank's view of the job; the shared segment's layout is in [`layout`], the
//! rings in `ring`, the protocols in `engine`.

mod engine;
pub mod layout;
pub mod request;
mod ring;
pub(crate) mod tags;
mod wire;

use std::cell::RefCell;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

pub use layout::{Layout, MAX_RANKS};
pub use request::{Request, Scope, scope};

use crate::shm::Segment;
use crate::vm::{Process, VmError};
pub(crate) use engine::Combine;
use engine::{ANY, Engine, Limits, Watch};

/// Errors of the runtime.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommError {
    /// The job's environment or segment is not usable.
    #[error("{0}")]
    Config(String),
    /// A `vm` call failed.
    #[error("{0}")]
    Vm(String),
    /// A peer rank's process has exited.
    #[error("rank {rank} (pid {pid}) has exited; the job cannot continue")]
    PeerGone {
        /// The rank.
        rank: i32,
        /// Its process id.
        pid: i32,
    },
    /// A message was larger than the receive buffer.
    #[error(
        "message of {len} bytes from rank {sender} (tag {tag}) does not fit the {capacity}-byte receive buffer"
    )]
    Truncated {
        /// The sender.
        sender: i32,
        /// The tag.
        tag: i32,
        /// The message length.
        len: usize,
        /// The receive buffer's length.
        capacity: usize,
    },
    /// The receiver did not take a message sent to it.
    #[error("rank {rank} refused the message: {why}")]
    ReceiverRefused {
        /// The receiver.
        rank: i32,
        /// Why.
        why: String,
    },
    /// A peer broke the protocol (a corrupt record in shared memory, an unknown id).
    #[error("protocol error from rank {rank}: {what}")]
    Protocol {
        /// The peer.
        rank: i32,
        /// What was wrong.
        what: String,
    },
    /// A rank number outside the world.
    #[error("rank {rank} is not in this world of {size} ranks")]
    InvalidRank {
        /// The rank asked for.
        rank: i32,
        /// The world's size.
        size: i32,
    },
    /// A negative tag (negative tags are reserved).
    #[error("tag {0} is negative; tags are 0 or more")]
    InvalidTag(i32),
    /// A collective's arguments are unusable on this rank (checked before anything is sent).
    #[error("invalid collective arguments: {0}")]
    InvalidArgument(String),
    /// Ranks called a collective with arguments that do not agree (different counts or roots).
    #[error("collective arguments differ between ranks: {what} (rank {rank})")]
    Mismatch {
        /// The peer whose message did not fit.
        rank: i32,
        /// What differed.
        what: String,
    },
}

impl From<VmError> for CommError {
    fn from(e: VmError) -> Self {
        CommError::Vm(e.to_string())
    }
}

impl From<crate::shm::ShmError> for CommError {
    fn from(e: crate::shm::ShmError) -> Self {
        CommError::Config(e.to_string())
    }
}

/// How large messages move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The receiver pulls with `process_vm_readv`.
    CmaRead,
    /// Both copy at once: the receiver pulls chunks, the sender pushes the others.
    CmaSplit,
    /// No single copy: streamed through shared-memory slots.
    Shm,
}

impl Mode {
    /// The transport's name, as in `onecopy::transport::NAMES`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::CmaRead => "cma-read",
            Mode::CmaSplit => "cma-split",
            Mode::Shm => "shm-copy",
        }
    }
}

/// What a completed operation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    source: i32,
    tag: i32,
    count_bytes: usize,
}

impl Status {
    /// The rank that sent the message.
    pub fn source_rank(&self) -> i32 {
        self.source
    }

    /// The message's tag.
    pub fn tag(&self) -> i32 {
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
}

/// Spinning, then sleeping, while a rank waits for something to happen.
/// How often a rank slept while waiting ([`World::sleep_stats`]).
///
/// A waiting rank spins for a while (1 ms, `ONECOPY_SPIN_US`), then sleeps until a peer rings
/// it or [`crate::transport::POLL_INTERVAL`] has passed. Sleeps that ran the whole interval
/// while peers were sending mean rings that did not wake this rank (or peers that were not
/// running): each cost this rank that much latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SleepStats {
    /// Sleeps begun.
    pub sleeps: u64,
    /// Sleeps that lasted the whole interval: no ring came.
    pub full_intervals: u64,
}

/// Rounds of progress a rank spins before yielding when the rank it waits for likely runs on
/// another CPU (see [`Idle::pause_unless`]).
const SPIN_ACROSS_ROUNDS: u32 = 128;

pub(crate) struct Idle {
    since: Option<Instant>,
    spins: u32,
    watch: Watch,
}

impl Idle {
    /// Waiting for something from the peers `watch` names.
    pub fn new(watch: Watch) -> Idle {
        Idle {
            since: None,
            spins: 0,
            watch,
        }
    }

    /// Called after a fruitless (or fruitful: `moved`) round of progress.
    pub fn pause(&mut self, engine: &mut Engine, moved: bool) -> Result<(), CommError> {
        self.pause_unless(engine, moved, |_| false)
    }

    /// [`Idle::pause`] for a waiter whose condition a peer may satisfy without sending it a
    /// record: `ready` is checked after the sleep is announced, and the sleep skipped if it holds.
    pub fn pause_unless(
        &mut self,
        engine: &mut Engine,
        moved: bool,
        ready: impl Fn(&Engine) -> bool,
    ) -> Result<(), CommError> {
        if moved {
            self.since = None;
            self.spins = 0;
            return Ok(());
        }
        self.spins = self.spins.wrapping_add(1);
        // The clock is read every 64 rounds only: a round is tens of nanoseconds. With more
        // ranks than CPUs every round is a yield instead, and the clock is read each time.
        if !engine.oversubscribed && !self.spins.is_multiple_of(64) {
            std::hint::spin_loop();
            return Ok(());
        }
        // More ranks than CPUs, but the one rank this rank waits for is bound to another CPU
        // that it shares with at most one other: it is running now as often as not, and a few
        // microseconds of spinning are cheaper than giving this CPU away and back. 4 ranks on
        // 2 CPUs: 8-byte all-reduce 3.3-3.4 µs a call yielding at once, 1.9-2.0 spinning first;
        // all-to-all 2.7-3.0 and 2.4-2.7. With 4 ranks to a CPU (8 on 2) it did not pay: the
        // 8-byte all-reduce took 28 µs instead of 14.
        if engine.oversubscribed
            && self.spins <= SPIN_ACROSS_ROUNDS
            && let Watch::Rank(p) = self.watch
            && engine.waits_on_one_across(p)
        {
            std::hint::spin_loop();
            return Ok(());
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if engine.oversubscribed {
            // More ranks than CPUs: the rank we wait for may need this very CPU, so give it
            // away now, and sleep soon (a tenth of the spin budget).
            std::thread::yield_now();
            if since.elapsed() < crate::shm::spin_budget() {
                return Ok(());
            }
        } else if since.elapsed() < crate::shm::spin_budget() {
            if self.spins.is_multiple_of(1024) {
                std::thread::yield_now();
            }
            return Ok(());
        }
        let seen = engine.world.rank(engine.me).bell.announce_sleep();
        let again = engine.progress();
        // A peer that is already gone will never ring: sleeping on it would cost every pending
        // request one interval (a window of 64 sends to a dead rank took over a second).
        if let Ok(false) = again
            && !ready(engine)
            && engine.check_peers(self.watch).is_ok()
        {
            let start = Instant::now();
            engine
                .world
                .rank(engine.me)
                .bell
                .sleep(seen, crate::transport::POLL_INTERVAL);
            engine.sleeps.sleeps += 1;
            if start.elapsed() >= crate::transport::POLL_INTERVAL {
                engine.sleeps.full_intervals += 1;
            }
        }
        engine.world.rank(engine.me).bell.finish_sleep();
        if again? {
            self.since = None;
            return Ok(());
        }
        if let Err(e) = engine.check_peers(self.watch) {
            // Whatever it sent before exiting is still in the rings.
            if engine.progress()? {
                self.since = None;
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }
}

struct Shared {
    engine: RefCell<Engine>,
    rank: i32,
    size: i32,
}

/// The job this process belongs to.
pub struct Universe {
    world: World,
}

impl std::fmt::Debug for Universe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Universe")
            .field("rank", &self.world.rank())
            .field("size", &self.world.size())
            .finish()
    }
}

impl Universe {
    /// All ranks of the job.
    pub fn world(&self) -> World {
        self.world.clone()
    }

    /// A world of one process (this one), for programs started without `onecopy run`.
    pub fn single() -> Result<Universe, CommError> {
        let layout = Layout {
            ranks: 1,
            ring_cells: 64,
            eager_slots: 1,
            eager_slot_bytes: 4096,
        };
        let segment = Segment::create("onecopy-single", layout.bytes())?;
        layout::World::init(&segment, &layout)?;
        let world = layout::World::open(segment, 1)?;
        let limits = Limits {
            inline: usize::MAX,
            eager: usize::MAX,
            chunk: crate::transport::cma_chunk_bytes(),
            cma_threshold: usize::MAX,
        };
        let engine = Engine::new(world, 0, vec![None], Mode::Shm, limits);
        Ok(Universe {
            world: World {
                shared: Rc::new(Shared {
                    engine: RefCell::new(engine),
                    rank: 0,
                    size: 1,
                }),
            },
        })
    }
}

/// The communicator of all ranks (rsmpi's `SimpleCommunicator` for the world).
#[derive(Clone)]
pub struct World {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("rank", &self.rank())
            .field("size", &self.size())
            .finish()
    }
}

impl World {
    /// This process's rank.
    pub fn rank(&self) -> i32 {
        self.shared.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> i32 {
        self.shared.size
    }

    /// How large messages move in this job.
    pub fn mode(&self) -> Mode {
        self.shared.engine.borrow().mode
    }

    /// How often this rank has slept while waiting, so far.
    pub fn sleep_stats(&self) -> SleepStats {
        self.shared.engine.borrow().sleeps
    }

    /// The rank `rank`, to send to or receive from.
    pub fn process_at_rank(&self, rank: i32) -> Peer<'_> {
        Peer { world: self, rank }
    }

    /// Any rank, to receive from.
    pub fn any_process(&self) -> AnyProcess<'_> {
        AnyProcess { world: self }
    }

    fn check_rank(&self, rank: i32) -> Result<usize, CommError> {
        if (0..self.size()).contains(&rank) {
            Ok(rank as usize)
        } else {
            Err(CommError::InvalidRank {
                rank,
                size: self.size(),
            })
        }
    }

    /// Waits for request `id` to finish, making progress.
    pub(crate) fn wait(&self, id: u64) -> Result<Status, CommError> {
        let mut engine = self.shared.engine.borrow_mut();
        let mut idle = Idle::new(engine.watch(id));
        loop {
            if let Some(result) = engine.take(id) {
                return result;
            }
            if !engine.is_done(id) {
                let step = engine.progress().and_then(|moved| {
                    if moved {
                        return Ok(());
                    }
                    idle.pause(&mut engine, moved)
                });
                if let Err(e) = step {
                    engine.abandon(id, e.clone());
                }
            } else {
                return Err(CommError::Config(format!("request {id} is not known")));
            }
        }
    }

    /// One round of progress: moves whatever can move now without waiting; true if anything
    /// did.
    pub(crate) fn progress(&self) -> Result<bool, CommError> {
        self.shared.engine.borrow_mut().progress()
    }

    /// The result of request `id` if it has finished (after one round of progress).
    pub(crate) fn test(&self, id: u64) -> Option<Result<Status, CommError>> {
        let mut engine = self.shared.engine.borrow_mut();
        if let Err(e) = engine.progress() {
            return Some(Err(e));
        }
        engine.take(id)
    }

    pub(crate) fn is_pending(&self, id: u64) -> bool {
        !self.shared.engine.borrow().is_done(id)
    }

    /// Whether a message of `len` bytes travels in a ring record itself, so that a blocking
    /// send of it returns at once.
    pub(crate) fn fits_record(&self, len: usize) -> bool {
        len <= self.shared.engine.borrow().limits.inline
    }

    /// Sends `data` to `rank` with any tag and returns once `data` may be reused; a message
    /// that fits a ring record needs no request.
    pub(crate) fn send_blocking(&self, rank: i32, tag: i32, data: &[u8]) -> Result<(), CommError> {
        let dest = self.check_rank(rank)?;
        let started = self.shared.engine.borrow_mut().send_now(dest, tag, data)?;
        match started {
            Some(id) => self.wait(id).map(|_| ()),
            None => Ok(()),
        }
    }

    fn post_send(&self, rank: i32, tag: i32, data: &[u8]) -> Result<u64, CommError> {
        let dest = self.check_rank(rank)?;
        user_tag(tag)?;
        self.shared.engine.borrow_mut().post_send(dest, tag, data)
    }

    /// Posts a send with any tag, the collectives' reserved negative ones included.
    pub(crate) fn post_send_reserved(
        &self,
        rank: i32,
        tag: i32,
        data: &[u8],
    ) -> Result<u64, CommError> {
        let dest = self.check_rank(rank)?;
        self.shared.engine.borrow_mut().post_send(dest, tag, data)
    }

    /// Posts a receive from `rank` with exactly `tag`, the reserved negative ones included.
    /// Receives a collective's message (`tag` reserved) from `rank` into `buf`, returning once
    /// it has; one that arrived early needs no request. For receives that usually find their
    /// message early (a broadcast's: 2 ranks, 8 B, 0.057 µs a call with a request, 0.039
    /// without); in exchanges, where the message mostly comes later, the extra look cost more
    /// than it saved.
    pub(crate) fn receive_collective(
        &self,
        rank: i32,
        tag: i32,
        buf: &mut [u8],
    ) -> Result<Status, CommError> {
        let source = self.check_rank(rank)?;
        let early = self
            .shared
            .engine
            .borrow_mut()
            .receive_early(source, tag, buf);
        match early {
            Some(done) => done,
            None => {
                let id = self.post_receive_reserved(rank, tag, buf)?;
                self.wait(id)
            }
        }
    }

    pub(crate) fn post_receive_reserved(
        &self,
        rank: i32,
        tag: i32,
        buf: &mut [u8],
    ) -> Result<u64, CommError> {
        let source = self.check_rank(rank)? as i64;
        self.shared.engine.borrow_mut().post_receive(
            source,
            tag as i64,
            buf.as_mut_ptr(),
            buf.len(),
        )
    }

    /// Posts a receive from `rank` with exactly `tag` that folds the message into `buf` with
    /// `combine` as it arrives instead of overwriting `buf`; `None` (nothing posted) when this
    /// job moves messages in pieces that are not whole `elem`-byte elements.
    pub(crate) fn post_receive_combining(
        &self,
        rank: i32,
        tag: i32,
        buf: &mut [u8],
        elem: usize,
        combine: Combine,
    ) -> Result<Option<u64>, CommError> {
        let source = self.check_rank(rank)? as i64;
        let mut engine = self.shared.engine.borrow_mut();
        if !engine.pieces_hold(elem) || !buf.len().is_multiple_of(elem) {
            return Ok(None);
        }
        engine
            .post_receive_combining(
                source,
                tag as i64,
                buf.as_mut_ptr(),
                buf.len(),
                Some(combine),
            )
            .map(Some)
    }

    /// Runs `f` with the peer `rank`'s process, for single-copy reads outside the message
    /// protocols (the collectives' fused read-reduce); `None` for this rank itself, or when the
    /// job has no single copy.
    pub(crate) fn with_peer_process<R>(
        &self,
        rank: i32,
        f: impl FnOnce(&Process) -> R,
    ) -> Option<R> {
        let engine = self.shared.engine.borrow();
        if engine.mode == Mode::Shm {
            return None;
        }
        let process = engine.peers.get(usize::try_from(rank).ok()?)?.as_ref()?;
        Some(f(process))
    }

    fn post_receive(&self, source: Source, tag: i64, buf: &mut [u8]) -> Result<u64, CommError> {
        let source = match source {
            Source::Any => ANY,
            Source::Rank(r) => self.check_rank(r)? as i64,
        };
        if tag < ANY {
            return Err(CommError::InvalidTag(tag as i32));
        }
        self.shared
            .engine
            .borrow_mut()
            .post_receive(source, tag, buf.as_mut_ptr(), buf.len())
    }
}

/// A user's tag (0 or more; negative tags are reserved), widened for matching.
fn user_tag(tag: i32) -> Result<i64, CommError> {
    if tag < 0 {
        Err(CommError::InvalidTag(tag))
    } else {
        Ok(tag as i64)
    }
}

/// Where a receive takes messages from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Rank(i32),
    Any,
}

/// One rank of a world (rsmpi's `Process`).
#[derive(Debug, Clone, Copy)]
pub struct Peer<'w> {
    world: &'w World,
    rank: i32,
}

impl<'w> Peer<'w> {
    /// The world this rank belongs to.
    pub(crate) fn world(&self) -> &'w World {
        self.world
    }

    /// The rank's number.
    pub fn rank(&self) -> i32 {
        self.rank
    }

    /// Sends `buf` with tag 0; returns once `buf` may be reused.
    pub fn send<T: Pod>(&self, buf: &[T]) -> Result<(), CommError> {
        self.send_with_tag(buf, 0)
    }

    /// Sends `buf` with `tag` (0 or more).
    pub fn send_with_tag<T: Pod>(&self, buf: &[T], tag: i32) -> Result<(), CommError> {
        user_tag(tag)?;
        self.world
            .send_blocking(self.rank, tag, bytemuck::cast_slice(buf))
    }

    /// Receives a message with any tag from this rank into `buf`.
    pub fn receive_into<T: Pod>(&self, buf: &mut [T]) -> Result<Status, CommError> {
        let id =
            self.world
                .post_receive(Source::Rank(self.rank), ANY, bytemuck::cast_slice_mut(buf))?;
        self.world.wait(id)
    }

    /// Receives a message with `tag` from this rank into `buf`.
    pub fn receive_into_with_tag<T: Pod>(
        &self,
        buf: &mut [T],
        tag: i32,
    ) -> Result<Status, CommError> {
        let tag = user_tag(tag)?;
        let id =
            self.world
                .post_receive(Source::Rank(self.rank), tag, bytemuck::cast_slice_mut(buf))?;
        self.world.wait(id)
    }

    /// Starts sending `buf` with tag 0; the scope keeps `buf` borrowed until the send completes.
    pub fn immediate_send<'s, T: Pod>(
        &self,
        scope: &'s Scope<'s, '_>,
        buf: &'s [T],
    ) -> Result<Request<'s>, CommError> {
        self.immediate_send_with_tag(scope, buf, 0)
    }

    /// Starts sending `buf` with `tag`.
    pub fn immediate_send_with_tag<'s, T: Pod>(
        &self,
        scope: &'s Scope<'s, '_>,
        buf: &'s [T],
        tag: i32,
    ) -> Result<Request<'s>, CommError> {
        let id = self
            .world
            .post_send(self.rank, tag, bytemuck::cast_slice(buf))?;
        Ok(scope.register(self.world.clone(), id))
    }

    /// Starts receiving a message with any tag from this rank into `buf`.
    pub fn immediate_receive_into<'s, T: Pod>(
        &self,
        scope: &'s Scope<'s, '_>,
        buf: &'s mut [T],
    ) -> Result<Request<'s>, CommError> {
        let id =
            self.world
                .post_receive(Source::Rank(self.rank), ANY, bytemuck::cast_slice_mut(buf))?;
        Ok(scope.register(self.world.clone(), id))
    }

    /// Starts receiving into `len` bytes at `ptr`, which other requests may share (benchmarks
    /// that, like the OSU suite, aim a window of receives at one buffer).
    ///
    /// # Safety
    /// The memory must stay valid and unused by the program until the scope ends; its contents
    /// are unspecified when several requests share it.
    pub(crate) unsafe fn immediate_receive_into_shared<'s>(
        &self,
        scope: &'s Scope<'s, '_>,
        ptr: *mut u8,
        len: usize,
    ) -> Result<Request<'s>, CommError> {
        let source = self.world.check_rank(self.rank)? as i64;
        let id = self
            .world
            .shared
            .engine
            .borrow_mut()
            .post_receive(source, ANY, ptr, len)?;
        Ok(scope.register(self.world.clone(), id))
    }

    /// Starts receiving a message with `tag` from this rank into `buf`.
    pub fn immediate_receive_into_with_tag<'s, T: Pod>(
        &self,
        scope: &'s Scope<'s, '_>,
        buf: &'s mut [T],
        tag: i32,
    ) -> Result<Request<'s>, CommError> {
        let tag = user_tag(tag)?;
        let id =
            self.world
                .post_receive(Source::Rank(self.rank), tag, bytemuck::cast_slice_mut(buf))?;
        Ok(scope.register(self.world.clone(), id))
    }
}

/// Any rank of a world, as a source (rsmpi's `AnyProcess`).
#[derive(Debug, Clone, Copy)]
pub struct AnyProcess<'w> {
    world: &'w World,
}

impl AnyProcess<'_> {
    /// Receives the next message from any rank, with any tag.
    pub fn receive_into<T: Pod>(&self, buf: &mut [T]) -> Result<Status, CommError> {
        let id = self
            .world
            .post_receive(Source::Any, ANY, bytemuck::cast_slice_mut(buf))?;
        self.world.wait(id)
    }

    /// Receives the next message with `tag` from any rank.
    pub fn receive_into_with_tag<T: Pod>(
        &self,
        buf: &mut [T],
        tag: i32,
    ) -> Result<Status, CommError> {
        let tag = user_tag(tag)?;
        let id = self
            .world
            .post_receive(Source::Any, tag, bytemuck::cast_slice_mut(buf))?;
        self.world.wait(id)
    }

    /// Starts receiving the next message from any rank, with any tag.
    pub fn immediate_receive_into<'s, T: Pod>(
        &self,
        scope: &'s Scope<'s, '_>,
        buf: &'s mut [T],
    ) -> Result<Request<'s>, CommError> {
        let id = self
            .world
            .post_receive(Source::Any, ANY, bytemuck::cast_slice_mut(buf))?;
        Ok(scope.register(self.world.clone(), id))
    }
}

/// A word each rank's peers read to test single copy before the job starts.
static PROBE_WORD: [u8; 16] = *b"onecopy-rank-ok!";

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Joins the job this process was started in by `onecopy run`.
///
/// Returns `None` when the process was not started by `onecopy run` (use [`Universe::single`]
/// for a world of one), or when called a second time. A job whose environment or segment is
/// broken cannot run at all: the error is printed and the process exits with status 1.
pub fn initialize() -> Option<Universe> {
    match try_initialize() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("onecopy: cannot join the job: {e}");
            std::process::exit(1);
        }
    }
}

/// [`initialize`], with the error returned instead of ending the process.
pub fn try_initialize() -> Result<Option<Universe>, CommError> {
    let Some(env) = crate::launch::rank_env().map_err(|e| CommError::Config(e.to_string()))? else {
        return Ok(None);
    };
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Ok(None);
    }
    let (rank, size, fd, launcher) = (env.rank, env.size, env.segment_fd, env.launcher_pid);
    let transport = env.transport.to_string();
    if fd < 0
        || rustix::io::fcntl_getfd(
            // SAFETY: only used to ask whether the descriptor is open; not kept.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        )
        .is_err()
    {
        return Err(CommError::Config(format!(
            "ONECOPY_SEGMENT_FD={fd} is not an open descriptor"
        )));
    }
    // SAFETY: the launcher passed this descriptor to this process for the job's segment and
    // nothing else in the process owns it; it is open (checked above).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let segment = Segment::from_fd(owned)?;
    join(JobSpec {
        segment,
        rank,
        size,
        launcher_pid: launcher,
        transport,
    })
    .map(Some)
}

/// Everything a rank needs to join a job; [`try_initialize`] reads it from the environment that
/// `onecopy run` sets, and tests or other launchers can build it directly.
#[derive(Debug)]
pub struct JobSpec {
    /// The job's segment, laid out by [`init_segment`].
    pub segment: Segment,
    /// This rank.
    pub rank: usize,
    /// Ranks in the job.
    pub size: usize,
    /// The process whose descendants the ranks are (admitted as ptracer under Yama).
    pub launcher_pid: i32,
    /// `auto`, `cma-read`, `cma-split` or `shm-copy`.
    pub transport: String,
}

/// Joins the job described by `spec`: registers this rank, waits for the others, probes single
/// copy to each of them and agrees with them on how large messages move.
pub fn join(spec: JobSpec) -> Result<Universe, CommError> {
    let JobSpec {
        segment,
        rank,
        size,
        launcher_pid: launcher,
        transport,
    } = spec;
    if size == 0 || size > MAX_RANKS || rank >= size {
        return Err(CommError::Config(format!(
            "rank {rank} of {size} is not a valid place in a job"
        )));
    }
    let wanted = match transport.as_str() {
        "auto" | "cma-split" => Mode::CmaSplit,
        "cma-read" => Mode::CmaRead,
        "shm-copy" => Mode::Shm,
        other => {
            return Err(CommError::Config(format!(
                "transport '{other}' is not used by the runtime; choose auto, cma-read, cma-split or shm-copy"
            )));
        }
    };
    let world = layout::World::open(segment, size)?;
    let (oversubscribed, cpu_of) = bind(rank, size)?;

    // Admit the launcher and its descendants (the other ranks) as ptracers where Yama restricts
    // ptrace to ancestors; nobody else.
    if let Some(pid) = rustix::process::Pid::from_raw(launcher).filter(|_| launcher > 0) {
        let _ = rustix::process::set_ptracer(rustix::process::PTracer::ProcessID(pid));
    }
    let me = world.rank(rank);
    me.probe_addr
        .store(PROBE_WORD.as_ptr() as u64, Ordering::Relaxed);
    // Release: a rank that sees our pid sees our probe address.
    me.pid.store(
        rustix::process::getpid().as_raw_nonzero().get(),
        Ordering::Release,
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peers: Vec<Option<Process>> = (0..size).map(|_| None).collect();
    for (r, slot) in peers.iter_mut().enumerate() {
        if r == rank {
            continue;
        }
        let pid = loop {
            let pid = world.rank(r).pid.load(Ordering::Acquire);
            if pid != 0 {
                break pid;
            }
            if Instant::now() > deadline {
                return Err(CommError::Config(format!(
                    "rank {r} did not start within 60 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        *slot = Some(
            Process::from_pid(pid)
                .map_err(|e| CommError::Config(format!("cannot reach rank {r}: {e}")))?,
        );
    }

    // Probe single copy to every peer with a real read.
    let mut denial: Option<String> = None;
    if wanted != Mode::Shm {
        for (r, p) in peers.iter().enumerate() {
            let Some(p) = p else { continue };
            let addr = world.rank(r).probe_addr.load(Ordering::Relaxed) as usize;
            let mut word = [0u8; 16];
            match p.read_exact(addr, &mut word) {
                Ok(()) if word == PROBE_WORD => {}
                Ok(()) => denial = Some(format!("reading rank {r} returned the wrong bytes")),
                Err(e) => denial = Some(e.to_string()),
            }
            if denial.is_some() {
                break;
            }
        }
    }
    let verdict = if denial.is_some() { 2 } else { 1 };
    world
        .rank(rank)
        .cma_verdict
        .store(verdict, Ordering::Release);
    let mut everyone_can = true;
    let mut first_denied = None;
    for r in 0..size {
        let v = loop {
            let v = world.rank(r).cma_verdict.load(Ordering::Acquire);
            if v != 0 {
                break v;
            }
            if Instant::now() > deadline {
                return Err(CommError::Config(format!(
                    "rank {r} did not finish starting within 60 s"
                )));
            }
            if let Some(Some(p)) = peers.get(r)
                && !p.is_alive()
            {
                return Err(CommError::PeerGone {
                    rank: r as i32,
                    pid: p.pid(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        if v == 2 {
            everyone_can = false;
            first_denied.get_or_insert(r);
        }
    }
    let mode = if wanted == Mode::Shm || everyone_can {
        wanted
    } else {
        Mode::Shm
    };
    if first_denied == Some(rank)
        && let Some(why) = denial
    {
        eprintln!(
            "onecopy: single copy is not available ({why}); this job uses shm-copy (two copies) instead"
        );
    }
    let mut limits = limits_from_env(&world.layout)?;
    limits.cma_threshold = match (transport.as_str(), mode) {
        (_, Mode::Shm) => usize::MAX,
        ("auto", _) => auto_cma_threshold()?,
        _ => 0,
    };
    let mut engine = Engine::new(world, rank, peers, mode, limits);
    engine.oversubscribed = oversubscribed;
    if oversubscribed && !cpu_of.is_empty() {
        let sharing = |cpu: usize| cpu_of.iter().filter(|&&c| c == cpu).count();
        engine.spin_across = (0..size)
            .map(|p| cpu_of[p] != cpu_of[rank] && sharing(cpu_of[p]) <= 2)
            .collect();
    }
    Ok(Universe {
        world: World {
            shared: Rc::new(Shared {
                engine: RefCell::new(engine),
                rank: rank as i32,
                size: size as i32,
            }),
        },
    })
}

/// Binds rank `rank` to one CPU of those this process may use, as MPI launchers do
/// (`ONECOPY_BIND=none` leaves placement to the scheduler): its own CPU when every rank can have
/// one, since a rank that spins while waiting must not share a core with the rank it waits for
/// and the scheduler does not always separate them; otherwise a CPU shared with the ranks next
/// to it. Returns whether there are more ranks than CPUs (then a waiting rank must give its CPU
/// away soon rather than spin), and each rank's CPU where ranks were bound (empty otherwise).
fn bind(rank: usize, size: usize) -> Result<(bool, Vec<usize>), CommError> {
    let bind = match std::env::var("ONECOPY_BIND").as_deref() {
        Err(_) | Ok("core") => true,
        Ok("none") => false,
        Ok(other) => {
            return Err(CommError::Config(format!(
                "ONECOPY_BIND={other}: use core or none"
            )));
        }
    };
    let Ok(allowed) = rustix::thread::sched_getaffinity(None) else {
        return Ok((false, Vec::new()));
    };
    let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    let oversubscribed = size > cpus.len();
    if !bind || cpus.is_empty() {
        return Ok((oversubscribed, Vec::new()));
    }
    // More ranks than CPUs: consecutive ranks share a CPU (rank r on CPU ⌊r·c/n⌋). Left to the
    // scheduler, ranks moved between CPUs from call to call and a 4-rank 8-byte all-to-all on 2
    // CPUs took 3.4-4.7 µs a call from one round to the next; bound so, 3.46-3.51 (Open MPI,
    // unbound: 3.3-4.5). Round robin (rank r on CPU r mod c) was slower: 3.6-3.9.
    let mut one = rustix::thread::CpuSet::new();
    one.set(cpu_for(rank, size, &cpus));
    // Best effort: a refused binding leaves the scheduler in charge.
    if rustix::thread::sched_setaffinity(None, &one).is_err() {
        return Ok((oversubscribed, Vec::new()));
    }
    Ok((
        oversubscribed,
        (0..size).map(|r| cpu_for(r, size, &cpus)).collect(),
    ))
}

/// The CPU of `cpus` (not empty) for rank `rank` of `size`: its own where there are enough,
/// else the one it shares with the ranks next to it.
fn cpu_for(rank: usize, size: usize, cpus: &[usize]) -> usize {
    if size > cpus.len() {
        cpus[rank * cpus.len() / size]
    } else {
        cpus[rank]
    }
}

/// Protocol thresholds: `ONECOPY_INLINE_LIMIT` and `ONECOPY_EAGER_LIMIT` override the defaults.
fn limits_from_env(layout: &Layout) -> Result<Limits, CommError> {
    let max_inline = (layout.ring_cells / 2) * ring::CELL - ring::HEADER;
    let get = |var: &str, default: usize, max: usize| -> Result<usize, CommError> {
        match std::env::var(var) {
            Err(_) => Ok(default.min(max)),
            Ok(text) => crate::tools::parse_number(&text)
                .ok()
                .filter(|&v| v <= max)
                .ok_or_else(|| {
                    CommError::Config(format!("{var}={text}: must be a number from 0 to {max}"))
                }),
        }
    };
    let inline = get("ONECOPY_INLINE_LIMIT", DEFAULT_INLINE_LIMIT, max_inline)?;
    let eager = get(
        "ONECOPY_EAGER_LIMIT",
        layout.eager_slot_bytes,
        layout.eager_slot_bytes,
    )?
    .max(inline);
    Ok(Limits {
        inline,
        eager,
        chunk: crate::transport::cma_chunk_bytes(),
        cma_threshold: 0,
    })
}

/// In `auto` mode, rendezvous messages of at least this many bytes use single copy
/// (`cma-split`); shorter ones are streamed through shared memory, which measured faster for
/// them between two ranks on the reference machine (BENCHMARKS.md). `ONECOPY_CMA_THRESHOLD`
/// overrides it.
pub const DEFAULT_CMA_THRESHOLD: usize = 128 << 20;

fn auto_cma_threshold() -> Result<usize, CommError> {
    match std::env::var("ONECOPY_CMA_THRESHOLD") {
        Err(_) => Ok(DEFAULT_CMA_THRESHOLD),
        Ok(text) => crate::tools::parse_number(&text)
            .map_err(|e| CommError::Config(format!("ONECOPY_CMA_THRESHOLD: {e}"))),
    }
}

/// Messages up to this many bytes travel inside the ring record.
pub const DEFAULT_INLINE_LIMIT: usize = 1024;

/// Bytes of the shared segment a job of `ranks` ranks needs (with the sizes from the
/// environment, see [`Layout::from_env`]).
pub fn segment_bytes(ranks: usize) -> Result<usize, CommError> {
    Ok(Layout::from_env(ranks)?.bytes())
}

/// Lays out a fresh (zeroed) segment for `ranks` ranks; the launcher calls it before spawning.
pub fn init_segment(segment: &Segment, ranks: usize) -> Result<(), CommError> {
    layout::World::init(segment, &Layout::from_env(ranks)?)
}

#[cfg(test)]
mod tests {
    use super::cpu_for;

    #[test]
    fn ranks_get_their_own_cpu_or_share_one_with_their_neighbours() {
        let cpus = [3, 5, 8, 9];
        let of = |size: usize| {
            (0..size)
                .map(|r| cpu_for(r, size, &cpus))
                .collect::<Vec<_>>()
        };
        assert_eq!(of(1), [3]);
        assert_eq!(of(4), [3, 5, 8, 9]);
        assert_eq!(of(5), [3, 3, 5, 8, 9]);
        assert_eq!(of(8), [3, 3, 5, 5, 8, 8, 9, 9]);
        assert_eq!(of(10), [3, 3, 3, 5, 5, 8, 8, 8, 9, 9]);
        assert_eq!(cpu_for(3, 4, &[0, 1]), 1);
        assert_eq!(cpu_for(2, 3, &[0, 1]), 1);
    }
}
