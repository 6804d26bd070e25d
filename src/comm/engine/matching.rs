//! Matching: posted receives, messages that arrived before their receive, probes, and the rules
//! that pair them. A message's envelope is its communicator context, its sender and its tag; a
//! receive matches on context exactly, on source and tag exactly or as "any". Within one
//! (context, source) pair messages match in the order they were sent.
//!
//! Collective contexts are strict: there a receive from one source takes that source's next
//! message in the context, which must carry the receive's tag; one with another tag means the two
//! ranks are not in the same collective, and the receive fails with
//! [`CommError::Mismatch`](super::CommError::Mismatch) naming both, instead of waiting for a
//! message that never comes or taking the other's for its own.

use std::collections::{HashMap, VecDeque};

use super::super::wire;
use super::layouts::Extra;
use super::requests::Req;
use super::{CommError, Engine, RecvBuf, ReqId, Status};
use crate::comm::context;
use crate::comm::tags;

/// A message's envelope: its communicator context, its sender (a world rank) and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub context: u32,
    pub source: usize,
    pub tag: i32,
}

/// What a receive or a probe takes: messages of one context, from one world rank or any, with
/// one tag or any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    pub context: u32,
    pub source: Option<usize>,
    pub tag: Option<i32>,
}

impl Want {
    fn matches(&self, e: &Envelope) -> bool {
        self.context == e.context
            && self.source.is_none_or(|s| s == e.source)
            && self.tag.is_none_or(|t| t == e.tag)
    }

    /// A blocking collective's receive: from one source, with one tag, in a collective context.
    /// (Nonblocking collectives' receives are not strict: several may be in flight at once.)
    fn strict(&self) -> bool {
        context::is_collective(self.context)
            && self.source.is_some()
            && self.tag.is_some_and(|t| !tags::is_immediate(t))
    }

    /// Whether a strict receive meets a message of another blocking collective from its source,
    /// or a nonblocking collective's receive a message of another collective issued with its
    /// sequence number.
    fn conflicts(&self, e: &Envelope) -> bool {
        self.context == e.context
            && self.source == Some(e.source)
            && self.tag != Some(e.tag)
            && match self.tag {
                Some(ours) if tags::is_immediate(ours) => tags::immediate_conflict(ours, e.tag),
                _ => self.strict() && !tags::is_immediate(e.tag),
            }
    }
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
pub(super) fn truncated(source: usize, tag: i32, len: usize, capacity: usize) -> CommError {
    CommError::Truncated {
        sender: source as i32,
        tag,
        len,
        capacity,
    }
}

/// What is known of a message that arrived before its receive was posted.
#[derive(Debug)]
pub(super) enum Body {
    Data(Vec<u8>),
    Rts(wire::Rts),
    /// An eager message left in its slot of the pair `source → me` until its receive comes.
    Held {
        slot: usize,
        len: usize,
    },
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Data(d) => d.len(),
            Body::Rts(rts) => rts.len as usize,
            Body::Held { len, .. } => *len,
        }
    }
}

/// Who waits to hear that a synchronous send's message has been matched.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ack {
    /// The sender, by the id in the record's `sync` word.
    Remote(u32),
    /// This rank's own send to itself.
    Local(ReqId),
}

/// A message that came before its receive.
#[derive(Debug)]
pub(super) struct Early {
    pub env: Envelope,
    pub body: Body,
    pub ack: Option<Ack>,
}

/// Messages that arrived before their receive: one queue per source, in arrival order, and a
/// count of arrivals that orders them across sources. A receive from one source looks at that
/// source's queue only: with one shared queue, a root that three ranks ran a thousand messages
/// ahead of scanned all of them on every receive (a 4-rank 8-byte reduce took 12 µs).
#[derive(Debug)]
pub(super) struct EarlyMessages {
    pub by_source: Vec<VecDeque<(u64, Early)>>,
    arrivals: u64,
}

impl EarlyMessages {
    fn new(ranks: usize) -> EarlyMessages {
        EarlyMessages {
            by_source: (0..ranks).map(|_| VecDeque::new()).collect(),
            arrivals: 0,
        }
    }

    pub fn push(&mut self, e: Early) {
        self.arrivals += 1;
        self.by_source[e.env.source].push_back((self.arrivals, e));
    }

