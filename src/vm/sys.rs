//! The only home of the Cross Memory Attach FFI.
//!
//! Two thin functions, one per direction, that hand iovec arrays to the kernel and turn `-1` into
//! an errno. Everything above them is safe code.

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Remote → local (`process_vm_readv`).
    Read,
    /// Local → remote (`process_vm_writev`).
    Write,
}

/// One CMA system call: `process_vm_readv` or `process_vm_writev` with the given vectors and flags.
///
/// Returns the byte count or the errno.
///
/// # Safety
/// Every `local` element must describe memory of this process that is valid for the whole call:
/// writable and not aliased by any live Rust reference for [`Direction::Read`], readable for
/// [`Direction::Write`]. When `pid` is this process (or shares its address space), the `remote`
/// elements are local memory too and the same contract applies to them. Elements whose memory is
/// invalid, or that describe more than the caller owns, are allowed only where the kernel is
/// known to reject them (`EINVAL`, `EFAULT`) or to stop before the invalid part: the self-test
/// relies on this to observe the kernel's errors.
pub(crate) unsafe fn cma(
    dir: Direction,
    pid: i32,
    local: &[libc::iovec],
    remote: &[libc::iovec],
    flags: libc::c_ulong,
) -> Result<usize, i32> {
    // SAFETY: the pointers and counts come from slices that outlive the call; the memory they
    // describe is the caller's contract above. The kernel validates everything else.
    let n = unsafe {
        match dir {
            Direction::Read => libc::process_vm_readv(
                pid,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                flags,
            ),
            Direction::Write => libc::process_vm_writev(
                pid,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                flags,
            ),
        }
    };
    if n < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(n as usize)
    }
}

/// The call with empty vectors: the kernel returns 0 before looking at the pid or any permission,
/// so an error here means a seccomp filter (or a kernel without CMA) answered instead.
pub(crate) fn empty_call(dir: Direction) -> Result<(), i32> {
    // SAFETY: no vectors, so no memory is described at all.
    unsafe { cma(dir, 0, &[], &[], 0) }.map(|_| ())
}

/// An iovec for `len` bytes at `addr`.
pub(crate) fn iovec(addr: usize, len: usize) -> libc::iovec {
    libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    }
}
