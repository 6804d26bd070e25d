//! Large messages. The sender posts an RTS naming its buffer and the mechanism
//! ([`crate::transport::Mechanism`]); once a receive matches it, the bytes move:
//!
//! | mechanism | after the match |
//! | --- | --- |
//! | `cma-read`, `procmem` | the receiver pulls everything, then answers FIN |
//! | `cma-split` | the receiver answers CTS with its buffer and pulls chunks it claims from the pair's cursor; the sender pushes the chunks it claims and reports PUSHED; the receiver answers FIN |
//! | `cma-write` | the same, with the receiver claiming nothing |
//! | `shm-copy` | the receiver answers CTS; the sender streams CHUNK records through the eager slots; the send is done when the last chunk is in a slot |
//! | `vmsplice` | the receiver takes the sender's pipe and answers CTS; the sender splices its pages into the pipe as it empties; the receiver reads them and answers FIN |
//!
//! A combining receive (a reduction step) pulls by itself whatever the sender offered to push,
//! so that every piece passes through its fold. The sender's buffer is the program's again only
//! once the receiver is done with it (FIN), or, when streaming through slots, once every byte
//! is in a slot.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::super::ring::{Head, Record};
use super::super::wire::{self, kind};
use super::eager::COMBINE_PULL_BYTES;
use super::layouts;
use super::matching::{Body, Envelope, truncated};
use super::requests::Req;
use super::{CommError, Engine, RecvBuf, ReqId, SendBuf, Shape, Status, Watch};
use crate::transport::auto::Pattern;
use crate::transport::procmem::MemFile;
use crate::transport::vmsplice::{self, Pipe};
use crate::transport::{Mechanism, TransportError, cma, shm_copy};

/// How long a peer whose memory failed a transfer is watched for an exit before the failure is
/// blamed on it ([`Engine::gone_soon`]).
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(50);
use crate::vm::{RemoteRange, VmError};

/// Bytes a combining receive reads from a vmsplice pipe before folding them: whole elements,
/// as [`Engine::pieces_hold`] checks.
pub(super) const PIPE_PIECE_BYTES: usize = 64 << 10;

/// The smallest share of a `cma-split` message one side claims at a time: smaller shares cost
/// more in claims and system calls than the overlap gains.
const SPLIT_CHUNK_MIN: usize = 64 << 10;

/// The rendezvous state of this rank.
pub(super) struct Rendezvous {
    send_ids: Vec<u32>,
    /// (dest, send_id) → request, for rendezvous sends.
    sends: HashMap<(usize, u32), ReqId>,
    /// (source, send_id) → request, for receives waiting on PUSHED or CHUNKs.
    streams: HashMap<(usize, u32), ReqId>,
    /// (source, send_id) of split receives that failed after their CTS: the sender may still
    /// report its pushes, and that late PUSHED is not a protocol error.
    failed_splits: HashSet<(usize, u32)>,
    /// Streaming sends (through slots or a pipe) with bytes left, in the order of their CTS.
    outgoing: VecDeque<ReqId>,
    /// `vmsplice`, sending: this rank's pipe towards each destination, made at the first use.
    pipes: Vec<Option<Pipe>>,
    /// `vmsplice`, receiving: each source's pipe, and the receives reading it, in CTS order.
    pipe_reads: Vec<Option<OwnedFd>>,
    piped: Vec<VecDeque<(ReqId, u32)>>,
    /// A combining receive's bytes read from a pipe and not folded yet, per source.
    pipe_scratch: HashMap<usize, Vec<u8>>,
    /// `procmem`: each source's memory file, opened at the first pull from it.
    mem_files: Vec<Option<MemFile>>,
}

impl Rendezvous {
    pub fn new(ranks: usize) -> Rendezvous {
        Rendezvous {
            send_ids: vec![0; ranks],
            sends: HashMap::new(),
            streams: HashMap::new(),
            failed_splits: HashSet::new(),
            outgoing: VecDeque::new(),
            pipes: (0..ranks).map(|_| None).collect(),
            pipe_reads: (0..ranks).map(|_| None).collect(),
            piped: (0..ranks).map(|_| VecDeque::new()).collect(),
            pipe_scratch: HashMap::new(),
            mem_files: (0..ranks).map(|_| None).collect(),
        }
    }

    /// Forgets request `id` everywhere it may be listed.
    pub fn forget(&mut self, id: ReqId) {
        self.sends.retain(|_, &mut r| r != id);
        self.streams.retain(|_, &mut r| r != id);
        self.outgoing.retain(|&o| o != id);
        for (source, queue) in self.piped.iter_mut().enumerate() {
            if queue.front().is_some_and(|&(r, _)| r == id) {
                self.pipe_scratch.remove(&source);
            }
            queue.retain(|&(r, _)| r != id);
        }
    }
}