    /// Removes the earliest message `want` matches. A strict (collective) receive takes the next
    /// message of its context from its source, which must carry its tag: `Err` holds the other
    /// tag, and the message stays.
    fn take(&mut self, want: &Want) -> Result<Option<Early>, i32> {
        if let (Some(from), Some(ours)) = (want.source, want.tag)
            && tags::is_immediate(ours)
            && let Some(queue) = self.by_source.get(from)
            && let Some((_, e)) = queue.iter().find(|(_, e)| want.conflicts(&e.env))
        {
            return Err(e.env.tag);
        }
        if want.strict() {
            let Some((from, i)) = want
                .source
                .and_then(|s| Some((s, self.next_in_context(s, want.context)?)))
            else {
                return Ok(None);
            };
            let theirs = self.by_source[from][i].1.env.tag;
            if Some(theirs) != want.tag {
                return Err(theirs);
            }
            return Ok(self.by_source[from].remove(i).map(|(_, e)| e));
        }
        Ok(self
            .find(want)
            .and_then(|(from, i)| self.by_source[from].remove(i))
            .map(|(_, e)| e))
    }

    /// The place (source, index) of the earliest message `want` matches.
    fn find(&self, want: &Want) -> Option<(usize, usize)> {
        let first = |q: &VecDeque<(u64, Early)>| q.iter().position(|(_, e)| want.matches(&e.env));
        match want.source {
            None => self
                .by_source
                .iter()
                .enumerate()
                .filter_map(|(s, q)| first(q).map(|i| (q[i].0, s, i)))
                .min()
                .map(|(_, s, i)| (s, i)),
            Some(from) => Some((from, first(self.by_source.get(from)?)?)),
        }
    }

    /// The place of the earliest message of `context` in `source`'s queue, past nonblocking
    /// collectives' messages (which a blocking collective's receive never takes).
    fn next_in_context(&self, source: usize, context: u32) -> Option<usize> {
        self.by_source
            .get(source)?
            .iter()
            .position(|(_, e)| e.env.context == context && !tags::is_immediate(e.env.tag))
    }

