//! A single-producer, single-consumer ring of variable-length records, one per ordered pair of
//! ranks.
//!
//! A record starts on a 64-byte cell with six 32-bit words — `seq`, `kind | cells << 8`, `tag`,
//! `len`, `context` (the communicator it belongs to) and `sync` (a synchronous send's
//! acknowledgement id, or 0) — followed by its payload, and covers whole cells. The writer writes everything else,
//! then `seq` with Release; the reader polls the `seq` word of the cell at its head with Acquire,
//! so a small message costs one cache line moving from writer to reader (the head counter is
//! read by the writer only when its cached copy says the ring is full). A record never wraps: the
//! writer fills the end of the ring with a padding record instead.
//!
//! The memory is the peer's input: the reader checks every record's cell count against the ring
//! before using it, and reports a corrupt record instead of reading outside the ring.
//!
//! A payload runs across the header words of the cells after its first, so when the ring comes
//! round again such a cell's `seq` word holds whatever payload bytes were there. The reader clears
//! the `seq` word of every cell but the first of each record it consumes, and sequence numbers skip
//! 0: a cell not yet written this lap can then only hold 0 or an older record's number, never the
//! one the reader waits for.

use std::sync::atomic::Ordering;

/// Bytes per cell.
pub(crate) const CELL: usize = 64;
/// Header bytes at the start of a record.
pub(crate) const HEADER: usize = 24;
/// Header words at the start of a record.
pub(crate) const WORDS: usize = HEADER / 4;
/// Record kind of padding at the end of the ring.
pub(crate) const PAD: u8 = 0xFF;

/// The memory a ring lives in: header words, payload bytes, and the reader's head counter.
pub(crate) trait Cells {
    /// Cells in the ring.
    fn capacity(&self) -> usize;
    /// Loads header word `w` (0..[`WORDS`]) of `cell`.
    fn load(&self, cell: usize, w: usize, order: Ordering) -> u32;
    /// Stores header word `w` of `cell`.
    fn store(&self, cell: usize, w: usize, v: u32, order: Ordering);
    /// Copies `src` into the record starting at `cell`, `offset` bytes into its payload.
    ///
    /// # Safety
    /// The record's cells must be owned by the writer (not yet published).
    unsafe fn write(&self, cell: usize, offset: usize, src: &[u8]);
    /// Copies payload bytes of the record starting at `cell` into `dst`.
    ///
    /// # Safety
    /// The record must have been published (its `seq` seen with Acquire) and not consumed.
    unsafe fn read(&self, cell: usize, offset: usize, dst: &mut [u8]);
    /// The reader's head counter.
    fn load_head(&self, order: Ordering) -> u64;
    /// Sets the reader's head counter.
    fn store_head(&self, v: u64, order: Ordering);
}

/// Cells needed for a record with `payload` bytes.
pub(crate) fn cells_for(payload: usize) -> usize {
    (HEADER + payload).div_ceil(CELL)
}

/// The writer's private state.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    tail: u64,
    seq: u32,
    cached_head: u64,
    /// The last push found the ring full: the next waits for [`Writer::slack`] more cells.
    full: bool,
}

impl Writer {
    /// Whether a record with `bytes` of payload fits now (reads the reader's head afresh; changes
    /// nothing). A writer about to sleep because the ring was full re-checks with this.
    pub fn has_room<C: Cells>(&self, c: &C, bytes: usize) -> bool {
        let cap = c.capacity() as u64;
        let (_, want) = self.placement(cap, cells_for(bytes) as u64);
        // Acquire: pairs with the reader's Release of `head`.
        want - c.load_head(Ordering::Acquire) <= cap
    }

    /// For a record of `need` cells: the padding cells before it (a record never wraps), and
    /// the tail the reader's head must be within a ring's length of for it to be written.
    fn placement(&self, cap: u64, need: u64) -> (u64, u64) {
        let pos = self.tail % cap;
        let pad = if pos + need > cap { cap - pos } else { 0 };
        (pad, self.tail + pad + need + self.slack(cap))
    }

    /// Cells that must be free beyond a record's own: an eighth of the ring after a push found
    /// it full, else none. A writer that filled the ring then writes its records in batches
    /// instead of one for each cell the reader frees, so the reader's head counter crosses
    /// between the cores once per batch, and the writer stops spinning on it while the reader
    /// works (2-rank broadcast, two CPUs sharing a core: 64 B 0.058 µs a call without, 0.053
    /// with; 1 KiB 0.096 and 0.085). The reader drains the whole ring whenever it makes
    /// progress, so the room always comes.
    fn slack(&self, cap: u64) -> u64 {
        if self.full { cap / 8 } else { 0 }
    }