impl Engine {
    /// Starts a rendezvous send of `data` to `dest`.
    pub(super) fn post_rendezvous(
        &mut self,
        dest: usize,
        context: u32,
        tag: i32,
        data: SendBuf,
        extra: Option<Box<layouts::Extra>>,
    ) -> Result<ReqId, CommError> {
        let send_id = self.next_send_id(dest)?;
        self.rdv.send_ids[dest] = send_id;
        let (rts, how) = self.prepare_rts(dest, send_id, data)?;
        let id = self.new_request_with(
            Req::Rendezvous {
                dest,
                tag,
                send_id,
                buf: data,
                how,
                stream: None,
            },
            extra,
        );
        self.rdv.sends.insert((dest, send_id), id);
        let head = Head {
            context,
            ..Head::new(kind::RTS, tag, 0)
        };
        self.push_record(dest, head, &[bytemuck::bytes_of(&rts)])?;
        Ok(id)
    }

    /// Starts deferred send `id` as a rendezvous if a send id is free and the ring has room
    /// now; false, with nothing done, if not.
    pub(super) fn try_start_rendezvous(
        &mut self,
        id: ReqId,
        dest: usize,
        context: u32,
        tag: i32,
        data: SendBuf,
    ) -> Result<bool, CommError> {
        let Some(send_id) = self.free_send_id(dest) else {
            return Ok(false);
        };
        let (rts, how) = self.prepare_rts(dest, send_id, data)?;
        let head = Head {
            context,
            ..Head::new(kind::RTS, tag, 0)
        };
        if !self.try_record(dest, head, &[bytemuck::bytes_of(&rts)]) {
            return Ok(false);
        }
        self.rdv.send_ids[dest] = send_id;
        self.requests.insert(
            id,
            Req::Rendezvous {
                dest,
                tag,
                send_id,
                buf: data,
                how,
                stream: None,
            },
        );
        self.rdv.sends.insert((dest, send_id), id);
        Ok(true)
    }

    /// The RTS for `data` to `dest` with `send_id`, and what it sets up first: the pipe, or
    /// the shared cursor the receiver may pull by.
    fn prepare_rts(
        &mut self,
        dest: usize,
        send_id: u32,
        data: SendBuf,
    ) -> Result<(wire::Rts, Mechanism), CommError> {
        let (how, (layout_addr, layout_len)) = match data.shape {
            Shape::Bytes => (
                self.job.mechanism_for(data.len, self.send_pattern()),
                (std::ptr::null(), 0),
            ),
            Shape::Gathered => (Mechanism::ShmCopy, (std::ptr::null(), 0)),
            Shape::Described(at, n) => {
                let chosen = self.job.mechanism_for(data.len, self.send_pattern());
                let how = [chosen, self.job.mechanism]
                    .into_iter()
                    .find(|&m| layouts::moves_layouts(m))
                    .ok_or_else(|| {
                        CommError::InvalidArgument(format!(
                            "a message laid out by a datatype cannot move by {}",
                            self.job.mechanism
                        ))
                    })?;
                (how, (at, n))
            }
        };
        let layout_len = u32::try_from(layout_len)
            .ok()
            .filter(|&n| n as usize <= layouts::MAX_DESCRIPTION_BYTES)
            .ok_or_else(|| CommError::InvalidArgument("a layout description too long".into()))?;
        let mut pipe_fd = 0;
        match how {
            Mechanism::ShmCopy => {}
            Mechanism::Vmsplice => {
                if self.rdv.pipes[dest].is_none() {
                    let pipe = Pipe::new(self.job.tuning.pipe_bytes)
                        .map_err(|e| CommError::Vm(e.to_string()))?;
                    self.rdv.pipes[dest] = Some(pipe);
                }
                pipe_fd = self.rdv.pipes[dest]
                    .as_ref()
                    .map_or(0, |p| p.read_fd() as u32);
            }
            // Reset the shared chunk cursor before the receiver can see the RTS (the record's
            // Release publishes it).
            _ => self
                .job
                .segment
                .cursor(self.job.me, dest, send_id as usize)
                .next
                .store(0, Ordering::Relaxed),
        }
        let rts = wire::Rts {
            len: data.len as u64,
            send_id,
            how: wire::how::code(how),
            addr: data.ptr as u64,
            pipe_fd,
            layout_len,
            layout_addr: layout_addr as u64,
        };
        Ok((rts, how))
    }

    /// The bytes each side of a `cma-split` message claims at a time: a quarter of the message
    /// (in whole pages, at least [`SPLIT_CHUNK_MIN`]), at most the chunk of the settings. A
    /// message of one chunk would be copied by the receiver alone; in quarters, the sender copies
    /// its share at the same time (measured: 1 MiB in a window, 12.5 → 18.2 GB/s; one at a
    /// time, 87.7 → 53.4 µs; BENCHMARKS.md, "Thresholds and defaults"). Both
    /// sides compute it from the length alone, so they agree.
    fn split_chunk(&self, len: usize) -> usize {
        let most = self.job.limits.chunk;
        (len / 4)
            .next_multiple_of(4096)
            .clamp(SPLIT_CHUNK_MIN.min(most), most)
    }

