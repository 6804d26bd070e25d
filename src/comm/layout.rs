//! Where everything lives in the job's shared segment.
//!
//! ```text
//! header page   magic, version, ranks, the sizes below
//! rank blocks   per rank: pid, probe word address and descriptor, access verdict, doorbell
//! rings         per ordered pair (from, to): reader's head counter, then `ring_cells` 64-byte cells
//! eager         per ordered pair: `eager_slots` state words, then the slots
//! cursors       per ordered pair: `CURSORS` chunk cursors for split rendezvous
//! ```
//! Offsets, not pointers: each rank maps the segment at its own address. The launcher writes the
//! header; every rank validates it against the segment's real size before use.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use super::CommError;
use crate::shm::{Doorbell, Segment};

/// "ONECOPY1" in ASCII.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"ONECOPY1");
/// Bumped whenever the layout changes.
pub(crate) const VERSION: u32 = 2;
/// Bytes per ring cell (one cache line).
pub(crate) const CELL: usize = 64;
/// Split-rendezvous cursors per ordered pair: the most large sends in flight to one peer.
pub(crate) const CURSORS: usize = 256;
/// The most ranks one job may have.
pub const MAX_RANKS: usize = 4096;

/// The segment's first page.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub ranks: AtomicU32,
    pub ring_cells: AtomicU32,
    pub eager_slots: AtomicU32,
    pub eager_slot_bytes: AtomicU32,
}

/// One rank's public words.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RankBlock {
    pub pid: AtomicI32,
    /// Address (in that rank) of a word others read to probe CMA.
    pub probe_addr: AtomicU64,
    /// 0 not yet known, 1 this rank can reach every peer by the job's mechanism, 2 it cannot.
    pub cma_verdict: AtomicU32,
    /// A descriptor number of this rank's that peers may take with `pidfd_getfd`, to test
    /// whether the job's `vmsplice` pipes will reach them (-1: none).
    pub probe_fd: AtomicI32,
    /// Rung by anyone who gives this rank something to do while it may sleep.
    pub bell: Doorbell,
}

/// A ring's reader-owned counter.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RingControl {
    /// Cells consumed, ever.
    pub head: CachePadded<AtomicU64>,
}

/// A split rendezvous's shared words.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Next chunk to claim.
    pub next: AtomicU64,
}

/// The sizes of a job's structures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Ranks in the job.
    pub ranks: usize,
    /// 64-byte cells per ring.
    pub ring_cells: usize,
    /// Eager slots per ordered pair.
    pub eager_slots: usize,
    /// Bytes per eager slot (the eager limit can be at most this).
    pub eager_slot_bytes: usize,
}

impl Layout {
    /// The sizes for `ranks` ranks with the ring and slot sizes of `config`.
    pub fn new(ranks: usize, config: &crate::config::Config) -> Result<Layout, CommError> {
        if ranks == 0 || ranks > MAX_RANKS {
            return Err(CommError::Config(format!(
                "a job has 1 to {MAX_RANKS} ranks, not {ranks}"
            )));
        }
        let layout = Layout {
            ranks,
            ring_cells: config.ring_cells,
            eager_slots: config.eager_slots.unwrap_or_else(|| {
                crate::config::default_eager_slots(ranks, config.eager_slot_bytes)
            }),
            eager_slot_bytes: config.eager_slot_bytes.next_multiple_of(CELL),
        };
        layout.checked_bytes().ok_or_else(|| {
            CommError::Config(format!("a segment for {layout:?} would not fit in memory"))
        })?;
        Ok(layout)
    }

    fn pairs(&self) -> usize {
        self.ranks * self.ranks
    }

    fn header_bytes(&self) -> usize {
        4096
    }

    fn rank_block_bytes() -> usize {
        std::mem::size_of::<CachePadded<RankBlock>>()
    }

    fn ring_bytes(&self) -> usize {
        std::mem::size_of::<RingControl>() + self.ring_cells * CELL
    }

    fn eager_bytes(&self) -> usize {
        (self.eager_slots * 4).next_multiple_of(CELL) + self.eager_slots * self.eager_slot_bytes
    }