    /// Appends a record with header `head` whose payload is the concatenation of `parts`; false
    /// if the ring is full.
    pub fn try_push<C: Cells>(&mut self, c: &C, head: Head, parts: &[&[u8]]) -> bool {
        let cap = c.capacity() as u64;
        let bytes: usize = parts.iter().map(|p| p.len()).sum();
        let need = cells_for(bytes) as u64;
        assert!(
            need <= cap / 2,
            "record of {bytes} bytes is too large for the ring"
        );
        let (pad, want) = self.placement(cap, need);
        if want - self.cached_head > cap {
            // Acquire: pairs with the reader's Release of `head` after it is done with the cells.
            self.cached_head = c.load_head(Ordering::Acquire);
            if want - self.cached_head > cap {
                self.full = true;
                return false;
            }
        }
        self.full = false;
        if pad > 0 {
            let padding = Head {
                kind: PAD,
                ..Head::default()
            };
            self.publish(c, (self.tail % cap) as usize, padding, pad as usize);
            self.tail += pad;
        }
        let pos = (self.tail % cap) as usize;
        let mut offset = 0;
        for part in parts {
            // SAFETY: cells [pos, pos + need) are free (checked against the reader's head above)
            // and not yet published.
            unsafe { c.write(pos, offset, part) };
            offset += part.len();
        }
        self.publish(c, pos, head, need as usize);
        self.tail += need;
        true
    }

    fn publish<C: Cells>(&mut self, c: &C, pos: usize, head: Head, cells: usize) {
        self.seq = next_seq(self.seq);
        c.store(
            pos,
            1,
            head.kind as u32 | (cells as u32) << 8,
            Ordering::Relaxed,
        );
        c.store(pos, 2, head.tag as u32, Ordering::Relaxed);
        c.store(pos, 3, head.len, Ordering::Relaxed);
        c.store(pos, 4, head.context, Ordering::Relaxed);
        c.store(pos, 5, head.sync, Ordering::Relaxed);
        // Release: the payload and the words above are visible to a reader that sees `seq`
        // (its Acquire load in `Reader::peek`).
        c.store(pos, 0, self.seq, Ordering::Release);
    }
}

/// The sequence number after `seq`; 0 is skipped because it marks a cleared cell.
fn next_seq(seq: u32) -> u32 {
    match seq.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// The header words a writer gives a record (the ring adds `seq` and the cell count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub kind: u8,
    pub tag: i32,
    pub len: u32,
    /// The communicator context the record belongs to.
    pub context: u32,
    /// A synchronous send's acknowledgement id; 0 for none.
    pub sync: u32,
}

impl Head {
    /// A header of `kind` with `tag` and `len`, in context 0 and without acknowledgement.
    pub fn new(kind: u8, tag: i32, len: u32) -> Head {
        Head {
            kind,
            tag,
            len,
            ..Head::default()
        }
    }
}

/// A published record, as seen by the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub kind: u8,
    pub tag: i32,
    pub len: u32,
    pub context: u32,
    pub sync: u32,
    /// First cell.
    pub pos: usize,
    /// Cells covered.
    pub cells: usize,
}

impl Record {
    /// Payload bytes the record can hold.
    pub fn room(&self) -> usize {
        self.cells * CELL - HEADER
    }
}

/// The reader's private state.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    head: u64,
    seq: u32,
}

/// A record that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub String);

impl Reader {
    /// The next record, if one is published (padding is skipped).
    pub fn peek<C: Cells>(&mut self, c: &C) -> Result<Option<Record>, Corrupt> {
        let cap = c.capacity();
        loop {
            let pos = (self.head % cap as u64) as usize;
            let expected = next_seq(self.seq);
            // Acquire: pairs with the writer's Release store of `seq` in `publish`.
            if c.load(pos, 0, Ordering::Acquire) != expected {
                return Ok(None);
            }
            let meta = c.load(pos, 1, Ordering::Relaxed);
            let kind = (meta & 0xFF) as u8;
            let cells = (meta >> 8) as usize;
            if cells == 0
                || cells > cap - pos
                || (kind == PAD && cells != cap - pos)
                || (kind != PAD && cells > cap / 2)
            {
                return Err(Corrupt(format!(
                    "record at cell {pos} claims {cells} cells (ring of {cap})"
                )));
            }
            let record = Record {
                kind,
                tag: c.load(pos, 2, Ordering::Relaxed) as i32,
                len: c.load(pos, 3, Ordering::Relaxed),
                context: c.load(pos, 4, Ordering::Relaxed),
                sync: c.load(pos, 5, Ordering::Relaxed),
                pos,
                cells,
            };
            if kind != PAD {
                return Ok(Some(record));
            }
            self.consume(c, &record);
        }
    }