    /// The traffic a rendezvous send posted now is part of: others of this rank unfinished, or
    /// none.
    pub(super) fn send_pattern(&self) -> Pattern {
        if self.rdv.sends.is_empty() {
            Pattern::Single
        } else {
            Pattern::Many
        }
    }

    /// The next rendezvous id for `dest`, if its cursor is not in use by an unfinished send
    /// (it is taken only once the RTS is written).
    fn free_send_id(&self, dest: usize) -> Option<u32> {
        let cursors = super::super::layout::CURSORS;
        let id = self.rdv.send_ids[dest].wrapping_add(1);
        let busy = self
            .rdv
            .sends
            .keys()
            .any(|&(d, s)| d == dest && (s as usize) % cursors == (id as usize) % cursors);
        (!busy).then_some(id)
    }

    /// A rendezvous id for `dest` whose cursor is not in use by an unfinished send, waiting
    /// (making progress) for one.
    fn next_send_id(&mut self, dest: usize) -> Result<u32, CommError> {
        let mut idle = super::Idle::new(Watch::Rank(dest));
        loop {
            if let Some(id) = self.free_send_id(dest) {
                return Ok(id);
            }
            let moved = self.progress()?;
            idle.pause(self, moved)?;
        }
    }

    /// An RTS from `source`: a message to match like any other.
    pub(super) fn on_rts(&mut self, source: usize, record: &Record) -> Result<(), CommError> {
        let rts: wire::Rts = self.payload(source, record)?;
        if rts.len == 0 {
            return Err(self.protocol(source, "RTS for an empty message"));
        }
        match rts.mechanism() {
            None => {
                return Err(self.protocol(source, format!("RTS for unknown mechanism {}", rts.how)));
            }
            // Every rank streams, or uses what the job probed: nothing else was.
            Some(how) if !self.job.accepts(how) => {
                return Err(self.protocol(
                    source,
                    format!("RTS for {how} in a job that uses {}", self.job.mechanism),
                ));
            }
            Some(_) => {}
        }
        let env = Envelope {
            context: record.context,
            source,
            tag: record.tag,
        };
        if self.is_stale(record.context) {
            return self.drop_stale(env, Body::Rts(rts), None);
        }
        self.arrive(env, Body::Rts(rts), None)
    }

    fn fin(&mut self, source: usize, send_id: u32, status: u32) -> Result<(), CommError> {
        self.control(source, kind::FIN, &wire::Fin { send_id, status })
    }

    fn cts(&mut self, source: usize, send_id: u32, addr: u64, len: u64) -> Result<(), CommError> {
        let cts = wire::Cts {
            send_id,
            _pad: 0,
            addr,
            len,
        };
        self.control(source, kind::CTS, &cts)
    }

