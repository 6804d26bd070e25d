//! `shm-copy`: the pipelined double copy. The sender copies a piece of its message into a free
//! cache-sized slot of the shared segment and announces it; the receiver copies it out and frees
//! the slot; both work at once on different slots, so the two copies overlap. The slots are the
//! pair's eager slots in the job's segment, and the announcements are ring records: both belong
//! to the runtime (`comm::engine`). This module is the copying itself.

use crate::shm::Segment;

/// Streamed messages at least this large are copied out of the slots with non-temporal stores:
/// they do not fit the caches anyway, and ordinary stores would first read every destination
/// line from memory.
pub const STREAMING_STORES_FROM: usize = 16 << 20;

/// Copies `src` into the slot at `offset` of `segment`.
///
/// # Safety
/// The slot is the caller's: free, and not announced to the receiver until this returns.
pub unsafe fn fill(segment: &Segment, offset: usize, src: &[u8]) {
    // SAFETY: the caller's contract.
    unsafe { crate::shm::copy_in(segment, offset, src) }
}

/// Copies the slot at `offset` into `dst`, a piece of a `message_len`-byte message, with
/// non-temporal stores when the whole message is too large to stay in cache.
///
/// # Safety
/// The slot was filled and announced, and stays the caller's until it frees it after this.
pub unsafe fn empty(segment: &Segment, offset: usize, dst: &mut [u8], message_len: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        if message_len >= STREAMING_STORES_FROM {
            crate::shm::copy_out_streaming(segment, offset, dst)
        } else {
            crate::shm::copy_out(segment, offset, dst)
        }
    }
}
