//! The progress engine: one per process. It owns this rank's ends of every ring, the matching
//! queues and the state of every request, and moves them forward whenever a call into the
//! runtime waits or tests. It speaks in world ranks and communicator contexts; communicators,
//! groups and the user's API are built above it (`comm::communicator`, `comm::point_to_point`).
//!
//! Protocols, by message size:
//! - inline (up to the inline limit): the bytes travel in the ring record itself;
//! - eager (up to the eager limit): the bytes are copied into a slot of the pair's eager area;
//! - rendezvous: the sender posts an RTS naming its buffer and the mechanism; on a match the bytes
//!   move by that mechanism ([`crate::transport`]) and the receiver answers FIN.
//!
//! Where each concern lives:
//! - `requests.rs`: the request table and the life of a request (finish, take, free, cancel);
//! - `matching.rs`: posted receives, messages that came first, probes, the matching rules;
//! - `records.rs`: writing records into the rings and reading their payloads;
//! - `eager.rs`: the inline and eager protocols, and slots held for early messages;
//! - `rendezvous.rs`: large messages, by every mechanism;
//! - `layouts.rs`: non-contiguous messages (derived datatypes): single copy between two layouts,
//!   and the staging of those that travel packed;
//! - `idle.rs`: what a waiting rank does (spin, yield, sleep), and noticing dead peers;
//! - `schedule.rs`: nonblocking collectives' rounds of sends, receives and local steps;
//! - this file: the engine's state, and the progress loop that dispatches arriving records.
//!
//! A peer's records are input: every length, slot index and id is checked before use, and a bad
//! one is a protocol error naming the peer.

mod eager;
mod idle;
pub(crate) mod layouts;
mod matching;
mod records;
mod rendezvous;
mod requests;
mod schedule;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod wake_tests;

use std::time::Duration;

pub use idle::SleepStats;
pub(crate) use idle::{Idle, Watch};
pub(crate) use matching::Want;
pub use requests::BSEND_OVERHEAD;
pub(crate) use requests::ReqId;
pub(crate) use schedule::{Action, Schedule};

use super::layout::World as Segment;
use super::ring::Record;
use super::wire::kind;
use super::{CommError, Status};
use crate::transport::Mechanism;
use crate::transport::auto::{AutoTable, Pattern, Source};
use crate::vm::Process;

/// Thresholds, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub inline: usize,
    pub eager: usize,
    /// Bytes per single-copy system call.
    pub chunk: usize,
    /// Large non-contiguous sends whose pieces average this many bytes or more are read by
    /// single copy where they lie; others stream packed.
    pub layout_send_piece: usize,
    /// Non-contiguous receives whose pieces average this many bytes or more take single-copy
    /// messages straight into them; others unpack a staging copy.
    pub layout_recv_piece: usize,
}

/// Settings of the engine beyond its protocol thresholds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// How long a waiting rank spins before it sleeps.
    pub spin: Duration,
    /// The capacity asked for each vmsplice pipe.
    pub pipe_bytes: usize,
}

/// How a combining receive folds arriving bytes into its buffer: `apply(ctx, dst, src, len)`
/// sets the `len` bytes at `dst` to a combination of themselves and the `len` bytes at `src`
/// (`src` may be unaligned). The engine hands it whole elements only: every piece it moves
/// (stream chunks, pulled chunks) is a multiple of the element size the poster checked with
/// [`Engine::pieces_hold`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Combine {
    pub apply: unsafe fn(ctx: *const (), dst: *mut u8, src: *const u8, len: usize),
    /// What `apply` needs (the operation); alive until the receive completes.
    pub ctx: *const (),
}

impl Combine {
    /// Folds `src` into the `src.len()` bytes at `dst`.
    ///
    /// # Safety
    /// `dst` is valid for `src.len()` bytes, not aliased by `src`, and lent by a receive whose
    /// poster keeps `ctx` alive.
    unsafe fn fold(&self, dst: *mut u8, src: &[u8]) {
        // SAFETY: the caller's contract.
        unsafe { (self.apply)(self.ctx, dst, src.as_ptr(), src.len()) }
    }
}

/// A receive buffer lent to the engine: the request holding it borrows it mutably until it
/// completes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvBuf {
    pub ptr: *mut u8,
    pub cap: usize,
    /// Combine arriving bytes into the buffer instead of overwriting it.
    pub combine: Option<Combine>,
}

impl RecvBuf {
    /// The buffer at `ptr`, `cap` bytes long, to be overwritten.
    pub fn plain(ptr: *mut u8, cap: usize) -> RecvBuf {
        RecvBuf {
            ptr,
            cap,
            combine: None,
        }
    }
}

/// A send buffer lent to the engine, borrowed by its request until it completes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SendBuf {
    /// The bytes, or for a non-contiguous message the start its layout is relative to.
    pub ptr: *const u8,
    /// The message's length (packed, for a non-contiguous one).
    pub len: usize,
    /// How its bytes lie.
    pub shape: Shape,
}