    /// Starts moving the message of `rts` into receive `id`'s buffer.
    pub(super) fn start_rendezvous(
        &mut self,
        id: ReqId,
        source: usize,
        tag: i32,
        rts: wire::Rts,
        buf: RecvBuf,
    ) -> Result<(), CommError> {
        let len =
            usize::try_from(rts.len).map_err(|_| self.protocol(source, "RTS length too large"))?;
        let cap = self.capacity(id, buf);
        if len > cap {
            self.fin(source, rts.send_id, wire::fin::TRUNCATED)?;
            self.finish(id, Err(truncated(source, tag, len, cap)));
            return Ok(());
        }
        let Some(how) = rts.mechanism() else {
            return Err(self.protocol(source, "RTS for an unknown mechanism"));
        };
        if rts.is_typed() && (!layouts::moves_layouts(how) || buf.combine.is_some()) {
            return Err(self.protocol(
                source,
                format!("a laid-out message by {how}, or into a reduction's receive"),
            ));
        }
        // Between layouts by single copy: the receiver pulls it all.
        let direct = self.lands_directly(id);
        if layouts::moves_layouts(how) && (rts.is_typed() || direct) {
            let buf = if direct {
                buf
            } else {
                self.landing(id, buf, len)
            };
            let result = self.pull_layouts(id, source, &rts, buf, len);
            let status = if result.is_ok() {
                wire::fin::OK
            } else {
                wire::fin::FAILED
            };
            self.fin(source, rts.send_id, status)?;
            self.finish(id, result.map(|()| Status::new(source as i32, tag, len)));
            return Ok(());
        }
        // Streamed chunks go straight into a staged receive's layout; other mechanisms land in
        // its staging memory.
        let buf = if how == Mechanism::ShmCopy {
            buf
        } else {
            self.landing(id, buf, len)
        };
        let streaming = Req::Streaming {
            source,
            tag,
            len,
            got: 0,
            buf,
        };
        match how {
            Mechanism::ShmCopy => {
                self.rdv.streams.insert((source, rts.send_id), id);
                self.requests.insert(id, streaming);
                return self.cts(source, rts.send_id, 0, 0);
            }
            Mechanism::Vmsplice => {
                if let Err(e) = self.pipe_from(source, rts.pipe_fd) {
                    self.fin(source, rts.send_id, wire::fin::FAILED)?;
                    self.finish(id, Err(e));
                    return Ok(());
                }
                self.rdv.piped[source].push_back((id, rts.send_id));
                self.requests.insert(id, streaming);
                return self.cts(source, rts.send_id, 0, 0);
            }
            _ => {}
        }
        if (rts.addr as usize).checked_add(len).is_none() {
            return Err(self.protocol(source, "RTS buffer wraps around the address space"));
        }
        let remote = RemoteRange::new(rts.addr as usize, len);
        // The sender pushes (part of) the message itself, unless the receive combines: there is
        // nothing to combine with in a push, so a combining receive pulls it all.
        let combining = buf.combine.is_some();
        // The sender shares the copying of a split message, in chunks of a quarter, unless the
        // receive combines (it pulls everything itself, in chunks of whole elements), or this
        // rank has sends of its own in flight (their receivers copy them: both cores are busy
        // already, and one large pull each copies faster than shares).
        let shared =
            how == Mechanism::CmaSplit && !combining && self.send_pattern() == Pattern::Single;
        let chunk = if shared {
            self.split_chunk(len)
        } else {
            self.job.limits.chunk
        };
        let pushes = !combining
            && match how {
                Mechanism::CmaSplit => shared && len > chunk,
                Mechanism::CmaWrite => true,
                _ => false,
            };
        let pulls = !(pushes && how == Mechanism::CmaWrite);
        if pushes {
            self.cts(source, rts.send_id, buf.ptr as u64, len as u64)?;
        }
        let mut mine = 0;
        let mut failure = None;
        if pulls {
            if how == Mechanism::ProcMem
                && let Err(e) = self.open_mem_file(source)
            {
                failure = Some(e);
            }
            let cursor = &self
                .job
                .segment
                .cursor(source, self.job.me, rts.send_id as usize)
                .next;
            while failure.is_none()
                && let Some((from, to)) = cma::claim(cursor, len, chunk)
            {
                if let Err(e) = self.pull(source, how, remote, buf, from, to) {
                    failure = Some(e);
                    // Keep claiming so that the sender does not push into a failed receive.
                    while cma::claim(cursor, len, chunk).is_some() {}
                    break;
                }
                mine += to - from;
            }
        }
        if let Some(e) = failure {
            if pushes {
                self.rdv.failed_splits.insert((source, rts.send_id));
            }
            self.fin(source, rts.send_id, wire::fin::FAILED)?;
            self.finish(id, Err(e));
            return Ok(());
        }
        if mine == len {
            self.fin(source, rts.send_id, wire::fin::OK)?;
            self.finish(id, Ok(Status::new(source as i32, tag, len)));
        } else {
            self.rdv.streams.insert((source, rts.send_id), id);
            self.requests
                .insert(id, Req::AwaitPushed { source, tag, len });
        }
        Ok(())
    }

    /// The read end of `source`'s pipe (its descriptor number `fd` there), taken once.
    fn pipe_from(&mut self, source: usize, fd: u32) -> Result<(), CommError> {
        if self.rdv.pipe_reads[source].is_some() {
            return Ok(());
        }
        let fd =
            i32::try_from(fd).map_err(|_| self.protocol(source, "pipe descriptor out of range"))?;
        let read = vmsplice::fetch(self.peer(source)?, fd).map_err(|e| match e {
            // A descriptor the peer does not have, or one that is not a pipe: its fault, unless
            // it is dying (its descriptors close before its death shows).
            TransportError::Io { .. } => self
                .gone_soon(source)
                .unwrap_or_else(|| self.protocol(source, format!("its pipe cannot be taken: {e}"))),
            e => self.move_failure(source, e),
        })?;
        self.rdv.pipe_reads[source] = Some(read);
        Ok(())
    }

    fn open_mem_file(&mut self, source: usize) -> Result<(), CommError> {
        if self.rdv.mem_files[source].is_none() {
            let file =
                MemFile::open(self.peer(source)?).map_err(|e| self.move_failure(source, e))?;
            self.rdv.mem_files[source] = Some(file);
        }
        Ok(())
    }

