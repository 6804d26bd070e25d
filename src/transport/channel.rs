//! The control channel both sides of a transfer need: a shared segment with one lane per
//! direction (handshake words and a slot ring), and one pipe per direction.
//!
//! Per transfer `k` (a counter both sides keep in step) on a lane:
//! 1. the sender writes its offer (transport, total, its buffers' addresses) and rings `offer = k`;
//! 2. the receiver checks it; transports that need the receiver's addresses get them from `want`;
//! 3. the data moves (transport-specific); a sender that copies rings `pushed = k` with a status;
//! 4. the receiver rings `done = k` with its verdict, and only then may the sender return.
//!
//! Everything read from the lane was written by the peer, so it is validated before use: a corrupt
//! table or total is a [`TransportError::Protocol`], never an out-of-bounds access.

use std::cell::{Cell, OnceCell, RefCell};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use super::{POLL_INTERVAL, TransportError};
use crate::shm::{Doorbell, Segment};
use crate::vm::{Process, RemoteRange};

/// Sizes of the shared structures, fixed when the channel is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Bytes per `shm-copy` slot.
    pub slot_bytes: usize,
    /// Slots per direction.
    pub slots: usize,
    /// Pipe capacity for `vmsplice` (the kernel may round it).
    pub pipe_bytes: usize,
}

impl Default for ChannelConfig {
    /// The sizes measured best on the reference machine (see BENCHMARKS.md).
    fn default() -> Self {
        ChannelConfig {
            slot_bytes: 32 << 10,
            slots: 8,
            pipe_bytes: 1 << 20,
        }
    }
}

impl ChannelConfig {
    /// The defaults, overridden by `ONECOPY_SHM_SLOT_BYTES`, `ONECOPY_SHM_SLOTS` and
    /// `ONECOPY_PIPE_BYTES` where set.
    pub fn from_env() -> Result<Self, TransportError> {
        let mut c = ChannelConfig::default();
        for (var, field, min, max) in [
            ("ONECOPY_SHM_SLOT_BYTES", &mut c.slot_bytes, 64, 64 << 20),
            ("ONECOPY_SHM_SLOTS", &mut c.slots, 1, 4096),
            ("ONECOPY_PIPE_BYTES", &mut c.pipe_bytes, 4096, 1 << 30),
        ] {
            if let Ok(text) = std::env::var(var) {
                let v = crate::tools::parse_number(&text)
                    .ok()
                    .filter(|v| (min..=max).contains(v))
                    .ok_or_else(|| TransportError::Protocol {
                        pid: 0,
                        what: format!("{var}={text} must be a number from {min} to {max}"),
                    })?;
                *field = v;
            }
        }
        Ok(c)
    }
}

/// One transfer's description, written by one side and read by the other.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Offer {
    pub bell: Doorbell,
    pub kind: AtomicU32,
    pub total: AtomicU64,
    /// Address of the full range table in the writer's memory.
    pub table: AtomicU64,
    pub count: AtomicU64,
    /// The first [`INLINE_RANGES`] ranges, so short tables need no extra read.
    pub inline: [AtomicU64; 2 * INLINE_RANGES],
}

/// Ranges carried in the offer itself.
pub(crate) const INLINE_RANGES: usize = 4;

/// A side's verdict on a transfer.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub bell: Doorbell,
    pub status: AtomicU32,
}

/// The transport-specific part of a transfer on the receiver's side, run once the offer is
/// accepted: `(k, sender's offer, receive buffers)`.
pub(crate) type ReceiveWork<'w> = &'w mut dyn FnMut(
    u32,
    &PeerOffer,
    &mut [std::io::IoSliceMut<'_>],
) -> Result<(), TransportError>;

/// Reads `count` ranges at an address in the peer's memory.
pub(crate) type TableFetch<'f> =
    &'f dyn Fn(usize, &mut [RemoteRange]) -> Result<(), TransportError>;

/// The transport-specific part of a transfer on the sender's side, run once the receiver has
/// accepted the offer: `(k, receiver's buffers)`.
pub(crate) type SendWork<'w> = &'w dyn Fn(u32, &PeerOffer) -> Result<(), TransportError>;

/// Verdict statuses.
pub(crate) mod status {
    pub const OK: u32 = 0;
    pub const TRUNCATED: u32 = 1;
    pub const WRONG_TRANSPORT: u32 = 2;
    pub const FAILED: u32 = 3;
    pub const BAD_OFFER: u32 = 4;
}

/// The shared words of one direction.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Lane {
    pub offer: CachePadded<Offer>,
    pub want: CachePadded<Offer>,
    /// Next chunk to claim (`cma-split`).
    pub cursor: CachePadded<AtomicU64>,
    pub pushed: CachePadded<Verdict>,
    pub done: CachePadded<Verdict>,
    /// Slots filled, ever (`shm-copy`).
    pub produced: CachePadded<Doorbell>,
    /// Slots emptied, ever (`shm-copy`).
    pub consumed: CachePadded<Doorbell>,
}

