//! The normalized layout tree: where the data bytes of one element lie, in the order they are
//! packed, with no primitive types left in it (those live in [`super::signature`]).
//!
//! Three shapes are enough for every constructor: a run of bytes, `count` copies of a child
//! `stride` bytes apart, and a sequence of children at displacements. Constructors normalize as
//! they build (a run repeated at its own length is one longer run, a repeat of a repeat that
//! tiles is one repeat, adjacent runs in a sequence merge), so a vector of contiguous blocks or a
//! subarray costs O(dimensions) nodes however many bytes it covers. Every node also carries the
//! numbers that make the questions asked about a type O(1): its size, its true bounds, and how
//! many segments it yields.

use std::sync::Arc;

use super::DatatypeError;

/// `[low, high)` of a set of byte offsets, or `None` for the empty set. For marker bounds `low`
/// is the lowest lower-bound marker and `high` the highest upper-bound marker, which a negative
/// extent can put below `low`.
pub(super) type Bounds = Option<(isize, isize)>;

pub(super) fn shift(bounds: Bounds, by: isize) -> Result<Bounds, DatatypeError> {
    bounds
        .map(|(low, high)| Ok((add(low, by)?, add(high, by)?)))
        .transpose()
}

pub(super) fn union(a: Bounds, b: Bounds) -> Bounds {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some((al, ah)), Some((bl, bh))) => Some((al.min(bl), ah.max(bh))),
    }
}

/// The bounds of `count` copies, copy `k` displaced by `k * stride`.
pub(super) fn repeat_bounds(
    bounds: Bounds,
    count: usize,
    stride: isize,
) -> Result<Bounds, DatatypeError> {
    let Some((low, high)) = bounds else {
        return Ok(None);
    };
    if count == 0 {
        return Ok(None);
    }
    let span = mul(to_isize(count - 1)?, stride)?;
    Ok(Some((add(low, span.min(0))?, add(high, span.max(0))?)))
}

pub(super) fn add(a: isize, b: isize) -> Result<isize, DatatypeError> {
    a.checked_add(b).ok_or(DatatypeError::Overflow)
}

pub(super) fn mul(a: isize, b: isize) -> Result<isize, DatatypeError> {
    a.checked_mul(b).ok_or(DatatypeError::Overflow)
}

pub(super) fn to_isize(n: usize) -> Result<isize, DatatypeError> {
    isize::try_from(n).map_err(|_| DatatypeError::Overflow)
}

/// A byte count that must also be usable as an offset.
fn byte_count(n: Option<usize>) -> Result<usize, DatatypeError> {
    match n {
        Some(n) if n <= isize::MAX as usize => Ok(n),
        _ => Err(DatatypeError::Overflow),
    }
}

/// One node of the layout tree, with its summary.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) shape: Shape,
    /// Data bytes in one instance.
    pub(super) size: usize,
    /// The true bounds: lowest and one past the highest data byte.
    pub(super) bounds: Bounds,
    /// Runs yielded before merging.
    pub(super) pieces: usize,
    /// Consecutive runs where the next starts exactly where the previous ended: the merged
    /// segment count is `pieces - joins`.
    pub(super) joins: usize,
    /// Where the first run in packing order starts (0 when empty).
    pub(super) first_start: isize,
    /// Where the last run in packing order ends (0 when empty).
    pub(super) last_end: isize,
    /// Proven free of overlap by structure alone; `false` means "not proven", not "overlaps".
    pub(super) disjoint: bool,
    /// Levels below this node: the stack a walk needs.
    pub(super) height: usize,
}

#[derive(Debug)]
pub(super) enum Shape {
    Empty,
    /// `len > 0` bytes at offset 0.
    Run(usize),
    /// `count >= 2` copies of `child`, copy `k` at `k * stride`.
    Repeat {
        count: usize,
        stride: isize,
        child: Arc<Node>,
    },
    /// Children in packing order, each at its displacement; at least one, none empty.
    Blocks(Box<[(isize, Arc<Node>)]>),
}

