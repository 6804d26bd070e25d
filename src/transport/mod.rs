//! Every way to move bytes from one process to another, behind one trait.
//!
//! A [`Channel`] is created before the two processes part (it lives in a shared memfd segment, plus
//! a pipe per direction); each process then takes its [`Link`] end, naming its peer. A [`Transport`]
//! moves a list of the sender's buffers into a list of the receiver's buffers over a link: the
//! sender calls [`Transport::send`], the receiver [`Transport::receive`], with the same transport.
//!
//! | name | who copies | how |
//! | --- | --- | --- |
//! | `cma-read` | receiver | `process_vm_readv` from the sender's buffers, in chunks |
//! | `cma-write` | sender | `process_vm_writev` into the receiver's buffers, in chunks |
//! | `cma-split` | both | chunks claimed from a shared cursor: the receiver pulls, the sender pushes |
//! | `shm-copy` | both | double copy through a ring of cache-sized slots, pipelined |
//! | `procmem` | receiver | `preadv` on `/proc/PID/mem` |
//! | `vmsplice` | both | the sender `vmsplice`s its pages into a pipe, the receiver reads them |
//!
//! Every transfer ends with the receiver's verdict, so the sender never returns while its buffers
//! may still be read, and never reports success for bytes the receiver did not get. A peer that
//! dies is noticed through its pidfd within [`POLL_INTERVAL`]. After any error a link is poisoned.

mod channel;
mod cma;
pub use cma::chunk_bytes as cma_chunk_bytes;
mod procmem;
mod shm_copy;
mod vmsplice;

use std::io::{IoSlice, IoSliceMut};
use std::time::Duration;

pub use channel::{Channel, ChannelConfig, Link, Side};

use crate::vm::VmError;

/// How often a waiting side checks that its peer is still alive.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The names of every transport, in the order benchmarks list them.
pub const NAMES: [&str; 6] = [
    "cma-read",
    "cma-write",
    "cma-split",
    "shm-copy",
    "procmem",
    "vmsplice",
];

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A `vm` call failed (permission, bad address, ...).
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Creating the shared segment failed.
    #[error(transparent)]
    Shm(#[from] crate::shm::ShmError),
    /// The peer process exited before the transfer completed.
    #[error("peer process {pid} exited before the transfer completed")]
    PeerGone {
        /// The peer's pid.
        pid: i32,
    },
    /// The sender offered more bytes than the receiver's buffers hold.
    #[error("message of {sent} bytes does not fit the receive buffers ({capacity} bytes)")]
    Truncated {
        /// Bytes offered.
        sent: u64,
        /// Bytes the receiver could take.
        capacity: u64,
    },
    /// The peer broke the protocol (wrong transport, corrupt control data) or reported a failure.
    #[error("protocol error with peer {pid}: {what}")]
    Protocol {
        /// The peer's pid.
        pid: i32,
        /// What went wrong.
        what: String,
    },
    /// A system call other than CMA failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// The transport name is not known.
    #[error(
        "unknown transport '{0}'; known: cma-read, cma-write, cma-split, shm-copy, procmem, vmsplice"
    )]
    UnknownTransport(String),
    /// The link failed earlier and can no longer be trusted.
    #[error("the link failed earlier ({0}); create a new channel")]
    Poisoned(String),
}

/// A mechanism that moves the sender's buffers into the receiver's buffers.
pub trait Transport: Send + Sync {
    /// The name used in CLI options and output (see [`NAMES`]).
    fn name(&self) -> &'static str;

    /// Why this transport cannot work between this process and its children here, if it cannot.
    fn unavailable(&self) -> Option<String>;

