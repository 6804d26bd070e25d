//! The progress engine: one per rank. It owns the rank's ends of every ring, the matching queues
//! (posted receives, unexpected messages) and the state of every request, and moves them forward
//! whenever a blocking call waits.
//!
//! Protocols, by message size:
//! - inline (up to the inline limit): the bytes travel in the ring record itself;
//! - eager (up to the eager limit): the bytes are copied into a slot of the pair's eager area;
//! - rendezvous: the sender posts an RTS naming its buffer and waits; on a match the receiver
//!   pulls with `process_vm_readv` (`cma-read`), or both copy at once, claiming 1 MiB chunks from a
//!   shared cursor (`cma-split`), then answers FIN; without single copy the receiver answers CTS
//!   and the sender streams the message through the eager slots (`shm-copy`).
//!
//! A peer's records are input: every length, slot index and id is checked before use, and a bad
//! one is a protocol error naming the peer.

use std::collections::{HashMap, VecDeque};
use std::io::{IoSlice, IoSliceMut};
use std::sync::atomic::Ordering;

use super::layout::World as Segment;
use super::ring::{Reader, Record, ShmRing, Writer};
use super::wire::{self, kind};
use super::{CommError, Mode, Status, tags};
use crate::vm::{Process, RemoteRange};

/// Streamed messages at least this large are copied out of the slots with non-temporal stores:
/// they do not fit the caches anyway, and ordinary stores would first read every destination
/// line from memory.
const STREAMING_STORES_FROM: usize = 16 << 20;

/// Matches any source or any tag.
pub(crate) const ANY: i64 = -1;

/// What is known of a message that arrived before its receive was posted.
#[derive(Debug)]
enum Body {
    Data(Vec<u8>),
    Rts(wire::Rts),
    /// An eager message left in its slot of the pair `source → me` until its receive comes.
    Held {
        slot: usize,
        len: usize,
    },
}

#[derive(Debug)]
struct Unexpected {
    source: usize,
    tag: i32,
    body: Body,
}

/// Messages that arrived before their receive: one queue per source, in arrival order, and a
/// count of arrivals that orders them across sources. A receive from one source looks at that
/// source's queue only: with one shared queue, a root that three ranks ran a thousand messages
/// ahead of scanned all of them on every receive (a 4-rank 8-byte reduce took 12 µs).
#[derive(Debug)]
struct EarlyMessages {
    by_source: Vec<VecDeque<(u64, Unexpected)>>,
    arrivals: u64,
}

impl EarlyMessages {
    fn new(ranks: usize) -> EarlyMessages {
        EarlyMessages {
            by_source: (0..ranks).map(|_| VecDeque::new()).collect(),
            arrivals: 0,
        }
    }

    fn push(&mut self, u: Unexpected) {
        self.arrivals += 1;
        self.by_source[u.source].push_back((self.arrivals, u));
    }

    /// Removes the earliest message a receive from `source` with `tag` (either may be [`ANY`])
    /// matches. A collective's receive takes the next collective message from its source, which
    /// must carry its tag: `Err` holds the other tag, and the message stays.
    fn take(&mut self, source: i64, tag: i64) -> Result<Option<Unexpected>, i32> {
        if tags::is_reserved(tag) && source != ANY {
            let Some((from, i)) = usize::try_from(source)
                .ok()
                .and_then(|s| Some((s, self.next_collective(s)?)))
            else {
                return Ok(None);
            };
            let theirs = self.by_source[from][i].1.tag;
            if theirs as i64 != tag {
                return Err(theirs);
            }
            return Ok(self.by_source[from].remove(i).map(|(_, u)| u));
        }
        Ok(self.take_matching(source, tag))
    }

    /// The place of the earliest collective message in `source`'s queue.
    fn next_collective(&self, source: usize) -> Option<usize> {
        self.by_source
            .get(source)?
            .iter()
            .position(|(_, u)| u.tag < 0)
    }

    /// The bytes of the next collective message from `source` if it arrived early, carries
    /// `tag` and is already copied out (`None` leaves everything as it was).
    fn take_collective_data(&mut self, source: usize, tag: i32) -> Option<Vec<u8>> {
        let i = self.next_collective(source)?;
        let queue = &mut self.by_source[source];
        if queue[i].1.tag != tag || !matches!(queue[i].1.body, Body::Data(_)) {
            return None;
        }
        match queue.remove(i)?.1.body {
            Body::Data(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The earliest message from `source` still held in its eager slot: its place in the
    /// source's queue, its slot and its length.
    fn oldest_held(&self, source: usize) -> Option<(usize, usize, usize)> {
        self.by_source[source]
            .iter()
            .enumerate()
            .find_map(|(at, (_, u))| match u.body {
                Body::Held { slot, len } => Some((at, slot, len)),
                _ => None,
            })
    }

    fn take_matching(&mut self, source: i64, tag: i64) -> Option<Unexpected> {
        let first = |q: &VecDeque<(u64, Unexpected)>| {
            q.iter()
                .position(|(_, u)| matches(source, tag, u.source, u.tag))
        };
        let (from, i) = if source == ANY {
            let (_, from, i) = self
                .by_source
                .iter()
                .enumerate()
                .filter_map(|(s, q)| first(q).map(|i| (q[i].0, s, i)))
                .min()?;
            (from, i)
        } else {
            let from = usize::try_from(source).ok()?;
            (from, first(self.by_source.get(from)?)?)
        };
        self.by_source[from].remove(i).map(|(_, u)| u)
    }
}

/// A receive buffer lent to the engine: the request holding it borrows it mutably until it
/// completes (see `request.rs`).
#[derive(Debug, Clone, Copy)]
struct RecvBuf {
    ptr: *mut u8,
    cap: usize,
    /// Combine arriving bytes into the buffer instead of overwriting it.
    combine: Option<Combine>,
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
        // SAFETY: the caller's contract, and `src` is a valid slice.
        unsafe { (self.apply)(self.ctx, dst, src.as_ptr(), src.len()) }
    }
}

/// Early eager messages from this size on stay in their slots until their receives come (see
/// [`Engine::on_eager`]); smaller ones are copied out at once, so that their senders run ahead
/// freely.
const HOLD_FROM: usize = 4 << 10;

/// Bytes a combining cma pull reads per call: the piece and the buffer's part stay in L2.
const COMBINE_PULL_BYTES: usize = 64 << 10;

/// A send buffer lent to the engine, borrowed by its request until it completes.
#[derive(Debug, Clone, Copy)]
struct SendBuf {
    ptr: *const u8,
    len: usize,
}

#[derive(Debug)]
enum Req {
    /// Finished; the result waits to be collected.
    Done(Result<Status, CommError>),
    /// A receive waiting for a matching message.
    Posted { source: i64, tag: i64, buf: RecvBuf },
    /// A receive whose sender still pushes its share (`cma-split`).
    AwaitPushed { source: usize, tag: i32, len: usize },
    /// A receive being streamed through eager slots.
    Streaming {
        source: usize,
        tag: i32,
        len: usize,
        got: usize,
        buf: RecvBuf,
    },
    /// A rendezvous send waiting for CTS or FIN; `streamed` counts bytes already sent in chunks.
    Rendezvous {
        dest: usize,
        tag: i32,
        send_id: u32,
        buf: SendBuf,
        /// Streamed through eager slots (else single copy).
        streamed: bool,
        /// Bytes streamed so far, once the receiver's CTS came.
        stream: Option<usize>,
    },
}

/// Requests by id: a slab, so the hot wait loop looks a request up without hashing. An id is
/// the slot index and the slot's generation, so a stale id never finds a newer request.
#[derive(Debug, Default)]
struct Requests {
    slots: Vec<(u32, Option<Req>)>,
    free: Vec<usize>,
    live: usize,
}

impl Requests {
    fn split(id: u64) -> (usize, u32) {
        ((id & 0xFFFF_FFFF) as usize, (id >> 32) as u32)
    }

    fn add(&mut self, r: Req) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                self.slots.len() - 1
            }
        };
        self.slots[index].1 = Some(r);
        self.live += 1;
        (self.slots[index].0 as u64) << 32 | index as u64
    }

    fn get(&self, id: &u64) -> Option<&Req> {
        let (i, generation) = Self::split(*id);
        self.slots
            .get(i)
            .filter(|s| s.0 == generation)
            .and_then(|s| s.1.as_ref())
    }

    fn get_mut(&mut self, id: &u64) -> Option<&mut Req> {
        let (i, generation) = Self::split(*id);
        self.slots
            .get_mut(i)
            .filter(|s| s.0 == generation)
            .and_then(|s| s.1.as_mut())
    }

    /// Replaces the state of a live request.
    fn insert(&mut self, id: u64, r: Req) {
        if let Some(slot) = self.get_mut(&id) {
            *slot = r;
        }
    }

    fn remove(&mut self, id: &u64) -> Option<Req> {
        let (i, generation) = Self::split(*id);
        let slot = self.slots.get_mut(i).filter(|s| s.0 == generation)?;
        let r = slot.1.take()?;
        slot.0 = slot.0.wrapping_add(1);
        self.free.push(i);
        self.live -= 1;
        Some(r)
    }

    fn len(&self) -> usize {
        self.live
    }
}

