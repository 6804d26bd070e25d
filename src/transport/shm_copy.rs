//! `shm-copy`: the classic double copy, pipelined. The sender copies chunks into a ring of
//! cache-sized slots in the shared segment while the receiver copies earlier slots out, so both
//! cores copy at once and the ring stays in cache.

use std::io::{IoSlice, IoSliceMut};

use super::channel::Link;
use super::{Transport, TransportError, window_dst, window_src};
use crate::shm;

/// Double copy through shared memory.
#[derive(Debug, Clone, Copy)]
pub struct ShmCopy;

impl Transport for ShmCopy {
    fn name(&self) -> &'static str {
        "shm-copy"
    }

    fn unavailable(&self) -> Option<String> {
        None
    }

    fn send(&self, link: &Link, src: &[IoSlice<'_>]) -> Result<(), TransportError> {
        let total: usize = src.iter().map(|s| s.len()).sum();
        link.send_flow(4, src, false, &|k, _| {
            let lane = link.out_lane();
            let (segment, ring) = link.ring(true);
            let cfg = link.config();
            let slots = cfg.slots as u32;
            let mut produced = lane.produced.load();
            let mut at = 0;
            while at < total {
                // Wait for a free slot: fewer than `slots` filled and not yet emptied.
                link.wait_until(
                    &lane.consumed,
                    |c| produced.wrapping_sub(c) < slots,
                    || link.receiver_gave_up(k),
                )?;
                let len = cfg.slot_bytes.min(total - at);
                let mut offset = ring + (produced % slots) as usize * cfg.slot_bytes;
                for piece in window_src(src, at, len) {
                    // SAFETY: the slot is ours until we publish it: the receiver has emptied it
                    // (`consumed`, Acquire in `wait_until`) and reads it only after `produced`
                    // below (Release).
                    unsafe { shm::copy_in(segment, offset, &piece) };
                    offset += piece.len();
                }
                produced = produced.wrapping_add(1);
                lane.produced.set(produced);
                at += len;
            }
            Ok(())
        })
    }

    fn receive(&self, link: &Link, dst: &mut [IoSliceMut<'_>]) -> Result<usize, TransportError> {
        link.receive_flow(4, dst, None, &mut |k, offer, dst| {
            let lane = link.in_lane();
            let (segment, ring) = link.ring(false);
            let cfg = link.config();
            let slots = cfg.slots as u32;
            let mut consumed = lane.consumed.load();
            let mut at = 0;
            while at < offer.total {
                link.wait_until(&lane.produced, |p| p != consumed, || link.sender_gave_up(k))?;
                let len = cfg.slot_bytes.min(offer.total - at);
                let mut offset = ring + (consumed % slots) as usize * cfg.slot_bytes;
                for mut piece in window_dst(dst, at, len) {
                    // SAFETY: the sender filled this slot before ringing `produced` (Release,
                    // paired with the Acquire in `wait_until`) and will not touch it again until
                    // we ring `consumed` below.
                    unsafe { shm::copy_out(segment, offset, &mut piece) };
                    offset += piece.len();
                }
                consumed = consumed.wrapping_add(1);
                lane.consumed.set(consumed);
                at += len;
            }
            link.await_pushed(k)
        })
    }
}
