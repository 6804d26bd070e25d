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
/// answered it. Otherwise the target's credentials, this process's capabilities and Yama are
/// compared the way the kernel's ptrace access check does.
pub fn diagnose_denial(pid: i32) -> DenialReason {
    if sys::empty_call(Direction::Read).is_err() {
        return DenialReason::SeccompFilter;
    }
    let status = format!("/proc/{pid}/status");
    AccessFacts {
        our_uid: rustix::process::getuid().as_raw(),
        our_gid: rustix::process::getgid().as_raw(),
        their_uids: status_ids(&status, "Uid:"),
        their_gids: status_ids(&status, "Gid:"),
        cap_sys_ptrace: has_cap_sys_ptrace(),
        yama_scope: yama_scope(),
        target_is_descendant: is_descendant(pid),
    }
    .reason()
}

/// What the kernel's ptrace access check looks at, as far as user space can see it.
#[derive(Debug, Clone, Default)]
struct AccessFacts {
    /// This process's real uid and gid (CMA checks real, not effective, credentials).
    our_uid: u32,
    our_gid: u32,
    /// The target's real, effective and saved ids, when readable.
    their_uids: Option<[u32; 3]>,
    their_gids: Option<[u32; 3]>,
    cap_sys_ptrace: bool,
    yama_scope: Option<u8>,
    target_is_descendant: bool,
}

impl AccessFacts {
    fn reason(&self) -> DenialReason {
        if !self.cap_sys_ptrace {
            // The kernel wants our real uid to equal all three of the target's, and the same for
            // gids: a target that changed its effective or saved id is another user's too.
            let other = |theirs: Option<[u32; 3]>, ours: u32| {
                theirs.and_then(|ids| ids.into_iter().find(|&id| id != ours))
            };
            if let Some(theirs) = other(self.their_uids, self.our_uid) {
                return DenialReason::DifferentUser {
                    ours: self.our_uid,
                    theirs,
                };
            }
            if let Some(theirs) = other(self.their_gids, self.our_gid) {
                return DenialReason::DifferentGroup {
                    ours: self.our_gid,
                    theirs,
                };
            }
        }
        match self.yama_scope {
            // 3 forbids everyone; 2 admits CAP_SYS_PTRACE; 1 admits it and ancestors as well.
            Some(scope @ 3..) => DenialReason::Yama { scope },
            Some(2) if !self.cap_sys_ptrace => DenialReason::Yama { scope: 2 },
            Some(1) if !self.cap_sys_ptrace && !self.target_is_descendant => {
                DenialReason::Yama { scope: 1 }
            }
            _ => DenialReason::Unknown,
        }
    }
}

/// The real, effective and saved ids on a `Uid:` or `Gid:` line of a `/proc/*/status` file.
fn status_ids(path: &str, key: &str) -> Option<[u32; 3]> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let mut ids = line[key.len()..].split_whitespace().map(str::parse::<u32>);
    Some([ids.next()?.ok()?, ids.next()?.ok()?, ids.next()?.ok()?])
}

/// Whether this process is an ancestor of `pid` (Yama scope 1 admits ancestors).
fn is_descendant(pid: i32) -> bool {
    let ours = rustix::process::getpid().as_raw_nonzero().get();
    let mut at = pid;
    // Parent chains are short; the bound only guards against a chain changing while it is read.
    for _ in 0..4096 {
        let Some(parent) = status_field(&format!("/proc/{at}/status"), "PPid:")
            .and_then(|v| v.parse::<i32>().ok())
        else {
            return false;
        };
        if parent == ours {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        at = parent;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> AccessFacts {
        AccessFacts {
            our_uid: 1000,
            our_gid: 1000,
            their_uids: Some([1000; 3]),
            their_gids: Some([1000; 3]),
            ..AccessFacts::default()
        }
    }

    #[test]
    fn another_users_target() {
        let f = AccessFacts {
            their_uids: Some([0; 3]),
            ..facts()
        };
        assert_eq!(
            f.reason(),
            DenialReason::DifferentUser {
                ours: 1000,
                theirs: 0
            }
        );
        // A setuid target: same real uid, another effective one.
        let f = AccessFacts {
            their_uids: Some([1000, 0, 0]),
            ..facts()
        };
        assert_eq!(
            f.reason(),
            DenialReason::DifferentUser {
                ours: 1000,
                theirs: 0
            }
        );
        let f = AccessFacts {
            their_gids: Some([1000, 1000, 42]),
            ..facts()
        };
        assert_eq!(
            f.reason(),
            DenialReason::DifferentGroup {
                ours: 1000,
                theirs: 42
            }
        );
        // CAP_SYS_PTRACE overrides ids.
        let f = AccessFacts {
            their_uids: Some([0; 3]),
            cap_sys_ptrace: true,
            ..facts()
        };
        assert_eq!(f.reason(), DenialReason::Unknown);
    }

    #[test]
    fn yama_scopes() {
        let with = |scope, cap, descendant| {
            AccessFacts {
                yama_scope: Some(scope),
                cap_sys_ptrace: cap,
                target_is_descendant: descendant,
                ..facts()
            }
            .reason()
        };
        assert_eq!(with(1, false, false), DenialReason::Yama { scope: 1 });
        // Scope 1 admits ancestors and CAP_SYS_PTRACE: something else refused.
        assert_eq!(with(1, false, true), DenialReason::Unknown);
        assert_eq!(with(1, true, false), DenialReason::Unknown);
        assert_eq!(with(2, false, true), DenialReason::Yama { scope: 2 });
        assert_eq!(with(2, true, false), DenialReason::Unknown);
        assert_eq!(with(3, true, true), DenialReason::Yama { scope: 3 });
        assert_eq!(with(0, false, false), DenialReason::Unknown);
    }

    #[test]
    fn ids_of_this_process() {
        let uid = rustix::process::getuid().as_raw();
        let ids = status_ids("/proc/self/status", "Uid:").unwrap();
        assert_eq!(ids[0], uid);
        assert!(status_ids("/proc/self/status", "NoSuchKey:").is_none());
    }

    #[test]
    fn a_child_is_a_descendant() {
        let child = crate::child::Child::sleeper().unwrap();
        assert!(is_descendant(child.pid()));
        assert!(!is_descendant(1));
    }
}
