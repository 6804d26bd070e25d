//! Helpers shared by the integration tests: a watchdog so that a hung multi-process test fails in
//! bounded time, root detection, and helper processes that other processes may read.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use onecopy::child::Child;

/// Ends the whole test process if dropped later than its deadline.
///
/// A hang in a multi-process test (a child that never answers, a wait that never returns) must
/// fail, not stall the run: the watchdog thread names the test and exits with status 1. Forked
/// helpers die with the process (they are started with a parent-death signal).
#[must_use = "the watchdog stops when dropped"]
pub struct Watchdog {
    _stop: mpsc::Sender<()>,
}

/// Starts a watchdog for `test` that fires after `seconds`.
pub fn watchdog(test: &'static str, seconds: u64) -> Watchdog {
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_secs(seconds)) {
            eprintln!("test {test} hung: no result after {seconds} s, exiting");
            std::process::exit(1);
        }
    });
    Watchdog { _stop: stop }
}

/// Whether this process runs as root (needed to drop a child to another user).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Prints why a test does not run here.
pub fn skip(reason: &str) {
    println!("SKIP: {reason}");
}

/// A sleeping child that any process of the same user may read (`PR_SET_PTRACER_ANY`), so that a
/// sibling such as the `onecopy` binary can reach it even under Yama ptrace_scope 1.
pub fn open_sleeper() -> Child {
    let body = || {
        // Without Yama this fails harmlessly; with it, it opens the child to its siblings.
        let _ = rustix::process::set_ptracer(rustix::process::PTracer::Any);
        loop {
            // SAFETY: pause has no preconditions; it only waits for a signal.
            unsafe { libc::pause() };
        }
    };
    // SAFETY: the child makes one prctl and then pauses: no locks, no allocation.
    unsafe { Child::fork(body) }.expect("fork a sleeper")
}

/// A value that differs at every byte of a page and between pages, to catch off-by-some copies.
pub fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 12) as u8
}

/// Installs a seccomp filter on the calling thread that answers both CMA calls with EPERM.
pub fn block_cma_with_seccomp() -> bool {
    let instruction = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // seccomp_data.nr sits at offset 0.
    let filter = [
        instruction(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        instruction(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            2,
            0,
            libc::SYS_process_vm_readv as u32,
        ),
        instruction(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            1,
            0,
            libc::SYS_process_vm_writev as u32,
        ),
        instruction(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        instruction(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments, then with a pointer to a filter program that outlives
    // the call; the kernel copies the program.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog,
            ) == 0
    }
}
