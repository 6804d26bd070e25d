//! The request table: every operation in flight, by id, and the life of a request: started,
//! finished with a result, collected (or freed, when nobody will collect it), cancelled.
//! Buffered sends' copies live in the attached buffer ([`BsendPool`]) until their sends finish.

use super::layouts::Extra;
use super::matching::Want;
use super::{CommError, Engine, RecvBuf, SendBuf, Status, Watch};
use crate::transport::Mechanism;

/// A request's id: its slot in the table and the slot's generation, so that a stale id never
/// finds a newer request.
pub(crate) type ReqId = u64;

#[derive(Debug)]
pub(super) enum Req {
    /// Finished; the result waits to be collected.
    Done(Result<Status, CommError>),
    /// A receive waiting for a matching message.
    Posted { want: Want, buf: RecvBuf },
    /// A receive whose sender still pushes (`cma-split`, `cma-write`).
    AwaitPushed { source: usize, tag: i32, len: usize },
    /// A receive being streamed through eager slots, or read from the sender's pipe.
    Streaming {
        source: usize,
        tag: i32,
        len: usize,
        got: usize,
        buf: RecvBuf,
    },
    /// A rendezvous send waiting for CTS, PUSHED or FIN; `stream` counts the bytes already
    /// streamed (through slots or into the pipe) once the receiver's CTS came.
    Rendezvous {
        dest: usize,
        tag: i32,
        send_id: u32,
        buf: SendBuf,
        how: Mechanism,
        stream: Option<usize>,
    },
    /// A synchronous send whose data is with the receiver, waiting for its receive to match.
    AwaitAck { dest: usize, tag: i32, len: usize },
    /// A buffered send not started yet: its ring, slots or send ids were busy when it was made,
    /// and a buffered send never waits. Progress starts it, in order with the other sends to
    /// its destination.
    Deferred {
        dest: usize,
        context: u32,
        tag: i32,
        data: SendBuf,
    },
    /// A nonblocking collective: its rounds live in the engine's list of schedules
    /// (`schedule.rs`), which progress advances.
    Schedule,
}

#[derive(Debug)]
struct Entry {
    state: Req,
    /// Nobody will collect the result: the entry goes as soon as it finishes.
    detached: bool,
    /// The attached-buffer allocation (offset) this send's data lives in.
    bsend: Option<usize>,
    /// What a non-contiguous message needs until it finishes ([`Extra`]).
    extra: Option<Box<Extra>>,
}

/// Requests by id: a slab, so the hot wait loop looks a request up without hashing.
#[derive(Debug, Default)]
pub(super) struct Requests {
    slots: Vec<(u32, Option<Entry>)>,
    free: Vec<usize>,
    live: usize,
}

impl Requests {
    fn split(id: ReqId) -> (usize, u32) {
        ((id & 0xFFFF_FFFF) as usize, (id >> 32) as u32)
    }

    #[inline]
    fn entry(&self, id: ReqId) -> Option<&Entry> {
        let (i, generation) = Self::split(id);
        self.slots
            .get(i)
            .filter(|s| s.0 == generation)
            .and_then(|s| s.1.as_ref())
    }

    #[inline]
    fn entry_mut(&mut self, id: ReqId) -> Option<&mut Entry> {
        let (i, generation) = Self::split(id);
        self.slots
            .get_mut(i)
            .filter(|s| s.0 == generation)
            .and_then(|s| s.1.as_mut())
    }

    #[inline]
    fn add(&mut self, state: Req) -> ReqId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                self.slots.len() - 1
            }
        };
        self.slots[index].1 = Some(Entry {
            state,
            detached: false,
            bsend: None,
            extra: None,
        });
        self.live += 1;
        (self.slots[index].0 as u64) << 32 | index as u64
    }

    #[inline]
    pub fn get(&self, id: &ReqId) -> Option<&Req> {
        self.entry(*id).map(|e| &e.state)
    }

    #[inline]
    pub fn get_mut(&mut self, id: &ReqId) -> Option<&mut Req> {
        self.entry_mut(*id).map(|e| &mut e.state)
    }

    /// Replaces the state of a live request.
    #[inline]
    pub fn insert(&mut self, id: ReqId, r: Req) {
        if let Some(e) = self.entry_mut(id) {
            e.state = r;
        }
    }

    #[inline]
    fn remove(&mut self, id: ReqId) -> Option<Entry> {
        let (i, generation) = Self::split(id);
        let slot = self.slots.get_mut(i).filter(|s| s.0 == generation)?;
        let e = slot.1.take()?;
        slot.0 = slot.0.wrapping_add(1);
        self.free.push(i);
        self.live -= 1;
        Some(e)
    }

    pub fn len(&self) -> usize {
        self.live
    }

    /// Every live request's state.
    pub fn states(&self) -> impl Iterator<Item = &Req> {
        self.slots
            .iter()
            .filter_map(|s| s.1.as_ref().map(|e| &e.state))
    }
}