/// Which end of the channel a process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that created the channel, by convention.
    A,
    /// The other end.
    B,
}

/// The shared state between two processes; create it before they part, then each takes a [`Link`].
#[derive(Debug)]
pub struct Channel {
    segment: Segment,
    config: ChannelConfig,
    ring_offset: usize,
    /// Per direction: (read end, write end), both non-blocking.
    pipes: [(OwnedFd, OwnedFd); 2],
}

impl Channel {
    /// Creates the segment and pipes.
    pub fn new(config: ChannelConfig) -> Result<Channel, TransportError> {
        let page = rustix::param::page_size();
        let lanes = (2 * std::mem::size_of::<Lane>()).div_ceil(page) * page;
        let ring = config.slot_bytes.checked_mul(config.slots).ok_or_else(|| {
            TransportError::Protocol {
                pid: 0,
                what: "ring size overflows".into(),
            }
        })?;
        let segment = Segment::create("onecopy-channel", lanes + 2 * ring)?;
        let pipe = || -> Result<(OwnedFd, OwnedFd), TransportError> {
            let (r, w) = rustix::pipe::pipe_with(
                rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
            )
            .map_err(|e| TransportError::Io {
                op: "pipe",
                source: e.into(),
            })?;
            // Best effort: a smaller pipe only means more round trips.
            let _ = rustix::pipe::fcntl_setpipe_size(&w, config.pipe_bytes);
            Ok((r, w))
        };
        Ok(Channel {
            segment,
            config,
            ring_offset: lanes,
            pipes: [pipe()?, pipe()?],
        })
    }

    /// This process's end, talking to `peer_pid`.
    ///
    /// Where Yama restricts ptrace to ancestors, names the peer as this process's ptracer so that
    /// single copy works between siblings or from child to parent.
    pub fn link(&self, side: Side, peer_pid: i32) -> Result<Link<'_>, TransportError> {
        let peer = Process::from_pid(peer_pid)?;
        let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok();
        let peer_id = rustix::process::Pid::from_raw(peer_pid);
        if let (true, Some(pid)) = (yama.is_some_and(|s| s.trim() == "1"), peer_id) {
            // Best effort: without it, `unavailable()` and the transfer itself report the denial.
            let _ = rustix::process::set_ptracer(rustix::process::PTracer::ProcessID(pid));
        }
        Ok(Link {
            channel: self,
            side,
            peer,
            sent: Cell::new(0),
            received: Cell::new(0),
            poisoned: RefCell::new(None),
            proc_mem: OnceCell::new(),
        })
    }

    /// The sizes this channel was made with.
    pub fn config(&self) -> ChannelConfig {
        self.config
    }

    fn lane(&self, index: usize) -> &Lane {
        debug_assert!(index < 2);
        // SAFETY: the segment starts with two `Lane`s (sized and page-aligned in `new`), zeroed at
        // creation, which is a valid `Lane` (atomics and integers only); every field is only
        // accessed through atomics, so sharing it between processes is sound.
        unsafe { &*(self.segment.as_ptr() as *const Lane).add(index) }
    }
}

/// One process's end of a [`Channel`].
#[derive(Debug)]
pub struct Link<'c> {
    channel: &'c Channel,
    side: Side,
    peer: Process,
    sent: Cell<u32>,
    received: Cell<u32>,
    poisoned: RefCell<Option<String>>,
    pub(crate) proc_mem: OnceCell<std::fs::File>,
}

/// What the peer offered, validated.
#[derive(Debug)]
pub(crate) struct PeerOffer {
    pub total: usize,
    pub table: Vec<RemoteRange>,
}

impl<'c> Link<'c> {
    /// The peer process.
    pub fn peer(&self) -> &Process {
        &self.peer
    }