    /// Copies payload bytes from `offset` of `record` into `dst`; fails if that runs past it.
    pub fn read<C: Cells>(
        &self,
        c: &C,
        record: &Record,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<(), Corrupt> {
        if offset
            .checked_add(dst.len())
            .is_none_or(|end| end > record.room())
        {
            return Err(Corrupt(format!(
                "record at cell {} holds {} payload bytes, not {}",
                record.pos,
                record.room(),
                offset.saturating_add(dst.len())
            )));
        }
        // SAFETY: the record was published (seen by `peek`) and is not consumed yet; the range
        // is inside it (checked above).
        unsafe { c.read(record.pos, offset, dst) };
        Ok(())
    }

    /// Releases `record`'s cells to the writer.
    pub fn consume<C: Cells>(&mut self, c: &C, record: &Record) {
        // The cells after the first held payload (or nothing, for padding) in their `seq` words;
        // clear them so that none looks published when it becomes a head cell on a later lap.
        // Relaxed: ordered before the writer's reuse by the Release store of `head` below.
        for cell in record.pos + 1..record.pos + record.cells {
            c.store(cell, 0, 0, Ordering::Relaxed);
        }
        self.head += record.cells as u64;
        self.seq = next_seq(self.seq);
        // Release: our reads of the cells happen before the writer may reuse them.
        c.store_head(self.head, Ordering::Release);
    }
}

/// A ring in the job's shared segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShmRing<'w> {
    pub control: &'w super::layout::RingControl,
    pub cells: *mut u8,
    pub capacity: usize,
}

impl ShmRing<'_> {
    fn word(&self, cell: usize, w: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(cell < self.capacity && w < WORDS);
        // SAFETY: `cells` points at `capacity` cells of the mapped segment (see `World::ring`);
        // the word is 4-byte aligned (cells are 64-byte aligned) and only accessed atomically.
        unsafe { &*(self.cells.add(cell * CELL + 4 * w) as *const std::sync::atomic::AtomicU32) }
    }
}