    /// A failed transfer with `rank`: [`CommError::PeerGone`] if it died (the usual cause, and
    /// the one the caller can act on), a protocol error naming it if it named memory it does not
    /// have, the `vm` error otherwise.
    pub(super) fn move_failure(&self, rank: usize, e: TransportError) -> CommError {
        match (self.check_peers(Watch::Rank(rank)), e) {
            (Err(gone), _) => gone,
            // A dying process loses its memory before its pidfd reports the exit: CMA can say
            // "no such process" while the pidfd still says alive.
            (Ok(()), TransportError::Vm(VmError::NoSuchProcess { pid, .. })) => {
                CommError::PeerGone {
                    rank: rank as i32,
                    pid,
                }
            }
            // A live peer named memory it does not have (or freed it before the pull): its fault,
            // unless it is dying: a killed process's memory goes before its pidfd says so.
            (Ok(()), TransportError::Vm(e @ VmError::BadAddress { .. })) => self
                .gone_soon(rank)
                .unwrap_or_else(|| self.protocol(rank, format!("its buffer cannot be read: {e}"))),
            (Ok(()), TransportError::Short { moved, wanted }) => {
                self.gone_soon(rank).unwrap_or_else(|| {
                    self.protocol(rank, format!("pulled {moved} of {wanted} bytes"))
                })
            }
            (Ok(()), e) => CommError::Vm(e.to_string()),
        }
    }