impl Node {
    pub(super) fn empty() -> Arc<Node> {
        Arc::new(Node {
            shape: Shape::Empty,
            size: 0,
            bounds: None,
            pieces: 0,
            joins: 0,
            first_start: 0,
            last_end: 0,
            disjoint: true,
            height: 0,
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        matches!(self.shape, Shape::Empty)
    }

    pub(super) fn run(len: usize) -> Result<Arc<Node>, DatatypeError> {
        if len == 0 {
            return Ok(Node::empty());
        }
        let end = to_isize(len)?;
        Ok(Arc::new(Node {
            shape: Shape::Run(len),
            size: len,
            bounds: Some((0, end)),
            pieces: 1,
            joins: 0,
            first_start: 0,
            last_end: end,
            disjoint: true,
            height: 0,
        }))
    }

    /// `count` copies of `child`, copy `k` at `k * stride`.
    pub(super) fn repeat(
        count: usize,
        stride: isize,
        child: &Arc<Node>,
    ) -> Result<Arc<Node>, DatatypeError> {
        if count == 0 || child.is_empty() {
            return Ok(Node::empty());
        }
        if count == 1 {
            return Ok(child.clone());
        }
        let size = byte_count(child.size.checked_mul(count))?;
        let bounds = repeat_bounds(child.bounds, count, stride)?;
        match &child.shape {
            Shape::Run(len) if stride == to_isize(*len)? => return Node::run(size),
            Shape::Repeat {
                count: inner_count,
                stride: inner_stride,
                child: grandchild,
            } if Some(stride) == to_isize(*inner_count)?.checked_mul(*inner_stride) => {
                let count = count
                    .checked_mul(*inner_count)
                    .ok_or(DatatypeError::Overflow)?;
                return Node::repeat(count, *inner_stride, grandchild);
            }
            _ => {}
        }
        let seam = Some(child.last_end) == stride.checked_add(child.first_start);
        let joins = child
            .joins
            .checked_mul(count)
            .and_then(|j| j.checked_add(if seam { count - 1 } else { 0 }))
            .ok_or(DatatypeError::Overflow)?;
        let extent = child.bounds.map_or(0, |(l, h)| h.abs_diff(l));
        Ok(Arc::new(Node {
            shape: Shape::Repeat {
                count,
                stride,
                child: child.clone(),
            },
            size,
            bounds,
            pieces: child
                .pieces
                .checked_mul(count)
                .ok_or(DatatypeError::Overflow)?,
            joins,
            first_start: child.first_start,
            last_end: add(mul(to_isize(count - 1)?, stride)?, child.last_end)?,
            disjoint: child.disjoint && stride.unsigned_abs() >= extent,
            height: child.height + 1,
        }))
    }

    /// The children in packing order, each at its displacement.
    pub(super) fn blocks(entries: Vec<(isize, Arc<Node>)>) -> Result<Arc<Node>, DatatypeError> {
        let mut merged: Vec<(isize, Arc<Node>)> = Vec::with_capacity(entries.len());
        for (at, node) in entries {
            if node.is_empty() {
                continue;
            }
            // An offset wrapper inside a sequence is just a displacement.
            let (at, node) = match &node.shape {
                Shape::Blocks(inner) if inner.len() == 1 => {
                    (add(at, inner[0].0)?, inner[0].1.clone())
                }
                _ => (at, node),
            };
            if let Shape::Run(len) = node.shape
                && let Some((previous_at, previous)) = merged.last_mut()
                && let Shape::Run(previous_len) = previous.shape
                && add(*previous_at, to_isize(previous_len)?)? == at
            {
                *previous = Node::run(byte_count(previous_len.checked_add(len))?)?;
                continue;
            }
            merged.push((at, node));
        }
        match merged.len() {
            0 => return Ok(Node::empty()),
            1 if merged[0].0 == 0 => return Ok(merged.remove(0).1),
            _ => {}
        }
        let mut size = 0usize;
        let mut bounds = None;
        let mut pieces = 0usize;
        let mut joins = 0usize;
        let mut previous_end: Option<isize> = None;
        let mut disjoint = true;
        let mut ranges = Vec::with_capacity(merged.len());
        for (at, node) in &merged {
            size = byte_count(size.checked_add(node.size))?;
            let placed = shift(node.bounds, *at)?;
            bounds = union(bounds, placed);
            pieces = pieces
                .checked_add(node.pieces)
                .ok_or(DatatypeError::Overflow)?;
            joins = joins
                .checked_add(node.joins)
                .ok_or(DatatypeError::Overflow)?;
            if previous_end == at.checked_add(node.first_start) {
                joins = joins.checked_add(1).ok_or(DatatypeError::Overflow)?;
            }
            previous_end = at.checked_add(node.last_end);
            disjoint &= node.disjoint;
            ranges.extend(placed);
        }
        if disjoint {
            ranges.sort_unstable();
            disjoint = ranges.windows(2).all(|pair| pair[0].1 <= pair[1].0);
        }
        let height = 1 + merged
            .iter()
            .map(|(_, node)| node.height)
            .max()
            .unwrap_or(0);
        let first = &merged[0];
        let last = &merged[merged.len() - 1];
        Ok(Arc::new(Node {
            first_start: add(first.0, first.1.first_start)?,
            last_end: add(last.0, last.1.last_end)?,
            shape: Shape::Blocks(merged.into_boxed_slice()),
            size,
            bounds,
            pieces,
            joins,
            disjoint,
            height,
        }))
    }
}

/// The merged byte segments of `count` elements of a layout; see
/// [`Datatype::segments`](super::Datatype::segments).
///
/// The walk keeps one frame per tree level on an explicit stack allocated once, so each item
/// costs O(depth) at worst and allocates nothing.
#[derive(Clone, Debug)]
pub struct Segments<'a> {
    stack: Vec<Frame<'a>>,
    /// The run read ahead of the one being merged, if any.
    pending: Option<(isize, usize)>,
}

#[derive(Clone, Debug)]
enum Frame<'a> {
    Repeat {
        count: usize,
        stride: isize,
        child: &'a Node,
        base: isize,
        next: usize,
    },
    Blocks {
        entries: &'a [(isize, Arc<Node>)],
        base: isize,
        next: usize,
    },
}