impl Cells for ShmRing<'_> {
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn load(&self, cell: usize, w: usize, order: Ordering) -> u32 {
        self.word(cell, w).load(order)
    }
    fn store(&self, cell: usize, w: usize, v: u32, order: Ordering) {
        self.word(cell, w).store(v, order)
    }
    unsafe fn write(&self, cell: usize, offset: usize, src: &[u8]) {
        let start = cell * CELL + HEADER + offset;
        assert!(start + src.len() <= self.capacity * CELL);
        // SAFETY: in bounds (checked); the cells are the writer's until published (contract).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.cells.add(start), src.len()) };
    }
    unsafe fn read(&self, cell: usize, offset: usize, dst: &mut [u8]) {
        let start = cell * CELL + HEADER + offset;
        assert!(start + dst.len() <= self.capacity * CELL);
        // SAFETY: in bounds (checked); published and not yet released to the writer (contract).
        unsafe {
            std::ptr::copy_nonoverlapping(self.cells.add(start), dst.as_mut_ptr(), dst.len())
        };
    }
    fn load_head(&self, order: Ordering) -> u64 {
        self.control.head.load(order)
    }
    fn store_head(&self, v: u64, order: Ordering) {
        self.control.head.store(v, order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    /// A ring in ordinary memory, for single-threaded tests of the record logic.
    struct Mem {
        words: Vec<AtomicU32>,
        bytes: RefCell<Vec<u8>>,
        head: AtomicU64,
        cap: usize,
    }

    impl Mem {
        fn new(cap: usize) -> Mem {
            Mem {
                words: (0..cap * WORDS).map(|_| AtomicU32::new(0)).collect(),
                bytes: RefCell::new(vec![0; cap * CELL]),
                head: AtomicU64::new(0),
                cap,
            }
        }
    }

    impl Cells for Mem {
        fn capacity(&self) -> usize {
            self.cap
        }
        fn load(&self, cell: usize, w: usize, o: Ordering) -> u32 {
            self.words[cell * WORDS + w].load(o)
        }
        fn store(&self, cell: usize, w: usize, v: u32, o: Ordering) {
            self.words[cell * WORDS + w].store(v, o)
        }
        unsafe fn write(&self, cell: usize, offset: usize, src: &[u8]) {
            let s = cell * CELL + HEADER + offset;
            self.bytes.borrow_mut()[s..s + src.len()].copy_from_slice(src);
        }
        unsafe fn read(&self, cell: usize, offset: usize, dst: &mut [u8]) {
            let s = cell * CELL + HEADER + offset;
            dst.copy_from_slice(&self.bytes.borrow()[s..s + dst.len()]);
        }
        fn load_head(&self, o: Ordering) -> u64 {
            self.head.load(o)
        }
        fn store_head(&self, v: u64, o: Ordering) {
            self.head.store(v, o)
        }
    }

    #[test]
    fn records_round_trip_with_padding_and_full_ring() {
        let m = Mem::new(16);
        let (mut w, mut r) = (Writer::default(), Reader::default());
        for round in 0..100u32 {
            let n = (round as usize * 37) % 300;
            let payload: Vec<u8> = (0..n).map(|i| (i as u32 ^ round) as u8).collect();
            assert!(w.try_push(
                &m,
                Head::new(1, round as i32, n as u32),
                &[&payload[..n / 2], &payload[n / 2..]]
            ));
            let rec = r.peek(&m).unwrap().expect("published");
            assert_eq!((rec.kind, rec.tag, rec.len), (1, round as i32, n as u32));
            let mut got = vec![0; n];
            r.read(&m, &rec, 0, &mut got).unwrap();
            assert_eq!(got, payload);
            assert!(r.read(&m, &rec, rec.room(), &mut [0]).is_err());
            r.consume(&m, &rec);
            assert_eq!(r.peek(&m).unwrap(), None);
        }
        // Fill until full, then drain.
        let mut pushed = 0;
        while w.try_push(&m, Head::new(2, 0, 0), &[&[0u8; 40]]) {
            pushed += 1;
        }
        assert!(pushed > 0 && pushed <= 16);
        for _ in 0..pushed {
            let rec = r.peek(&m).unwrap().expect("queued");
            r.consume(&m, &rec);
        }
        assert!(w.try_push(&m, Head::new(2, 0, 0), &[&[0u8; 40]]));
    }

    #[test]
    fn a_writer_that_found_the_ring_full_waits_for_an_eighth_of_it() {
        let m = Mem::new(64);
        let (mut w, mut r) = (Writer::default(), Reader::default());
        let mut pushed = 0;
        while w.try_push(&m, Head::new(1, pushed, 0), &[]) {
            pushed += 1;
        }
        assert_eq!(pushed, 64);
        let take = |r: &mut Reader, k: usize| {
            for _ in 0..k {
                let rec = r.peek(&m).unwrap().expect("queued");
                r.consume(&m, &rec);
            }
        };
        // One free cell would do for the record, but not after a full ring: 1 + 8 are needed.
        take(&mut r, 8);
        assert!(!w.has_room(&m, 0));
        assert!(!w.try_push(&m, Head::new(1, 64, 0), &[]));
        take(&mut r, 1);
        assert!(w.has_room(&m, 0));
        assert!(w.try_push(&m, Head::new(1, 64, 0), &[]));
        // Then one at a time again, down to the last cell.
        for tag in 65..73 {
            assert!(w.try_push(&m, Head::new(1, tag, 0), &[]), "record {tag}");
        }
        assert!(!w.try_push(&m, Head::new(1, 73, 0), &[]));
        // A ring drained by its reader always has the room.
        take(&mut r, 64);
        assert!(w.try_push(&m, Head::new(1, 73, 0), &[]));
    }

    #[test]
    fn corrupt_cell_counts_are_reported() {
        let m = Mem::new(16);
        let mut r = Reader::default();
        for bad in [0u32, 17, 9] {
            m.store(0, 1, 1 | bad << 8, Ordering::Relaxed);
            m.store(0, 0, 1, Ordering::Release);
            assert!(r.peek(&m).is_err(), "{bad} cells accepted");
        }
        // Padding that does not reach the end of the ring.
        m.store(0, 1, PAD as u32 | 3 << 8, Ordering::Relaxed);
        assert!(r.peek(&m).is_err());
    }

    /// A ring laid out as in the segment, where payload bytes run over the next cells' header
    /// words.
    fn flat_ring<'a>(
        control: &'a super::super::layout::RingControl,
        cells: &'a mut [u64],
    ) -> ShmRing<'a> {
        ShmRing {
            control,
            capacity: cells.len() * 8 / CELL,
            cells: cells.as_mut_ptr().cast(),
        }
    }

    #[test]
    fn stale_payload_in_a_cell_is_not_taken_for_a_record() {
        let control = super::super::layout::RingControl::default();
        let mut backing = vec![0u64; 8 * CELL / 8];
        let ring = flat_ring(&control, &mut backing);
        let (mut w, mut r) = (Writer::default(), Reader::default());
        let consume_next = |r: &mut Reader| {
            let rec = r.peek(&ring).unwrap().expect("published");
            r.consume(&ring, &rec);
        };
        // Lap 1: a two-cell record whose payload bytes land on cell 1's `seq` word and hold 9,
        // the number the reader will wait for when cell 1 is its head on lap 2.
        let mut payload = [0u8; 60];
        let at = CELL - HEADER;
        payload[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
        assert!(w.try_push(&ring, Head::new(1, 0, 60), &[&payload]));
        consume_next(&mut r);
        for _ in 2..8 {
            assert!(w.try_push(&ring, Head::new(1, 0, 0), &[]));
            consume_next(&mut r);
        }
        // Lap 2: record 8 in cell 0; cell 1 is the head and nothing is published there yet.
        assert!(w.try_push(&ring, Head::new(1, 0, 0), &[]));
        consume_next(&mut r);
        assert_eq!(
            r.peek(&ring).unwrap(),
            None,
            "stale payload read as record 9"
        );
        assert!(w.try_push(&ring, Head::new(2, 7, 0), &[]));
        let rec = r.peek(&ring).unwrap().expect("record 9");
        assert_eq!((rec.kind, rec.tag, rec.pos), (2, 7, 1));
    }

    #[test]
    fn sequence_numbers_wrap_past_zero() {
        let m = Mem::new(4);
        let mut w = Writer {
            seq: u32::MAX - 2,
            ..Writer::default()
        };
        let mut r = Reader {
            seq: u32::MAX - 2,
            ..Reader::default()
        };
        for i in 0..10 {
            assert!(w.try_push(&m, Head::new(1, i, 0), &[]));
            let rec = r.peek(&m).unwrap().expect("published");
            assert_eq!(rec.tag, i);
            r.consume(&m, &rec);
            assert_eq!(r.peek(&m).unwrap(), None);
        }
    }

    use proptest::prelude::*;

    /// Checks that a record handed out by `peek` lies inside the ring and that reads stay in it.
    fn drain_checked(m: &Mem, r: &mut Reader, steps: usize) -> Result<usize, TestCaseError> {
        let cap = m.capacity();
        let mut seen = 0;
        for _ in 0..steps {
            match r.peek(m) {
                Ok(Some(rec)) => {
                    prop_assert!(rec.pos + rec.cells <= cap && rec.cells >= 1);
                    prop_assert!(rec.kind != PAD);
                    // A read of the claimed length either fits the record or is refused.
                    let mut dst = vec![0u8; (rec.len as usize).min(4 * cap * CELL)];
                    let fits = dst.len() <= rec.room();
                    prop_assert_eq!(r.read(m, &rec, 0, &mut dst).is_ok(), fits);
                    prop_assert!(r.read(m, &rec, usize::MAX, &mut [0]).is_err());
                    r.consume(m, &rec);
                    seen += 1;
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(seen)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary header words anywhere in the ring: the reader reports corruption or hands
        /// out records inside the ring, and never reads outside it (`Mem` would panic).
        #[test]
        fn garbage_headers_never_escape_the_ring(
            cap in 2usize..32,
            words in proptest::collection::vec((0usize..32, 0usize..4, any::<u32>()), 0..64),
            small_seqs in proptest::collection::vec((0usize..32, 1u32..6, 0u32..40, 0u8..9), 0..16),
        ) {
            let m = Mem::new(cap);
            for (cell, w, v) in words {
                m.store(cell % cap, w, v, Ordering::Relaxed);
            }
            // Plausible-looking headers too, with small sequence numbers the reader expects.
            for (cell, seq, cells, kind) in small_seqs {
                let kind = if kind == 8 { PAD } else { kind };
                m.store(cell % cap, 1, kind as u32 | cells << 8, Ordering::Relaxed);
                m.store(cell % cap, 0, seq, Ordering::Relaxed);
            }
            let mut r = Reader::default();
            drain_checked(&m, &mut r, 4 * cap)?;
        }

        /// Valid traffic with one header word overwritten between records: everything before
        /// the damage arrives intact, and the damage is either reported or stays in bounds.
        #[test]
        fn corruption_mid_stream_is_contained(
            sizes in proptest::collection::vec(0usize..200, 1..40),
            hit in 0usize..40,
            cell in 0usize..16,
            word in 0usize..4,
            value in any::<u32>(),
        ) {
            let m = Mem::new(16);
            let (mut w, mut r) = (Writer::default(), Reader::default());
            for (i, &n) in sizes.iter().enumerate() {
                let payload: Vec<u8> = (0..n).map(|b| (b ^ i) as u8).collect();
                prop_assert!(w.try_push(&m, Head::new(1, i as i32, n as u32), &[&payload]));
                if i == hit {
                    m.store(cell, word, value, Ordering::Relaxed);
                    drain_checked(&m, &mut r, 4)?;
                    return Ok(());
                }
                let rec = r.peek(&m).unwrap().expect("published");
                let mut got = vec![0u8; n];
                r.read(&m, &rec, 0, &mut got).unwrap();
                prop_assert_eq!(got, payload);
                r.consume(&m, &rec);
            }
        }
    }
}

/// Model checks of the ring's memory ordering: every interleaving of a writer and a reader
/// thread, run with `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU32, AtomicU64};

    /// Payload bytes are modelled as atomic words too, so loom sees every access.
    struct Mem {
        words: Vec<AtomicU32>,
        data: Vec<AtomicU32>,
        head: AtomicU64,
        cap: usize,
    }

    impl Cells for Mem {
        fn capacity(&self) -> usize {
            self.cap
        }
        fn load(&self, cell: usize, w: usize, o: Ordering) -> u32 {
            self.words[cell * WORDS + w].load(o)
        }
        fn store(&self, cell: usize, w: usize, v: u32, o: Ordering) {
            self.words[cell * WORDS + w].store(v, o)
        }
        unsafe fn write(&self, cell: usize, offset: usize, src: &[u8]) {
            for (i, &b) in src.iter().enumerate() {
                self.data[cell * CELL + offset + i].store(b as u32, Ordering::Relaxed);
            }
        }
        unsafe fn read(&self, cell: usize, offset: usize, dst: &mut [u8]) {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = self.data[cell * CELL + offset + i].load(Ordering::Relaxed) as u8;
            }
        }
        fn load_head(&self, o: Ordering) -> u64 {
            self.head.load(o)
        }
        fn store_head(&self, v: u64, o: Ordering) {
            self.head.store(v, o)
        }
    }

    #[test]
    fn messages_arrive_whole_and_in_order() {
        loom::model(|| {
            let cap = 2;
            let m = Arc::new(Mem {
                words: (0..cap * WORDS).map(|_| AtomicU32::new(0)).collect(),
                data: (0..cap * CELL).map(|_| AtomicU32::new(0)).collect(),
                head: AtomicU64::new(0),
                cap,
            });
            let writer = {
                let m = m.clone();
                loom::thread::spawn(move || {
                    let mut w = Writer::default();
                    let mut sent = 0u8;
                    while sent < 3 {
                        if w.try_push(&*m, Head::new(1, sent as i32, 2), &[&[sent, sent ^ 0x55]]) {
                            sent += 1;
                        } else {
                            loom::thread::yield_now();
                        }
                    }
                })
            };
            let mut r = Reader::default();
            let mut got = 0u8;
            while got < 3 {
                match r.peek(&*m).expect("no corruption") {
                    Some(rec) => {
                        assert_eq!(rec.tag, got as i32);
                        let mut b = [0u8; 2];
                        r.read(&*m, &rec, 0, &mut b).expect("in bounds");
                        assert_eq!(b, [got, got ^ 0x55]);
                        r.consume(&*m, &rec);
                        got += 1;
                    }
                    None => loom::thread::yield_now(),
                }
            }
            writer.join().expect("writer");
        });
    }
}