/// How a send's bytes lie in its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Contiguous, at `ptr`.
    Bytes,
    /// Laid out by a datatype whose description ([`layouts::describe`]) lies at this address
    /// with this length: the receiver reads it, then pulls the pieces by single copy.
    Described(*const u8, usize),
    /// Laid out by a datatype, packed piece by piece into the eager slots as they stream
    /// (the request's [`layouts::Cursor`] walks the layout).
    Gathered,
}

impl SendBuf {
    /// The buffer `data`; the caller keeps it alive and unchanged until the send completes.
    pub fn of(data: &[u8]) -> SendBuf {
        SendBuf {
            ptr: data.as_ptr(),
            len: data.len(),
            shape: Shape::Bytes,
        }
    }
}

/// What the engine knows of the job, fixed once the rank has joined.
pub(crate) struct Job {
    pub segment: Segment,
    pub me: usize,
    pub peers: Vec<Option<Process>>,
    /// The single-copy mechanism the job probed (`shm-copy` where it has none): with an
    /// explicit transport, the one every rendezvous message takes.
    pub mechanism: Mechanism,
    /// Per size and pattern, the mechanism a rendezvous message takes: `mechanism` alone with an
    /// explicit transport; with `auto`, the measured or built-in table, limited to `shm-copy`
    /// where the probe failed.
    pub auto: AutoTable,
    /// Where `auto` came from.
    pub auto_source: Source,
    pub limits: Limits,
    pub tuning: Tuning,
    /// More ranks than CPUs: waiting ranks yield at once instead of spinning.
    pub oversubscribed: bool,
    /// Per peer: with more ranks than CPUs, whether it is bound to another CPU than this
    /// rank's, shared with at most one other rank (empty when the job did not bind its ranks).
    pub spin_across: Vec<bool>,
}

impl Job {
    /// The mechanism a rendezvous message of `len` bytes sent in `pattern` takes.
    pub fn mechanism_for(&self, len: usize, pattern: Pattern) -> Mechanism {
        self.auto.choose(len, pattern)
    }

    /// Whether a request to send may name `how`: streaming always, and otherwise the job's
    /// mechanism or, in a job whose probe covered CMA, any `cma-*` one (one ptrace check
    /// admits them all).
    pub fn accepts(&self, how: Mechanism) -> bool {
        how == Mechanism::ShmCopy
            || how == self.mechanism
            || (how.is_cma() && self.mechanism.is_cma())
    }
}

pub(crate) struct Engine {
    pub job: Job,
    links: records::Links,
    eager: eager::EagerState,
    matching: matching::Matching,
    requests: requests::Requests,
    rdv: rendezvous::Rendezvous,
    bsend: Option<requests::BsendPool>,
    /// Nonblocking collectives in flight.
    schedules: schedule::Schedules,
    /// How often this rank slept waiting.
    pub sleeps: SleepStats,
    /// When a test last looked for dead peers.
    last_check: std::time::Instant,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("me", &self.job.me)
            .field("mechanism", &self.job.mechanism)
            .field("requests", &self.requests.len())
            .finish()
    }
}

impl Engine {
    pub fn new(job: Job) -> Engine {
        let n = job.segment.layout.ranks;
        Engine {
            links: records::Links::new(&job.segment, job.me),
            eager: eager::EagerState::new(n),
            matching: matching::Matching::new(n),
            requests: requests::Requests::default(),
            rdv: rendezvous::Rendezvous::new(n),
            bsend: None,
            schedules: Vec::new(),
            sleeps: SleepStats::default(),
            last_check: std::time::Instant::now(),
            job,
        }
    }

    /// Ranks in the job.
    pub fn size(&self) -> usize {
        self.job.segment.layout.ranks
    }

    fn protocol(&self, rank: usize, what: impl Into<String>) -> CommError {
        CommError::Protocol {
            rank: rank as i32,
            what: what.into(),
        }
    }

    fn peer(&self, rank: usize) -> Result<&Process, CommError> {
        self.job
            .peers
            .get(rank)
            .and_then(Option::as_ref)
            .ok_or_else(|| self.protocol(rank, "no process handle for this rank"))
    }

    /// The process of peer `rank`, for single-copy reads outside the message protocols (the
    /// collectives' fused read-reduce); `None` for this rank, or when the job has no single copy.
    pub fn peer_process(&self, rank: usize) -> Option<&Process> {
        if self.job.mechanism == Mechanism::ShmCopy {
            return None;
        }
        self.job.peers.get(rank)?.as_ref()
    }

    /// Handles everything that has arrived; true if anything moved.
    pub fn progress(&mut self) -> Result<bool, CommError> {
        let mut moved = false;
        for source in 0..self.size() {
            if source == self.job.me {
                continue;
            }
            let mut handled = 0;
            while handled < 64 {
                let Some(record) = self.next_record(source)? else {
                    break;
                };
                self.handle(source, &record)?;
                self.consume_record(source, &record);
                handled += 1;
            }
            if handled > 0 {
                moved = true;
                self.links.streaming = false;
                // The writer may be waiting for room.
                self.ring_bell(source);
            }
        }
        if self.push_streams()? {
            moved = true;
        }
        // Only a vmsplice job has pipes (an RTS of another single-copy mechanism is refused),
        // and only a job with an attached buffer has deferred sends: the common case skips both.
        if self.job.mechanism == Mechanism::Vmsplice && self.read_pipes()? {
            moved = true;
        }
        if self.bsend.is_some() && self.start_all_deferred()? {
            moved = true;
        }
        if !self.schedules.is_empty() && self.advance_schedules() {
            moved = true;
        }
        if !moved && self.give_back_slots() {
            moved = true;
        }
        Ok(moved)
    }