impl<'a> Segments<'a> {
    /// `count` copies of `root`, copy `k` at `k * extent`.
    pub(super) fn new(root: &'a Node, count: usize, extent: isize) -> Segments<'a> {
        let mut stack = Vec::with_capacity(root.height + 1);
        if count > 0 && !root.is_empty() {
            stack.push(Frame::Repeat {
                count,
                stride: extent,
                child: root,
                base: 0,
                next: 0,
            });
        }
        Segments {
            stack,
            pending: None,
        }
    }

    /// The next run before merging. Offsets wrap rather than panic: a layout whose offsets do not
    /// fit `isize` cannot pass the bounds checks of packing or views anyway.
    fn next_piece(&mut self) -> Option<(isize, usize)> {
        loop {
            let (node, at) = match self.stack.last_mut()? {
                Frame::Repeat {
                    count,
                    stride,
                    child,
                    base,
                    next,
                } => {
                    if *next == *count {
                        self.stack.pop();
                        continue;
                    }
                    let at = base.wrapping_add((*next as isize).wrapping_mul(*stride));
                    *next += 1;
                    (*child, at)
                }
                Frame::Blocks {
                    entries,
                    base,
                    next,
                } => {
                    let Some((displacement, child)) = entries.get(*next) else {
                        self.stack.pop();
                        continue;
                    };
                    *next += 1;
                    (&**child, base.wrapping_add(*displacement))
                }
            };
            match &node.shape {
                Shape::Empty => {}
                Shape::Run(len) => return Some((at, *len)),
                Shape::Repeat {
                    count,
                    stride,
                    child,
                } => self.stack.push(Frame::Repeat {
                    count: *count,
                    stride: *stride,
                    child,
                    base: at,
                    next: 0,
                }),
                Shape::Blocks(entries) => self.stack.push(Frame::Blocks {
                    entries,
                    base: at,
                    next: 0,
                }),
            }
        }
    }
}

/// Pieces of a layout that are equally spaced: `count` runs of `len` bytes, the first at
/// `start`, each `stride` bytes after the one before ([`Segments::next_batch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Offset of the first run.
    pub start: isize,
    /// Bytes in each run.
    pub len: usize,
    /// Offset from one run to the next.
    pub stride: isize,
    /// Runs in the batch (at least 1).
    pub count: usize,
}

