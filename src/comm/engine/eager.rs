//! The small-message protocols. Up to the inline limit a message travels in its ring record; up
//! to the eager limit it is copied into one of the pair's eager slots and the record names the
//! slot. Either way the send is done once the record is written (a synchronous send waits for
//! the receiver's ACK as well).
//!
//! A message that arrives before its receive waits in the receiver: up to [`HOLD_FROM`] bytes
//! copied out at once, larger ones in their slot, which keeps the sender at most a slot's count of
//! messages ahead; a sender short of slots asks for one back ([`kind::WANT_SLOT`]), and the
//! receiver gives one as soon as it has nothing else to do ([`Engine::give_back_slots`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use super::super::ring::{Head, Record};
use super::super::wire::{self, kind};
use super::matching::{Ack, Body, Envelope, truncated};
use super::requests::Req;
use super::{CommError, Engine, RecvBuf, ReqId, SendBuf, Status, Watch};

/// Early eager messages from this size on stay in their slots until their receives come (see
/// [`Engine::on_eager`]); smaller ones are copied out at once, so that their senders run ahead
/// freely.
const HOLD_FROM: usize = 4 << 10;

/// Bytes a combining cma pull reads per call: the piece and the buffer's part stay in L2.
pub(super) const COMBINE_PULL_BYTES: usize = 64 << 10;

/// Per peer: the eager slots and synchronous sends in flight.
pub(super) struct EagerState {
    /// The slot after the last one taken, per destination.
    next: Vec<usize>,
    /// Sources that asked for a slot back ([`kind::WANT_SLOT`]).
    pub wanted: Vec<bool>,
    /// Destinations this rank asked for a slot and has not had one from since.
    asked: Vec<bool>,
    /// Buffers of delivered early messages, for reuse.
    spare: Vec<Vec<u8>>,
    /// The last synchronous-send id used per destination.
    next_sync: Vec<u32>,
    /// (dest, sync id) → the synchronous send waiting for its ACK.
    pub acks: HashMap<(usize, u32), ReqId>,
    /// Per destination: buffered sends not started yet, in order ([`Req::Deferred`]).
    pub deferred: Vec<VecDeque<ReqId>>,
}

impl EagerState {
    pub fn new(ranks: usize) -> EagerState {
        EagerState {
            next: vec![0; ranks],
            wanted: vec![false; ranks],
            asked: vec![false; ranks],
            spare: Vec::new(),
            next_sync: vec![0; ranks],
            acks: HashMap::new(),
            deferred: (0..ranks).map(|_| VecDeque::new()).collect(),
        }
    }
}

impl Engine {
    /// Sends `data` to `dest` at once if it travels in the ring record itself (`None`: done,
    /// with no request to track); else starts it like [`Engine::post_send`].
    ///
    /// The caller keeps `data` alive and unchanged until a returned request finishes.
    pub fn send_now(
        &mut self,
        dest: usize,
        context: u32,
        tag: i32,
        data: &[u8],
    ) -> Result<Option<ReqId>, CommError> {
        self.flush_deferred(dest)?;
        if dest != self.job.me && data.len() <= self.job.limits.inline {
            let head = Head {
                context,
                ..Head::new(kind::INLINE, tag, data.len() as u32)
            };
            self.push_record(dest, head, &[data])?;
            return Ok(None);
        }
        self.post_send(dest, context, tag, SendBuf::of(data), false)
            .map(Some)
    }

    /// Starts sending `data` to `dest`; small messages complete at once, or for a synchronous
    /// send (`sync`) once the receiver matches them.
    ///
    /// The caller keeps `data` alive and unchanged until the request finishes.
    pub fn post_send(
        &mut self,
        dest: usize,
        context: u32,
        tag: i32,
        data: SendBuf,
        sync: bool,
    ) -> Result<ReqId, CommError> {
        self.post_send_with(dest, context, tag, data, sync, None)
    }

