//! Forked helper processes: the peers that the self-test, the probe, the benchmarks and the tests
//! run against.
//!
//! A child shares nothing with its parent after `fork` except what was mapped shared before it, and
//! it holds every private buffer at the same address as the parent did — which is what CMA tests
//! need. A [`Child`] is killed with SIGKILL and reaped when dropped, and dies with its parent
//! (`PR_SET_PDEATHSIG`), so no helper outlives the process that made it.
//!
//! [`Pages`] is the memory such a helper holds when a test needs a fault at a known address: whole
//! pages whose protection can be changed one page at a time before the fork.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// A forked child process, killed and reaped on drop.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    pidfd: Option<OwnedFd>,
    exit: Option<Exit>,
}

impl Child {
    /// Forks a child that does nothing but wait to be killed (for being read and written).
    pub fn sleeper() -> io::Result<Child> {
        // SAFETY: the child only calls pause(), which is async-signal-safe.
        unsafe {
            Child::fork(|| {
                loop {
                    libc::pause();
                }
            })
        }
    }

    /// Forks; the child runs `body` and exits with the code it returns (101 if it panics).
    ///
    /// # Safety
    /// In a process with other threads, the child starts with only this one: a lock another thread
    /// held at the fork stays locked forever in the child. `body` must not take such locks (stdio,
    /// the environment, any `Mutex` shared with other threads). glibc's allocator is safe to use.
    /// In a single-threaded process there is no restriction.
    pub unsafe fn fork<F: FnOnce() -> i32>(body: F) -> io::Result<Child> {
        let parent = rustix::process::getpid();
        // SAFETY: fork has no memory-safety preconditions of its own; what the child may do is the
        // caller's contract above.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: prctl and _exit are async-signal-safe; the death signal makes the child
            // follow its parent even if the parent is killed before it can reap us.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                if rustix::process::getppid() != Some(parent) {
                    libc::_exit(1);
                }
                let code =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
                libc::_exit(code);
            }
        }
        let pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        Ok(Child {
            pid,
            pidfd,
            exit: None,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sleeps until the child exits or `left` passes, whichever comes first (it may also return
    /// early on a signal): the pidfd turns readable when the process exits, before anyone reaps
    /// it; without a pidfd, in short naps.
    fn sleep_until_exit(&self, left: Duration) -> io::Result<()> {
        match &self.pidfd {
            Some(fd) => {
                use rustix::event::{PollFd, PollFlags, Timespec, poll};
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                let ts = Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos() as i64,
                };
                match poll(&mut fds, Some(&ts)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            None => {
                std::thread::sleep(left.min(Duration::from_millis(5)));
                Ok(())
            }
        }
    }

    /// Waits up to `timeout` for the child to end; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<Exit>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_wait()? {
                return Ok(Some(exit));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.sleep_until_exit(left)?;
        }
    }

    /// Waits up to `timeout` for the child to end *without* reaping it: afterwards it is a zombie
    /// (its pid still taken, its memory gone) until [`Child::try_wait`], [`Child::kill`] or drop.
    /// Returns whether it ended.
    pub fn wait_exited(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exit.is_some() || self.has_exited_unreaped()? {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.sleep_until_exit(left)?;
        }
    }

    /// Whether the child has exited, asked with `WNOWAIT` so that it is left unreaped.
    fn has_exited_unreaped(&self) -> io::Result<bool> {
        // SAFETY: an all-zero siginfo_t is a valid value (plain integers and padding).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own unreaped child with a valid out-pointer; WNOWAIT leaves it
        // waitable, so the pid cannot be recycled under us.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: waitid filled `info` (or left it zeroed, which reads as pid 0: not yet exited).
        Ok(unsafe { info.si_pid() } != 0)
    }

    /// Reaps the child if it has ended.
    pub fn try_wait(&mut self) -> io::Result<Option<Exit>> {
        if self.exit.is_some() {
            return Ok(self.exit);
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if r == 0 {
            return Ok(None);
        }
        let exit = if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        };
        self.exit = Some(exit);
        self.pidfd = None;
        Ok(Some(exit))
    }

    /// Sends SIGKILL (if still running) and reaps it.
    pub fn kill(&mut self) -> Exit {
        if self.exit.is_none() {
            // SAFETY: the pid is our unreaped child, so it cannot have been recycled.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        loop {
            match self.wait_timeout(Duration::from_secs(1)) {
                Ok(Some(exit)) => return exit,
                Ok(None) => continue,
                Err(_) => return Exit::Signal(libc::SIGKILL),
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The uid and gid of the unprivileged user `nobody` on Linux.
pub const NOBODY: u32 = 65534;

/// Makes the calling thread run as `uid`/`gid` with no supplementary groups, for good (real,
/// effective and saved ids all change, so the capabilities of root are lost).
///
/// Meant for a forked child, where the calling thread is the whole process; in a process with
/// other threads only this one changes (these are the raw system calls, not the C library's
/// process-wide versions). Needs `CAP_SETUID` and `CAP_SETGID`.
pub fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    use rustix::process::{Gid, Uid};
    use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
    // Groups and gid first: once the uid changes, the right to change them is gone.
    set_thread_groups(&[])?;
    let gid = Gid::from_raw(gid);
    set_thread_res_gid(gid, gid, gid)?;
    let uid = Uid::from_raw(uid);
    set_thread_res_uid(uid, uid, uid)?;
    Ok(())
}

/// What a page of [`Pages`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Readable and writable (how pages start).
    ReadWrite,
    /// Readable only: writes fault, also writes through CMA.
    ReadOnly,
    /// Inaccessible: any access faults.
    None,
}

/// Anonymous, zero-filled, page-aligned memory whose pages can be made read-only or inaccessible
/// one at a time; unmapped on drop.
///
/// A child forked while it exists holds the same pages, with the same protections, at the same
/// address: so a test knows exactly where the helper's memory faults.
#[derive(Debug)]
pub struct Pages {
    base: std::ptr::NonNull<u8>,
    page_size: usize,
    prot: Vec<Protection>,
}

impl Pages {
    /// Maps `count` read-write pages (`count` must be at least 1).
    pub fn new(count: usize) -> io::Result<Pages> {
        let page_size = rustix::param::page_size();
        let len = count
            .checked_mul(page_size)
            .filter(|&len| len > 0)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot map {count} pages"),
                )
            })?;
        use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
        // SAFETY: a fresh private anonymous mapping at an address the kernel picks overlaps no
        // existing memory.
        let ptr = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }?;
        let base = std::ptr::NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Pages {
            base,
            page_size,
            prot: vec![Protection::ReadWrite; count],
        })
    }

    /// The address of the first byte.
    pub fn addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// The size of one page in bytes.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// How many pages there are.
    pub fn page_count(&self) -> usize {
        self.prot.len()
    }

    /// The whole mapping's size in bytes.
    pub fn len_bytes(&self) -> usize {
        self.prot.len() * self.page_size
    }

    /// The address of page `index` (which may be one past the end).
    pub fn page_addr(&self, index: usize) -> usize {
        self.addr() + index * self.page_size
    }

    /// What page `index` allows, if it exists.
    pub fn protection(&self, index: usize) -> Option<Protection> {
        self.prot.get(index).copied()
    }

    /// Changes what page `index` allows.
    pub fn protect(&mut self, index: usize, prot: Protection) -> io::Result<()> {
        if index >= self.prot.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("page {index} of {}", self.prot.len()),
            ));
        }
        use rustix::mm::{MprotectFlags, mprotect};
        let flags = match prot {
            Protection::ReadWrite => MprotectFlags::READ | MprotectFlags::WRITE,
            Protection::ReadOnly => MprotectFlags::READ,
            Protection::None => MprotectFlags::empty(),
        };
        // SAFETY: the page lies inside our own mapping, and `&mut self` means no slice handed out
        // by `bytes`/`bytes_mut` is alive to be invalidated by the change.
        unsafe {
            mprotect(
                self.base.as_ptr().add(index * self.page_size).cast(),
                self.page_size,
                flags,
            )
        }?;
        self.prot[index] = prot;
        Ok(())
    }

    /// `len` bytes at `offset`, if they lie inside the mapping on readable pages.
    pub fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.check(offset, len, |p| p != Protection::None)?;
        // SAFETY: `check` proved the range lies inside our mapping on readable pages; the borrow
        // of `self` keeps the mapping and its protections unchanged while the slice lives.
        Some(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) })
    }

    /// `len` bytes at `offset`, if they lie inside the mapping on writable pages.
    pub fn bytes_mut(&mut self, offset: usize, len: usize) -> Option<&mut [u8]> {
        self.check(offset, len, |p| p == Protection::ReadWrite)?;
        // SAFETY: as in `bytes`, on writable pages, and `&mut self` makes the slice unique.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(offset), len) })
    }

    fn check(&self, offset: usize, len: usize, allowed: impl Fn(Protection) -> bool) -> Option<()> {
        let end = offset.checked_add(len).filter(|&e| e <= self.len_bytes())?;
        if len == 0 {
            return Some(());
        }
        let pages = offset / self.page_size..=(end - 1) / self.page_size;
        self.prot[pages].iter().all(|&p| allowed(p)).then_some(())
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, and `&mut self` means no slice into it is alive.
        // A failure could only leak the mapping, so it is ignored.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len_bytes()) };
    }
}