/// Bytes a buffered send takes from the attached buffer beyond its data, as MPI's
/// `MPI_BSEND_OVERHEAD` promises (MPICH's value).
pub const BSEND_OVERHEAD: usize = 96;

/// The buffer attached for buffered sends: each send's data is copied into a piece of it, which
/// comes back when that send finishes.
#[derive(Debug)]
pub(crate) struct BsendPool {
    memory: Vec<u8>,
    /// Pieces in use: offset → bytes (overhead included), in address order.
    used: std::collections::BTreeMap<usize, usize>,
}

impl BsendPool {
    fn new(bytes: usize) -> BsendPool {
        BsendPool {
            memory: vec![0; bytes],
            used: Default::default(),
        }
    }

    /// The first gap of `bytes` bytes (first fit), marked used.
    fn alloc(&mut self, bytes: usize) -> Option<usize> {
        let mut at = 0;
        for (&offset, &len) in &self.used {
            if offset - at >= bytes {
                break;
            }
            at = offset + len;
        }
        if self.memory.len().checked_sub(at)? < bytes {
            return None;
        }
        self.used.insert(at, bytes);
        Some(at)
    }

    fn free_bytes(&self) -> usize {
        self.memory.len() - self.used.values().sum::<usize>()
    }
}

impl Engine {
    #[inline]
    pub(super) fn new_request(&mut self, r: Req) -> ReqId {
        self.requests.add(r)
    }

    /// A request that has finished already with `status`.
    pub fn completed(&mut self, status: Status) -> ReqId {
        self.new_request(Req::Done(Ok(status)))
    }

    /// A request whose state is `r`, with what its non-contiguous message needs.
    pub(super) fn new_request_with(&mut self, r: Req, extra: Option<Box<Extra>>) -> ReqId {
        let id = self.requests.add(r);
        if let Some(entry) = self.requests.entry_mut(id) {
            entry.extra = extra;
        }
        id
    }

    /// What request `id`'s non-contiguous message needs, if it has one.
    pub(super) fn extra_mut(&mut self, id: ReqId) -> Option<&mut Extra> {
        self.requests.entry_mut(id)?.extra.as_deref_mut()
    }

    /// Records a request's result. A freed request goes at once; a buffered send gives its piece
    /// of the attached buffer back; a receive staged for a non-contiguous layout is unpacked.
    #[inline]
    pub(super) fn finish(&mut self, id: ReqId, mut result: Result<Status, CommError>) {
        let Some(entry) = self.requests.entry_mut(id) else {
            return;
        };
        if let Some(extra) = entry.extra.take() {
            result = self.settle(*extra, result);
        }
        let Some(entry) = self.requests.entry_mut(id) else {
            return;
        };
        if let Some(offset) = entry.bsend.take()
            && let Some(pool) = &mut self.bsend
        {
            pool.used.remove(&offset);
        }
        if entry.detached {
            if let Err(e) = &result {
                tracing::warn!("a freed request finished with an error: {e}");
            }
            self.requests.remove(id);
        } else {
            entry.state = Req::Done(result);
        }
    }

    /// Whether request `id` has finished (it stays until [`Engine::take`]) or is not known.
    #[inline]
    pub fn is_done(&self, id: ReqId) -> bool {
        matches!(self.requests.get(&id), Some(Req::Done(_)) | None)
    }

    /// Whether request `id` is in the table (finished or not).
    #[inline]
    pub fn is_known(&self, id: ReqId) -> bool {
        self.requests.get(&id).is_some()
    }

    /// Collects a finished request's result.
    #[inline]
    pub fn take(&mut self, id: ReqId) -> Option<Result<Status, CommError>> {
        match self.requests.get(&id) {
            Some(Req::Done(_)) => match self.requests.remove(id).map(|e| e.state) {
                Some(Req::Done(r)) => Some(r),
                _ => None,
            },
            _ => None,
        }
    }

    /// A finished request's result, leaving it to be collected (`MPI_Request_get_status`).
    pub fn result_of(&self, id: ReqId) -> Option<Result<Status, CommError>> {
        match self.requests.get(&id) {
            Some(Req::Done(r)) => Some(r.clone()),
            _ => None,
        }
    }

    /// Frees request `id`: it finishes on its own, and its result is dropped.
    pub fn detach(&mut self, id: ReqId) {
        match self.requests.get(&id) {
            Some(Req::Done(_)) => {
                self.requests.remove(id);
            }
            Some(_) => {
                if let Some(e) = self.requests.entry_mut(id) {
                    e.detached = true;
                }
            }
            None => {}
        }
    }

    /// Cancels request `id` if it is a receive not matched yet: it then finishes at once with a
    /// cancelled status. True if it was cancelled; anything else finishes as it would have.
    pub fn cancel(&mut self, id: ReqId) -> bool {
        if !matches!(self.requests.get(&id), Some(Req::Posted { .. })) {
            return false;
        }
        self.matching.posted.retain(|&p| p != id);
        self.finish(id, Ok(Status::cancelled()));
        true
    }

