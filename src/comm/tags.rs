//! The tags of collectives' messages. They travel in each communicator's collective context, so
//! no point-to-point receive ever takes them; the tag names the collective (and its root).
//!
//! The runtime treats a receive in a collective context strictly: the next message of that
//! context from that peer must carry the receive's tag, or the receive fails with
//! [`CommError::Mismatch`](super::CommError::Mismatch) naming both.
//! Ranks that disagree on which collective they are in, or on its root, then get an error as soon
//! as a message of the other crosses their path, instead of waiting for one that never comes or
//! taking it for their own.

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

/// Every tag a collective may use.
pub const RESERVED: Range<i32> = (-1 - KINDS * (MAX_RANKS as i32 + 1))..-1;

/// The tag of collective `kind` with root `root`.
pub fn rooted(kind: i32, root: i32) -> i32 {
    kind - KINDS * root
}

/// What a collective tag stands for, for error messages: "a broadcast from root 3".
pub fn describe(tag: i32) -> String {
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
        // Every (kind, root) pair has its own tag.
        let mut seen = std::collections::HashSet::new();
        for kind in [BCAST, REDUCE, REDUCE_DONE, REDUCE_RESULT, GATHER, SCATTER] {
            for root in [0, 1, 2, 15, 16, 17, 4095] {
                assert!(seen.insert(rooted(kind, root)));
            }
        }
    }
}
