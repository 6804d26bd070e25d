//! `vmsplice`: the sender maps its pages into a pipe with `vmsplice` (no copy on its side), the
//! receiver copies them out with `readv`. The pipe holds at most its capacity, so a large message
//! takes many rounds, each side moving what the pipe allows and coming back later. The sender's
//! pages stay referenced by the pipe until read, so it may not reuse its buffer before the
//! receiver says it has read everything.
//!
//! The sender owns the pipe; the receiver takes a duplicate of its read end with `pidfd_getfd`
//! (Linux 5.6), which needs the same ptrace access as CMA.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use rustix::pipe::{IoSliceRaw, PipeFlags, SpliceFlags};

use super::TransportError;
use crate::vm::split::IOV_MAX;
use crate::vm::{Process, VmError};

/// A pipe whose write end the sender fills and whose read end the receiver fetches.
#[derive(Debug)]
pub struct Pipe {
    /// The read end, which the receiver duplicates by number.
    pub read: OwnedFd,
    /// The write end, non-blocking.
    pub write: OwnedFd,
}

impl Pipe {
    /// A non-blocking pipe asked to hold `bytes` (the kernel may round, or refuse more than
    /// `/proc/sys/fs/pipe-max-size`; then it keeps its default).
    pub fn new(bytes: usize) -> Result<Pipe, TransportError> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)
            .map_err(|e| TransportError::io("pipe", e))?;
        // Best effort: a smaller pipe only means more rounds.
        let _ = rustix::pipe::fcntl_setpipe_size(&write, bytes);
        Ok(Pipe { read, write })
    }

    /// The descriptor number of the read end, for the receiver.
    pub fn read_fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.read.as_raw_fd()
    }
}

/// A duplicate of descriptor `fd` of `peer` (the read end of its pipe), checked to be a pipe and
/// made non-blocking, so that a peer naming another descriptor can never make a read block.
pub fn fetch(peer: &Process, fd: RawFd) -> Result<OwnedFd, TransportError> {
    let fetched = fetch_any(peer, fd)?;
    let stat = rustix::fs::fstat(&fetched).map_err(|e| TransportError::io("fstat", e))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Fifo {
        return Err(TransportError::Io {
            op: "taking the peer's pipe",
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("descriptor {fd} of process {} is not a pipe", peer.pid()),
            ),
        });
    }
    rustix::fs::fcntl_setfl(&fetched, rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| TransportError::io("fcntl(O_NONBLOCK)", e))?;
    Ok(fetched)
}

/// A duplicate of any descriptor `fd` of `peer`: what a rank probes at start-up.
pub fn fetch_any(peer: &Process, fd: RawFd) -> Result<OwnedFd, TransportError> {
    rustix::process::pidfd_getfd(peer.pidfd(), fd, rustix::process::PidfdGetfdFlags::empty())
        .map_err(|e| match e {
            rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => {
                TransportError::Vm(VmError::PermissionDenied {
                    pid: peer.pid(),
                    reason: crate::vm::diagnose_denial(peer.pid()),
                })
            }
            rustix::io::Errno::SRCH => TransportError::Vm(VmError::NoSuchProcess {
                pid: peer.pid(),
                why: "has exited",
            }),
            rustix::io::Errno::NOSYS => TransportError::Vm(VmError::Unsupported {
                what: "pidfd_getfd (Linux 5.6)",
            }),
            e => TransportError::io("pidfd_getfd", e),
        })
}

/// Maps as much of `src` as the pipe takes now into it; the bytes taken (0 when it is full).
///
/// # Safety
/// Without `SPLICE_F_GIFT` the pipe only references the caller's pages: they must stay mapped
/// and unchanged until the receiver has read them.
pub unsafe fn splice_some(
    pipe: BorrowedFd<'_>,
    src: &[IoSlice<'_>],
) -> Result<usize, TransportError> {
    let raw: Vec<IoSliceRaw<'_>> = src
        .iter()
        .take(IOV_MAX)
        .map(|s| IoSliceRaw::from_slice(s))
        .collect();
    // SAFETY: the caller's contract keeps the pages alive and unchanged while referenced.
    match unsafe { rustix::pipe::vmsplice(pipe, &raw, SpliceFlags::NONBLOCK) } {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => Ok(0),
        Err(e) => Err(TransportError::io("vmsplice", e)),
    }
}

/// Reads what the pipe holds now into `dst`: `Some(n)` bytes, `Some(0)` at end of file (every
/// write end closed: the sender is gone), `None` when it is empty.
pub fn read_some(
    pipe: impl AsFd,
    dst: &mut [IoSliceMut<'_>],
) -> Result<Option<usize>, TransportError> {
    let n = dst.len().min(IOV_MAX);
    match rustix::io::readv(pipe, &mut dst[..n]) {
        Ok(n) => Ok(Some(n)),
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => Ok(None),
        Err(e) => Err(TransportError::io("read from a vmsplice pipe", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_round_through_a_small_pipe() {
        let pipe = Pipe::new(4096).expect("pipe");
        let me = Process::from_pid(std::process::id() as i32).expect("self");
        let read = fetch(&me, pipe.read_fd()).expect("own descriptor");
        let src: Vec<u8> = (0..300_000u32).map(|i| ((i * 31) >> 3) as u8).collect();
        let mut dst = vec![0u8; src.len()];
        let (mut sent, mut got) = (0, 0);
        while got < src.len() {
            if sent < src.len() {
                // SAFETY: `src` outlives every read of the pipe below and is not changed.
                sent += unsafe { splice_some(pipe.write.as_fd(), &[IoSlice::new(&src[sent..])]) }
                    .expect("splice");
            }
            match read_some(&read, &mut [IoSliceMut::new(&mut dst[got..])]).expect("read") {
                Some(0) => panic!("end of file with the write end open"),
                Some(n) => got += n,
                None => assert!(sent > got, "nothing to read and nothing sent"),
            }
        }
        assert_eq!(dst, src);
        // Empty now. (End of file once the write end closes is not checked here: other tests
        // of this process fork, and a child forked meanwhile holds the write end too.)
        assert_eq!(
            read_some(&read, &mut [IoSliceMut::new(&mut dst)]).unwrap(),
            None
        );
    }
}