    fn cursors_bytes() -> usize {
        CURSORS * std::mem::size_of::<CachePadded<Cursor>>()
    }

    fn ranks_offset(&self) -> usize {
        self.header_bytes()
    }

    fn rings_offset(&self) -> usize {
        (self.ranks_offset() + self.ranks * Self::rank_block_bytes()).next_multiple_of(4096)
    }

    fn eager_offset(&self) -> usize {
        (self.rings_offset() + self.pairs() * self.ring_bytes()).next_multiple_of(4096)
    }

    fn cursors_offset(&self) -> usize {
        (self.eager_offset() + self.pairs() * self.eager_bytes()).next_multiple_of(4096)
    }

    /// Total bytes.
    pub fn bytes(&self) -> usize {
        self.cursors_offset() + self.pairs() * Self::cursors_bytes()
    }

    /// [`Layout::bytes`] computed with checked arithmetic: `None` if any size or offset would
    /// overflow. Every layout used is first checked with this, so the unchecked forms above
    /// cannot overflow for it (a header written by another process included).
    fn checked_bytes(&self) -> Option<usize> {
        let page = |x: usize| x.checked_next_multiple_of(4096);
        let pairs = self.ranks.checked_mul(self.ranks)?;
        let ring = self
            .ring_cells
            .checked_mul(CELL)?
            .checked_add(std::mem::size_of::<RingControl>())?;
        let eager = self
            .eager_slots
            .checked_mul(4)?
            .checked_next_multiple_of(CELL)?
            .checked_add(self.eager_slots.checked_mul(self.eager_slot_bytes)?)?;
        let ranks = self.ranks.checked_mul(Self::rank_block_bytes())?;
        let rings = page(self.header_bytes().checked_add(ranks)?)?;
        let eagers = page(rings.checked_add(pairs.checked_mul(ring)?)?)?;
        let cursors = page(eagers.checked_add(pairs.checked_mul(eager)?)?)?;
        let total = cursors.checked_add(pairs.checked_mul(Self::cursors_bytes())?)?;
        // Offsets are added to the mapping's address: keep clear of the address space's end.
        (total <= isize::MAX as usize).then_some(total)
    }

    #[inline]
    fn pair(&self, from: usize, to: usize) -> usize {
        assert!(
            from < self.ranks && to < self.ranks,
            "pair ({from}, {to}) outside the job"
        );
        from * self.ranks + to
    }
}

/// A mapped, validated world segment.
#[derive(Debug)]
pub(crate) struct World {
    pub segment: Segment,
    pub layout: Layout,
}

impl World {
    /// Writes a fresh header into a zeroed segment.
    pub fn init(segment: &Segment, layout: &Layout) -> Result<(), CommError> {
        if layout
            .checked_bytes()
            .is_none_or(|need| segment.len() < need)
        {
            return Err(CommError::Config(format!(
                "segment of {} bytes is smaller than the {} the layout needs",
                segment.len(),
                layout.bytes()
            )));
        }
        // SAFETY: the segment holds at least a page, zeroed, which is a valid `Header`.
        let header = unsafe { &*(segment.as_ptr() as *const Header) };
        header.version.store(VERSION, Ordering::Relaxed);
        header.ranks.store(layout.ranks as u32, Ordering::Relaxed);
        header
            .ring_cells
            .store(layout.ring_cells as u32, Ordering::Relaxed);
        header
            .eager_slots
            .store(layout.eager_slots as u32, Ordering::Relaxed);
        header
            .eager_slot_bytes
            .store(layout.eager_slot_bytes as u32, Ordering::Relaxed);
        // Release: a rank that sees the magic sees the sizes.
        header.magic.store(MAGIC, Ordering::Release);
        Ok(())
    }