    /// The bytes of the next message of `context` from `source` if it arrived early, carries
    /// `tag` and is already copied out (`None` leaves everything as it was).
    fn take_data(&mut self, source: usize, context: u32, tag: i32) -> Option<Vec<u8>> {
        let i = self.next_in_context(source, context)?;
        let queue = &mut self.by_source[source];
        let e = &queue[i].1;
        if e.env.tag != tag || e.ack.is_some() || !matches!(e.body, Body::Data(_)) {
            return None;
        }
        match queue.remove(i)?.1.body {
            Body::Data(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The earliest message from `source` still held in its eager slot: its place in the
    /// source's queue, its slot and its length.
    pub fn oldest_held(&self, source: usize) -> Option<(usize, usize, usize)> {
        self.by_source[source]
            .iter()
            .enumerate()
            .find_map(|(at, (_, e))| match e.body {
                Body::Held { slot, len } => Some((at, slot, len)),
                _ => None,
            })
    }
}

/// The matching state: posted receives in order, early messages, and messages a matched probe
/// took for one receive only.
#[derive(Debug)]
pub(super) struct Matching {
    pub posted: VecDeque<ReqId>,
    pub early: EarlyMessages,
    claimed: HashMap<u64, Early>,
    next_claim: u64,
    /// This rank's latest generation of each communicator id.
    generations: Vec<u32>,
}

impl Matching {
    pub fn new(ranks: usize) -> Matching {
        Matching {
            posted: VecDeque::new(),
            early: EarlyMessages::new(ranks),
            claimed: HashMap::new(),
            next_claim: 0,
            generations: vec![0; context::MAX_COMMUNICATORS],
        }
    }

    /// A held message from `source` that a matched probe claimed: its key, slot and length.
    pub fn claimed_held(&self, source: usize) -> Option<(u64, usize, usize)> {
        self.claimed.iter().find_map(|(&k, e)| match e.body {
            Body::Held { slot, len } if e.env.source == source => Some((k, slot, len)),
            _ => None,
        })
    }

    pub fn set_claimed_body(&mut self, key: u64, body: Body) {
        if let Some(e) = self.claimed.get_mut(&key) {
            e.body = body;
        }
    }
}

fn status_of(e: &Early) -> Status {
    Status::new(e.env.source as i32, e.env.tag, e.body.len())
}

impl Engine {
    /// Posts a receive into `buf` of the messages `want` matches; a message that came first is
    /// delivered at once.
    pub fn post_receive(&mut self, want: Want, buf: RecvBuf) -> Result<ReqId, CommError> {
        self.post_receive_with(want, buf, None)
    }

    /// [`Engine::post_receive`] for a receive that keeps `extra` (a non-contiguous layout).
    pub fn post_receive_with(
        &mut self,
        want: Want,
        buf: RecvBuf,
        extra: Option<Box<Extra>>,
    ) -> Result<ReqId, CommError> {
        let found = match self.matching.early.take(&want) {
            Ok(found) => found,
            Err(theirs) => {
                let source = want.source.unwrap_or(0);
                let e = collective_mismatch(source, want.tag.unwrap_or(0), theirs);
                return Ok(self.new_request(Req::Done(Err(e))));
            }
        };
        let id = self.new_request_with(Req::Posted { want, buf }, extra);
        match found {
            Some(e) => self.deliver(id, e, buf)?,
            None => self.matching.posted.push_back(id),
        }
        Ok(id)
    }

    /// Completes a collective's receive from `source` at once, with no request, when its message
    /// arrived early and was copied out (`None`: post it). A broadcast's receivers mostly find
    /// their message there, the root running ahead.
    pub fn receive_early(
        &mut self,
        source: usize,
        context: u32,
        tag: i32,
        buf: &mut [u8],
    ) -> Option<Result<Status, CommError>> {
        let bytes = self.matching.early.take_data(source, context, tag)?;
        let recv = RecvBuf::plain(buf.as_mut_ptr(), buf.len());
        let result = self.copy_into(recv, &bytes, source, tag);
        self.recycle(bytes);
        Some(result)
    }

    /// The envelope and length of the earliest message `want` matches that no receive has taken,
    /// if one has arrived (`MPI_Iprobe`).
    pub fn probe(&self, want: &Want) -> Option<Status> {
        let (from, i) = self.matching.early.find(want)?;
        Some(status_of(&self.matching.early.by_source[from][i].1))
    }

    /// Takes the earliest message `want` matches for one later receive
    /// ([`Engine::post_matched_receive`]) so that no other receive can take it (`MPI_Improbe`).
    pub fn matched_probe(&mut self, want: &Want) -> Option<(u64, Status)> {
        let (from, i) = self.matching.early.find(want)?;
        let (_, e) = self.matching.early.by_source[from].remove(i)?;
        let status = status_of(&e);
        self.matching.next_claim += 1;
        let key = self.matching.next_claim;
        self.matching.claimed.insert(key, e);
        Some((key, status))
    }

    /// Receives the message a matched probe took into `buf`.
    pub fn post_matched_receive(
        &mut self,
        key: u64,
        buf: RecvBuf,
        extra: Option<Box<Extra>>,
    ) -> Result<ReqId, CommError> {
        let Some(e) = self.matching.claimed.remove(&key) else {
            return Err(CommError::InvalidArgument(format!(
                "message {key} was received already or never probed"
            )));
        };
        let want = Want {
            context: e.env.context,
            source: Some(e.env.source),
            tag: Some(e.env.tag),
        };
        let id = self.new_request_with(Req::Posted { want, buf }, extra);
        self.deliver(id, e, buf)?;
        Ok(id)
    }

    /// Drops a message a matched probe took and nobody will receive: its slot is freed, its
    /// sender told (a large message's send fails), a synchronous sender released.
    pub fn discard_message(&mut self, key: u64) -> Result<(), CommError> {
        match self.matching.claimed.remove(&key) {
            Some(e) => self.discard(e),
            None => Ok(()),
        }
    }

    /// Drops every early message whose context `stale` says is of no use any more.
    fn drop_early(&mut self, stale: impl Fn(u32) -> bool) -> Result<(), CommError> {
        let mut dropped = Vec::new();
        for queue in &mut self.matching.early.by_source {
            if !queue.iter().any(|(_, e)| stale(e.env.context)) {
                continue;
            }
            let mut kept = VecDeque::with_capacity(queue.len());
            for (n, e) in queue.drain(..) {
                if stale(e.env.context) {
                    dropped.push(e);
                } else {
                    kept.push_back((n, e));
                }
            }
            *queue = kept;
        }
        for e in dropped {
            self.discard(e)?;
        }
        Ok(())
    }

    /// Drops every early message of communicator `id` (freed without receiving them).
    pub fn drop_id(&mut self, id: u32) -> Result<(), CommError> {
        self.drop_early(|c| context::id_of(c) == id)
    }

    /// Communicator `id` now has generation `generation` on this rank: its messages of older
    /// generations (sent on a communicator freed before) are dropped, now and on arrival.
    pub fn set_generation(&mut self, id: u32, generation: u32) -> Result<(), CommError> {
        let g = generation % context::GENERATIONS;
        if let Some(slot) = self.matching.generations.get_mut(id as usize) {
            *slot = g;
        }
        self.drop_early(|c| context::id_of(c) == id && context::older(context::generation_of(c), g))
    }

    /// Whether a message of `context` belongs to a communicator this rank has moved past.
    pub(super) fn is_stale(&self, context: u32) -> bool {
        let latest = self
            .matching
            .generations
            .get(context::id_of(context) as usize)
            .copied()
            .unwrap_or(0);
        context::older(context::generation_of(context), latest)
    }

    /// Drops an arriving message of a communicator this rank has moved past.
    pub(super) fn drop_stale(
        &mut self,
        env: Envelope,
        body: Body,
        ack: Option<Ack>,
    ) -> Result<(), CommError> {
        self.discard(Early { env, body, ack })
    }

    /// Whether a posted receive or a claimed message still belongs to communicator `id`.
    pub fn id_in_use(&self, id: u32) -> bool {
        let posted = self.requests.states().any(|r| match r {
            Req::Posted { want, .. } => context::id_of(want.context) == id,
            _ => false,
        });
        posted
            || self.schedules_use(id)
            || self
                .matching
                .claimed
                .values()
                .any(|e| context::id_of(e.env.context) == id)
    }

    fn discard(&mut self, e: Early) -> Result<(), CommError> {
        let source = e.env.source;
        match e.body {
            Body::Data(bytes) => self.recycle(bytes),
            Body::Held { slot, .. } => self.free_slot(source, slot),
            Body::Rts(rts) => {
                if source != self.job.me {
                    self.control(
                        source,
                        wire::kind::FIN,
                        &wire::Fin {
                            send_id: rts.send_id,
                            status: wire::fin::DISCARDED,
                        },
                    )?;
                }
            }
        }
        self.acknowledge(source, e.ack, Status::new(source as i32, e.env.tag, 0))
    }

    /// Tells a synchronous sender that its message has been matched.
    pub(super) fn acknowledge(
        &mut self,
        source: usize,
        ack: Option<Ack>,
        status: Status,
    ) -> Result<(), CommError> {
        match ack {
            None => Ok(()),
            Some(Ack::Local(id)) => {
                let sent = Status::new(self.job.me as i32, status.tag(), status.count_bytes());
                self.finish(id, Ok(sent));
                Ok(())
            }
            Some(Ack::Remote(sync)) => self.send_ack(source, sync),
        }
    }

    /// A message start (INLINE data, EAGER data copied out, or an RTS) arrived.
    pub(super) fn arrive(
        &mut self,
        env: Envelope,
        body: Body,
        ack: Option<Ack>,
    ) -> Result<(), CommError> {
        let e = Early { env, body, ack };
        match self.take_posted(&env) {
            Some((id, buf)) => self.deliver(id, e, buf),
            None => {
                self.matching.early.push(e);
                Ok(())
            }
        }
    }

    /// Removes and returns the first posted receive that matches a message with envelope `env`.
    /// A collective's receive from its source waiting for another tag fails instead (the message
    /// then waits as early).
    pub(super) fn take_posted(&mut self, env: &Envelope) -> Option<(ReqId, RecvBuf)> {
        let i = self
            .matching
            .posted
            .iter()
            .position(|id| match self.requests.get(id) {
                Some(Req::Posted { want, .. }) => want.matches(env) || want.conflicts(env),
                _ => false,
            })?;
        let id = self.matching.posted.remove(i)?;
        match self.requests.get(&id) {
            Some(Req::Posted { want, .. }) if want.conflicts(env) => {
                let e = collective_mismatch(env.source, want.tag.unwrap_or(0), env.tag);
                self.finish(id, Err(e));
                None
            }
            Some(Req::Posted { buf, .. }) => Some((id, *buf)),
            _ => None,
        }
    }

    /// Completes (or starts the rendezvous of) receive `id` with a matched message.
    pub(super) fn deliver(&mut self, id: ReqId, e: Early, buf: RecvBuf) -> Result<(), CommError> {
        let Early { env, body, ack } = e;
        let (source, tag) = (env.source, env.tag);
        let len = body.len();
        match body {
            Body::Data(bytes) => {
                let result = self.copy_into(buf, &bytes, source, tag);
                self.finish(id, result);
                self.recycle(bytes);
            }
            Body::Rts(rts) => self.start_rendezvous(id, source, tag, rts, buf)?,
            Body::Held { slot, len } => {
                // The slot goes back now, which is what the sender asked for, if it did.
                self.eager.wanted[source] = false;
                self.deliver_from_slot(id, source, tag, slot, len, buf);
            }
        }
        self.acknowledge(source, ack, Status::new(source as i32, tag, len))
    }
}