    /// The sender's half: moves all of `src` to the peer; returns once the peer has it.
    fn send(&self, link: &Link, src: &[IoSlice<'_>]) -> Result<(), TransportError>;

    /// The receiver's half: fills `dst` from the peer's message; returns the message length.
    fn receive(&self, link: &Link, dst: &mut [IoSliceMut<'_>]) -> Result<usize, TransportError>;
}

/// The transport with this name.
pub fn by_name(name: &str) -> Result<Box<dyn Transport>, TransportError> {
    Ok(match name {
        "cma-read" => Box::new(cma::CmaRead),
        "cma-write" => Box::new(cma::CmaWrite),
        "cma-split" => Box::new(cma::CmaSplit),
        "shm-copy" => Box::new(shm_copy::ShmCopy),
        "procmem" => Box::new(procmem::ProcMem),
        "vmsplice" => Box::new(vmsplice::Vmsplice),
        other => return Err(TransportError::UnknownTransport(other.to_string())),
    })
}

/// Every transport, in [`NAMES`] order.
pub fn all() -> Vec<Box<dyn Transport>> {
    NAMES.iter().filter_map(|n| by_name(n).ok()).collect()
}

/// Something with a length that can be cut to a sub-range: a byte slice or a remote range.
pub(crate) trait Piece: Sized {
    fn length(&self) -> usize;
    fn cut(self, from: usize, to: usize) -> Self;
}

impl Piece for &[u8] {
    fn length(&self) -> usize {
        self.len()
    }
    fn cut(self, from: usize, to: usize) -> Self {
        &self[from..to]
    }
}

impl Piece for &mut [u8] {
    fn length(&self) -> usize {
        self.len()
    }
    fn cut(self, from: usize, to: usize) -> Self {
        &mut self[from..to]
    }
}

impl Piece for crate::vm::RemoteRange {
    fn length(&self) -> usize {
        self.len
    }
    fn cut(self, from: usize, to: usize) -> Self {
        crate::vm::RemoteRange::new(self.addr + from, to - from)
    }
}

/// The parts of `pieces` covering bytes `[offset, offset + len)` of their concatenation, in order,
/// without empty parts.
pub(crate) fn window<P: Piece>(
    pieces: impl IntoIterator<Item = P>,
    offset: usize,
    len: usize,
) -> Vec<P> {
    let end = offset + len;
    let mut pos = 0;
    let mut out = Vec::new();
    for p in pieces {
        let (start, stop) = (pos, pos + p.length());
        pos = stop;
        if start >= end {
            break;
        }
        if stop <= offset || start == stop {
            continue;
        }
        out.push(p.cut(
            offset.saturating_sub(start),
            (end - start).min(stop - start),
        ));
    }
    out
}

/// The sender's buffers covering `[offset, offset + len)`.
pub(crate) fn window_src<'a>(
    bufs: &'a [IoSlice<'_>],
    offset: usize,
    len: usize,
) -> Vec<IoSlice<'a>> {
    window(bufs.iter().map(|b| &**b), offset, len)
        .into_iter()
        .map(IoSlice::new)
        .collect()
}

/// The receiver's buffers covering `[offset, offset + len)`.
pub(crate) fn window_dst<'a>(
    bufs: &'a mut [IoSliceMut<'_>],
    offset: usize,
    len: usize,
) -> Vec<IoSliceMut<'a>> {
    window(bufs.iter_mut().map(|b| &mut **b), offset, len)
        .into_iter()
        .map(IoSliceMut::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::RemoteRange;

    #[test]
    fn window_cuts_across_pieces() {
        let r = [
            RemoteRange::new(100, 10),
            RemoteRange::new(0, 0),
            RemoteRange::new(500, 10),
        ];
        assert_eq!(
            window(r, 5, 10),
            vec![RemoteRange::new(105, 5), RemoteRange::new(500, 5)]
        );
        assert_eq!(window(r, 20, 5), vec![]);
        assert_eq!(window(r, 0, 0), vec![]);
        let a = [1u8, 2, 3];
        let b = [4u8, 5];
        let src = [IoSlice::new(&a), IoSlice::new(&b)];
        let w = window_src(&src, 2, 2);
        assert_eq!((&*w[0], &*w[1]), (&[3u8][..], &[4u8][..]));
    }
}
