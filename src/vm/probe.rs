//! Why CMA works here, or why not: kernel, seccomp, Yama, capabilities, and a real read of a child.

use super::Process;
use super::error::DenialReason;
use super::sys::{self, Direction};

/// Whether the CMA system calls themselves can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyscallState {
    /// The kernel answers them.
    Available,
    /// A seccomp filter answers them with an error.
    BlockedBySeccomp,
    /// The kernel lacks them (ENOSYS without a seccomp filter).
    Missing,
}

/// What this machine and this process allow, with advice when something is missing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Capability {
    /// `uname -r`.
    pub kernel: String,
    /// Whether `process_vm_readv`/`process_vm_writev` can be called at all.
    pub syscalls: SyscallState,
    /// `kernel.yama.ptrace_scope`, when Yama is present.
    pub yama_ptrace_scope: Option<u8>,
    /// This process's seccomp mode (0 none, 1 strict, 2 filter), from `/proc/self/status`.
    pub seccomp_mode: Option<u8>,
    /// Whether this process holds `CAP_SYS_PTRACE` in its effective set.
    pub cap_sys_ptrace: bool,
    /// Whether a real read of a forked child's memory returned the right bytes.
    pub can_read_child: bool,
    /// Why the child read failed, when it did.
    pub child_error: Option<String>,
    /// What the user can do, one sentence each; empty when all is well.
    pub advice: Vec<String>,
}

impl Capability {
    /// Whether single copy between this process and its children works.
    pub fn usable(&self) -> bool {
        self.syscalls == SyscallState::Available && self.can_read_child
    }
}

/// A value a forked child holds at the same address as its parent, to read back in the probe.
static PROBE_WORD: [u8; 16] = *b"onecopy-probe-ok";

/// Looks at the kernel, the process's restrictions, and reads a forked child's memory for real.
pub fn probe() -> Capability {
    let kernel = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let syscalls = syscall_state();
    let yama_ptrace_scope = yama_scope();
    let seccomp_mode = status_field("/proc/self/status", "Seccomp:").and_then(|v| v.parse().ok());
    let cap_sys_ptrace = has_cap_sys_ptrace();
    let child = crate::child::Child::sleeper().map_err(|e| format!("fork failed: {e}"));
    let read = child.and_then(|c| {
        let p = Process::from_pid(c.pid()).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 16];
        p.read_exact(PROBE_WORD.as_ptr() as usize, &mut buf)
            .map_err(|e| e.to_string())?;
        if buf == PROBE_WORD {
            Ok(())
        } else {
            Err("the child's bytes came back wrong".to_string())
        }
    });
    let mut advice = Vec::new();
    match syscalls {
        SyscallState::Available => {}
        SyscallState::BlockedBySeccomp => advice.push(DenialReason::SeccompFilter.to_string()),
        SyscallState::Missing => advice.push(
            "this kernel lacks process_vm_readv (CONFIG_CROSS_MEMORY_ATTACH); use --transport shm-copy".into(),
        ),
    }
    if let Some(scope @ 1..) = yama_ptrace_scope {
        advice.push(DenialReason::Yama { scope }.to_string());
    }
    if let (Err(e), SyscallState::Available) = (&read, syscalls) {
        advice.push(format!("reading a child failed: {e}"));
    }
    Capability {
        kernel,
        syscalls,
        yama_ptrace_scope,
        seccomp_mode,
        cap_sys_ptrace,
        can_read_child: read.is_ok(),
        child_error: read.err(),
        advice,
    }
}

fn syscall_state() -> SyscallState {
    match sys::empty_call(Direction::Read) {
        Ok(()) => SyscallState::Available,
        Err(libc::ENOSYS) if !seccomp_filtered() => SyscallState::Missing,
        Err(_) => SyscallState::BlockedBySeccomp,
    }
}

fn seccomp_filtered() -> bool {
    status_field("/proc/self/status", "Seccomp:").is_some_and(|v| v == "2")
}

fn yama_scope() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn has_cap_sys_ptrace() -> bool {
    const CAP_SYS_PTRACE: u32 = 19;
    status_field("/proc/self/status", "CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0)
}

/// The first word after `key` in a `/proc/*/status` file.
fn status_field(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// Says why the kernel refused this process ptrace access to `pid`, as far as it can be known.
///
/// A zero-length CMA call is answered before any permission check, so if it fails, a seccomp filter
/// answered it. Otherwise the owner of the target, this process's capabilities and Yama are compared.
pub fn diagnose_denial(pid: i32) -> DenialReason {
    if sys::empty_call(Direction::Read).is_err() {
        return DenialReason::SeccompFilter;
    }
    let cap = has_cap_sys_ptrace();
    let ours = rustix::process::getuid().as_raw();
    let theirs = status_field(&format!("/proc/{pid}/status"), "Uid:").and_then(|v| v.parse().ok());
    if let Some(theirs) = theirs.filter(|&t| t != ours && !cap) {
        return DenialReason::DifferentUser { ours, theirs };
    }
    match yama_scope() {
        Some(scope @ 1..) if !(scope == 1 && cap) => DenialReason::Yama { scope },
        _ => DenialReason::Unknown,
    }
}