    /// [`CommError::PeerGone`] if `rank` turns out to be exiting within [`EXIT_GRACE`]: the
    /// kernel tears a killed process's memory down before its pidfd reports the exit, so a
    /// transfer can fail on its memory a moment before the death shows. Only on an error path.
    fn gone_soon(&self, rank: usize) -> Option<CommError> {
        let start = std::time::Instant::now();
        loop {
            if let Err(gone) = self.check_peers(Watch::Rank(rank)) {
                return Some(gone);
            }
            if start.elapsed() >= EXIT_GRACE {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Pulls bytes `[from, to)` of the sender's buffer into the same bytes of `buf`.
    fn pull(
        &self,
        source: usize,
        how: Mechanism,
        remote: RemoteRange,
        buf: RecvBuf,
        from: usize,
        to: usize,
    ) -> Result<(), CommError> {
        if let Some(combine) = buf.combine {
            let mut scratch = vec![0u8; COMBINE_PULL_BYTES.min(to - from)];
            let mut at = from;
            while at < to {
                let n = (to - at).min(COMBINE_PULL_BYTES);
                self.pull_into(source, how, remote.addr + at, &mut scratch[..n])?;
                // SAFETY: `[at, at + n)` is inside the receive buffer its request borrows until
                // completion (`to <= len <= cap`); `scratch` is our own memory.
                unsafe { combine.fold(buf.ptr.add(at), &scratch[..n]) };
                at += n;
            }
            return Ok(());
        }
        // SAFETY: `buf` is borrowed mutably by its request until completion, and `[from, to)` is
        // inside it (`to <= len <= cap`); no other reference to these bytes exists meanwhile (the
        // sender writes only chunks it claimed, never these).
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.ptr.add(from), to - from) };
        self.pull_into(source, how, remote.addr + from, dst)
    }

    /// Reads `dst.len()` bytes at `addr` in `source`'s memory into `dst`.
    fn pull_into(
        &self,
        source: usize,
        how: Mechanism,
        addr: usize,
        dst: &mut [u8],
    ) -> Result<(), CommError> {
        let n = dst.len();
        let peer = self.peer(source)?;
        let remote = [RemoteRange::new(addr, n)];
        let mut local = [IoSliceMut::new(dst)];
        let chunk = self.job.limits.chunk;
        let moved = match (how, &self.rdv.mem_files[source]) {
            (Mechanism::ProcMem, Some(file)) => file.pull(peer, &remote, &mut local, 0, n, chunk),
            (Mechanism::ProcMem, None) => {
                return Err(self.protocol(source, "no memory file for a procmem pull"));
            }
            _ => cma::pull(peer, &remote, &mut local, 0, n, chunk),
        };
        moved.map_err(|e| self.move_failure(source, e))
    }

    /// A CTS from `source`: start streaming, or push this rank's share.
    pub(super) fn on_cts(&mut self, source: usize, cts: wire::Cts) -> Result<(), CommError> {
        let Some(&id) = self.rdv.sends.get(&(source, cts.send_id)) else {
            return Err(self.protocol(source, format!("CTS for unknown send {}", cts.send_id)));
        };
        let Some(Req::Rendezvous { buf, how, .. }) = self.requests.get(&id) else {
            return Err(self.protocol(source, "CTS for a send that is not waiting"));
        };
        let (buf, how) = (*buf, *how);
        if matches!(buf.shape, Shape::Described(..)) {
            return Err(self.protocol(source, "CTS for a laid-out message, which it pulls"));
        }
        if matches!(how, Mechanism::ShmCopy | Mechanism::Vmsplice) {
            if let Some(Req::Rendezvous { stream, .. }) = self.requests.get_mut(&id) {
                *stream = Some(0);
            }
            self.rdv.outgoing.push_back(id);
            return Ok(());
        }
        if !matches!(how, Mechanism::CmaSplit | Mechanism::CmaWrite) {
            return Err(self.protocol(source, "CTS for a message it pulls itself"));
        }
        // Push the chunks we can claim into the receiver's buffer.
        let len = buf.len;
        if cts.len as usize != len || (cts.addr as usize).checked_add(len).is_none() {
            return Err(self.protocol(source, "CTS names a buffer of the wrong size"));
        }
        let chunk = if how == Mechanism::CmaSplit {
            self.split_chunk(len)
        } else {
            self.job.limits.chunk
        };
        let cursor = &self
            .job
            .segment
            .cursor(self.job.me, source, cts.send_id as usize)
            .next;
        let mut pushed = 0u64;
        let mut status = wire::fin::OK;
        while let Some((from, to)) = cma::claim(cursor, len, chunk) {
            // SAFETY: the send buffer is borrowed by its request until FIN; `[from, to)` is in it.
            let src = unsafe { std::slice::from_raw_parts(buf.ptr.add(from), to - from) };
            let r = [RemoteRange::new(cts.addr as usize + from, to - from)];
            match cma::push(
                self.peer(source)?,
                &[IoSlice::new(src)],
                &r,
                0,
                to - from,
                chunk,
            ) {
                Ok(()) => pushed += (to - from) as u64,
                Err(_) => {
                    status = wire::fin::FAILED;
                    while cma::claim(cursor, len, chunk).is_some() {}
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

    /// The sender reports its share pushed: the receive is complete (or failed).
    pub(super) fn on_pushed(&mut self, source: usize, p: wire::Pushed) -> Result<(), CommError> {
        let Some(id) = self.rdv.streams.remove(&(source, p.send_id)) else {
            if self.rdv.failed_splits.remove(&(source, p.send_id)) {
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
        self.fin(source, p.send_id, status)?;
        let result = if ok {
            Ok(Status::new(source as i32, tag, len))
        } else {
            Err(self.protocol(source, "the sender failed to push its share"))
        };
        self.finish(id, result);
        Ok(())
    }

    /// The receiver is done with a rendezvous send's buffer.
    pub(super) fn on_fin(&mut self, source: usize, fin: wire::Fin) -> Result<(), CommError> {
        let Some(id) = self.rdv.sends.remove(&(source, fin.send_id)) else {
            return Err(self.protocol(source, format!("FIN for unknown send {}", fin.send_id)));
        };
        let (tag, len) = match self.requests.get(&id) {
            Some(Req::Rendezvous { tag, buf, .. }) => (*tag, buf.len),
            _ => (0, 0),
        };
        self.rdv.outgoing.retain(|&o| o != id);
        let refused = |why: String| CommError::ReceiverRefused {
            rank: source as i32,
            why,
        };
        let result = match fin.status {
            wire::fin::OK => Ok(Status::new(self.job.me as i32, tag, len)),
            wire::fin::TRUNCATED => Err(refused(format!(
                "its receive buffer is smaller than the {len}-byte message"
            ))),
            wire::fin::DISCARDED => Err(refused(
                "it freed the communicator or dropped the probed message without receiving it"
                    .into(),
            )),
            _ => Err(refused("it failed to take the message".into())),
        };
        self.finish(id, result);
        Ok(())
    }

    /// A piece of a streamed message, in an eager slot.
    pub(super) fn on_chunk(&mut self, source: usize, c: wire::Chunk) -> Result<(), CommError> {
        let slot = c.slot as usize;
        let Some(&id) = self.rdv.streams.get(&(source, c.send_id)) else {
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
        let layout = &self.job.segment.layout;
        if slot >= layout.eager_slots
            || n > layout.eager_slot_bytes
            || c.offset as usize != got
            || got + n > len
        {
            return Err(self.protocol(source, "chunk out of order or out of range"));
        }
        let (_, offset) = self.job.segment.eager_slot(source, self.job.me, slot);
        let (slots, slots_len) = (
            self.job.segment.segment.as_ptr(),
            self.job.segment.segment.len(),
        );
        if let Some(scatter) = self.requests_scatter(id) {
            assert!(offset + n <= slots_len);
            let cursor = scatter
                .cursor
                .get_or_insert_with(|| layouts::Cursor::new(&scatter.target));
            scatter.landed = true;
            // SAFETY: the slot lies in the segment (checked above), was filled before its
            // record was published, and is freed only after this; the layout is borrowed by the
            // receive until it completes, and its capacity holds the message (checked at the
            // match), so the walk does not end early.
            unsafe { cursor.copy(slots.add(offset), n, false) };
        } else if let Some(combine) = buf.combine {
            let segment = &self.job.segment.segment;
            assert!(offset + n <= segment.len());
            // SAFETY: the slot lies in the segment (checked above) and was filled before its
            // record was published; we free it only after this. `[got, got + n)` is inside the
            // receive buffer its request borrows until completion (checked above).
            unsafe {
                let src = std::slice::from_raw_parts(segment.as_ptr().add(offset), n);
                combine.fold(buf.ptr.add(got), src);
            }
        } else {
            let segment = &self.job.segment.segment;
            // SAFETY: `buf` is borrowed by its request until completion; `[got, got + n)` is
            // inside it (checked above). The slot was filled before the record was published,
            // and we free it only after this copy.
            unsafe {
                let dst = std::slice::from_raw_parts_mut(buf.ptr.add(got), n);
                shm_copy::empty(segment, offset, dst, len);
            }
        }
        self.free_slot(source, slot);
        let got = got + n;
        if got == len {
            self.rdv.streams.remove(&(source, c.send_id));
            self.finish(id, Ok(Status::new(source as i32, tag, len)));
        } else if let Some(Req::Streaming { got: g, .. }) = self.requests.get_mut(&id) {
            *g = got;
        }
        Ok(())
    }

    /// Moves streaming sends forward while slots, ring room and pipes allow; true if any byte
    /// moved.
    pub(super) fn push_streams(&mut self) -> Result<bool, CommError> {
        let mut moved = false;
        let mut i = 0;
        // A pipe carries one message at a time: later sends to the same rank wait their turn.
        let mut piping: Vec<usize> = Vec::new();
        while i < self.rdv.outgoing.len() {
            let id = self.rdv.outgoing[i];
            let Some(Req::Rendezvous {
                dest,
                tag,
                send_id,
                buf,
                how,
                stream: Some(sent),
            }) = self.requests.get(&id)
            else {
                self.rdv.outgoing.remove(i);
                continue;
            };
            let (dest, tag, send_id, buf, how, mut sent) =
                (*dest, *tag, *send_id, *buf, *how, *sent);
            if how == Mechanism::Vmsplice {
                if piping.contains(&dest) {
                    i += 1;
                    continue;
                }
                piping.push(dest);
                let n = self.splice_towards(dest, buf, sent)?;
                if n > 0 {
                    // The receiver may sleep waiting for the pipe: no record tells it.
                    self.ring_bell(dest);
                    moved = true;
                }
                sent += n;
                if let Some(Req::Rendezvous { stream, .. }) = self.requests.get_mut(&id) {
                    *stream = Some(sent);
                }
                if sent == buf.len {
                    // In the pipe; the buffer is the program's once the receiver's FIN says it
                    // has read everything.
                    self.rdv.outgoing.remove(i);
                } else {
                    i += 1;
                }
                continue;
            }
            while sent < buf.len {
                let Some(slot) = self.free_slot_towards(dest) else {
                    self.ask_for_slot(dest);
                    break;
                };
                let (_, offset) = self.job.segment.eager_slot(self.job.me, dest, slot);
                let n = (buf.len - sent).min(self.job.segment.layout.eager_slot_bytes);
                let c = wire::Chunk {
                    send_id,
                    slot: slot as u32,
                    offset: sent as u64,
                    len: n as u64,
                };
                let mut mark = None;
                if buf.shape == Shape::Gathered {
                    let (slots, slots_len) = (
                        self.job.segment.segment.as_ptr(),
                        self.job.segment.segment.len(),
                    );
                    assert!(offset + n <= slots_len);
                    let Some(cursor) = self.extra_mut(id).and_then(|x| x.gather.as_mut()) else {
                        return Err(CommError::InvalidArgument(
                            "a streamed layout without its walk".into(),
                        ));
                    };
                    mark = Some(cursor.mark());
                    // SAFETY: the slot is free (state 0, seen with Acquire), unannounced, and in
                    // the segment (checked above); the layout is borrowed by its request until
                    // it completes.
                    let got = unsafe { cursor.copy(slots.add(offset), n, true) };
                    if got != n {
                        return Err(CommError::InvalidArgument(format!(
                            "a layout of {} bytes ended after {}",
                            buf.len,
                            sent + got
                        )));
                    }
                } else {
                    // SAFETY: the send buffer is borrowed by its request until it completes.
                    let src = unsafe { std::slice::from_raw_parts(buf.ptr.add(sent), n) };
                    // SAFETY: the slot is free (state 0, seen with Acquire) and unannounced.
                    unsafe { shm_copy::fill(&self.job.segment.segment, offset, src) };
                }
                self.set_slot_state(dest, slot, 1);
                let head = Head::new(kind::CHUNK, 0, 0);
                if !self.try_record(dest, head, &[bytemuck::bytes_of(&c)]) {
                    // No room: take the slot back; the copy is redone next time.
                    self.set_slot_state(dest, slot, 0);
                    if let (Some(mark), Some(cursor)) =
                        (mark, self.extra_mut(id).and_then(|x| x.gather.as_mut()))
                    {
                        cursor.reset(mark);
                    }
                    break;
                }
                self.take_slot(dest, slot);
                sent += n;
                moved = true;
            }
            if sent == buf.len {
                // Everything is in the receiver's hands; its buffer, not ours, is read now.
                self.rdv.sends.remove(&(dest, send_id));
                self.rdv.outgoing.remove(i);
                self.finish(id, Ok(Status::new(self.job.me as i32, tag, buf.len)));
            } else {
                if let Some(Req::Rendezvous { stream, .. }) = self.requests.get_mut(&id) {
                    *stream = Some(sent);
                }
                i += 1;
            }
        }
        Ok(moved)
    }

    /// Splices what the pipe towards `dest` takes now of `buf` from byte `sent`; the bytes taken.
    fn splice_towards(
        &mut self,
        dest: usize,
        buf: SendBuf,
        sent: usize,
    ) -> Result<usize, CommError> {
        let Some(pipe) = &self.rdv.pipes[dest] else {
            return Err(CommError::Config(format!("no pipe towards rank {dest}")));
        };
        // SAFETY: the send buffer is borrowed by its request until the receiver's FIN, which
        // comes only after it has read every byte out of the pipe.
        unsafe {
            let src = std::slice::from_raw_parts(buf.ptr.add(sent), buf.len - sent);
            vmsplice::splice_some(pipe.write.as_fd(), &[IoSlice::new(src)])
        }
        .map_err(|e| CommError::Vm(e.to_string()))
    }

    /// Reads what has arrived in the pipes of receives in progress; true if any byte moved.
    pub(super) fn read_pipes(&mut self) -> Result<bool, CommError> {
        let mut moved = false;
        for source in 0..self.size() {
            let Some(&(id, send_id)) = self.rdv.piped[source].front() else {
                continue;
            };
            let Some(Req::Streaming {
                tag, len, got, buf, ..
            }) = self.requests.get(&id)
            else {
                self.rdv.piped[source].pop_front();
                continue;
            };
            let (tag, len, mut got, buf) = (*tag, *len, *got, *buf);
            let Some(fd) = &self.rdv.pipe_reads[source] else {
                return Err(self.protocol(source, "no pipe for a vmsplice receive"));
            };
            let read = match buf.combine {
                None => {
                    // SAFETY: `[got, len)` is inside the receive buffer its request borrows
                    // mutably until completion (`len <= cap`, checked at the match).
                    let dst =
                        unsafe { std::slice::from_raw_parts_mut(buf.ptr.add(got), len - got) };
                    vmsplice::read_some(fd, &mut [IoSliceMut::new(dst)])
                }
                Some(_) => {
                    let scratch = self.rdv.pipe_scratch.entry(source).or_default();
                    let have = scratch.len();
                    let want = PIPE_PIECE_BYTES.min(len - got) - have;
                    scratch.resize(have + want, 0);
                    let r = vmsplice::read_some(fd, &mut [IoSliceMut::new(&mut scratch[have..])]);
                    let n = match r {
                        Ok(Some(n)) => n,
                        _ => 0,
                    };
                    scratch.truncate(have + n);
                    r
                }
            };
            let n = match read {
                Ok(Some(0)) => {
                    // The pipe closes as its writer dies, a moment before the death shows.
                    let e = self
                        .gone_soon(source)
                        .unwrap_or_else(|| self.protocol(source, "its pipe closed mid-message"));
                    self.rdv.piped[source].pop_front();
                    self.rdv.pipe_scratch.remove(&source);
                    self.finish(id, Err(e));
                    continue;
                }
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e) => {
                    let e = self.move_failure(source, e);
                    self.rdv.piped[source].pop_front();
                    self.rdv.pipe_scratch.remove(&source);
                    self.fin(source, send_id, wire::fin::FAILED)?;
                    self.finish(id, Err(e));
                    continue;
                }
            };
            moved = true;
            // The sender may sleep waiting for room in the pipe: no record tells it.
            self.ring_bell(source);
            if let Some(combine) = buf.combine {
                let whole = self.rdv.pipe_scratch.get(&source).map_or(0, Vec::len);
                if whole == PIPE_PIECE_BYTES.min(len - got)
                    && let Some(scratch) = self.rdv.pipe_scratch.get_mut(&source)
                {
                    // SAFETY: `[got, got + whole)` is inside the receive buffer its request
                    // borrows until completion; `scratch` is our own memory.
                    unsafe { combine.fold(buf.ptr.add(got), scratch) };
                    scratch.clear();
                    got += whole;
                }
            } else {
                got += n;
            }
            if got == len {
                self.rdv.piped[source].pop_front();
                self.rdv.pipe_scratch.remove(&source);
                self.fin(source, send_id, wire::fin::OK)?;
                self.finish(id, Ok(Status::new(source as i32, tag, len)));
            } else if let Some(Req::Streaming { got: g, .. }) = self.requests.get_mut(&id) {
                *g = got;
            }
        }
        Ok(moved)
    }
}
