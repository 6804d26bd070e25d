//! The three single-copy mechanisms on Cross Memory Attach: the receiver pulls (`cma-read`), the
//! sender pushes (`cma-write`), or both at once on chunks claimed from a shared cursor
//! (`cma-split`), so that both finish together whatever their relative speed.
//!
//! Transfers go in chunks of a configured size ([`crate::config::Config::cma_chunk_bytes`]): one
//! call over a whole large buffer leaves the other side nothing to overlap with, and a chunk of
//! about 1 MiB measured as fast as larger ones (BENCHMARKS.md).

use std::io::{IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{TransportError, window, window_dst, window_src};
use crate::vm::{Process, RemoteRange};

/// Pulls bytes `[from, to)` of the peer's `remote` ranges into the same bytes of `dst`, in calls
/// of at most `chunk` bytes; fails unless every byte moved.
pub fn pull(
    peer: &Process,
    remote: &[RemoteRange],
    dst: &mut [IoSliceMut<'_>],
    from: usize,
    to: usize,
    chunk: usize,
) -> Result<(), TransportError> {
    let mut at = from;
    while at < to {
        let len = chunk.max(1).min(to - at);
        let r = window(remote.iter().copied(), at, len);
        let n = peer.read_vectored(&mut window_dst(dst, at, len), &r)?;
        if n != len {
            return Err(TransportError::Short {
                moved: at - from + n,
                wanted: to - from,
            });
        }
        at += len;
    }
    Ok(())
}

/// Pushes bytes `[from, to)` of `src` into the same bytes of the peer's `remote` ranges, in calls
/// of at most `chunk` bytes; fails unless every byte moved.
pub fn push(
    peer: &Process,
    src: &[IoSlice<'_>],
    remote: &[RemoteRange],
    from: usize,
    to: usize,
    chunk: usize,
) -> Result<(), TransportError> {
    let mut at = from;
    while at < to {
        let len = chunk.max(1).min(to - at);
        let r = window(remote.iter().copied(), at, len);
        let n = peer.write_vectored(&window_src(src, at, len), &r)?;
        if n != len {
            return Err(TransportError::Short {
                moved: at - from + n,
                wanted: to - from,
            });
        }
        at += len;
    }
    Ok(())
}

/// Claims the next `chunk`-byte piece of a `total`-byte transfer from a cursor both sides share:
/// its byte range, or `None` when all are taken (`cma-split`).
pub fn claim(cursor: &AtomicU64, total: usize, chunk: usize) -> Option<(usize, usize)> {
    // Relaxed: the cursor only divides the work; the data is published by the records that
    // report each side's part done.
    let index = cursor.fetch_add(1, Ordering::Relaxed) as usize;
    let from = index.checked_mul(chunk.max(1)).filter(|&f| f < total)?;
    Some((from, (from + chunk.max(1)).min(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_cover_the_transfer_once() {
        let cursor = AtomicU64::new(0);
        let mut got = Vec::new();
        while let Some(r) = claim(&cursor, 10, 4) {
            got.push(r);
        }
        assert_eq!(got, [(0, 4), (4, 8), (8, 10)]);
        assert_eq!(claim(&cursor, 10, 4), None);
        assert_eq!(claim(&AtomicU64::new(0), 0, 4), None);
    }

    #[test]
    fn pulls_from_this_process_scatter_across_buffers() {
        // Reading one's own memory needs no permission: enough to check the windows.
        let me = Process::from_pid(std::process::id() as i32).expect("self");
        let src: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let remote = [
            RemoteRange::new(src.as_ptr() as usize, 3000),
            RemoteRange::new(src.as_ptr() as usize + 3000, 7000),
        ];
        let (mut a, mut b) = (vec![0u8; 4097], vec![0u8; 10_000 - 4097]);
        let mut dst = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
        pull(&me, &remote, &mut dst, 0, 5000, 1000).expect("first part");
        pull(&me, &remote, &mut dst, 5000, 10_000, 999).expect("second part");
        let joined: Vec<u8> = a.iter().chain(&b).copied().collect();
        assert_eq!(joined, src);
        let bad = [RemoteRange::new(8, 100)];
        let mut one = [IoSliceMut::new(&mut a[..100])];
        assert!(pull(&me, &bad, &mut one, 0, 100, 64).is_err());
    }
}
