//! The tags of collectives' messages. They travel in each communicator's collective context, so
//! no point-to-point receive ever takes them; the tag names the collective (and its root).
//!
//! The runtime treats a receive in a collective context strictly: the next message of that
//! context from that peer must carry the receive's tag, or the receive fails with
//! [`CommError::Mismatch`](super::CommError::Mismatch) naming both.
//! Ranks that disagree on which collective they are in, or on its root, then get an error as soon
//! as a message of the other crosses their path, instead of waiting for one that never comes or
//! taking it for their own.
//!
//! Nonblocking collectives (`coll::immediate`) have tags of their own, below every
//! blocking one ([`IMMEDIATE`]): each carries the collective's sequence number on its
//! communicator and its kind. Several may be in flight at once, so they are not strict: a
//! receive of one takes its own messages whatever other collectives' messages came first, and a
//! blocking collective's receive looks past them. A message with the receive's sequence number
//! but another kind means the ranks issued different collectives as that number, and fails the
//! receive with [`CommError::Mismatch`](super::CommError::Mismatch).

use std::ops::Range;

use super::MAX_RANKS;

/// Kinds per root: the tag of kind `k` (a value from -2 down to -(KINDS + 1)) with root `r` is
/// `k - KINDS * r`.
const KINDS: i32 = 16;

pub const BARRIER: i32 = -2;
pub const BCAST: i32 = -3;
pub const REDUCE: i32 = -4;
pub const REDUCE_DONE: i32 = -5;
pub const REDUCE_RESULT: i32 = -6;
pub const ALLREDUCE: i32 = -7;
pub const GATHER: i32 = -8;
pub const SCATTER: i32 = -9;
pub const ALLGATHER: i32 = -10;
pub const ALLTOALL: i32 = -11;
/// The messages that make a new communicator (its members, its id).
pub const AGREE: i32 = -12;
pub const SCAN: i32 = -13;
pub const EXSCAN: i32 = -14;
pub const REDUCE_SCATTER: i32 = -15;
/// A reduce-scatter's single-copy steps: the parent has finished reading a child's buffer.
pub const REDUCE_SCATTER_DONE: i32 = -16;

/// Every tag a blocking collective may use.
pub const RESERVED: Range<i32> = (-1 - KINDS * (MAX_RANKS as i32 + 1))..-1;

/// Kinds of nonblocking collectives: the low [`IMMEDIATE_KIND_BITS`] bits of their tags.
pub mod immediate {
    pub const BARRIER: i32 = 1;
    pub const BCAST: i32 = 2;
    pub const REDUCE: i32 = 3;
    pub const ALLREDUCE: i32 = 4;
    pub const GATHER: i32 = 5;
    pub const SCATTER: i32 = 6;
    pub const ALLGATHER: i32 = 7;
    pub const ALLTOALL: i32 = 8;
    pub const SCAN: i32 = 9;
    pub const EXSCAN: i32 = 10;
    pub const REDUCE_SCATTER: i32 = 11;
}

/// Bits of a nonblocking collective's tag that hold its kind.
const IMMEDIATE_KIND_BITS: u32 = 5;

/// Sequence numbers of nonblocking collectives wrap at this many: two collectives in flight at
/// once on one communicator are never this many apart.
pub const IMMEDIATE_SEQUENCES: u32 = 1 << 25;

/// Every tag a nonblocking collective may use: disjoint from [`RESERVED`] and from user tags.
pub const IMMEDIATE: Range<i32> =
    i32::MIN..i32::MIN + ((IMMEDIATE_SEQUENCES as i32) << IMMEDIATE_KIND_BITS);

/// The tag of the nonblocking collective number `seq` on its communicator, of kind `kind` (one
/// of [`immediate`]'s).
pub fn immediate_tag(seq: u32, kind: i32) -> i32 {
    let seq = (seq % IMMEDIATE_SEQUENCES) as i32;
    i32::MIN + (seq << IMMEDIATE_KIND_BITS | kind)
}

/// Whether `tag` is a nonblocking collective's.
pub fn is_immediate(tag: i32) -> bool {
    IMMEDIATE.contains(&tag)
}

/// Whether `ours` and `theirs` are tags of different nonblocking collectives issued with the
/// same sequence number: the ranks disagree on which collective that is.
pub fn immediate_conflict(ours: i32, theirs: i32) -> bool {
    is_immediate(ours)
        && is_immediate(theirs)
        && ours != theirs
        && (ours >> IMMEDIATE_KIND_BITS) == (theirs >> IMMEDIATE_KIND_BITS)
}