    /// The channel's sizes.
    pub fn config(&self) -> ChannelConfig {
        self.channel.config
    }

    fn lane_index(&self, outgoing: bool) -> usize {
        match (self.side, outgoing) {
            (Side::A, true) | (Side::B, false) => 0,
            _ => 1,
        }
    }

    pub(crate) fn out_lane(&self) -> &'c Lane {
        self.channel.lane(self.lane_index(true))
    }

    pub(crate) fn in_lane(&self) -> &'c Lane {
        self.channel.lane(self.lane_index(false))
    }

    /// The shared segment and the offset of this direction's slot ring.
    pub(crate) fn ring(&self, outgoing: bool) -> (&'c Segment, usize) {
        let c = self.channel;
        let ring = c.config.slot_bytes * c.config.slots;
        (&c.segment, c.ring_offset + self.lane_index(outgoing) * ring)
    }

    /// The pipe of this direction: the write end when outgoing, else the read end.
    pub(crate) fn pipe(&self, outgoing: bool) -> &'c OwnedFd {
        let (r, w) = &self.channel.pipes[self.lane_index(outgoing)];
        if outgoing { w } else { r }
    }

    /// Fails if an earlier error left the link in an unknown state.
    pub(crate) fn check_usable(&self) -> Result<(), TransportError> {
        match &*self.poisoned.borrow() {
            Some(why) => Err(TransportError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Passes `r` through, poisoning the link on error.
    pub(crate) fn guard<T>(&self, r: Result<T, TransportError>) -> Result<T, TransportError> {
        if let Err(e) = &r {
            *self.poisoned.borrow_mut() = Some(e.to_string());
        }
        r
    }

    pub(crate) fn next_send(&self) -> u32 {
        self.sent.set(self.sent.get().wrapping_add(1));
        self.sent.get()
    }

    pub(crate) fn next_receive(&self) -> u32 {
        self.received.set(self.received.get().wrapping_add(1));
        self.received.get()
    }

    pub(crate) fn peer_gone(&self) -> TransportError {
        TransportError::PeerGone {
            pid: self.peer.pid(),
        }
    }

    pub(crate) fn protocol(&self, what: impl Into<String>) -> TransportError {
        TransportError::Protocol {
            pid: self.peer.pid(),
            what: what.into(),
        }
    }

    /// Waits until `bell` reads `k`, failing if the peer dies first.
    pub(crate) fn wait(&self, bell: &Doorbell, k: u32) -> Result<(), TransportError> {
        loop {
            let v = bell.load();
            if v == k || bell.wait_while(v, POLL_INTERVAL) == k {
                return Ok(());
            }
            if !self.peer.is_alive() {
                // It may have rung just before exiting.
                return if bell.load() == k {
                    Ok(())
                } else {
                    Err(self.peer_gone())
                };
            }
        }
    }

    /// Waits until `pred` holds for the value of `bell`, failing if the peer dies first.
    /// `abort` is checked whenever the wait wakes up without success (at least every
    /// [`POLL_INTERVAL`]): the other side's way of saying it gave up on the transfer.
    pub(crate) fn wait_until(
        &self,
        bell: &Doorbell,
        pred: impl Fn(u32) -> bool,
        abort: impl Fn() -> Option<TransportError>,
    ) -> Result<u32, TransportError> {
        loop {
            if let Some(e) = abort() {
                return Err(e);
            }
            let v = bell.load();
            if pred(v) {
                return Ok(v);
            }
            let v = bell.wait_while(v, POLL_INTERVAL);
            if pred(v) {
                return Ok(v);
            }
            if !self.peer.is_alive() {
                let v = bell.load();
                return if pred(v) {
                    Ok(v)
                } else {
                    Err(self.peer_gone())
                };
            }
        }
    }

    /// Publishes a description of `ranges` (this process's memory) as transfer `k`.
    pub(crate) fn post(
        &self,
        offer: &Offer,
        k: u32,
        kind: u32,
        total: usize,
        ranges: &[RemoteRange],
    ) {
        offer.kind.store(kind, Ordering::Relaxed);
        offer.total.store(total as u64, Ordering::Relaxed);
        offer.table.store(ranges.as_ptr() as u64, Ordering::Relaxed);
        offer.count.store(ranges.len() as u64, Ordering::Relaxed);
        for (i, r) in ranges.iter().take(INLINE_RANGES).enumerate() {
            offer.inline[2 * i].store(r.addr as u64, Ordering::Relaxed);
            offer.inline[2 * i + 1].store(r.len as u64, Ordering::Relaxed);
        }
        // Release: the fields above are visible to whoever sees `k` (Acquire in `wait`).
        offer.bell.set(k);
    }

    /// Reads and validates what the peer posted. A table longer than the inline part is read from
    /// the peer's memory with `fetch`; without one, only the total is returned (transports that
    /// stream bytes need no addresses).
    pub(crate) fn read_offer(
        &self,
        offer: &Offer,
        fetch: Option<TableFetch<'_>>,
    ) -> Result<PeerOffer, TransportError> {
        let total = offer.total.load(Ordering::Relaxed);
        let count = offer.count.load(Ordering::Relaxed);
        let table_addr = offer.table.load(Ordering::Relaxed);
        let total = usize::try_from(total)
            .map_err(|_| self.protocol(format!("offered total {total} is too large")))?;
        const MAX_RANGES: u64 = 1 << 24;
        if count > MAX_RANGES {
            return Err(self.protocol(format!("offered {count} ranges (at most {MAX_RANGES})")));
        }
        let count = count as usize;
        let mut table = vec![RemoteRange::default(); count];
        if count <= INLINE_RANGES {
            for (i, r) in table.iter_mut().enumerate() {
                r.addr = offer.inline[2 * i].load(Ordering::Relaxed) as usize;
                r.len = offer.inline[2 * i + 1].load(Ordering::Relaxed) as usize;
            }
        } else if let Some(fetch) = fetch {
            fetch(table_addr as usize, &mut table)?;
        } else {
            return Ok(PeerOffer {
                total,
                table: Vec::new(),
            });
        }
        let mut sum: usize = 0;
        for r in &table {
            if r.addr.checked_add(r.len).is_none() {
                return Err(self.protocol(format!("range {:#x}+{} wraps around", r.addr, r.len)));
            }
            sum = sum
                .checked_add(r.len)
                .ok_or_else(|| self.protocol("range lengths overflow"))?;
        }
        if sum != total {
            return Err(self.protocol(format!(
                "ranges add up to {sum} bytes but the offer says {total}"
            )));
        }
        Ok(PeerOffer { total, table })
    }

    /// Reads a range table of the peer's through CMA.
    pub(crate) fn fetch_table_cma(
        &self,
        addr: usize,
        table: &mut [RemoteRange],
    ) -> Result<(), TransportError> {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(table);
        self.peer.read_exact(addr, bytes)?;
        Ok(())
    }

    /// Rings `verdict` with `status` for transfer `k`.
    pub(crate) fn ring_verdict(&self, verdict: &Verdict, k: u32, status: u32) {
        verdict.status.store(status, Ordering::Relaxed);
        // Release: the status (and for `done`, the data) is visible to whoever sees `k`.
        verdict.bell.set(k);
    }

    /// Waits for `verdict` to ring `k` and returns its status.
    pub(crate) fn await_verdict(&self, verdict: &Verdict, k: u32) -> Result<u32, TransportError> {
        self.wait(&verdict.bell, k)?;
        Ok(verdict.status.load(Ordering::Relaxed))
    }

    /// The sender's side of transfer `kind`: offer `src`, wait for the receiver to accept, run the
    /// transport's own copying (`work`, given the receiver's buffers when `peer_table` is set), then
    /// wait for the receiver's verdict. The buffers are not referenced once this returns.
    pub(crate) fn send_flow(
        &self,
        kind: u32,
        src: &[std::io::IoSlice<'_>],
        peer_table: bool,
        work: SendWork<'_>,
    ) -> Result<(), TransportError> {
        self.check_usable()?;
        self.guard((|| {
            let k = self.next_send();
            let lane = self.out_lane();
            let ranges: Vec<RemoteRange> = src
                .iter()
                .map(|s| RemoteRange::new(s.as_ptr() as usize, s.len()))
                .collect();
            let total: usize = src.iter().map(|s| s.len()).sum();
            self.post(&lane.offer, k, kind, total, &ranges);
            self.wait(&lane.want.bell, k)?;
            let accepted = lane.want.kind.load(Ordering::Relaxed);
            let capacity = lane.want.total.load(Ordering::Relaxed);
            if accepted != status::OK {
                return Err(self.verdict_error(accepted, total as u64, capacity));
            }
            let want = if peer_table {
                self.read_offer(&lane.want, Some(&|addr, t| self.fetch_table_cma(addr, t)))?
            } else {
                PeerOffer {
                    total: capacity as usize,
                    table: Vec::new(),
                }
            };
            if let Err(e) = work(k, &want) {
                self.ring_verdict(&lane.pushed, k, status::FAILED);
                return Err(e);
            }
            self.ring_verdict(&lane.pushed, k, status::OK);
            match self.await_verdict(&lane.done, k)? {
                status::OK => Ok(()),
                other => Err(self.verdict_error(other, total as u64, capacity)),
            }
        })())
    }

    /// The receiver's side of transfer `kind`: wait for the offer, validate it (fetching the
    /// sender's table with `fetch` when given), accept it with `dst`'s addresses, run `work`, and
    /// ring the verdict. Returns the message length.
    pub(crate) fn receive_flow(
        &self,
        kind: u32,
        dst: &mut [std::io::IoSliceMut<'_>],
        fetch: Option<TableFetch<'_>>,
        work: ReceiveWork<'_>,
    ) -> Result<usize, TransportError> {
        self.check_usable()?;
        self.guard((|| {
            let k = self.next_receive();
            let lane = self.in_lane();
            self.wait(&lane.offer.bell, k)?;
            let ranges: Vec<RemoteRange> = dst
                .iter()
                .map(|s| RemoteRange::new(s.as_ptr() as usize, s.len()))
                .collect();
            let capacity: usize = dst.iter().map(|s| s.len()).sum();
            let refuse = |code: u32, e: TransportError| {
                self.post(&lane.want, k, code, capacity, &ranges);
                Err(e)
            };
            let offered = lane.offer.kind.load(Ordering::Relaxed);
            if offered != kind {
                let e = self.protocol(format!(
                    "the sender used transport #{offered}, this side #{kind}"
                ));
                return refuse(status::WRONG_TRANSPORT, e);
            }
            let offer = match self.read_offer(&lane.offer, fetch) {
                Ok(o) => o,
                Err(e) => return refuse(status::BAD_OFFER, e),
            };
            if offer.total > capacity {
                let e = TransportError::Truncated {
                    sent: offer.total as u64,
                    capacity: capacity as u64,
                };
                return refuse(status::TRUNCATED, e);
            }
            // Reset the shared chunk cursor before the sender may claim from it.
            lane.cursor.store(0, Ordering::Relaxed);
            self.post(&lane.want, k, status::OK, capacity, &ranges);
            if let Err(e) = work(k, &offer, dst) {
                self.ring_verdict(&lane.done, k, status::FAILED);
                return Err(e);
            }
            self.ring_verdict(&lane.done, k, status::OK);
            Ok(offer.total)
        })())
    }

    fn verdict_error(&self, code: u32, sent: u64, capacity: u64) -> TransportError {
        match code {
            status::TRUNCATED => TransportError::Truncated { sent, capacity },
            status::WRONG_TRANSPORT => self.protocol("the receiver expected another transport"),
            status::BAD_OFFER => self.protocol("the receiver rejected the offer as corrupt"),
            status::FAILED => self.protocol("the receiver failed during the transfer"),
            other => self.protocol(format!("unknown verdict {other}")),
        }
    }

    /// Waits for the sender's `pushed` verdict on transfer `k` (its share of the copying).
    pub(crate) fn await_pushed(&self, k: u32) -> Result<(), TransportError> {
        match self.await_verdict(&self.in_lane().pushed, k)? {
            status::OK => Ok(()),
            _ => Err(self.protocol("the sender failed during the transfer")),
        }
    }

    /// An abort check for a sender's waits: the receiver has given its verdict on `k` already.
    pub(crate) fn receiver_gave_up(&self, k: u32) -> Option<TransportError> {
        let done = &self.out_lane().done;
        (done.bell.load() == k).then(|| self.protocol("the receiver ended the transfer early"))
    }

    /// An abort check for a receiver's waits: the sender has reported a failure on `k`.
    pub(crate) fn sender_gave_up(&self, k: u32) -> Option<TransportError> {
        let pushed = &self.in_lane().pushed;
        (pushed.bell.load() == k && pushed.status.load(Ordering::Relaxed) != status::OK)
            .then(|| self.protocol("the sender failed during the transfer"))
    }
}