impl Segments<'_> {
    /// The next pieces in typemap order as one [`Batch`]: every remaining repetition of a run
    /// at once where the layout repeats one (a vector of blocks, a column), else a single
    /// piece. Unlike the iterator it does not merge adjacent pieces, so a copy loop can walk a
    /// whole vector of blocks without a step per block; the bytes, in order, are the same.
    pub fn next_batch(&mut self) -> Option<Batch> {
        if let Some((start, len)) = self.pending.take() {
            return Some(Batch {
                start,
                len,
                stride: 0,
                count: 1,
            });
        }
        if let Some(Frame::Repeat {
            count,
            stride,
            child,
            base,
            next,
        }) = self.stack.last_mut()
            && *next < *count
            && let Shape::Run(len) = child.shape
        {
            let batch = Batch {
                start: base.wrapping_add((*next as isize).wrapping_mul(*stride)),
                len,
                stride: *stride,
                count: *count - *next,
            };
            *next = *count;
            return Some(batch);
        }
        let (start, len) = self.next_piece()?;
        Some(Batch {
            start,
            len,
            stride: 0,
            count: 1,
        })
    }
}

/// Which way [`Stream::copy`] moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Out of the layout into the stream (packing).
    Gather,
    /// From the stream into the layout (unpacking).
    Scatter,
}

/// A walk over a layout's bytes in packed order that moves them between the layout and a
/// contiguous stream a stretch at a time, resuming where the last stretch ended: what packing,
/// unpacking and a message streamed in chunks need. Equally spaced runs are copied in a tight
/// loop (runs of 4, 8, 16, 32 and 64 bytes as fixed-size loads and stores).
#[derive(Clone, Debug)]
pub struct Stream<'a> {
    pieces: Segments<'a>,
    /// The batch being copied and the bytes of its first run already moved.
    run: Option<(Batch, usize)>,
}