/// The tag of collective `kind` with root `root`.
pub fn rooted(kind: i32, root: i32) -> i32 {
    kind - KINDS * root
}

/// What a collective tag stands for, for error messages: "a broadcast from root 3".
pub fn describe(tag: i32) -> String {
    if is_immediate(tag) {
        return describe_immediate(tag);
    }
    if !RESERVED.contains(&tag) {
        return format!("tag {tag}");
    }
    let kind = -2 - (-2 - tag) % KINDS;
    let root = (kind - tag) / KINDS;
    let name = match kind {
        BARRIER => "a barrier",
        BCAST => "a broadcast",
        REDUCE | REDUCE_DONE | REDUCE_RESULT => "a reduce",
        ALLREDUCE => "an all-reduce",
        GATHER => "a gather",
        SCATTER => "a scatter",
        ALLGATHER => "an all-gather",
        ALLTOALL => "an all-to-all",
        AGREE => "the making of a communicator",
        SCAN => "a scan",
        EXSCAN => "an exclusive scan",
        REDUCE_SCATTER | REDUCE_SCATTER_DONE => "a reduce-scatter",
        _ => return format!("collective tag {tag}"),
    };
    match kind {
        BCAST | REDUCE | REDUCE_DONE | REDUCE_RESULT | GATHER | SCATTER => {
            format!("{name} to or from root {root}")
        }
        _ => name.to_string(),
    }
}

/// "a nonblocking all-reduce (number 7 on its communicator)".
fn describe_immediate(tag: i32) -> String {
    let offset = tag.wrapping_sub(i32::MIN);
    let (seq, kind) = (
        offset >> IMMEDIATE_KIND_BITS,
        offset & ((1 << IMMEDIATE_KIND_BITS) - 1),
    );
    let name = match kind {
        immediate::BARRIER => "barrier",
        immediate::BCAST => "broadcast",
        immediate::REDUCE => "reduce",
        immediate::ALLREDUCE => "all-reduce",
        immediate::GATHER => "gather",
        immediate::SCATTER => "scatter",
        immediate::ALLGATHER => "all-gather",
        immediate::ALLTOALL => "all-to-all",
        immediate::SCAN => "scan",
        immediate::EXSCAN => "exclusive scan",
        immediate::REDUCE_SCATTER => "reduce-scatter",
        _ => "collective",
    };
    format!("a nonblocking {name} (number {seq} on its communicator)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_their_collective_and_root() {
        assert_eq!(describe(rooted(BCAST, 0)), "a broadcast to or from root 0");
        assert_eq!(
            describe(rooted(BCAST, 4095)),
            "a broadcast to or from root 4095"
        );
        assert_eq!(
            describe(rooted(REDUCE_RESULT, 7)),
            "a reduce to or from root 7"
        );
        assert_eq!(describe(ALLTOALL), "an all-to-all");
        assert_eq!(describe(EXSCAN), "an exclusive scan");
        assert_eq!(describe(REDUCE_SCATTER_DONE), "a reduce-scatter");
        assert!(RESERVED.contains(&rooted(SCATTER, MAX_RANKS as i32 - 1)));
        assert!(!RESERVED.contains(&-1) && !RESERVED.contains(&0));
        // Nonblocking collectives' tags are apart from the blocking ones' and the users'.
        const { assert!(IMMEDIATE.end <= RESERVED.start) };
        let last = immediate_tag(IMMEDIATE_SEQUENCES - 1, immediate::REDUCE_SCATTER);
        assert!(is_immediate(last) && !is_immediate(RESERVED.start) && !is_immediate(0));
        assert_eq!(
            immediate_tag(IMMEDIATE_SEQUENCES + 3, 4),
            immediate_tag(3, 4)
        );
        assert_eq!(
            describe(immediate_tag(7, immediate::ALLREDUCE)),
            "a nonblocking all-reduce (number 7 on its communicator)"
        );
        let (a, b) = (
            immediate_tag(9, immediate::BCAST),
            immediate_tag(9, immediate::BARRIER),
        );
        assert!(immediate_conflict(a, b) && !immediate_conflict(a, a));
        assert!(!immediate_conflict(
            a,
            immediate_tag(10, immediate::BARRIER)
        ));
        // Every (kind, root) pair has its own tag.
        let mut seen = std::collections::HashSet::new();
        for kind in [BCAST, REDUCE, REDUCE_DONE, REDUCE_RESULT, GATHER, SCATTER] {
            for root in [0, 1, 2, 15, 16, 17, 4095] {
                assert!(seen.insert(rooted(kind, root)));
            }
        }
    }
}
