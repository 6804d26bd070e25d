//! The three single-copy transports on Cross Memory Attach: the receiver pulls (`cma-read`), the
//! sender pushes (`cma-write`), or both at once on chunks claimed from a shared cursor
//! (`cma-split`), so that both finish together whatever their relative speed.

use std::io::{IoSlice, IoSliceMut};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use super::channel::{Link, PeerOffer};
use super::{Transport, TransportError, window, window_dst, window_src};
use crate::vm::RemoteRange;

/// Bytes per CMA call. One call over a whole large buffer is much slower than the same bytes in
/// cache-friendly pieces (see BENCHMARKS.md); `ONECOPY_CMA_CHUNK_BYTES` overrides it.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// The chunk size in force.
pub fn chunk_bytes() -> usize {
    static CHUNK: crate::tools::Setting = crate::tools::Setting::new();
    CHUNK.get(|| {
        std::env::var("ONECOPY_CMA_CHUNK_BYTES")
            .ok()
            .and_then(|v| crate::tools::parse_number(&v).ok())
            .filter(|&v| (4096..=1 << 30).contains(&v))
            .unwrap_or(DEFAULT_CHUNK_BYTES)
    })
}

/// Why CMA cannot be used between this process and a child, if it cannot.
fn cma_unavailable() -> Option<String> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| {
        let cap = crate::vm::probe();
        if cap.usable() {
            None
        } else {
            Some(cap.advice.join("; "))
        }
    })
    .clone()
}

/// Pulls bytes `[from, to)` of the peer's `remote` ranges into the same bytes of `dst`.
fn pull(
    link: &Link,
    remote: &[RemoteRange],
    dst: &mut [IoSliceMut<'_>],
    from: usize,
    to: usize,
) -> Result<(), TransportError> {
    let chunk = chunk_bytes();
    let mut at = from;
    while at < to {
        let len = chunk.min(to - at);
        let r = window(remote.iter().copied(), at, len);
        let n = link
            .peer()
            .read_vectored(&mut window_dst(dst, at, len), &r)?;
        if n != len {
            return Err(link.protocol(format!("moved {n} of {len} bytes")));
        }
        at += len;
    }
    Ok(())
}

/// Pushes bytes `[from, to)` of `src` into the same bytes of the peer's `remote` ranges.
fn push(
    link: &Link,
    src: &[IoSlice<'_>],
    remote: &[RemoteRange],
    from: usize,
    to: usize,
) -> Result<(), TransportError> {
    let chunk = chunk_bytes();
    let mut at = from;
    while at < to {
        let len = chunk.min(to - at);
        let r = window(remote.iter().copied(), at, len);
        let n = link.peer().write_vectored(&window_src(src, at, len), &r)?;
        if n != len {
            return Err(link.protocol(format!("moved {n} of {len} bytes")));
        }
        at += len;
    }
    Ok(())
}

/// The receiver pulls with `process_vm_readv`.
#[derive(Debug, Clone, Copy)]
pub struct CmaRead;

impl Transport for CmaRead {
    fn name(&self) -> &'static str {
        "cma-read"
    }

    fn unavailable(&self) -> Option<String> {
        cma_unavailable()
    }

    fn send(&self, link: &Link, src: &[IoSlice<'_>]) -> Result<(), TransportError> {
        link.send_flow(1, src, false, &|_, _| Ok(()))
    }

    fn receive(&self, link: &Link, dst: &mut [IoSliceMut<'_>]) -> Result<usize, TransportError> {
        let fetch = |addr, t: &mut [RemoteRange]| link.fetch_table_cma(addr, t);
        link.receive_flow(1, dst, Some(&fetch), &mut |_, offer, dst| {
            pull(link, &offer.table, dst, 0, offer.total)
        })
    }
}

/// The sender pushes with `process_vm_writev`.
#[derive(Debug, Clone, Copy)]
pub struct CmaWrite;

impl Transport for CmaWrite {
    fn name(&self) -> &'static str {
        "cma-write"
    }

    fn unavailable(&self) -> Option<String> {
        cma_unavailable()
    }

    fn send(&self, link: &Link, src: &[IoSlice<'_>]) -> Result<(), TransportError> {
        let total = src.iter().map(|s| s.len()).sum();
        link.send_flow(2, src, true, &|_, want: &PeerOffer| {
            push(link, src, &want.table, 0, total)
        })
    }

    fn receive(&self, link: &Link, dst: &mut [IoSliceMut<'_>]) -> Result<usize, TransportError> {
        link.receive_flow(2, dst, None, &mut |k, _, _| link.await_pushed(k))
    }
}

/// Both sides copy at once: chunks are claimed from a shared cursor, the receiver pulling the
/// ones it claims and the sender pushing the others.
#[derive(Debug, Clone, Copy)]
pub struct CmaSplit;

impl Transport for CmaSplit {
    fn name(&self) -> &'static str {
        "cma-split"
    }

    fn unavailable(&self) -> Option<String> {
        cma_unavailable()
    }

    fn send(&self, link: &Link, src: &[IoSlice<'_>]) -> Result<(), TransportError> {
        let total: usize = src.iter().map(|s| s.len()).sum();
        link.send_flow(3, src, true, &|k, want: &PeerOffer| {
            let cursor = &link.out_lane().cursor;
            while let Some((from, to)) = claim(cursor, total) {
                if let Some(e) = link.receiver_gave_up(k) {
                    return Err(e);
                }
                push(link, src, &want.table, from, to)?;
            }
            Ok(())
        })
    }

    fn receive(&self, link: &Link, dst: &mut [IoSliceMut<'_>]) -> Result<usize, TransportError> {
        let fetch = |addr, t: &mut [RemoteRange]| link.fetch_table_cma(addr, t);
        link.receive_flow(3, dst, Some(&fetch), &mut |k, offer, dst| {
            let cursor = &link.in_lane().cursor;
            while let Some((from, to)) = claim(cursor, offer.total) {
                pull(link, &offer.table, dst, from, to)?;
            }
            // The sender's chunks have landed once it says so.
            link.await_pushed(k)
        })
    }
}

/// Claims the next chunk of a `total`-byte transfer: its byte range, or `None` when all are taken.
fn claim(cursor: &std::sync::atomic::AtomicU64, total: usize) -> Option<(usize, usize)> {
    let chunk = chunk_bytes();
    // Relaxed: the counter only divides the work; the data is published by the verdicts.
    let index = cursor.fetch_add(1, Ordering::Relaxed) as usize;
    let from = index.checked_mul(chunk).filter(|&f| f < total)?;
    Some((from, (from + chunk).min(total)))
}