    /// Gives up on request `id` (its peer died): it is forgotten by every queue and ends with `e`.
    /// A request that has finished keeps its result.
    pub fn abandon(&mut self, id: ReqId, e: CommError) {
        if self.is_done(id) {
            return;
        }
        if matches!(self.requests.get(&id), Some(Req::Schedule)) {
            self.forget_schedule(id, &e);
        }
        self.matching.posted.retain(|&p| p != id);
        self.rdv.forget(id);
        self.eager.acks.retain(|_, &mut r| r != id);
        for queue in &mut self.eager.deferred {
            queue.retain(|&r| r != id);
        }
        self.finish(id, Err(e));
    }

    /// Which peers request `id` depends on.
    pub fn watch(&self, id: ReqId) -> Watch {
        match self.requests.get(&id) {
            Some(Req::Posted { want, .. }) => match want.source {
                Some(s) => Watch::Rank(s),
                None => Watch::Any,
            },
            Some(Req::AwaitPushed { source, .. }) | Some(Req::Streaming { source, .. }) => {
                Watch::Rank(*source)
            }
            Some(Req::Rendezvous { dest, .. })
            | Some(Req::AwaitAck { dest, .. })
            | Some(Req::Deferred { dest, .. }) => Watch::Rank(*dest),
            Some(Req::Schedule) => self.schedule_watch(id),
            Some(Req::Done(_)) | None => Watch::Any,
        }
    }

    /// Whether this rank's only request waits on `peer`, and `peer` is likely running now on
    /// another CPU (see [`super::Job::spin_across`]).
    pub fn waits_on_one_across(&self, peer: usize) -> bool {
        self.requests.len() == 1 && self.job.spin_across.get(peer) == Some(&true)
    }

    /// Attaches `bytes` bytes for buffered sends; an error if a buffer is attached already.
    pub fn attach_buffer(&mut self, bytes: usize) -> Result<(), CommError> {
        if self.bsend.is_some() {
            return Err(CommError::InvalidArgument(
                "a buffer is attached already; detach it first".into(),
            ));
        }
        self.bsend = Some(BsendPool::new(bytes));
        Ok(())
    }

    /// Bytes of the attached buffer (0 when none is attached).
    pub fn buffer_size(&self) -> usize {
        self.bsend.as_ref().map_or(0, |p| p.memory.len())
    }

    /// Detaches the buffer once every buffered send from it has finished; its size.
    pub fn detach_buffer(&mut self) -> Result<usize, CommError> {
        self.wait_until(Watch::Any, |e| {
            e.bsend.as_ref().is_none_or(|p| p.used.is_empty())
        })?;
        Ok(self.bsend.take().map_or(0, |p| p.memory.len()))
    }

    /// Starts a buffered send: `data` is copied into the attached buffer and sent from there,
    /// so it may be reused at once. An error if the buffer cannot hold it now.
    pub fn post_buffered_send(
        &mut self,
        dest: usize,
        context: u32,
        tag: i32,
        data: &[u8],
    ) -> Result<(), CommError> {
        let need = data.len().next_multiple_of(8) + BSEND_OVERHEAD;
        let Some(pool) = &mut self.bsend else {
            return Err(CommError::BufferTooSmall {
                needed: need,
                free: 0,
                attached: 0,
            });
        };
        let Some(offset) = pool.alloc(need) else {
            return Err(CommError::BufferTooSmall {
                needed: need,
                free: pool.free_bytes(),
                attached: pool.memory.len(),
            });
        };
        pool.memory[offset..offset + data.len()].copy_from_slice(data);
        // The copy lives in the pool, which does not move or shrink while pieces are in use
        // (detaching waits for them).
        let copy = SendBuf::of(&pool.memory[offset..offset + data.len()]);
        if dest == self.job.me {
            // To itself a send is a copy, done at once.
            let id = self.post_send(dest, context, tag, copy, false);
            if let Some(pool) = &mut self.bsend {
                pool.used.remove(&offset);
            }
            return match id.map(|id| self.take(id)) {
                Ok(Some(Err(e))) | Err(e) => Err(e),
                _ => Ok(()),
            };
        }
        let id = self.new_request(Req::Deferred {
            dest,
            context,
            tag,
            data: copy,
        });
        if let Some(entry) = self.requests.entry_mut(id) {
            entry.bsend = Some(offset);
            entry.detached = true;
        }
        self.eager.deferred[dest].push_back(id);
        self.start_deferred(dest)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attached_buffer_is_handed_out_first_fit_and_comes_back() {
        let mut pool = BsendPool::new(1000);
        let a = pool.alloc(300).expect("a");
        let b = pool.alloc(300).expect("b");
        let c = pool.alloc(300).expect("c");
        assert_eq!((a, b, c), (0, 300, 600));
        assert_eq!(pool.alloc(200), None);
        assert_eq!(pool.free_bytes(), 100);
        pool.used.remove(&b);
        assert_eq!(pool.alloc(200), Some(300));
        assert_eq!(pool.alloc(100), Some(500));
        assert_eq!(pool.alloc(1), Some(900));
        assert_eq!(pool.alloc(100), None);
    }
}