    /// Validates the header of a segment made by a launcher for `ranks` ranks.
    pub fn open(segment: Segment, ranks: usize) -> Result<World, CommError> {
        if segment.len() < 4096 {
            return Err(CommError::Config(
                "the job's segment is too small to hold a header".into(),
            ));
        }
        // SAFETY: at least a page is mapped (checked above); the header is atomics only.
        let header = unsafe { &*(segment.as_ptr() as *const Header) };
        if header.magic.load(Ordering::Acquire) != MAGIC
            || header.version.load(Ordering::Relaxed) != VERSION
        {
            return Err(CommError::Config(
                "the segment passed in ONECOPY_SEGMENT_FD is not a onecopy job segment of this version".into(),
            ));
        }
        let layout = Layout {
            ranks: header.ranks.load(Ordering::Relaxed) as usize,
            ring_cells: header.ring_cells.load(Ordering::Relaxed) as usize,
            eager_slots: header.eager_slots.load(Ordering::Relaxed) as usize,
            eager_slot_bytes: header.eager_slot_bytes.load(Ordering::Relaxed) as usize,
        };
        let sane = layout.ranks == ranks
            && layout.ranks >= 1
            && layout.ranks <= MAX_RANKS
            && (64..=1 << 20).contains(&layout.ring_cells)
            && layout.eager_slots >= 1
            && layout.eager_slot_bytes >= CELL
            && layout.eager_slot_bytes.is_multiple_of(CELL);
        if !sane
            || layout
                .checked_bytes()
                .is_none_or(|need| segment.len() < need)
        {
            return Err(CommError::Config(format!(
                "the job's segment header is inconsistent ({layout:?}, {} bytes, {ranks} ranks expected)",
                segment.len()
            )));
        }
        Ok(World { segment, layout })
    }

    #[inline]
    fn at<T>(&self, offset: usize) -> &T {
        assert!(
            offset
                .checked_add(std::mem::size_of::<T>())
                .is_some_and(|end| end <= self.segment.len())
                && offset.is_multiple_of(std::mem::align_of::<T>()),
            "offset {offset} outside the segment"
        );
        // SAFETY: every offset passed here comes from `Layout`, which the segment's length was
        // checked against in `open`/`init`; the types placed there are atomics only, valid when
        // zeroed, and aligned (offsets are multiples of 64 or of their size).
        unsafe { &*(self.segment.as_ptr().add(offset) as *const T) }
    }

    #[inline]
    pub fn rank(&self, r: usize) -> &RankBlock {
        let l = &self.layout;
        assert!(r < l.ranks, "rank {r} outside the job of {}", l.ranks);
        self.at::<CachePadded<RankBlock>>(l.ranks_offset() + r * Layout::rank_block_bytes())
    }

    /// The control words and the first cell of the ring carrying messages `from` → `to`.
    #[inline]
    pub fn ring(&self, from: usize, to: usize) -> (&RingControl, *mut u8) {
        let l = &self.layout;
        let off = l.rings_offset() + l.pair(from, to) * l.ring_bytes();
        let control = self.at::<RingControl>(off);
        // SAFETY: the cells follow the control block inside the ring's extent (see `ring_bytes`).
        let cells = unsafe {
            self.segment
                .as_ptr()
                .add(off + std::mem::size_of::<RingControl>())
        };
        (control, cells)
    }

    /// Eager slot `i`'s state word (0 free, 1 full) and its bytes, for messages `from` → `to`.
    #[inline]
    pub fn eager_slot(&self, from: usize, to: usize, i: usize) -> (&AtomicU32, usize) {
        let l = &self.layout;
        assert!(i < l.eager_slots, "eager slot {i} of {}", l.eager_slots);
        let off = l.eager_offset() + l.pair(from, to) * l.eager_bytes();
        let state = self.at::<AtomicU32>(off + 4 * i);
        let data = off + (l.eager_slots * 4).next_multiple_of(CELL) + i * l.eager_slot_bytes;
        (state, data)
    }

    /// Split-rendezvous cursor `i` for sends `from` → `to`.
    #[inline]
    pub fn cursor(&self, from: usize, to: usize, i: usize) -> &Cursor {
        let l = &self.layout;
        let off = l.cursors_offset() + l.pair(from, to) * Layout::cursors_bytes();
        self.at::<CachePadded<Cursor>>(
            off + (i % CURSORS) * std::mem::size_of::<CachePadded<Cursor>>(),
        )
    }
}
