//! Forked helper processes: the peers that the self-test, the probe, the benchmarks and the tests
//! run against.
//!
//! A child shares nothing with its parent after `fork` except what was mapped shared before it, and
//! it holds every private buffer at the same address as the parent did — which is what CMA tests
//! need. A [`Child`] is killed with SIGKILL and reaped when dropped, and dies with its parent
//! (`PR_SET_PDEATHSIG`), so no helper outlives the process that made it.

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
            match &self.pidfd {
                Some(fd) => {
                    use rustix::event::{PollFd, PollFlags, Timespec, poll};
                    let mut fds = [PollFd::new(fd, PollFlags::IN)];
                    let ts = Timespec {
                        tv_sec: left.as_secs() as i64,
                        tv_nsec: left.subsec_nanos() as i64,
                    };
                    match poll(&mut fds, Some(&ts)) {
                        Ok(_) | Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                None => std::thread::sleep(left.min(Duration::from_millis(5))),
            }
        }
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