    /// [`Engine::post_send`] for a send that keeps `extra` (a non-contiguous layout) until it
    /// finishes.
    pub fn post_send_with(
        &mut self,
        dest: usize,
        context: u32,
        tag: i32,
        data: SendBuf,
        sync: bool,
        extra: Option<Box<super::layouts::Extra>>,
    ) -> Result<ReqId, CommError> {
        let me = self.job.me;
        let len = data.len;
        if data.shape != super::Shape::Bytes {
            // Laid out by a datatype: read where it lies, as a rendezvous.
            if dest == me || len <= self.job.limits.eager.max(self.job.limits.inline) {
                return Err(CommError::InvalidArgument(
                    "a laid-out message to itself or small enough to pack".into(),
                ));
            }
            self.flush_deferred(dest)?;
            return self.post_rendezvous(dest, context, tag, data, extra);
        }
        // SAFETY: the caller lends `data` until the request finishes; it is contiguous.
        let bytes = unsafe { std::slice::from_raw_parts(data.ptr, len) };
        let env = Envelope {
            context,
            source: me,
            tag,
        };
        let done = Status::new(me as i32, tag, len);
        if dest == me {
            let (id, ack) = if sync {
                let id = self.new_request(Req::AwaitAck { dest, tag, len });
                (id, Some(Ack::Local(id)))
            } else {
                (self.new_request(Req::Done(Ok(done))), None)
            };
            self.arrive(env, Body::Data(bytes.to_vec()), ack)?;
            return Ok(id);
        }
        self.flush_deferred(dest)?;
        if len > self.job.limits.eager && len > self.job.limits.inline {
            return self.post_rendezvous(dest, context, tag, data, extra);
        }
        let (id, sync_word) = if sync {
            let id = self.new_request(Req::AwaitAck { dest, tag, len });
            let s = match self.eager.next_sync[dest].wrapping_add(1) {
                0 => 1,
                s => s,
            };
            self.eager.next_sync[dest] = s;
            self.eager.acks.insert((dest, s), id);
            (Some(id), s)
        } else {
            (None, 0)
        };
        if len <= self.job.limits.inline {
            let head = Head {
                context,
                sync: sync_word,
                ..Head::new(kind::INLINE, tag, len as u32)
            };
            self.push_record(dest, head, &[bytes])?;
        } else {
            let slot = self.claim_slot(dest)?;
            let (_, offset) = self.job.segment.eager_slot(self.job.me, dest, slot);
            // SAFETY: the slot is ours: its state word was 0 (freed by the receiver with
            // Release, seen with Acquire in `claim_slot`) and the receiver reads it only after
            // the record below is published.
            unsafe { crate::shm::copy_in(&self.job.segment.segment, offset, bytes) };
            self.set_slot_full(dest, slot);
            let e = wire::Eager {
                slot: slot as u32,
                _pad: 0,
            };
            let head = Head {
                context,
                sync: sync_word,
                ..Head::new(kind::EAGER, tag, len as u32)
            };
            self.push_record(dest, head, &[bytemuck::bytes_of(&e)])?;
        }
        Ok(id.unwrap_or_else(|| self.new_request(Req::Done(Ok(done)))))
    }

    /// Waits until every buffered send to `dest` made before has started, so that a later send
    /// cannot overtake it.
    fn flush_deferred(&mut self, dest: usize) -> Result<(), CommError> {
        if self.eager.deferred[dest].is_empty() {
            return Ok(());
        }
        self.wait_until(Watch::Rank(dest), |e| e.eager.deferred[dest].is_empty())
    }

    /// Starts, in order, the buffered sends to `dest` that can start now without waiting;
    /// true if any did.
    pub(super) fn start_deferred(&mut self, dest: usize) -> Result<bool, CommError> {
        let mut started = false;
        while let Some(&id) = self.eager.deferred[dest].front() {
            let Some(&Req::Deferred {
                context, tag, data, ..
            }) = self.requests.get(&id)
            else {
                self.eager.deferred[dest].pop_front();
                continue;
            };
            if !self.try_start(id, dest, context, tag, data)? {
                break;
            }
            self.eager.deferred[dest].pop_front();
            started = true;
        }
        Ok(started)
    }

    /// Starts every buffered send that can start now; true if any did.
    pub(super) fn start_all_deferred(&mut self) -> Result<bool, CommError> {
        if self.eager.deferred.iter().all(VecDeque::is_empty) {
            return Ok(false);
        }
        let mut started = false;
        for dest in 0..self.size() {
            started |= self.start_deferred(dest)?;
        }
        Ok(started)
    }

