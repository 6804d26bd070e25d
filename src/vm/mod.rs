//! The kernel interface: reading and writing another process's memory with Cross Memory Attach.
//!
//! [`Process`] holds a target by pidfd, so an exited process (or a recycled pid) is reported as
//! [`VmError::NoSuchProcess`] rather than read. Its methods take any number of ranges of any size:
//! [`split`] cuts them into calls the kernel accepts, short counts are continued, and a fault is
//! reported as [`VmError::BadAddress`] with the exact byte count and the faulting remote address —
//! a short transfer is never success. [`probe`] says whether CMA works here and why not.
//!
//! This module does not know about transports, shared memory or ranks; it is the only place that
//! calls `process_vm_readv`/`process_vm_writev` (in its private `sys` module).

mod error;
mod probe;
pub mod split;
pub(crate) mod sys;

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, OwnedFd};

pub use error::{DenialReason, VmError};
pub use probe::{Capability, SyscallState, diagnose_denial, probe};
use split::{Limits, Segment, Splitter};
use sys::Direction;

/// A range of addresses in another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct RemoteRange {
    /// Start address in the remote process.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
}

impl RemoteRange {
    /// `len` bytes at `addr`.
    pub fn new(addr: usize, len: usize) -> Self {
        RemoteRange { addr, len }
    }
}

/// Another process, held by a pidfd.
///
/// ```
/// use onecopy::child::Child;
/// use onecopy::vm::Process;
///
/// // A forked child holds this buffer at the same address as we do.
/// let greeting = *b"hello";
/// let child = Child::sleeper()?;
/// let process = Process::from_pid(child.pid())?;
/// let mut buf = [0u8; 5];
/// process.read_exact(greeting.as_ptr() as usize, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A pidfd refers to one process for its whole life: if that process exits, the pidfd says so even
/// when its pid has since been given to another process. Every transfer checks it before and after
/// the system call, so data from a process other than the one opened is never returned as success.
/// (The CMA calls take a pid, not a pidfd, so a pid recycled *during* one call cannot be excluded by
/// the kernel; it would need the target to exit, be reaped and its pid reused within that call, and
/// the check afterwards then reports it as an error.)
#[derive(Debug)]
pub struct Process {
    pid: i32,
    pidfd: OwnedFd,
}

