//! SIGINT, SIGTERM and SIGHUP to the launcher, turned into bytes on a pipe (the self-pipe trick)
//! that the supervising loop polls next to the ranks' pidfds.
//!
//! A handler rather than `signalfd`: signalfd needs the signals blocked in every thread of the
//! process, which a library cannot promise; a handler runs in whichever thread the kernel picks.
//! The handler only calls `write(2)`, which is async-signal-safe.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::LaunchError;

/// The signals that stop a job.
const CAUGHT: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The write end of the pipe, for the handler (-1 when no catcher is installed).
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
/// Whether a [`Catcher`] exists: only one job runs per process at a time.
static IN_USE: AtomicBool = AtomicBool::new(false);
/// The pipe, created once and never closed, so that a handler still running in another thread
/// when a catcher is dropped can never write into a descriptor number reused for something else.
static PIPE: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: errno is thread-local; saving and restoring it keeps the interrupted code's value.
    let saved = unsafe { *libc::__errno_location() };
    let byte = signal as u8;
    // SAFETY: write(2) is async-signal-safe; `fd` is the pipe's write end, which is never closed,
    // and `byte` outlives the call. The pipe is non-blocking: if it is full, the signal is dropped,
    // which is fine since the job is already being stopped by the ones queued before it.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// Installed signal handlers; dropping it restores the previous ones.
pub(super) struct Catcher {
    read: BorrowedFd<'static>,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Catcher {
    /// Installs the handlers. A signal the process ignores stays ignored, as shells do for jobs
    /// started in the background (`nohup`, `&` in a script).
    pub(super) fn install() -> Result<Catcher, LaunchError> {
        if IN_USE.swap(true, Ordering::AcqRel) {
            return Err(LaunchError::Busy);
        }
        match Self::install_handlers() {
            Ok(c) => Ok(c),
            Err(e) => {
                IN_USE.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    fn install_handlers() -> Result<Catcher, LaunchError> {
        let (read, write) = match PIPE.get() {
            Some(p) => p,
            None => {
                let flags = rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK;
                let pipe = rustix::pipe::pipe_with(flags).map_err(|e| LaunchError::Io {
                    op: "pipe",
                    source: e.into(),
                })?;
                // Another thread may have won the race; its pipe is as good as ours.
                let _ = PIPE.set(pipe);
                PIPE.get().ok_or(LaunchError::Busy)?
            }
        };
        let mut catcher = Catcher {
            read: read.as_fd(),
            previous: Vec::new(),
        };
        // Bytes left from signals that arrived after an earlier job ended.
        catcher.drain();
        WRITE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        for signal in CAUGHT {
            // SAFETY: a zeroed sigaction is a valid "no handler, empty mask" value.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: querying the current disposition; `old` is a valid out-pointer.
            if unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } != 0 {
                return Err(sigaction_error());
            }
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            // SAFETY: as above.
            let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
            new.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            // SA_RESTART: other threads of the process are not disturbed by EINTR; the launcher's
            // own poll is never restarted (poll(2) ignores SA_RESTART) and so wakes at once.
            new.sa_flags = libc::SA_RESTART;
            // SAFETY: `on_signal` is async-signal-safe (it only calls write); `new` and `old` are
            // valid for the call.
            if unsafe { libc::sigaction(signal, &new, &mut old) } != 0 {
                return Err(sigaction_error());
            }
            catcher.previous.push((signal, old));
        }
        Ok(catcher)
    }

    /// The pipe's read end: readable once a signal has arrived.
    pub(super) fn fd(&self) -> BorrowedFd<'static> {
        self.read
    }

    /// The signals that arrived since the last call, oldest first.
    pub(super) fn drain(&mut self) -> Vec<i32> {
        let mut signals = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = rustix::io::read(self.read, &mut buf) {
            if n == 0 {
                break;
            }
            signals.extend(buf[..n].iter().map(|&b| i32::from(b)));
        }
        signals
    }
}

fn sigaction_error() -> LaunchError {
    LaunchError::Io {
        op: "sigaction",
        source: std::io::Error::last_os_error(),
    }
}

impl Drop for Catcher {
    fn drop(&mut self) {
        for (signal, old) in self.previous.drain(..) {
            // SAFETY: `old` was returned by sigaction for this very signal.
            unsafe { libc::sigaction(signal, &old, std::ptr::null_mut()) };
        }
        WRITE_FD.store(-1, Ordering::Relaxed);
        IN_USE.store(false, Ordering::Release);
    }
}

/// The name of a signal (`SIGKILL`), or `SIG<n>` for one without a common name.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("SIG{signal}"),
    };
    name.to_string()
}