    /// Starts deferred send `id` if its ring (and slot, or send id) allows it now; false, with
    /// nothing done, if not.
    fn try_start(
        &mut self,
        id: ReqId,
        dest: usize,
        context: u32,
        tag: i32,
        data: SendBuf,
    ) -> Result<bool, CommError> {
        let len = data.len;
        // SAFETY: the data is the request's copy in the attached buffer, kept until it finishes.
        let bytes = unsafe { std::slice::from_raw_parts(data.ptr, len) };
        let done = Status::new(self.job.me as i32, tag, len);
        if len <= self.job.limits.inline {
            let head = Head {
                context,
                ..Head::new(kind::INLINE, tag, len as u32)
            };
            if !self.try_record(dest, head, &[bytes]) {
                return Ok(false);
            }
            self.finish(id, Ok(done));
            return Ok(true);
        }
        if len <= self.job.limits.eager {
            let Some(slot) = self.free_slot_towards(dest) else {
                self.ask_for_slot(dest);
                return Ok(false);
            };
            let (_, offset) = self.job.segment.eager_slot(self.job.me, dest, slot);
            // SAFETY: the slot is free (seen with Acquire) and unannounced.
            unsafe { crate::shm::copy_in(&self.job.segment.segment, offset, bytes) };
            self.set_slot_state(dest, slot, 1);
            let e = wire::Eager {
                slot: slot as u32,
                _pad: 0,
            };
            let head = Head {
                context,
                ..Head::new(kind::EAGER, tag, len as u32)
            };
            if !self.try_record(dest, head, &[bytemuck::bytes_of(&e)]) {
                self.set_slot_state(dest, slot, 0);
                return Ok(false);
            }
            self.take_slot(dest, slot);
            self.finish(id, Ok(done));
            return Ok(true);
        }
        self.try_start_rendezvous(id, dest, context, tag, data)
    }

    /// A synchronous send to `source` was matched there.
    pub(super) fn on_ack(&mut self, source: usize, record: &Record) -> Result<(), CommError> {
        let Some(id) = self.eager.acks.remove(&(source, record.sync)) else {
            return Err(self.protocol(source, format!("ACK for unknown send {}", record.sync)));
        };
        let (tag, len) = match self.requests.get(&id) {
            Some(Req::AwaitAck { tag, len, .. }) => (*tag, *len),
            _ => (0, 0),
        };
        self.finish(id, Ok(Status::new(self.job.me as i32, tag, len)));
        Ok(())
    }

