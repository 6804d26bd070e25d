//! The error type of the `vm` layer.

use std::fmt;

/// Why the kernel refused ptrace-level access to another process, as far as it can be known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "cause", rename_all = "kebab-case")]
pub enum DenialReason {
    /// A seccomp filter answers the CMA system calls themselves with an error.
    SeccompFilter,
    /// Yama's `kernel.yama.ptrace_scope` forbids the access.
    Yama {
        /// The value of `/proc/sys/kernel/yama/ptrace_scope`.
        scope: u8,
    },
    /// The target runs as another user and this process lacks `CAP_SYS_PTRACE`.
    DifferentUser {
        /// This process's real user id.
        ours: u32,
        /// The target's differing user id (real, effective or saved).
        theirs: u32,
    },
    /// The target runs with another group and this process lacks `CAP_SYS_PTRACE`.
    DifferentGroup {
        /// This process's real group id.
        ours: u32,
        /// The target's differing group id (real, effective or saved).
        theirs: u32,
    },
    /// Nothing visible explains the refusal (a non-dumpable target, another user namespace, an LSM).
    Unknown,
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenialReason::SeccompFilter => write!(
                f,
                "CMA blocked by a seccomp filter; run the container with --cap-add SYS_PTRACE \
                 (or a profile that allows process_vm_readv/process_vm_writev) or use --transport shm-copy"
            ),
            DenialReason::Yama { scope: 1 } => write!(
                f,
                "Yama ptrace_scope is 1: only an ancestor or a process named with \
                 prctl(PR_SET_PTRACER) may access it; run both under `onecopy run`, \
                 or set kernel.yama.ptrace_scope=0"
            ),
            DenialReason::Yama { scope } => write!(
                f,
                "Yama ptrace_scope is {scope}: access needs CAP_SYS_PTRACE{}; \
                 use --transport shm-copy",
                if *scope >= 3 {
                    " and is disabled until reboot"
                } else {
                    ""
                }
            ),
            DenialReason::DifferentUser { ours, theirs } => write!(
                f,
                "the target runs as uid {theirs}, this process as uid {ours}, without CAP_SYS_PTRACE; \
                 run as the same user"
            ),
            DenialReason::DifferentGroup { ours, theirs } => write!(
                f,
                "the target runs with gid {theirs}, this process with gid {ours}, without \
                 CAP_SYS_PTRACE; run as the same user and group"
            ),
            DenialReason::Unknown => write!(
                f,
                "the kernel refused ptrace access (the target may be non-dumpable, setuid, \
                 or in another user namespace)"
            ),
        }
    }
}

/// Everything that can go wrong when reading or writing another process's memory.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The kernel refused access.
    #[error("permission denied for pid {pid}: {reason}")]
    PermissionDenied {
        /// The target process.
        pid: i32,
        /// Why, as far as it can be known.
        reason: DenialReason,
    },
    /// The process does not exist, has exited, or is a zombie.
    #[error("no such process: pid {pid} {why}")]
    NoSuchProcess {
        /// The pid asked for.
        pid: i32,
        /// "does not exist", "has exited", ...
        why: &'static str,
    },
    /// A remote address was not mapped (or not writable for a write); nothing past it was touched.
    #[error(
        "bad address {addr:#x} in the remote process: {transferred} bytes moved before the fault; \
         check the address and length (see /proc/PID/maps)"
    )]
    BadAddress {
        /// Bytes moved, in order, before the fault.
        transferred: usize,
        /// The first remote address that could not be accessed.
        addr: usize,
    },
    /// The request itself is malformed; no system call was made.
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What is wrong.
        what: String,
    },
    /// This kernel lacks the system call.
    #[error(
        "{what} is not supported by this kernel (ENOSYS); it needs Linux 3.2 with CONFIG_CROSS_MEMORY_ATTACH"
    )]
    Unsupported {
        /// The missing call.
        what: &'static str,
    },
    /// Any other operating-system error.
    #[error("{op} failed: {source}")]
    Os {
        /// The operation.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: std::io::Error,
    },
}

impl VmError {
    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        VmError::InvalidArgument { what: what.into() }
    }

    pub(crate) fn os(op: &'static str, errno: i32) -> Self {
        VmError::Os {
            op,
            source: std::io::Error::from_raw_os_error(errno),
        }
    }
}
