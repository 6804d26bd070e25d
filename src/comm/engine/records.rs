//! Writing records into the rings towards each peer, and reading what arrives: this rank's ends
//! of the per-pair rings, the doorbells that wake a sleeping peer, and the payloads of control
//! records, checked against the record before use.

use super::super::layout::World as Segment;
use super::super::ring::{Head, Reader, Record, ShmRing, Writer};
use super::super::wire::kind;
use super::{CommError, Engine, Watch};

/// This rank's ends of the rings.
pub(super) struct Links {
    writers: Vec<Writer>,
    readers: Vec<Reader>,
    /// Where each ring towards a destination lies, found once.
    out: Vec<RingAt>,
    /// Where each ring from a source lies.
    inn: Vec<RingAt>,
    /// Nothing arrived since this rank last sent a record (see [`Engine::try_record`]).
    pub streaming: bool,
    /// This process may ring peers with [`crate::shm::Doorbell::notify_light`].
    light_notify: bool,
}

/// A ring's place in the mapped segment. The hot paths make a [`ShmRing`] from it on every
/// record; working the offsets out each time from the layout cost a few percent of an 8-byte
/// ping-pong.
#[derive(Debug, Clone, Copy)]
struct RingAt {
    control: *const super::super::layout::RingControl,
    cells: *mut u8,
    capacity: usize,
}

impl RingAt {
    fn of(segment: &Segment, from: usize, to: usize) -> RingAt {
        let ring = ring_of(segment, from, to);
        RingAt {
            control: ring.control,
            cells: ring.cells,
            capacity: ring.capacity,
        }
    }

    /// The ring, for use within one call of the engine.
    ///
    /// # Safety
    /// The segment the ring lies in is still mapped for `'r`: the engine owns it
    /// (`Job::segment`) and uses the ring only while it is borrowed.
    #[inline]
    unsafe fn ring<'r>(self) -> ShmRing<'r> {
        ShmRing {
            // SAFETY: the caller's contract; the control block was found in the segment by
            // `ring_of`.
            control: unsafe { &*self.control },
            cells: self.cells,
            capacity: self.capacity,
        }
    }
}

impl Links {
    pub fn new(segment: &Segment, me: usize) -> Links {
        let ranks = segment.layout.ranks;
        Links {
            writers: (0..ranks).map(|_| Writer::default()).collect(),
            readers: (0..ranks).map(|_| Reader::default()).collect(),
            out: (0..ranks).map(|to| RingAt::of(segment, me, to)).collect(),
            inn: (0..ranks)
                .map(|from| RingAt::of(segment, from, me))
                .collect(),
            streaming: false,
            light_notify: crate::shm::enable_light_notify(),
        }
    }
}

/// The ring carrying records `from` → `to`.
pub(super) fn ring_of(segment: &Segment, from: usize, to: usize) -> ShmRing<'_> {
    let (control, cells) = segment.ring(from, to);
    ShmRing {
        control,
        cells,
        capacity: segment.layout.ring_cells,
    }
}

impl Engine {
    /// Appends a record to the ring towards `dest`; false when it is full.
    #[inline]
    pub(super) fn try_record(&mut self, dest: usize, head: Head, parts: &[&[u8]]) -> bool {
        // SAFETY: the segment is the engine's own, mapped while `self` lives.
        let ring = unsafe { self.links.out[dest].ring() };
        if !self.links.writers[dest].try_push(&ring, head, parts) {
            return false;
        }
        // A rank that sends again with nothing received in between (a broadcast's root, a
        // window of sends) rings without the fence. The first record after a receipt keeps it:
        // in an exchange, where each side sends one record and then waits for the other's,
        // ringing light made the 2-rank 8-byte all-reduce 10-30% slower here. (Likely cause: the
        // fence holds the rank's polling back until its record has left, so the two ranks do not
        // pull each other's lines away in the middle of a write.)
        if self.links.streaming {
            self.ring_bell(dest);
        } else {
            self.job.segment.rank(dest).bell.notify();
        }
        self.links.streaming = true;
        true
    }