impl Process {
    /// Opens the process with this pid (a thread-group leader).
    pub fn from_pid(pid: i32) -> Result<Process, VmError> {
        // Checked before building a `Pid`: rustix asserts (in debug builds) that a raw pid is not
        // negative, and a pid comes straight from the user.
        let Some(p) = Some(pid)
            .filter(|&pid| pid > 0)
            .and_then(rustix::process::Pid::from_raw)
        else {
            return Err(VmError::invalid(format!("pid must be positive, got {pid}")));
        };
        let pidfd =
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).map_err(|e| {
                match e {
                    rustix::io::Errno::SRCH => VmError::NoSuchProcess {
                        pid,
                        why: "does not exist",
                    },
                    // A thread that is not its group's leader: EINVAL on older kernels, ENOENT on
                    // newer ones (so that it differs from bad flags).
                    rustix::io::Errno::INVAL | rustix::io::Errno::NOENT => VmError::invalid(
                        format!("pid {pid} is a thread, not a process (give its process id)"),
                    ),
                    rustix::io::Errno::NOSYS => VmError::Unsupported {
                        what: "pidfd_open (Linux 5.3)",
                    },
                    e => VmError::os("pidfd_open", e.raw_os_error()),
                }
            })?;
        let process = Process { pid, pidfd };
        process.ensure_alive()?;
        Ok(process)
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pidfd (readable once the process has exited).
    pub fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn is_alive(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(0) => true,
            Ok(_) => false,
            // A pidfd cannot fail to poll; if it does, err on the side of "gone".
            Err(_) => false,
        }
    }

    fn ensure_alive(&self) -> Result<(), VmError> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(VmError::NoSuchProcess {
                pid: self.pid,
                why: "has exited",
            })
        }
    }

    /// Fills `buf` from `addr` in the process; anything less is an error.
    pub fn read_exact(&self, addr: usize, buf: &mut [u8]) -> Result<(), VmError> {
        let len = buf.len();
        let n = self.read_vectored(&mut [IoSliceMut::new(buf)], &[RemoteRange::new(addr, len)])?;
        debug_assert_eq!(n, len);
        Ok(())
    }

    /// Reads the remote ranges, in order, into the local buffers, in order.
    ///
    /// Moves exactly `min(local total, remote total)` bytes and returns that count, or an error:
    /// a fault yields [`VmError::BadAddress`] with the bytes moved before it, and nothing after it is
    /// touched.
    pub fn read_vectored(
        &self,
        local: &mut [IoSliceMut<'_>],
        remote: &[RemoteRange],
    ) -> Result<usize, VmError> {
        let local: Vec<Segment> = local
            .iter_mut()
            .map(|s| Segment {
                addr: s.as_mut_ptr() as usize,
                len: s.len(),
            })
            .collect();
        // SAFETY: `local` describes the caller's `&mut` buffers, borrowed for this whole call.
        unsafe { self.transfer(Direction::Read, &local, remote) }
    }

    /// Writes `buf` to `addr` in the process; anything less is an error.
    pub fn write_all(&self, addr: usize, buf: &[u8]) -> Result<(), VmError> {
        let n = self.write_vectored(&[IoSlice::new(buf)], &[RemoteRange::new(addr, buf.len())])?;
        debug_assert_eq!(n, buf.len());
        Ok(())
    }

    /// Writes the local buffers, in order, into the remote ranges, in order.
    ///
    /// Writing into the calling process itself is refused with [`VmError::InvalidArgument`]: it would
    /// change memory behind Rust's back (any live reference to it could observe the change).
    pub fn write_vectored(
        &self,
        local: &[IoSlice<'_>],
        remote: &[RemoteRange],
    ) -> Result<usize, VmError> {
        if self.pid == std::process::id() as i32 {
            return Err(VmError::invalid(
                "writing into the calling process's own memory through CMA is not allowed \
                 (it would bypass Rust's aliasing rules)",
            ));
        }
        let local: Vec<Segment> = local
            .iter()
            .map(|s| Segment {
                addr: s.as_ptr() as usize,
                len: s.len(),
            })
            .collect();
        // SAFETY: `local` describes the caller's buffers, borrowed for this whole call; the target
        // is another process, so the remote side aliases nothing of ours.
        unsafe { self.transfer(Direction::Write, &local, remote) }
    }

    /// Moves bytes between local segments and remote ranges in kernel-sized calls.
    ///
    /// # Safety
    /// `local` must describe memory valid for `dir` (writable and unaliased for reads) for the call.
    unsafe fn transfer(
        &self,
        dir: Direction,
        local: &[Segment],
        remote: &[RemoteRange],
    ) -> Result<usize, VmError> {
        let remote = check_remote(remote)?;
        self.ensure_alive()?;
        let mut split = Splitter::new(local, &remote, Limits::kernel());
        let (mut l, mut r) = (Vec::new(), Vec::new());
        let (mut liov, mut riov) = (Vec::new(), Vec::new());
        loop {
            let want = split.next_call(&mut l, &mut r);
            if want == 0 {
                break;
            }
            liov.clear();
            liov.extend(l.iter().map(|s| sys::iovec(s.addr, s.len)));
            riov.clear();
            riov.extend(r.iter().map(|s| sys::iovec(s.addr, s.len)));
            // SAFETY: `liov` is a sub-list of `local`, whose validity is our caller's contract.
            match unsafe { sys::cma(dir, self.pid, &liov, &riov, 0) } {
                // A short count stops at the first inaccessible remote page; the next call starts
                // there and reports the fault if the page is still bad.
                Ok(n) if n > 0 => split.advance(n),
                Ok(_) | Err(libc::EFAULT) => {
                    self.ensure_alive()?;
                    return Err(VmError::BadAddress {
                        transferred: split.done(),
                        addr: split.remote_position().unwrap_or(0),
                    });
                }
                Err(errno) => return Err(self.error_from(errno)),
            }
        }
        self.ensure_alive()?;
        Ok(split.done())
    }

    fn error_from(&self, errno: i32) -> VmError {
        match errno {
            libc::EPERM => VmError::PermissionDenied {
                pid: self.pid,
                reason: diagnose_denial(self.pid),
            },
            libc::ESRCH => VmError::NoSuchProcess {
                pid: self.pid,
                why: "has exited",
            },
            libc::ENOSYS => VmError::Unsupported {
                what: "process_vm_readv/process_vm_writev",
            },
            libc::EINVAL => VmError::invalid("the kernel rejected the request (EINVAL)"),
            e => VmError::os("process_vm_readv/writev", e),
        }
    }
}

/// Rejects remote ranges that wrap around the address space or whose total overflows, before any
/// system call, and drops empty ones.
fn check_remote(remote: &[RemoteRange]) -> Result<Vec<Segment>, VmError> {
    let mut total: usize = 0;
    let mut out = Vec::with_capacity(remote.len());
    for (i, r) in remote.iter().enumerate() {
        if r.addr.checked_add(r.len).is_none() {
            return Err(VmError::invalid(format!(
                "remote range {i} ({:#x} + {} bytes) wraps around the address space",
                r.addr, r.len
            )));
        }
        total = total.checked_add(r.len).ok_or_else(|| {
            VmError::invalid("the remote ranges' total length overflows the address space")
        })?;
        if r.len > 0 {
            out.push(Segment {
                addr: r.addr,
                len: r.len,
            });
        }
    }
    Ok(out)
}
