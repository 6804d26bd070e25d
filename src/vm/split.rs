//! Cutting any pair of range lists into calls the kernel accepts.
//!
//! The kernel takes at most `IOV_MAX` elements per side and silently truncates a call's total to
//! `MAX_RW_COUNT` bytes. [`Splitter`] walks both lists in step and hands out calls that respect both
//! limits and carry the same byte count on each side, so the remote list is trimmed to what the
//! local side can take (a huge remote range never faults in pages nobody asked for).

/// One contiguous range: an address and a length (local or remote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Start address.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
}

/// The kernel's per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most elements per side (`IOV_MAX`, 1024 on Linux).
    pub max_segments: usize,
    /// Most bytes per call (`MAX_RW_COUNT`: `INT_MAX` rounded down to a page).
    pub max_bytes: usize,
}

/// `IOV_MAX` on Linux (`UIO_MAXIOV`).
pub const IOV_MAX: usize = 1024;

impl Limits {
    /// The limits of the running kernel: `IOV_MAX` and `MAX_RW_COUNT` from the page size.
    pub fn kernel() -> Limits {
        let page = rustix::param::page_size();
        Limits {
            max_segments: IOV_MAX,
            max_bytes: (i32::MAX as usize) & !(page - 1),
        }
    }
}

/// A position in a range list: element index and offset inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursor {
    index: usize,
    offset: usize,
}

impl Cursor {
    /// Moves forward by `n` bytes, skipping exhausted and empty elements.
    fn advance(&mut self, list: &[Segment], mut n: usize) {
        while self.index < list.len() {
            let left = list[self.index].len - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.index += 1;
            self.offset = 0;
            if n == 0 {
                // Land on the next non-empty element so `position` is meaningful.
                while self.index < list.len() && list[self.index].len == 0 {
                    self.index += 1;
                }
                return;
            }
        }
    }

    fn address(&self, list: &[Segment]) -> Option<usize> {
        let mut c = *self;
        while c.index < list.len() && list[c.index].len == c.offset {
            c.index += 1;
            c.offset = 0;
        }
        list.get(c.index).map(|s| s.addr + c.offset)
    }
}

/// Walks a local and a remote list in step, producing kernel-sized calls.
///
/// ```
/// use onecopy::vm::split::{Limits, Segment, Splitter};
///
/// let local = [Segment { addr: 0x1000, len: 6 }];
/// let remote = [Segment { addr: 0x9000, len: 2 }, Segment { addr: 0xa000, len: 8 }];
/// let limits = Limits { max_segments: 1024, max_bytes: 4 };
/// let mut split = Splitter::new(&local, &remote, limits);
/// let (mut l, mut r) = (Vec::new(), Vec::new());
/// assert_eq!(split.next_call(&mut l, &mut r), 4);
/// assert_eq!(r, [Segment { addr: 0x9000, len: 2 }, Segment { addr: 0xa000, len: 2 }]);
/// split.advance(4);
/// // The remote side is trimmed to what the local side can take.
/// assert_eq!(split.next_call(&mut l, &mut r), 2);
/// assert_eq!(r, [Segment { addr: 0xa002, len: 2 }]);
/// split.advance(2);
/// assert_eq!(split.next_call(&mut l, &mut r), 0);
/// ```
#[derive(Debug)]
pub struct Splitter<'a> {
    local: &'a [Segment],
    remote: &'a [Segment],
    limits: Limits,
    at_local: Cursor,
    at_remote: Cursor,
    done: usize,
}

impl<'a> Splitter<'a> {
    /// Starts at the beginning of both lists.
    ///
    /// A limit of 0 is taken as 1: no call could be made under it, and the splitter would never
    /// finish.
    pub fn new(local: &'a [Segment], remote: &'a [Segment], limits: Limits) -> Self {
        Splitter {
            local,
            remote,
            limits: Limits {
                max_segments: limits.max_segments.max(1),
                max_bytes: limits.max_bytes.max(1),
            },
            at_local: Cursor::default(),
            at_remote: Cursor::default(),
            done: 0,
        }
    }

    /// Bytes accounted for so far by [`Splitter::advance`].
    pub fn done(&self) -> usize {
        self.done
    }

    /// The remote address of the next byte to move (where a fault stopped the last call).
    pub fn remote_position(&self) -> Option<usize> {
        self.at_remote.address(self.remote)
    }