    /// Appends a record to the ring towards `dest` without ringing its bell: a peer asleep on it
    /// sleeps on. For tests that need a record to arrive unannounced.
    #[cfg(test)]
    pub(super) fn push_silently(&mut self, dest: usize, head: Head, parts: &[&[u8]]) -> bool {
        // SAFETY: as in `try_record`.
        let ring = unsafe { self.links.out[dest].ring() };
        self.links.writers[dest].try_push(&ring, head, parts)
    }

    /// Appends a record to the ring towards `dest`, making progress (and sleeping) while it is
    /// full. Before sleeping the ring is looked at once more after announcing the sleep: the
    /// reader frees room without sending us anything, so a look only before would miss a wake-up
    /// and sleep a whole interval.
    pub(super) fn push_record(
        &mut self,
        dest: usize,
        head: Head,
        parts: &[&[u8]],
    ) -> Result<(), CommError> {
        let bytes: usize = parts.iter().map(|p| p.len()).sum();
        let mut idle = super::Idle::new(Watch::Rank(dest));
        while !self.try_record(dest, head, parts) {
            let moved = self.progress()?;
            idle.pause_unless(self, moved, |e| {
                // SAFETY: as in `try_record`.
                let ring = unsafe { e.links.out[dest].ring() };
                e.links.writers[dest].has_room(&ring, bytes)
            })?;
        }
        Ok(())
    }

    /// Appends a control record, making progress while the ring is full.
    pub(super) fn control<T: bytemuck::Pod>(
        &mut self,
        dest: usize,
        kind: u8,
        payload: &T,
    ) -> Result<(), CommError> {
        let bytes = bytemuck::bytes_of(payload).to_vec();
        self.push_record(dest, Head::new(kind, 0, 0), &[&bytes])
    }

    /// Tells `dest` that its synchronous send `sync` has been matched.
    pub(super) fn send_ack(&mut self, dest: usize, sync: u32) -> Result<(), CommError> {
        let head = Head {
            sync,
            ..Head::new(kind::ACK, 0, 0)
        };
        self.push_record(dest, head, &[])
    }

    /// Wakes `rank` if it sleeps waiting for what this rank just published (a record while
    /// streaming, or room: cells of its ring, an eager slot), without the fence where the
    /// process may leave it out: nothing waits here for the event to reach the peer.
    pub(super) fn ring_bell(&self, rank: usize) {
        let bell = &self.job.segment.rank(rank).bell;
        if self.links.light_notify {
            bell.notify_light();
        } else {
            bell.notify();
        }
    }

    /// The next record from `source`, if one is published.
    #[inline]
    pub(super) fn next_record(&mut self, source: usize) -> Result<Option<Record>, CommError> {
        // SAFETY: as in `try_record`.
        let ring = unsafe { self.links.inn[source].ring() };
        self.links.readers[source]
            .peek(&ring)
            .map_err(|c| self.protocol(source, c.0))
    }

    /// Hands `record`'s cells back to its writer.
    #[inline]
    pub(super) fn consume_record(&mut self, source: usize, record: &Record) {
        // SAFETY: as in `try_record`.
        let ring = unsafe { self.links.inn[source].ring() };
        self.links.readers[source].consume(&ring, record);
    }

    /// Copies `record`'s payload bytes from `offset` into `dst`.
    pub(super) fn read_payload(
        &self,
        source: usize,
        record: &Record,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<(), CommError> {
        // SAFETY: as in `try_record`.
        let ring = unsafe { self.links.inn[source].ring() };
        self.links.readers[source]
            .read(&ring, record, offset, dst)
            .map_err(|c| self.protocol(source, c.0))
    }

    /// A control record's payload.
    pub(super) fn payload<T: bytemuck::Pod>(
        &self,
        source: usize,
        record: &Record,
    ) -> Result<T, CommError> {
        let mut value = T::zeroed();
        self.read_payload(source, record, 0, bytemuck::bytes_of_mut(&mut value))?;
        Ok(value)
    }
}