impl<'a> Stream<'a> {
    /// A walk from the start of `pieces`.
    pub fn new(pieces: Segments<'a>) -> Stream<'a> {
        Stream { pieces, run: None }
    }

    /// Moves the next `n` bytes of the stream between the layout at `base` and `stream`;
    /// returns the bytes moved (fewer only at the end of the layout).
    ///
    /// # Safety
    /// `stream` is valid for `n` bytes (for writes when gathering); every piece of the layout
    /// relative to `base` is valid memory (for writes when scattering); the two do not overlap.
    pub unsafe fn copy(
        &mut self,
        base: *mut u8,
        stream: *mut u8,
        n: usize,
        direction: Direction,
    ) -> usize {
        let mut done = 0;
        while done < n {
            let (mut b, mut skip) = match self.run.take() {
                Some(r) => r,
                None => match self.pieces.next_batch() {
                    Some(b) => (b, 0),
                    None => break,
                },
            };
            if b.len == 0 {
                continue;
            }
            // SAFETY: the caller's contract covers every piece and the stream's `n` bytes.
            unsafe {
                if skip > 0 {
                    let m = (b.len - skip).min(n - done);
                    move_bytes(
                        base.offset(b.start + skip as isize),
                        stream.add(done),
                        m,
                        direction,
                    );
                    done += m;
                    skip += m;
                    if skip == b.len {
                        skip = 0;
                        b.start = b.start.wrapping_add(b.stride);
                        b.count -= 1;
                    }
                }
                let whole = ((n - done) / b.len).min(b.count);
                if skip == 0 && whole > 0 {
                    move_runs(base, stream.add(done), b, whole, direction);
                    done += whole * b.len;
                    b.start = b
                        .start
                        .wrapping_add((whole as isize).wrapping_mul(b.stride));
                    b.count -= whole;
                }
                if skip == 0 && b.count > 0 && done < n {
                    let m = n - done;
                    move_bytes(base.offset(b.start), stream.add(done), m, direction);
                    done += m;
                    skip = m;
                }
            }
            if b.count > 0 {
                self.run = Some((b, skip));
            }
        }
        done
    }
}

/// How many runs ahead [`move_runs`] prefetches widely spaced runs.
const PREFETCH_RUNS: isize = 16;

/// Asks the processor to bring the cache line at `at` in; any address is allowed.
#[inline(always)]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Moves `n` bytes between `at` (in the layout) and `stream`.
///
/// # Safety
/// Both are valid for `n` bytes and do not overlap.
#[inline]
unsafe fn move_bytes(at: *mut u8, stream: *mut u8, n: usize, direction: Direction) {
    // SAFETY: the caller's contract.
    unsafe {
        match direction {
            Direction::Gather => std::ptr::copy_nonoverlapping(at, stream, n),
            Direction::Scatter => std::ptr::copy_nonoverlapping(stream, at, n),
        }
    }
}

/// Moves the first `whole` runs of `b` between the layout at `base` and consecutive bytes of
/// `stream`.
///
/// # Safety
/// As [`Stream::copy`]: every run and `whole * b.len` bytes of `stream` are valid.
#[inline]
unsafe fn move_runs(base: *mut u8, stream: *mut u8, b: Batch, whole: usize, direction: Direction) {
    /// One run of `N` bytes as a single unaligned load and store.
    ///
    /// # Safety
    /// As [`move_runs`].
    #[inline(always)]
    unsafe fn fixed<T: Copy>(base: *mut u8, stream: *mut u8, b: Batch, whole: usize, d: Direction) {
        let mut at = b.start;
        // Runs a cache line or more apart defeat the hardware's prefetch at every page: ask
        // for the lines a few runs ahead (a prefetch of memory past the layout does nothing).
        let ahead = if b.stride.unsigned_abs() >= 128 {
            b.stride.wrapping_mul(PREFETCH_RUNS)
        } else {
            0
        };
        for i in 0..whole {
            if ahead != 0 {
                prefetch(base.wrapping_offset(at.wrapping_add(ahead)));
            }
            // SAFETY: the caller's contract; `size_of::<T>() == b.len`.
            unsafe {
                let piece = base.offset(at).cast::<T>();
                let s = stream.add(i * b.len).cast::<T>();
                match d {
                    Direction::Gather => s.write_unaligned(piece.read_unaligned()),
                    Direction::Scatter => piece.write_unaligned(s.read_unaligned()),
                }
            }
            at = at.wrapping_add(b.stride);
        }
    }
    // SAFETY: the caller's contract.
    unsafe {
        match b.len {
            4 => fixed::<u32>(base, stream, b, whole, direction),
            8 => fixed::<u64>(base, stream, b, whole, direction),
            16 => fixed::<u128>(base, stream, b, whole, direction),
            32 => fixed::<[u128; 2]>(base, stream, b, whole, direction),
            64 => fixed::<[u128; 4]>(base, stream, b, whole, direction),
            len => {
                let mut at = b.start;
                for i in 0..whole {
                    move_bytes(base.offset(at), stream.add(i * len), len, direction);
                    at = at.wrapping_add(b.stride);
                }
            }
        }
    }
}

impl Iterator for Segments<'_> {
    type Item = (isize, usize);

    fn next(&mut self) -> Option<(isize, usize)> {
        let (start, mut len) = self.pending.take().or_else(|| self.next_piece())?;
        while let Some((at, more)) = self.next_piece() {
            if at == start.wrapping_add(len as isize) {
                len += more;
            } else {
                self.pending = Some((at, more));
                break;
            }
        }
        Some((start, len))
    }
}

/// Whether the runs overlap, by sorting them: O(n log n) time and O(n) memory in the number of
/// segments. The structural proof in [`Node::disjoint`] answers most types without this.
pub(super) fn segments_overlap(segments: Segments<'_>) -> bool {
    let mut runs: Vec<(isize, usize)> = segments.collect();
    runs.sort_unstable();
    let mut end: Option<isize> = None;
    for (start, len) in runs {
        if end.is_some_and(|end| start < end) {
            return true;
        }
        let this_end = start.wrapping_add(len as isize);
        end = Some(end.map_or(this_end, |end| end.max(this_end)));
    }
    false
}