    /// Fills `local` and `remote` with the next call's elements and returns its byte count (the
    /// same on both sides); 0 when either list is exhausted.
    pub fn next_call(&self, local: &mut Vec<Segment>, remote: &mut Vec<Segment>) -> usize {
        local.clear();
        remote.clear();
        let budget = take(
            self.local,
            self.at_local,
            self.limits,
            self.limits.max_bytes,
            local,
        );
        let total = take(self.remote, self.at_remote, self.limits, budget, remote);
        if total < budget {
            trim(local, total);
        }
        total
    }

    /// Records that `n` bytes of the last call moved: all of it, or a short count (the kernel
    /// stopped at a fault), after which the next call starts at the first byte not moved.
    pub fn advance(&mut self, n: usize) {
        self.at_local.advance(self.local, n);
        self.at_remote.advance(self.remote, n);
        self.done += n;
    }
}

/// Collects elements from `at` on, up to the segment limit and `budget` bytes; returns the bytes.
fn take(
    list: &[Segment],
    at: Cursor,
    limits: Limits,
    budget: usize,
    out: &mut Vec<Segment>,
) -> usize {
    let mut total = 0;
    let mut offset = at.offset;
    for seg in &list[at.index.min(list.len())..] {
        if out.len() == limits.max_segments || total == budget {
            break;
        }
        let len = (seg.len - offset).min(budget - total);
        if len > 0 {
            out.push(Segment {
                addr: seg.addr + offset,
                len,
            });
            total += len;
        }
        offset = 0;
    }
    total
}

/// Cuts a list down to its first `total` bytes.
fn trim(list: &mut Vec<Segment>, total: usize) {
    let mut left = total;
    let mut keep = 0;
    for seg in list.iter_mut() {
        if left == 0 {
            break;
        }
        seg.len = seg.len.min(left);
        left -= seg.len;
        keep += 1;
    }
    list.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(lens: &[usize]) -> Vec<Segment> {
        let mut addr = 0x1000;
        lens.iter()
            .map(|&len| {
                let s = Segment { addr, len };
                addr += len + 7;
                s
            })
            .collect()
    }

    #[test]
    fn remote_is_trimmed_to_local_total() {
        let l = segs(&[10]);
        let r = segs(&[1 << 40]);
        let s = Splitter::new(&l, &r, Limits::kernel());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(s.next_call(&mut a, &mut b), 10);
        assert_eq!(
            b,
            vec![Segment {
                addr: r[0].addr,
                len: 10
            }]
        );
    }

    #[test]
    fn zero_limits_still_finish() {
        let l = segs(&[3]);
        let r = segs(&[3]);
        let limits = Limits {
            max_segments: 0,
            max_bytes: 0,
        };
        let mut s = Splitter::new(&l, &r, limits);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut calls = 0;
        while s.next_call(&mut a, &mut b) == 1 {
            s.advance(1);
            calls += 1;
        }
        assert_eq!((s.done(), calls), (3, 3));
    }

    #[test]
    fn byte_limit_cuts_calls_on_both_sides() {
        let l = segs(&[10, 10]);
        let r = segs(&[4, 16]);
        let limits = Limits {
            max_segments: 8,
            max_bytes: 7,
        };
        let mut s = Splitter::new(&l, &r, limits);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut sizes = Vec::new();
        loop {
            let n = s.next_call(&mut a, &mut b);
            if n == 0 {
                break;
            }
            sizes.push((n, a.len(), b.len()));
            s.advance(n);
        }
        assert_eq!(sizes, [(7, 1, 2), (7, 2, 1), (6, 1, 1)]);
    }

    #[test]
    fn segment_limit_cuts_calls() {
        let l = segs(&[1; 5]);
        let r = segs(&[5]);
        let limits = Limits {
            max_segments: 2,
            max_bytes: 100,
        };
        let mut s = Splitter::new(&l, &r, limits);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut calls = 0;
        loop {
            let n = s.next_call(&mut a, &mut b);
            if n == 0 {
                break;
            }
            assert!(a.len() <= 2 && b.len() <= 2);
            s.advance(n);
            calls += 1;
        }
        assert_eq!((s.done(), calls), (5, 3));
    }
}
