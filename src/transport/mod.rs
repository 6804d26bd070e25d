//! How bytes move between two processes: the mechanisms, each written once, over iovec lists on
//! both sides. The runtime ([`crate::comm`]) calls them to move every rendezvous message, and
//! `onecopy bench mechanisms` measures them through the runtime, so what is measured is what
//! runs.
//!
//! | name | who copies | how | module |
//! | --- | --- | --- | --- |
//! | `cma-read` | receiver | `process_vm_readv` from the sender's buffers, in chunks | [`cma`] |
//! | `cma-write` | sender | `process_vm_writev` into the receiver's buffers, in chunks | [`cma`] |
//! | `cma-split` | both | chunks claimed from a shared cursor: the receiver pulls, the sender pushes | [`cma`] |
//! | `shm-copy` | both | double copy through cache-sized shared-memory slots, pipelined | [`shm_copy`] |
//! | `procmem` | receiver | `preadv` on `/proc/PID/mem` | [`procmem`] |
//! | `vmsplice` | both | the sender `vmsplice`s its pages into a pipe, the receiver reads them | [`vmsplice`] |
//!
//! This layer moves bytes and reports exactly how many moved; it does not decide which mechanism
//! a message takes, nor tell the other side anything: the runtime's protocol does both
//! (`comm::engine`). Every mechanism but `shm-copy` reaches into the peer's memory and needs
//! ptrace access to it ([`Mechanism::needs_peer_access`]).

pub mod auto;
pub mod cma;
pub mod procmem;
pub mod shm_copy;
pub mod vmsplice;

use std::io::{IoSlice, IoSliceMut};
use std::time::Duration;

use crate::vm::VmError;

/// How often a waiting side checks that its peer is still alive.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Every way this crate knows to move a message's bytes between two processes: the one
/// vocabulary of `onecopy run --transport`, `onecopy bench` and the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// The receiver pulls with `process_vm_readv`.
    CmaRead,
    /// The sender pushes with `process_vm_writev`.
    CmaWrite,
    /// Both copy at once, on chunks claimed from a shared cursor.
    CmaSplit,
    /// Pipelined double copy through cache-sized shared-memory slots.
    ShmCopy,
    /// The receiver reads `/proc/PID/mem`.
    ProcMem,
    /// The sender `vmsplice`s its pages into a pipe that the receiver reads.
    Vmsplice,
}

impl Mechanism {
    /// Every mechanism, in the order benchmarks list them.
    pub const ALL: [Mechanism; 6] = [
        Mechanism::CmaRead,
        Mechanism::CmaWrite,
        Mechanism::CmaSplit,
        Mechanism::ShmCopy,
        Mechanism::ProcMem,
        Mechanism::Vmsplice,
    ];

    /// The name used in options and output.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::CmaRead => "cma-read",
            Mechanism::CmaWrite => "cma-write",
            Mechanism::CmaSplit => "cma-split",
            Mechanism::ShmCopy => "shm-copy",
            Mechanism::ProcMem => "procmem",
            Mechanism::Vmsplice => "vmsplice",
        }
    }

    /// The mechanism called `name`.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether it reaches into the peer's memory, which needs ptrace access to it (every
    /// mechanism but `shm-copy`).
    pub fn needs_peer_access(self) -> bool {
        self != Mechanism::ShmCopy
    }

    /// Whether it is one of the `cma-*` mechanisms (`process_vm_readv`/`process_vm_writev`),
    /// which one ptrace check admits alike.
    pub fn is_cma(self) -> bool {
        matches!(
            self,
            Mechanism::CmaRead | Mechanism::CmaWrite | Mechanism::CmaSplit
        )
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The names of every mechanism, in the order benchmarks list them.
pub const NAMES: [&str; 6] = [
    "cma-read",
    "cma-write",
    "cma-split",
    "shm-copy",
    "procmem",
    "vmsplice",
];

/// The transport a job asks its ranks to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportChoice {
    /// Let the runtime choose (single copy when the machine allows it).
    #[default]
    Auto,
    /// This mechanism for every rendezvous message.
    Named(Mechanism),
}

/// A transport name that is neither `auto` nor a [`Mechanism`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown transport '{0}'; use auto or one of: cma-read, cma-write, cma-split, shm-copy, procmem, vmsplice"
)]
pub struct UnknownTransport(pub String);

impl std::str::FromStr for TransportChoice {
    type Err = UnknownTransport;

    fn from_str(s: &str) -> Result<Self, UnknownTransport> {
        if s == "auto" {
            return Ok(TransportChoice::Auto);
        }
        Mechanism::from_name(s)
            .map(TransportChoice::Named)
            .ok_or_else(|| UnknownTransport(s.to_string()))
    }
}

impl std::fmt::Display for TransportChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportChoice::Auto => f.write_str("auto"),
            TransportChoice::Named(m) => f.write_str(m.name()),
        }
    }
}

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A `vm` call failed (permission, bad address, a process that is gone, ...).
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Fewer bytes moved than asked for, without an error from the kernel.
    #[error("moved {moved} of {wanted} bytes")]
    Short {
        /// Bytes moved.
        moved: usize,
        /// Bytes asked for.
        wanted: usize,
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
}

impl TransportError {
    pub(crate) fn io(op: &'static str, e: rustix::io::Errno) -> TransportError {
        TransportError::Io {
            op,
            source: e.into(),
        }
    }
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