    fn handle(&mut self, source: usize, record: &Record) -> Result<(), CommError> {
        match record.kind {
            kind::INLINE => self.on_inline(source, record),
            kind::EAGER => self.on_eager_record(source, record),
            kind::WANT_SLOT => {
                self.eager.wanted[source] = true;
                Ok(())
            }
            kind::ACK => self.on_ack(source, record),
            kind::RTS => self.on_rts(source, record),
            kind::CTS => {
                let cts = self.payload(source, record)?;
                self.on_cts(source, cts)
            }
            kind::PUSHED => {
                let p = self.payload(source, record)?;
                self.on_pushed(source, p)
            }
            kind::FIN => {
                let fin = self.payload(source, record)?;
                self.on_fin(source, fin)
            }
            kind::CHUNK => {
                let c = self.payload(source, record)?;
                self.on_chunk(source, c)
            }
            other => Err(self.protocol(source, format!("unknown record kind {other}"))),
        }
    }

    /// Waits, making progress, until request `id` has finished; returns its result.
    pub fn wait(&mut self, id: ReqId) -> Result<Status, CommError> {
        let mut idle = Idle::for_request(id, self.watch(id));
        loop {
            if let Some(result) = self.take(id) {
                return result;
            }
            if !self.is_known(id) {
                return Err(CommError::Config(format!("request {id} is not known")));
            }
            let step = self.progress().and_then(|moved| {
                if moved {
                    return Ok(());
                }
                idle.pause(self, moved)
            });
            if let Err(e) = step {
                self.abandon(id, e);
            }
        }
    }

    /// The result of request `id` if it has finished, after one round of progress. A failure of
    /// progress that concerns the request ends it; so does the death of its peer, which is
    /// looked for at most once per [`crate::transport::POLL_INTERVAL`].
    pub fn test(&mut self, id: ReqId) -> Option<Result<Status, CommError>> {
        if let Err(e) = self.progress() {
            self.fail_one_of(&[id], e);
        }
        if !self.is_done(id) && self.last_check.elapsed() >= crate::transport::POLL_INTERVAL {
            self.last_check = std::time::Instant::now();
            if let Err(e) = self.fail_orphans(&[id]) {
                self.fail_one_of(&[id], e);
            }
        }
        self.take(id)
    }

    /// Waits, making progress, until at least one of `ids` has finished (or is unknown); a
    /// request whose peer dies meanwhile finishes with the error.
    pub fn wait_any_of(&mut self, ids: &[ReqId]) {
        let mut idle = Idle::new(Watch::Any);
        loop {
            if ids.iter().any(|&id| self.is_done(id)) {
                return;
            }
            let step = self.progress().and_then(|moved| {
                if moved {
                    return Ok(false);
                }
                idle.pause_checked(self)
            });
            match step {
                Ok(false) => {}
                // A sleep passed: a request whose peer died would never finish.
                Ok(true) => {
                    if let Err(e) = self.fail_orphans(ids) {
                        self.fail_one_of(ids, e);
                    }
                }
                Err(e) => self.fail_one_of(ids, e),
            }
        }
    }

    /// Ends with `e` the requests of `ids` that wait on the rank `e` names (or, if none does,
    /// the first unfinished one), so that a failure of progress reaches a waiter.
    fn fail_one_of(&mut self, ids: &[ReqId], e: CommError) {
        let rank = e.rank().map(|r| r as usize);
        let mut failed = false;
        for &id in ids {
            if !self.is_done(id) && rank.is_some_and(|r| self.watch(id) == Watch::Rank(r)) {
                self.abandon(id, e.clone());
                failed = true;
            }
        }
        if !failed && let Some(&id) = ids.iter().find(|&&id| !self.is_done(id)) {
            self.abandon(id, e);
        }
    }

    /// Waits, making progress, until request `id` has finished (it stays to be collected, or
    /// is gone if it was freed); a failure of progress or the death of a peer it waits on ends
    /// the wait with the error.
    pub fn wait_done(&mut self, id: ReqId) -> Result<(), CommError> {
        let mut idle = Idle::for_request(id, self.watch(id));
        while !self.is_done(id) {
            let moved = self.progress()?;
            if !moved {
                idle.pause(self, moved)?;
            }
        }
        Ok(())
    }

    /// Waits, making progress, until `ready` holds; errors end the wait.
    pub fn wait_until(
        &mut self,
        watch: Watch,
        mut ready: impl FnMut(&mut Engine) -> bool,
    ) -> Result<(), CommError> {
        let mut idle = Idle::new(watch);
        loop {
            if ready(self) {
                return Ok(());
            }
            let moved = self.progress()?;
            if !moved {
                idle.pause(self, moved)?;
            }
        }
    }
}