/// The peers a waiting rank depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// One rank.
    Rank(usize),
    /// Any rank (an any-source receive).
    Any,
}

/// Thresholds, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub inline: usize,
    pub eager: usize,
    pub chunk: usize,
    /// Rendezvous messages shorter than this are streamed through shared memory even when
    /// single copy is available (`auto`); 0 with an explicit `cma-*` transport.
    pub cma_threshold: usize,
}

pub(crate) struct Engine {
    pub world: Segment,
    pub me: usize,
    pub peers: Vec<Option<Process>>,
    pub mode: Mode,
    pub limits: Limits,
    /// More ranks than CPUs: waiting ranks yield at once instead of spinning.
    pub oversubscribed: bool,
    /// Per peer: with more ranks than CPUs, whether it is bound to another CPU than this
    /// rank's, shared with at most one other rank (empty when the job did not bind its ranks).
    pub spin_across: Vec<bool>,
    /// This process may ring peers with [`crate::shm::Doorbell::notify_light`].
    light_notify: bool,
    /// Nothing arrived since this rank last sent a record (see [`Engine::try_record`]).
    streaming: bool,
    /// How often this rank slept waiting.
    pub sleeps: super::SleepStats,
    /// Buffers of delivered early messages, for reuse.
    spare: Vec<Vec<u8>>,
    writers: Vec<Writer>,
    readers: Vec<Reader>,
    eager_next: Vec<usize>,
    /// Sources that asked for a slot back ([`kind::WANT_SLOT`]).
    wanted: Vec<bool>,
    /// Destinations this rank asked for a slot and has not had one from since.
    asked: Vec<bool>,
    send_ids: Vec<u32>,
    requests: Requests,
    posted: VecDeque<u64>,
    unexpected: EarlyMessages,
    /// (dest, send_id) → request, for rendezvous sends.
    sends: HashMap<(usize, u32), u64>,
    /// (source, send_id) → request, for receives waiting on PUSHED or CHUNKs.
    streams: HashMap<(usize, u32), u64>,
    /// (source, send_id) of split receives that failed after their CTS: the sender may still
    /// report its pushes, and that late PUSHED is not a protocol error.
    failed_splits: std::collections::HashSet<(usize, u32)>,
    /// Streaming sends with bytes left, in order.
    outgoing: VecDeque<u64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("me", &self.me)
            .field("mode", &self.mode)
            .field("requests", &self.requests.len())
            .finish()
    }
}

/// The ring carrying records `from` → `to`.
fn ring_of(world: &Segment, from: usize, to: usize) -> ShmRing<'_> {
    let (control, cells) = world.ring(from, to);
    ShmRing {
        control,
        cells,
        capacity: world.layout.ring_cells,
    }
}

/// Whether a collective's receive (from `want_source`, for collective tag `want_tag`) meets a
/// message of another collective from that source: the ranks are not in the same collective.
fn conflicts(want_source: i64, want_tag: i64, source: usize, tag: i32) -> bool {
    tags::is_reserved(want_tag) && tag < 0 && want_source == source as i64 && want_tag != tag as i64
}

/// The error for a collective receive that met another collective's message.
fn collective_mismatch(source: usize, ours: i32, theirs: i32) -> CommError {
    CommError::Mismatch {
        rank: source as i32,
        what: format!(
            "rank {source} sent a message of {} where this rank is in {}",
            tags::describe(theirs),
            tags::describe(ours)
        ),
    }
}

/// A message of `len` bytes from `source` with `tag` that does not fit `capacity`.
fn truncated(source: usize, tag: i32, len: usize, capacity: usize) -> CommError {
    CommError::Truncated {
        sender: source as i32,
        tag,
        len,
        capacity,
    }
}

fn matches(want_source: i64, want_tag: i64, source: usize, tag: i32) -> bool {
    // Negative tags belong to the collectives: a user's any-tag receive must not take them.
    (want_source == ANY || want_source == source as i64)
        && ((want_tag == ANY && tag >= 0) || want_tag == tag as i64)
}

impl Engine {
    pub fn new(
        world: Segment,
        me: usize,
        peers: Vec<Option<Process>>,
        mode: Mode,
        limits: Limits,
    ) -> Engine {
        let n = world.layout.ranks;
        Engine {
            world,
            me,
            peers,
            mode,
            limits,
            oversubscribed: false,
            spin_across: Vec::new(),
            light_notify: crate::shm::enable_light_notify(),
            streaming: false,
            sleeps: Default::default(),
            spare: Vec::new(),
            writers: (0..n).map(|_| Writer::default()).collect(),
            readers: (0..n).map(|_| Reader::default()).collect(),
            eager_next: vec![0; n],
            wanted: vec![false; n],
            asked: vec![false; n],
            send_ids: vec![0; n],
            requests: Requests::default(),
            posted: VecDeque::new(),
            unexpected: EarlyMessages::new(n),
            sends: HashMap::new(),
            streams: HashMap::new(),
            failed_splits: Default::default(),
            outgoing: VecDeque::new(),
        }
    }

    pub fn size(&self) -> usize {
        self.world.layout.ranks
    }