    /// Waits (making progress) for an eager slot towards `dest` to be free and takes it.
    fn claim_slot(&mut self, dest: usize) -> Result<usize, CommError> {
        let mut idle = super::Idle::new(Watch::Rank(dest));
        loop {
            if let Some(slot) = self.free_slot_towards(dest) {
                self.eager.next[dest] = slot + 1;
                self.eager.asked[dest] = false;
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
    pub(super) fn ask_for_slot(&mut self, dest: usize) {
        if !self.eager.asked[dest] && self.try_record(dest, Head::new(kind::WANT_SLOT, 0, 0), &[]) {
            self.eager.asked[dest] = true;
        }
    }

    /// A free eager slot towards `dest`: the one after the last taken if it is free (the usual
    /// case), else any (the receiver frees held slots in any order).
    pub(super) fn free_slot_towards(&self, dest: usize) -> Option<usize> {
        let slots = self.job.segment.layout.eager_slots;
        let next = self.eager.next[dest];
        (0..slots).map(|k| (next + k) % slots).find(|&slot| {
            // Acquire: pairs with the receiver's Release when it frees the slot.
            self.job
                .segment
                .eager_slot(self.job.me, dest, slot)
                .0
                .load(Ordering::Acquire)
                == 0
        })
    }

    /// Marks slot `slot` towards `dest` as taken by this rank, after the one taken before it.
    pub(super) fn take_slot(&mut self, dest: usize, slot: usize) {
        self.eager.next[dest] = slot + 1;
        self.eager.asked[dest] = false;
    }

    fn set_slot_full(&self, dest: usize, slot: usize) {
        self.set_slot_state(dest, slot, 1);
    }

    /// Sets the state word of slot `slot` towards `dest` (1 taken, 0 free); the record that
    /// announces the slot publishes it.
    pub(super) fn set_slot_state(&self, dest: usize, slot: usize, state: u32) {
        let (word, _) = self.job.segment.eager_slot(self.job.me, dest, slot);
        word.store(state, Ordering::Relaxed);
    }

    /// Frees slot `slot` of the pair `source → me` and tells the sender.
    pub(super) fn free_slot(&self, source: usize, slot: usize) {
        let (state, _) = self.job.segment.eager_slot(source, self.job.me, slot);
        // Release: our copy out of the slot happens before the sender reuses it.
        state.store(0, Ordering::Release);
        self.ring_bell(source);
    }

    /// An INLINE record from `source`.
    pub(super) fn on_inline(&mut self, source: usize, record: &Record) -> Result<(), CommError> {
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
        if self.is_stale(record.context) {
            let body = Body::Data(Vec::new());
            return self.drop_stale(envelope(source, record), body, ack_of(record));
        }
        // A receive already waiting gets the bytes straight from the ring.
        self.take_small(
            envelope(source, record),
            len,
            ack_of(record),
            |engine, dst| engine.read_payload(source, record, 0, dst),
        )
    }

    /// An EAGER record from `source`.
    pub(super) fn on_eager_record(
        &mut self,
        source: usize,
        record: &Record,
    ) -> Result<(), CommError> {
        let e: wire::Eager = self.payload(source, record)?;
        let slot = e.slot as usize;
        let len = record.len as usize;
        let layout = &self.job.segment.layout;
        if slot >= layout.eager_slots || len > layout.eager_slot_bytes {
            return Err(self.protocol(
                source,
                format!("eager slot {slot} with {len} bytes is out of range"),
            ));
        }
        if self.is_stale(record.context) {
            let body = Body::Held { slot, len };
            return self.drop_stale(envelope(source, record), body, ack_of(record));
        }
        self.on_eager(envelope(source, record), ack_of(record), slot, len)
    }

    /// Gives a small (inline or eager) message of `len` bytes to the first posted receive that
    /// matches, or keeps it as early; `fill` copies the bytes into the slice it is handed (the
    /// receive buffer itself, or a spare buffer).
    fn take_small(
        &mut self,
        env: Envelope,
        len: usize,
        ack: Option<Ack>,
        fill: impl FnOnce(&Self, &mut [u8]) -> Result<(), CommError>,
    ) -> Result<(), CommError> {
        let (source, tag) = (env.source, env.tag);
        if let Some((id, buf)) = self.take_posted(&env) {
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
                Ok(Status::new(source as i32, tag, len))
            };
            self.finish(id, result);
            return self.acknowledge(source, ack, Status::new(source as i32, tag, len));
        }
        let mut bytes = self.spare_buffer(len);
        fill(self, &mut bytes)?;
        self.matching.early.push(super::matching::Early {
            env,
            body: Body::Data(bytes),
            ack,
        });
        Ok(())
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
        env: Envelope,
        ack: Option<Ack>,
        slot: usize,
        len: usize,
    ) -> Result<(), CommError> {
        let source = env.source;
        if let Some((id, buf)) = self.take_posted(&env) {
            self.deliver_from_slot(id, source, env.tag, slot, len, buf);
            return self.acknowledge(source, ack, Status::new(source as i32, env.tag, len));
        }
        let body = if len >= HOLD_FROM {
            Body::Held { slot, len }
        } else {
            Body::Data(self.copy_out_of_slot(source, slot, len))
        };
        self.matching
            .early
            .push(super::matching::Early { env, body, ack });
        Ok(())
    }

    /// Copies the eager message of `len` bytes in `slot` of the pair `source → me` into a
    /// buffer of ours and frees the slot.
    fn copy_out_of_slot(&mut self, source: usize, slot: usize, len: usize) -> Vec<u8> {
        let mut bytes = self.spare_buffer(len);
        let (_, offset) = self.job.segment.eager_slot(source, self.job.me, slot);
        // SAFETY: the sender filled the slot before publishing its record (seen with Acquire)
        // and leaves it alone until we free it below.
        unsafe { crate::shm::copy_out(&self.job.segment.segment, offset, &mut bytes) };
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
    pub(super) fn give_back_slots(&mut self) -> bool {
        let mut gave = false;
        for source in 0..self.size() {
            if !self.eager.wanted[source] {
                continue;
            }
            if let Some((at, slot, len)) = self.matching.early.oldest_held(source) {
                let bytes = self.copy_out_of_slot(source, slot, len);
                self.matching.early.by_source[source][at].1.body = Body::Data(bytes);
            } else if let Some((key, slot, len)) = self.matching.claimed_held(source) {
                let bytes = self.copy_out_of_slot(source, slot, len);
                self.matching.set_claimed_body(key, Body::Data(bytes));
            } else {
                continue;
            }
            self.eager.wanted[source] = false;
            gave = true;
        }
        gave
    }

    /// Completes receive `id` (buffer `buf`) with the eager message of `len` bytes in `slot`
    /// of the pair `source → me`, copied or folded straight out of the slot, and frees the slot.
    pub(super) fn deliver_from_slot(
        &mut self,
        id: ReqId,
        source: usize,
        tag: i32,
        slot: usize,
        len: usize,
        buf: RecvBuf,
    ) {
        let (_, offset) = self.job.segment.eager_slot(source, self.job.me, slot);
        let segment = &self.job.segment.segment;
        let result = if len > buf.cap {
            Err(truncated(source, tag, len, buf.cap))
        } else {
            match buf.combine {
                // Folded straight out of the slot: one pass instead of a copy and a pass (2-rank
                // f64 reduce, 64 KiB: 1.9 µs a call against 2.5; 8 KiB: 0.28 against 0.38).
                Some(combine) => {
                    assert!(offset + len <= segment.len());
                    // SAFETY: the slot lies in the segment (asserted); the sender filled it
                    // before publishing its record (seen with Acquire) and leaves it alone until
                    // we free it below. `buf` is the receive buffer its request borrows until it
                    // completes, and `len <= cap` (checked above).
                    unsafe {
                        let src = std::slice::from_raw_parts(segment.as_ptr().add(offset), len);
                        combine.fold(buf.ptr, src);
                    }
                }
                // SAFETY: as above for the slot; `buf` is the receive buffer its request borrows
                // mutably until it completes, and `len <= cap` (checked above).
                None => unsafe {
                    crate::shm::copy_out(
                        segment,
                        offset,
                        std::slice::from_raw_parts_mut(buf.ptr, len),
                    )
                },
            }
            Ok(Status::new(source as i32, tag, len))
        };
        self.free_slot(source, slot);
        self.finish(id, result);
    }

    /// Copies (or folds) a message's `bytes` into receive buffer `buf`.
    pub(super) fn copy_into(
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
        Ok(Status::new(source as i32, tag, bytes.len()))
    }

    /// A buffer of `len` bytes for a message that arrived before its receive, reused from
    /// earlier ones: a fresh allocation per early message costs page faults every time (the
    /// allocator hands large freed blocks back to the kernel), which made a sender running ahead
    /// of its receiver several times slower. The contents are stale; callers overwrite them.
    pub(super) fn spare_buffer(&mut self, len: usize) -> Vec<u8> {
        let spare = &mut self.eager.spare;
        let mut buf = match spare.iter().position(|b| b.capacity() >= len) {
            Some(i) => spare.swap_remove(i),
            None => spare.pop().unwrap_or_default(),
        };
        if buf.len() < len {
            buf.resize(len, 0);
        } else {
            buf.truncate(len);
        }
        buf
    }

    /// Keeps a delivered early message's buffer for the next one (a bounded number of them).
    pub(super) fn recycle(&mut self, buf: Vec<u8>) {
        const KEEP: usize = 64;
        const LARGEST: usize = 4 << 20;
        if self.eager.spare.len() < KEEP && buf.capacity() <= LARGEST {
            self.eager.spare.push(buf);
        }
    }

    /// Whether every piece a message can arrive in (eager slots, stream chunks, pulls) is a
    /// whole number of `elem`-byte elements, as a combining receive needs.
    pub fn pieces_hold(&self, elem: usize) -> bool {
        elem > 0
            && [
                self.job.segment.layout.eager_slot_bytes,
                self.job.limits.chunk,
                COMBINE_PULL_BYTES,
                super::rendezvous::PIPE_PIECE_BYTES,
            ]
            .iter()
            .all(|&piece| piece % elem == 0)
    }
}

/// A record's envelope: its context, its sender and its tag.
fn envelope(source: usize, record: &Record) -> Envelope {
    Envelope {
        context: record.context,
        source,
        tag: record.tag,
    }
}

/// Who waits for a record's message to be matched.
fn ack_of(record: &Record) -> Option<Ack> {
    (record.sync != 0).then_some(Ack::Remote(record.sync))
}