    fn ring(&self, from: usize, to: usize) -> ShmRing<'_> {
        ring_of(&self.world, from, to)
    }

    fn new_request(&mut self, r: Req) -> u64 {
        self.requests.add(r)
    }

    fn finish(&mut self, id: u64, result: Result<Status, CommError>) {
        self.requests.insert(id, Req::Done(result));
    }

    fn protocol(&self, rank: usize, what: impl Into<String>) -> CommError {
        CommError::Protocol {
            rank: rank as i32,
            what: what.into(),
        }
    }

    /// A failed transfer with `rank`: [`CommError::PeerGone`] if it died (the usual cause, and
    /// the one the caller can act on), a protocol error naming it if it named memory it does not
    /// have, the `vm` error otherwise.
    fn vm_failure(&self, rank: usize, e: crate::vm::VmError) -> CommError {
        match (self.check_peers(Watch::Rank(rank)), e) {
            (Err(gone), _) => gone,
            // A dying process loses its memory before its pidfd reports the exit: CMA can say
            // "no such process" while the pidfd still says alive.
            (Ok(()), crate::vm::VmError::NoSuchProcess { pid, .. }) => CommError::PeerGone {
                rank: rank as i32,
                pid,
            },
            // A live peer named memory it does not have (or freed it before the pull): its fault.
            (Ok(()), e @ crate::vm::VmError::BadAddress { .. }) => {
                self.protocol(rank, format!("its buffer cannot be read: {e}"))
            }
            (Ok(()), e) => e.into(),
        }
    }

    fn peer(&self, rank: usize) -> Result<&Process, CommError> {
        self.peers
            .get(rank)
            .and_then(Option::as_ref)
            .ok_or_else(|| self.protocol(rank, "no process handle for this rank"))
    }

    /// Whether request `id` has finished (it stays until [`Engine::take`]).
    pub fn is_done(&self, id: u64) -> bool {
        matches!(self.requests.get(&id), Some(Req::Done(_)) | None)
    }

    /// Collects a finished request's result.
    pub fn take(&mut self, id: u64) -> Option<Result<Status, CommError>> {
        match self.requests.get(&id) {
            Some(Req::Done(_)) => match self.requests.remove(&id) {
                Some(Req::Done(r)) => Some(r),
                _ => None,
            },
            _ => None,
        }
    }

    /// Gives up on request `id` (its peer died): it is forgotten by every queue and ends with `e`.
    pub fn abandon(&mut self, id: u64, e: CommError) {
        self.posted.retain(|&p| p != id);
        self.sends.retain(|_, &mut r| r != id);
        self.streams.retain(|_, &mut r| r != id);
        self.outgoing.retain(|&o| o != id);
        self.finish(id, Err(e));
    }

    /// Which peers request `id` depends on.
    /// Whether this rank's only request waits on `peer`, and `peer` is likely running now on
    /// another CPU (see [`Engine::spin_across`]).
    pub fn waits_on_one_across(&self, peer: usize) -> bool {
        self.requests.len() == 1 && self.spin_across.get(peer) == Some(&true)
    }

    pub fn watch(&self, id: u64) -> Watch {
        match self.requests.get(&id) {
            Some(Req::Posted { source, .. }) if *source == ANY => Watch::Any,
            Some(Req::Posted { source, .. }) => Watch::Rank(*source as usize),
            Some(Req::AwaitPushed { source, .. }) | Some(Req::Streaming { source, .. }) => {
                Watch::Rank(*source)
            }
            Some(Req::Rendezvous { dest, .. }) => Watch::Rank(*dest),
            Some(Req::Done(_)) | None => Watch::Any,
        }
    }

    // ----- sending records -----

    /// Appends a record to the ring towards `dest`; false when it is full.
    fn try_record(&mut self, dest: usize, kind: u8, tag: i32, len: u32, parts: &[&[u8]]) -> bool {
        let ring = ring_of(&self.world, self.me, dest);
        if !self.writers[dest].try_push(&ring, kind, tag, len, parts) {
            return false;
        }
        // A rank that sends again with nothing received in between (a broadcast's root, a
        // window of sends) rings without the fence. The first record after a receipt keeps it:
        // in an exchange, where each side sends one record and then waits for the other's,
        // ringing light made the 2-rank 8-byte all-reduce 10-30% slower here. (Likely cause: the
        // fence holds the rank's polling back until its record has left, so the two ranks do not
        // pull each other's lines away in the middle of a write.)
        if self.streaming {
            self.ring_bell(dest);
        } else {
            self.world.rank(dest).bell.notify();
        }
        self.streaming = true;
        true
    }

    /// Appends a control record, making progress while the ring is full.
    fn control<T: bytemuck::Pod>(
        &mut self,
        dest: usize,
        kind: u8,
        payload: &T,
    ) -> Result<(), CommError> {
        let bytes = bytemuck::bytes_of(payload).to_vec();
        self.push_record(dest, kind, 0, 0, &[&bytes])
    }

    /// Appends a record to the ring towards `dest`, making progress (and sleeping) while it is
    /// full. Before sleeping the ring is looked at once more after announcing the sleep: the
    /// reader frees room without sending us anything, so a look only before would miss a wake-up
    /// and sleep a whole interval.
    fn push_record(
        &mut self,
        dest: usize,
        kind: u8,
        tag: i32,
        len: u32,
        parts: &[&[u8]],
    ) -> Result<(), CommError> {
        let bytes: usize = parts.iter().map(|p| p.len()).sum();
        let mut idle = super::Idle::new(Watch::Rank(dest));
        while !self.try_record(dest, kind, tag, len, parts) {
            let moved = self.progress()?;
            idle.pause_unless(self, moved, |e| {
                e.writers[dest].has_room(&ring_of(&e.world, e.me, dest), bytes)
            })?;
        }
        Ok(())
    }

    /// Sends `data` to `dest` at once if it travels in the ring record itself (`None`: done,
    /// with no request to track); else starts it like [`Engine::post_send`].
    pub fn send_now(
        &mut self,
        dest: usize,
        tag: i32,
        data: &[u8],
    ) -> Result<Option<u64>, CommError> {
        if dest != self.me && self.send_inline(dest, tag, data)? {
            return Ok(None);
        }
        self.post_send(dest, tag, data).map(Some)
    }

    /// Writes `data` into a record towards `dest` if it fits one; false (nothing done) if not.
    fn send_inline(&mut self, dest: usize, tag: i32, data: &[u8]) -> Result<bool, CommError> {
        if data.len() > self.limits.inline {
            return Ok(false);
        }
        self.push_record(dest, kind::INLINE, tag, data.len() as u32, &[data])?;
        Ok(true)
    }

    /// Starts sending `data` to `dest`; small messages complete at once.
    pub fn post_send(&mut self, dest: usize, tag: i32, data: &[u8]) -> Result<u64, CommError> {
        let status = Status {
            source: self.me as i32,
            tag,
            count_bytes: data.len(),
        };
        if dest == self.me {
            self.arrive(self.me, tag, Body::Data(data.to_vec()))?;
            return Ok(self.new_request(Req::Done(Ok(status))));
        }
        if self.send_inline(dest, tag, data)? {
            return Ok(self.new_request(Req::Done(Ok(status))));
        }
        if data.len() <= self.limits.eager {
            let slot = self.claim_slot(dest)?;
            let (_, offset) = self.world.eager_slot(self.me, dest, slot);
            // SAFETY: the slot is ours: its state word was 0 (freed by the receiver with Release,
            // seen with Acquire in `claim_slot`) and the receiver reads it only after the record
            // below is published.
            unsafe { crate::shm::copy_in(&self.world.segment, offset, data) };
            self.set_slot_full(dest, slot);
            let e = wire::Eager {
                slot: slot as u32,
                _pad: 0,
            };
            self.push_record(
                dest,
                kind::EAGER,
                tag,
                data.len() as u32,
                &[bytemuck::bytes_of(&e)],
            )?;
            return Ok(self.new_request(Req::Done(Ok(status))));
        }
        // Rendezvous.
        let send_id = self.next_send_id(dest)?;
        let stream = self.mode == Mode::Shm || data.len() < self.limits.cma_threshold;
        if !stream {
            // Reset the shared chunk cursor before the receiver can see the RTS (the record's
            // Release publishes it).
            self.world
                .cursor(self.me, dest, send_id as usize)
                .next
                .store(0, Ordering::Relaxed);
        }
        let rts = wire::Rts {
            len: data.len() as u64,
            send_id,
            flags: if stream { wire::RTS_STREAM } else { 0 },
            addr: data.as_ptr() as u64,
        };
        let buf = SendBuf {
            ptr: data.as_ptr(),
            len: data.len(),
        };
        let id = self.new_request(Req::Rendezvous {
            dest,
            tag,
            send_id,
            buf,
            streamed: stream,
            stream: None,
        });
        self.sends.insert((dest, send_id), id);
        self.push_record(dest, kind::RTS, tag, 0, &[bytemuck::bytes_of(&rts)])?;
        Ok(id)
    }

    /// A rendezvous id for `dest` whose cursor is not in use by an unfinished send.
    fn next_send_id(&mut self, dest: usize) -> Result<u32, CommError> {
        let mut idle = super::Idle::new(Watch::Rank(dest));
        loop {
            let id = self.send_ids[dest].wrapping_add(1);
            let busy = self.sends.keys().any(|&(d, s)| {
                d == dest
                    && (s as usize) % super::layout::CURSORS
                        == (id as usize) % super::layout::CURSORS
            });
            if !busy {
                self.send_ids[dest] = id;
                return Ok(id);
            }
            let moved = self.progress()?;
            idle.pause(self, moved)?;
        }
    }

    /// Waits (making progress) for an eager slot towards `dest` to be free and takes it.
    fn claim_slot(&mut self, dest: usize) -> Result<usize, CommError> {
        let mut idle = super::Idle::new(Watch::Rank(dest));
        loop {
            if let Some(slot) = self.free_slot_towards(dest) {
                self.eager_next[dest] = slot + 1;
                self.asked[dest] = false;
                return Ok(slot);
            }
            self.ask_for_slot(dest);
            let moved = self.progress()?;
            // The receiver frees slots without sending us anything: look again after
            // announcing the sleep, or its wake-up could come too early and be missed.
            idle.pause_unless(self, moved, |e| e.free_slot_towards(dest).is_some())?;
        }
    }

    /// Tells `dest`, once until a slot comes free, that this rank waits for an eager slot: it
    /// may be holding them all for messages whose receives are not posted (see
    /// [`Engine::on_eager`]). A full ring is no loss: the receiver has records to read first.
    fn ask_for_slot(&mut self, dest: usize) {
        if !self.asked[dest] && self.try_record(dest, kind::WANT_SLOT, 0, 0, &[]) {
            self.asked[dest] = true;
        }
    }

    /// A free eager slot towards `dest`: the one after the last taken if it is free (the usual
    /// case), else any (the receiver frees held slots in any order).
    fn free_slot_towards(&self, dest: usize) -> Option<usize> {
        let slots = self.world.layout.eager_slots;
        let next = self.eager_next[dest];
        (0..slots).map(|k| (next + k) % slots).find(|&slot| {
            // Acquire: pairs with the receiver's Release when it frees the slot.
            self.world
                .eager_slot(self.me, dest, slot)
                .0
                .load(Ordering::Acquire)
                == 0
        })
    }

    fn set_slot_full(&self, dest: usize, slot: usize) {
        let (state, _) = self.world.eager_slot(self.me, dest, slot);
        state.store(1, Ordering::Relaxed);
    }

    /// Frees slot `slot` of the pair `source → me` and tells the sender.
    fn free_slot(&self, source: usize, slot: usize) {
        let (state, _) = self.world.eager_slot(source, self.me, slot);
        // Release: our copy out of the slot happens before the sender reuses it.
        state.store(0, Ordering::Release);
        self.ring_bell(source);
    }

    /// Wakes `rank` if it sleeps waiting for what this rank just published (a record while
    /// streaming, or room: cells of its ring, an eager slot), without the fence where the
    /// process may leave it out: nothing waits here for the event to reach the peer.
    fn ring_bell(&self, rank: usize) {
        let bell = &self.world.rank(rank).bell;
        if self.light_notify {
            bell.notify_light();
        } else {
            bell.notify();
        }
    }

    // ----- receiving -----

    /// Posts a receive into `buf` (`cap` bytes) from `source` (or [`ANY`]) with `tag` (or ANY).
    pub fn post_receive(
        &mut self,
        source: i64,
        tag: i64,
        ptr: *mut u8,
        cap: usize,
    ) -> Result<u64, CommError> {
        self.post_receive_combining(source, tag, ptr, cap, None)
    }

    /// Whether every piece a message can arrive in (eager slots, stream chunks, pulls) is a
    /// whole number of `elem`-byte elements, as a combining receive needs.
    pub fn pieces_hold(&self, elem: usize) -> bool {
        elem > 0
            && [
                self.world.layout.eager_slot_bytes,
                self.limits.chunk,
                COMBINE_PULL_BYTES,
            ]
            .iter()
            .all(|&piece| piece % elem == 0)
    }

    /// Completes a collective's receive from `source` at once, with no request, when its
    /// message arrived early and was copied out (`None`: post it). A broadcast's receivers
    /// mostly find their message there, the root running ahead.
    pub fn receive_early(
        &mut self,
        source: usize,
        tag: i32,
        buf: &mut [u8],
    ) -> Option<Result<Status, CommError>> {
        let bytes = self.unexpected.take_collective_data(source, tag)?;
        let recv = RecvBuf {
            ptr: buf.as_mut_ptr(),
            cap: buf.len(),
            combine: None,
        };
        let result = self.copy_into(recv, &bytes, source, tag);
        self.recycle(bytes);
        Some(result)
    }

    /// [`Engine::post_receive`], folding the message into `ptr` with `combine` when given.
    pub fn post_receive_combining(
        &mut self,
        source: i64,
        tag: i64,
        ptr: *mut u8,
        cap: usize,
        combine: Option<Combine>,
    ) -> Result<u64, CommError> {
        let buf = RecvBuf { ptr, cap, combine };
        let found = match self.unexpected.take(source, tag) {
            Ok(found) => found,
            Err(theirs) => {
                let e = collective_mismatch(source as usize, tag as i32, theirs);
                return Ok(self.new_request(Req::Done(Err(e))));
            }
        };
        let id = self.new_request(Req::Posted { source, tag, buf });
        if let Some(u) = found {
            self.deliver(id, u.source, u.tag, u.body, buf)?;
        } else {
            self.posted.push_back(id);
        }
        Ok(id)
    }

    /// A message start (INLINE data, EAGER data copied out, or an RTS) arrived from `source`.
    fn arrive(&mut self, source: usize, tag: i32, body: Body) -> Result<(), CommError> {
        match self.take_posted(source, tag) {
            Some((id, buf)) => self.deliver(id, source, tag, body, buf),
            None => {
                self.unexpected.push(Unexpected { source, tag, body });
                Ok(())
            }
        }
    }

    /// Gives a small (inline or eager) message of `len` bytes from `source` to the first posted
    /// receive that matches, or keeps it as unexpected; `fill` copies the bytes into the slice it
    /// is handed (the receive buffer itself, or a spare buffer).
    fn take_small(
        &mut self,
        source: usize,
        tag: i32,
        len: usize,
        fill: impl FnOnce(&Self, &mut [u8]) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        if let Some((id, buf)) = self.take_posted(source, tag) {
            let result = if len > buf.cap {
                Err(truncated(source, tag, len, buf.cap))
            } else {
                if let Some(combine) = buf.combine {
                    let mut bytes = self.spare_buffer(len);
                    fill(self, &mut bytes)?;
                    // SAFETY: `buf` is the receive buffer its request borrows until it completes;
                    // `len <= cap` (checked above); `bytes` is our own memory.
                    unsafe { combine.fold(buf.ptr, &bytes) };
                    self.recycle(bytes);
                } else {
                    // SAFETY: `buf` is the receive buffer its request borrows mutably until it
                    // completes; `len <= cap` (checked above).
                    let dst = unsafe { std::slice::from_raw_parts_mut(buf.ptr, len) };
                    fill(self, dst)?;
                }
                Ok(Status {
                    source: source as i32,
                    tag,
                    count_bytes: len,
                })
            };
            self.finish(id, result);
            return Ok(());
        }
        let mut bytes = self.spare_buffer(len);
        fill(self, &mut bytes)?;
        self.unexpected.push(Unexpected {
            source,
            tag,
            body: Body::Data(bytes),
        });
        Ok(())
    }

    /// A buffer of `len` bytes for a message that arrived before its receive, reused from
    /// earlier ones: a fresh allocation per early message costs page faults every time (the
    /// allocator hands large freed blocks back to the kernel), which made a sender running ahead
    /// of its receiver several times slower. The contents are stale; callers overwrite them.
    fn spare_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = match self.spare.iter().position(|b| b.capacity() >= len) {
            Some(i) => self.spare.swap_remove(i),
            None => self.spare.pop().unwrap_or_default(),
        };
        if buf.len() < len {
            buf.resize(len, 0);
        } else {
            buf.truncate(len);
        }
        buf
    }

    /// Keeps a delivered early message's buffer for the next one (a bounded number of them).
    fn recycle(&mut self, buf: Vec<u8>) {
        const KEEP: usize = 64;
        const LARGEST: usize = 4 << 20;
        if self.spare.len() < KEEP && buf.capacity() <= LARGEST {
            self.spare.push(buf);
        }
    }

    /// Removes and returns the first posted receive that matches a message from `source` with
    /// `tag`. A collective's receive from `source` waiting for another collective tag fails
    /// instead (the message then waits as unexpected).
    fn take_posted(&mut self, source: usize, tag: i32) -> Option<(u64, RecvBuf)> {
        let i = self
            .posted
            .iter()
            .position(|id| match self.requests.get(id) {
                Some(Req::Posted {
                    source: s, tag: t, ..
                }) => matches(*s, *t, source, tag) || conflicts(*s, *t, source, tag),
                _ => false,
            })?;
        let id = self.posted.remove(i)?;
        match self.requests.get(&id) {
            Some(Req::Posted {
                source: from,
                tag: want,
                ..
            }) if conflicts(*from, *want, source, tag) => {
                let e = collective_mismatch(source, *want as i32, tag);
                self.finish(id, Err(e));
                None
            }
            Some(Req::Posted { buf, .. }) => Some((id, *buf)),
            _ => None,
        }
    }

    /// Completes (or starts the rendezvous of) receive `id` with a matched message.
    fn deliver(
        &mut self,
        id: u64,
        source: usize,
        tag: i32,
        body: Body,
        buf: RecvBuf,
    ) -> Result<(), CommError> {
        match body {
            Body::Data(bytes) => {
                let result = self.copy_into(buf, &bytes, source, tag);
                self.finish(id, result);
                self.recycle(bytes);
                Ok(())
            }
            Body::Rts(rts) => self.start_rendezvous(id, source, tag, rts, buf),
            Body::Held { slot, len } => {
                // The slot goes back now, which is what the sender asked for, if it did.
                self.wanted[source] = false;
                self.deliver_from_slot(id, source, tag, slot, len, buf);
                Ok(())
            }
        }
    }

    /// An eager message of `len` bytes in `slot` of the pair `source → me`: straight into a
    /// posted receive, else kept as early. From [`HOLD_FROM`] bytes an early message stays in
    /// its slot until its receive comes, which then copies it once, straight into its buffer;
    /// smaller ones are copied out at once. Held messages keep their sender at most a slot's
    /// count of messages ahead: a root broadcasting 64 KiB ran a ring's worth (a thousand
    /// messages) ahead, and each was copied twice, the second time from memory long out of
    /// cache (2-rank broadcast 64 KiB: 2.0 µs a call held out, 1.1 held). A sender that runs
    /// out of slots asks for one back ([`kind::WANT_SLOT`]), which the receiver gives as soon
    /// as it has nothing else to do ([`Engine::give_back_slots`]).
    fn on_eager(
        &mut self,
        source: usize,
        tag: i32,
        slot: usize,
        len: usize,
    ) -> Result<(), CommError> {
        if let Some((id, buf)) = self.take_posted(source, tag) {
            self.deliver_from_slot(id, source, tag, slot, len, buf);
            return Ok(());
        }
        let body = if len >= HOLD_FROM {
            Body::Held { slot, len }
        } else {
            Body::Data(self.copy_out_of_slot(source, slot, len))
        };
        self.unexpected.push(Unexpected { source, tag, body });
        Ok(())
    }

    /// Copies the eager message of `len` bytes in `slot` of the pair `source → me` into a
    /// buffer of ours and frees the slot.
    fn copy_out_of_slot(&mut self, source: usize, slot: usize, len: usize) -> Vec<u8> {
        let mut bytes = self.spare_buffer(len);
        let (_, offset) = self.world.eager_slot(source, self.me, slot);
        // SAFETY: the sender filled the slot before publishing its record (seen with Acquire)
        // and leaves it alone until we free it below.
        unsafe { crate::shm::copy_out(&self.world.segment, offset, &mut bytes) };
        self.free_slot(source, slot);
        bytes
    }

    /// Gives back one held slot to each source that asked for one, copying its message out;
    /// called when a round of progress found nothing else to do. True if any slot went back.
    ///
    /// A rank only waiting (or only testing) runs such rounds, so a sender that needs a slot
    /// gets one whenever its receiver is not busy: ranks that all send before they receive
    /// still run. A receiver busy with messages does not give slots back, which keeps a sender
    /// at most a slot's count of messages ahead.
    fn give_back_slots(&mut self) -> bool {
        let mut gave = false;
        for source in 0..self.size() {
            if !self.wanted[source] {
                continue;
            }
            let Some((at, slot, len)) = self.unexpected.oldest_held(source) else {
                continue;
            };
            let bytes = self.copy_out_of_slot(source, slot, len);
            self.unexpected.by_source[source][at].1.body = Body::Data(bytes);
            self.wanted[source] = false;
            gave = true;
        }
        gave
    }

    /// Completes receive `id` (buffer `buf`) with the eager message of `len` bytes in `slot`
    /// of the pair `source → me`, copied or folded straight out of the slot, and frees the slot.
    fn deliver_from_slot(
        &mut self,
        id: u64,
        source: usize,
        tag: i32,
        slot: usize,
        len: usize,
        buf: RecvBuf,
    ) {
        let (_, offset) = self.world.eager_slot(source, self.me, slot);
        let result = if len > buf.cap {
            Err(truncated(source, tag, len, buf.cap))
        } else {
            match buf.combine {
                // Folded straight out of the slot: one pass instead of a copy and a pass (2-rank
                // f64 reduce, 64 KiB: 1.9 µs a call against 2.5; 8 KiB: 0.28 against 0.38).
                Some(combine) => {
                    assert!(offset + len <= self.world.segment.len());
                    // SAFETY: the slot lies in the segment (asserted); the sender filled it
                    // before publishing its record (seen with Acquire) and leaves it alone until
                    // we free it below. `buf` is the receive buffer its request borrows until it
                    // completes, and `len <= cap` (checked above).
                    unsafe {
                        let src = std::slice::from_raw_parts(
                            self.world.segment.as_ptr().add(offset),
                            len,
                        );
                        combine.fold(buf.ptr, src);
                    }
                }
                // SAFETY: as above for the slot; `buf` is the receive buffer its request borrows
                // mutably until it completes, and `len <= cap` (checked above).
                None => unsafe {
                    crate::shm::copy_out(
                        &self.world.segment,
                        offset,
                        std::slice::from_raw_parts_mut(buf.ptr, len),
                    )
                },
            }
            Ok(Status {
                source: source as i32,
                tag,
                count_bytes: len,
            })
        };
        self.free_slot(source, slot);
        self.finish(id, result);
    }

    fn copy_into(
        &self,
        buf: RecvBuf,
        bytes: &[u8],
        source: usize,
        tag: i32,
    ) -> Result<Status, CommError> {
        if bytes.len() > buf.cap {
            return Err(truncated(source, tag, bytes.len(), buf.cap));
        }
        // SAFETY: `buf` is the receive buffer its request borrows mutably until completion;
        // `bytes.len() <= cap` (checked above), and `bytes` is our own memory.
        unsafe {
            match buf.combine {
                Some(combine) => combine.fold(buf.ptr, bytes),
                None => std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.ptr, bytes.len()),
            }
        };
        Ok(Status {
            source: source as i32,
            tag,
            count_bytes: bytes.len(),
        })
    }

    fn start_rendezvous(
        &mut self,
        id: u64,
        source: usize,
        tag: i32,
        rts: wire::Rts,
        buf: RecvBuf,
    ) -> Result<(), CommError> {
        let len =
            usize::try_from(rts.len).map_err(|_| self.protocol(source, "RTS length too large"))?;
        if len > buf.cap {
            self.control(
                source,
                kind::FIN,
                &wire::Fin {
                    send_id: rts.send_id,
                    status: wire::fin::TRUNCATED,
                },
            )?;
            self.finish(id, Err(truncated(source, tag, len, buf.cap)));
            return Ok(());
        }
        if rts.flags & wire::RTS_STREAM != 0 {
            self.streams.insert((source, rts.send_id), id);
            self.requests.insert(
                id,
                Req::Streaming {
                    source,
                    tag,
                    len,
                    got: 0,
                    buf,
                },
            );
            return self.control(
                source,
                kind::CTS,
                &wire::Cts {
                    send_id: rts.send_id,
                    _pad: 0,
                    addr: 0,
                    len: 0,
                },
            );
        }
        if (rts.addr as usize).checked_add(len).is_none() {
            return Err(self.protocol(source, "RTS buffer wraps around the address space"));
        }
        let remote = RemoteRange::new(rts.addr as usize, len);
        // The sender writes a split's share itself: nothing to combine with, so a combining
        // receive pulls it all.
        let split = self.mode == Mode::CmaSplit && len > self.limits.chunk && buf.combine.is_none();
        if split {
            let cts = wire::Cts {
                send_id: rts.send_id,
                _pad: 0,
                addr: buf.ptr as u64,
                len: len as u64,
            };
            self.control(source, kind::CTS, &cts)?;
        }
        let cursor = &self
            .world
            .cursor(source, self.me, rts.send_id as usize)
            .next;
        let mut mine = 0;
        let mut failure = None;
        while let Some((from, to)) = claim(cursor, len, self.limits.chunk) {
            if let Err(e) = self.pull(source, remote, buf, from, to) {
                failure = Some(e);
                // Keep claiming so that the sender does not push into a failed receive.
                while claim(cursor, len, self.limits.chunk).is_some() {}
                break;
            }
            mine += to - from;
        }
        if let Some(e) = failure {
            if split {
                self.failed_splits.insert((source, rts.send_id));
            }
            self.control(
                source,
                kind::FIN,
                &wire::Fin {
                    send_id: rts.send_id,
                    status: wire::fin::FAILED,
                },
            )?;
            self.finish(id, Err(e));
            return Ok(());
        }
        if mine == len {
            self.control(
                source,
                kind::FIN,
                &wire::Fin {
                    send_id: rts.send_id,
                    status: wire::fin::OK,
                },
            )?;
            self.finish(
                id,
                Ok(Status {
                    source: source as i32,
                    tag,
                    count_bytes: len,
                }),
            );
        } else {
            self.streams.insert((source, rts.send_id), id);
            self.requests
                .insert(id, Req::AwaitPushed { source, tag, len });
        }
        Ok(())
    }

    /// Pulls bytes `[from, to)` of the sender's buffer into the same bytes of `buf`.
    fn pull(
        &self,
        source: usize,
        remote: RemoteRange,
        buf: RecvBuf,
        from: usize,
        to: usize,
    ) -> Result<(), CommError> {
        if let Some(combine) = buf.combine {
            return self.pull_combining(source, remote, buf.ptr, combine, from, to);
        }
        // SAFETY: `buf` is borrowed mutably by its request until completion, and `[from, to)` is
        // inside it (`to <= len <= cap`); no other reference to these bytes exists meanwhile (the
        // sender writes only chunks it claimed, never these).
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.ptr.add(from), to - from) };
        self.pull_into(source, remote.addr + from, dst)
    }

    /// Reads `dst.len()` bytes at `addr` in `source`'s memory into `dst`.
    fn pull_into(&self, source: usize, addr: usize, dst: &mut [u8]) -> Result<(), CommError> {
        let want = dst.len();
        let r = RemoteRange::new(addr, want);
        let n = self
            .peer(source)?
            .read_vectored(&mut [IoSliceMut::new(dst)], &[r])
            .map_err(|e| self.vm_failure(source, e))?;
        if n != want {
            return Err(self.protocol(source, format!("pulled {n} of {want} bytes")));
        }
        Ok(())
    }

    /// Reduce while copying: pulls `[from, to)` in cache-sized pieces into one scratch buffer
    /// and folds each into the receive buffer at once, so the peer's bytes never land in memory
    /// as a whole.
    fn pull_combining(
        &self,
        source: usize,
        remote: RemoteRange,
        ptr: *mut u8,
        combine: Combine,
        from: usize,
        to: usize,
    ) -> Result<(), CommError> {
        let mut scratch = vec![0u8; COMBINE_PULL_BYTES.min(to - from)];
        let mut at = from;
        let mut result = Ok(());
        while at < to {
            let n = (to - at).min(COMBINE_PULL_BYTES);
            if let Err(e) = self.pull_into(source, remote.addr + at, &mut scratch[..n]) {
                result = Err(e);
                break;
            }
            // SAFETY: `[at, at + n)` is inside the receive buffer its request borrows until
            // completion (`to <= len <= cap`); `scratch` is our own memory.
            unsafe { combine.fold(ptr.add(at), &scratch[..n]) };
            at += n;
        }
        result
    }

    // ----- progress -----

    /// Handles everything that has arrived; true if anything moved.
    pub fn progress(&mut self) -> Result<bool, CommError> {
        let mut moved = false;
        for source in 0..self.size() {
            if source == self.me {
                continue;
            }
            let mut handled = 0;
            while handled < 64 {
                let ring = ring_of(&self.world, source, self.me);
                let record = match self.readers[source].peek(&ring) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(c) => return Err(self.protocol(source, c.0)),
                };
                self.handle(source, &record)?;
                let ring = ring_of(&self.world, source, self.me);
                self.readers[source].consume(&ring, &record);
                handled += 1;
            }
            if handled > 0 {
                moved = true;
                self.streaming = false;
                // The writer may be waiting for room.
                self.ring_bell(source);
            }
        }
        if self.push_streams()? {
            moved = true;
        }
        if !moved && self.give_back_slots() {
            moved = true;
        }
        Ok(moved)
    }

    fn payload<T: bytemuck::Pod>(&self, source: usize, record: &Record) -> Result<T, CommError> {
        let mut value = T::zeroed();
        let ring = self.ring(source, self.me);
        self.readers[source]
            .read(&ring, record, 0, bytemuck::bytes_of_mut(&mut value))
            .map_err(|c| self.protocol(source, c.0))?;
        Ok(value)
    }

    fn handle(&mut self, source: usize, record: &Record) -> Result<(), CommError> {
        match record.kind {
            kind::INLINE => {
                let len = record.len as usize;
                if len > record.room() {
                    return Err(self.protocol(
                        source,
                        format!(
                            "inline message of {len} bytes in a {}-byte record",
                            record.room()
                        ),
                    ));
                }
                // A receive already waiting gets the bytes straight from the ring.
                self.take_small(source, record.tag, len, |engine, dst| {
                    let ring = engine.ring(source, engine.me);
                    engine.readers[source]
                        .read(&ring, record, 0, dst)
                        .map_err(|c| engine.protocol(source, c.0))
                })
            }
            kind::EAGER => {
                let e: wire::Eager = self.payload(source, record)?;
                let slot = e.slot as usize;
                let len = record.len as usize;
                if slot >= self.world.layout.eager_slots || len > self.world.layout.eager_slot_bytes
                {
                    return Err(self.protocol(
                        source,
                        format!("eager slot {slot} with {len} bytes is out of range"),
                    ));
                }
                self.on_eager(source, record.tag, slot, len)
            }
            kind::WANT_SLOT => {
                self.wanted[source] = true;
                Ok(())
            }
            kind::RTS => {
                let rts: wire::Rts = self.payload(source, record)?;
                if rts.len == 0 {
                    return Err(self.protocol(source, "RTS for an empty message"));
                }
                self.arrive(source, record.tag, Body::Rts(rts))
            }
            kind::CTS => {
                let cts: wire::Cts = self.payload(source, record)?;
                self.on_cts(source, cts)
            }
            kind::PUSHED => {
                let p: wire::Pushed = self.payload(source, record)?;
                self.on_pushed(source, p)
            }
            kind::FIN => {
                let fin: wire::Fin = self.payload(source, record)?;
                let Some(id) = self.sends.remove(&(source, fin.send_id)) else {
                    return Err(
                        self.protocol(source, format!("FIN for unknown send {}", fin.send_id))
                    );
                };
                let (tag, len) = match self.requests.get(&id) {
                    Some(Req::Rendezvous { tag, buf, .. }) => (*tag, buf.len),
                    _ => (0, 0),
                };
                self.outgoing.retain(|&o| o != id);
                let result = match fin.status {
                    wire::fin::OK => Ok(Status {
                        source: self.me as i32,
                        tag,
                        count_bytes: len,
                    }),
                    wire::fin::TRUNCATED => Err(CommError::ReceiverRefused {
                        rank: source as i32,
                        why: format!("its receive buffer is smaller than the {len}-byte message"),
                    }),
                    _ => Err(CommError::ReceiverRefused {
                        rank: source as i32,
                        why: "it failed to take the message".into(),
                    }),
                };
                self.finish(id, result);
                Ok(())
            }
            kind::CHUNK => {
                let c: wire::Chunk = self.payload(source, record)?;
                self.on_chunk(source, c)
            }
            other => Err(self.protocol(source, format!("unknown record kind {other}"))),
        }
    }

    fn on_cts(&mut self, source: usize, cts: wire::Cts) -> Result<(), CommError> {
        let Some(&id) = self.sends.get(&(source, cts.send_id)) else {
            return Err(self.protocol(source, format!("CTS for unknown send {}", cts.send_id)));
        };
        let Some(Req::Rendezvous { buf, streamed, .. }) = self.requests.get(&id) else {
            return Err(self.protocol(source, "CTS for a send that is not waiting"));
        };
        let (buf, streamed) = (*buf, *streamed);
        if streamed {
            if let Some(Req::Rendezvous { stream, .. }) = self.requests.get_mut(&id) {
                *stream = Some(0);
            }
            self.outgoing.push_back(id);
            return Ok(());
        }
        // cma-split: push the chunks we can claim into the receiver's buffer.
        let len = buf.len;
        if cts.len as usize != len || (cts.addr as usize).checked_add(len).is_none() {
            return Err(self.protocol(source, "CTS names a buffer of the wrong size"));
        }
        let cursor = &self
            .world
            .cursor(self.me, source, cts.send_id as usize)
            .next;
        let mut pushed = 0u64;
        let mut status = wire::fin::OK;
        while let Some((from, to)) = claim(cursor, len, self.limits.chunk) {
            // SAFETY: the send buffer is borrowed by its request until FIN; `[from, to)` is in it.
            let src = unsafe { std::slice::from_raw_parts(buf.ptr.add(from), to - from) };
            let r = RemoteRange::new(cts.addr as usize + from, to - from);
            match self
                .peer(source)?
                .write_vectored(&[IoSlice::new(src)], &[r])
            {
                Ok(n) if n == to - from => pushed += n as u64,
                _ => {
                    status = wire::fin::FAILED;
                    while claim(cursor, len, self.limits.chunk).is_some() {}
                    break;
                }
            }
        }
        if pushed > 0 || status != wire::fin::OK {
            self.control(
                source,
                kind::PUSHED,
                &wire::Pushed {
                    send_id: cts.send_id,
                    status,
                    bytes: pushed,
                },
            )?;
        }
        Ok(())
    }

    fn on_pushed(&mut self, source: usize, p: wire::Pushed) -> Result<(), CommError> {
        let Some(id) = self.streams.remove(&(source, p.send_id)) else {
            if self.failed_splits.remove(&(source, p.send_id)) {
                // The receive already failed and told the sender so (FIN); nothing to do.
                return Ok(());
            }
            return Err(self.protocol(source, format!("PUSHED for unknown transfer {}", p.send_id)));
        };
        let Some(Req::AwaitPushed { tag, len, .. }) = self.requests.get(&id) else {
            return Err(self.protocol(source, "PUSHED for a receive that is not waiting"));
        };
        let (tag, len) = (*tag, *len);
        let ok = p.status == wire::fin::OK;
        let status = if ok { wire::fin::OK } else { wire::fin::FAILED };
        self.control(
            source,
            kind::FIN,
            &wire::Fin {
                send_id: p.send_id,
                status,
            },
        )?;
        let result = if ok {
            Ok(Status {
                source: source as i32,
                tag,
                count_bytes: len,
            })
        } else {
            Err(self.protocol(source, "the sender failed to push its share"))
        };
        self.finish(id, result);
        Ok(())
    }

    fn on_chunk(&mut self, source: usize, c: wire::Chunk) -> Result<(), CommError> {
        let slot = c.slot as usize;
        let Some(&id) = self.streams.get(&(source, c.send_id)) else {
            return Err(self.protocol(source, format!("chunk for unknown transfer {}", c.send_id)));
        };
        let Some(Req::Streaming {
            tag, len, got, buf, ..
        }) = self.requests.get(&id)
        else {
            return Err(self.protocol(source, "chunk for a receive that is not streaming"));
        };
        let (tag, len, got, buf) = (*tag, *len, *got, *buf);
        let n = c.len as usize;
        if slot >= self.world.layout.eager_slots
            || n > self.world.layout.eager_slot_bytes
            || c.offset as usize != got
            || got + n > len
        {
            return Err(self.protocol(source, "chunk out of order or out of range"));
        }
        let (_, offset) = self.world.eager_slot(source, self.me, slot);
        if let Some(combine) = buf.combine {
            assert!(offset + n <= self.world.segment.len());
            // SAFETY: the slot lies in the segment (checked above) and was filled before its
            // record was published; we free it only after this. `[got, got + n)` is inside the
            // receive buffer its request borrows until completion (checked above).
            unsafe {
                let src = std::slice::from_raw_parts(self.world.segment.as_ptr().add(offset), n);
                combine.fold(buf.ptr.add(got), src);
            }
        } else {
            // SAFETY: `buf` is borrowed by its request until completion; `[got, got + n)` is
            // inside it (checked above). The slot was filled before the record was published,
            // and we free it only after this copy.
            unsafe { self.copy_chunk(offset, buf.ptr.add(got), n, len) };
        }
        self.free_slot(source, slot);
        let got = got + n;
        if got == len {
            self.streams.remove(&(source, c.send_id));
            self.finish(
                id,
                Ok(Status {
                    source: source as i32,
                    tag,
                    count_bytes: len,
                }),
            );
        } else if let Some(Req::Streaming { got: g, .. }) = self.requests.get_mut(&id) {
            *g = got;
        }
        Ok(())
    }

    /// Copies `n` bytes of the slot at `offset` to `dst`, with non-temporal stores when the
    /// whole message (`len` bytes) is too large to stay in cache.
    ///
    /// # Safety
    /// `dst` is valid for `n` bytes and the slot is filled and ours until freed.
    unsafe fn copy_chunk(&self, offset: usize, dst: *mut u8, n: usize, len: usize) {
        // SAFETY: the caller's contract.
        let dst = unsafe { std::slice::from_raw_parts_mut(dst, n) };
        // SAFETY: as above for the slot.
        unsafe {
            if len >= STREAMING_STORES_FROM {
                crate::shm::copy_out_streaming(&self.world.segment, offset, dst)
            } else {
                crate::shm::copy_out(&self.world.segment, offset, dst)
            }
        }
    }

    /// Pushes chunks of streaming sends while slots and ring room allow; true if any moved.
    fn push_streams(&mut self) -> Result<bool, CommError> {
        let mut moved = false;
        let mut i = 0;
        while i < self.outgoing.len() {
            let id = self.outgoing[i];
            let Some(Req::Rendezvous {
                dest,
                tag,
                send_id,
                buf,
                stream: Some(sent),
                ..
            }) = self.requests.get(&id)
            else {
                self.outgoing.remove(i);
                continue;
            };
            let (dest, tag, send_id, buf, mut sent) = (*dest, *tag, *send_id, *buf, *sent);
            loop {
                if sent == buf.len {
                    break;
                }
                let Some(slot) = self.free_slot_towards(dest) else {
                    self.ask_for_slot(dest);
                    break;
                };
                let (state, offset) = self.world.eager_slot(self.me, dest, slot);
                let n = (buf.len - sent).min(self.world.layout.eager_slot_bytes);
                let c = wire::Chunk {
                    send_id,
                    slot: slot as u32,
                    offset: sent as u64,
                    len: n as u64,
                };
                // SAFETY: the send buffer is borrowed by its request until it completes.
                let src = unsafe { std::slice::from_raw_parts(buf.ptr.add(sent), n) };
                // SAFETY: the slot is free (state 0, seen with Acquire) and unannounced.
                unsafe { crate::shm::copy_in(&self.world.segment, offset, src) };
                state.store(1, Ordering::Relaxed);
                if !self.try_record(dest, kind::CHUNK, 0, 0, &[bytemuck::bytes_of(&c)]) {
                    // No room: take the slot back; the copy is redone next time.
                    self.world
                        .eager_slot(self.me, dest, slot)
                        .0
                        .store(0, Ordering::Relaxed);
                    break;
                }
                self.eager_next[dest] = slot + 1;
                self.asked[dest] = false;
                sent += n;
                moved = true;
            }
            if sent == buf.len {
                // Everything is in the receiver's hands; its buffer, not ours, is read now.
                self.sends.remove(&(dest, send_id));
                self.outgoing.remove(i);
                self.finish(
                    id,
                    Ok(Status {
                        source: self.me as i32,
                        tag,
                        count_bytes: buf.len,
                    }),
                );
            } else {
                if let Some(Req::Rendezvous { stream, .. }) = self.requests.get_mut(&id) {
                    *stream = Some(sent);
                }
                i += 1;
            }
        }
        Ok(moved)
    }

    /// Fails if what `watch` names can no longer send anything: the peer has exited, or for
    /// [`Watch::Any`], every peer has. (A peer that exits after finishing its part is normal.)
    pub fn check_peers(&self, watch: Watch) -> Result<(), CommError> {
        let gone = |rank: usize| {
            self.peers
                .get(rank)
                .and_then(Option::as_ref)
                .filter(|p| !p.is_alive())
                .map(|p| CommError::PeerGone {
                    rank: rank as i32,
                    pid: p.pid(),
                })
        };
        match watch {
            Watch::Rank(r) => gone(r).map_or(Ok(()), Err),
            Watch::Any => {
                let others: Vec<usize> = (0..self.size()).filter(|&r| r != self.me).collect();
                match others.iter().map(|&r| gone(r)).collect::<Option<Vec<_>>>() {
                    Some(mut all_gone) if !others.is_empty() => Err(all_gone.remove(0)),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Claims the next `chunk`-byte piece of a `len`-byte message from a shared cursor.
fn claim(
    cursor: &std::sync::atomic::AtomicU64,
    len: usize,
    chunk: usize,
) -> Option<(usize, usize)> {
    // Relaxed: the cursor only divides the work; the data is published by the FIN/PUSHED records.
    let index = cursor.fetch_add(1, Ordering::Relaxed) as usize;
    let from = index.checked_mul(chunk).filter(|&f| f < len)?;
    Some((from, (from + chunk).min(len)))
}

#[cfg(test)]
mod hostile_tests;
