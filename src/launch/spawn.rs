//! Starting one rank: the program check done before anything starts, the resource limits a job
//! needs, and what each rank does between fork and exec.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::process::{Pid, Resource, Rlimit, Signal};

use super::{LaunchError, RunOptions};
use crate::comm::env::{VAR_LAUNCHER_PID, VAR_RANK, VAR_SEGMENT_FD, VAR_SIZE, VAR_TRANSPORT};

/// Descriptors the launcher needs besides the per-rank ones (stdio, the segment, the signal pipe,
/// the pipes std uses while spawning, the forwarder's wake-up pipe), with room to spare.
const FD_HEADROOM: u64 = 64;

/// Checks, before anything starts, that `program` can be executed the way `execvp` would find it,
/// so that a typo gives one clear error instead of N failing ranks.
pub(super) fn check_program(program: &OsStr) -> Result<(), LaunchError> {
    let shown = program.to_string_lossy().into_owned();
    if program.is_empty() {
        return Err(LaunchError::ProgramNotFound { program: shown });
    }
    if program.as_bytes().contains(&b'/') {
        return check_file(Path::new(program)).map_err(|why| match why {
            None => LaunchError::ProgramNotFound { program: shown },
            Some(why) => LaunchError::NotExecutable {
                program: shown,
                why: why.to_string(),
            },
        });
    }
    // execvp's search: PATH, or its default when unset; an empty entry means the current directory.
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/bin:/usr/bin"));
    let mut refusal = None;
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        match check_file(&dir.join(program)) {
            Ok(()) => return Ok(()),
            Err(None) => {}
            Err(Some(why)) => refusal = refusal.or(Some(why)),
        }
    }
    Err(match refusal {
        None => LaunchError::ProgramNotFound { program: shown },
        Some(why) => LaunchError::NotExecutable {
            program: shown,
            why: why.to_string(),
        },
    })
}

/// `Ok` for an executable regular file, `Err(None)` when nothing is there, `Err(Some(why))` when
/// something is there that cannot be executed.
fn check_file(path: &Path) -> Result<(), Option<&'static str>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Some("permission denied"));
        }
        Err(_) => return Err(None),
    };
    if meta.is_dir() {
        return Err(Some("is a directory"));
    }
    // access(2) rather than the mode bits alone: it knows about the caller's ids, ACLs and noexec
    // mounts. Even root needs one execute bit.
    if meta.permissions().mode() & 0o111 == 0
        || rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_err()
    {
        return Err(Some("permission denied (not executable)"));
    }
    Ok(())
}

/// The launcher's file-descriptor limit, raised for the job if needed and restored on drop; ranks
/// get the original back before exec.
pub(super) struct FileLimit {
    /// The limit to restore, when it was raised.
    original: Option<Rlimit>,
}

impl FileLimit {
    /// Checks `RLIMIT_NPROC` and makes `RLIMIT_NOFILE` large enough for `ranks` ranks.
    pub(super) fn prepare(ranks: usize, tag_output: bool) -> Result<FileLimit, LaunchError> {
        // Root is exempt from RLIMIT_NPROC; others fail here rather than at the Nth fork. (The
        // limit counts every process of the user, so a later fork may still fail: that is handled
        // too, with the same advice.)
        if !rustix::process::geteuid().is_root()
            && let Some(limit) = rustix::process::getrlimit(Resource::Nproc).current
            && ranks as u64 > limit
        {
            return Err(LaunchError::TooManyProcesses { ranks, limit });
        }
        // Each rank costs a pidfd, and with --tag-output two pipe read ends.
        let per_rank = if tag_output { 3 } else { 1 };
        let needed = ranks as u64 * per_rank + FD_HEADROOM;
        let limit = rustix::process::getrlimit(Resource::Nofile);
        let current = limit.current.unwrap_or(u64::MAX);
        if needed <= current {
            return Ok(FileLimit { original: None });
        }
        let maximum = limit.maximum.unwrap_or(u64::MAX);
        if needed > maximum {
            return Err(LaunchError::TooManyFiles {
                ranks,
                needed,
                limit: maximum,
            });
        }
        let raised = Rlimit {
            current: Some(needed),
            maximum: limit.maximum,
        };
        rustix::process::setrlimit(Resource::Nofile, raised).map_err(|e| LaunchError::Io {
            op: "setrlimit(RLIMIT_NOFILE)",
            source: e.into(),
        })?;
        Ok(FileLimit {
            original: Some(limit),
        })
    }
}

impl Drop for FileLimit {
    fn drop(&mut self) {
        if let Some(original) = self.original.take() {
            let _ = rustix::process::setrlimit(Resource::Nofile, original);
        }
    }
}

/// What every rank's command shares.
pub(super) struct Template<'a> {
    pub opts: &'a RunOptions,
    /// The segment's descriptor (close-on-exec in the launcher, at least 3).
    pub segment_fd: BorrowedFd<'a>,
    pub launcher: Pid,
    /// The launcher's own file limit, to give back to ranks when the launcher raised it.
    pub file_limit: &'a FileLimit,
}

impl Template<'_> {
    /// The command for `rank`, ready to spawn.
    pub(super) fn command(&self, rank: usize) -> Command {
        let opts = self.opts;
        let mut cmd = Command::new(&opts.program);
        cmd.args(&opts.args)
            .env(VAR_RANK, rank.to_string())
            .env(VAR_SIZE, opts.ranks.to_string())
            .env(VAR_SEGMENT_FD, self.segment_fd.as_raw_fd().to_string())
            .env(VAR_LAUNCHER_PID, self.launcher.as_raw_nonzero().to_string())
            .env(VAR_TRANSPORT, opts.transport.to_string());
        if let Some(dir) = &opts.mpi_library {
            let mut path = dir.as_os_str().to_os_string();
            if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|p| !p.is_empty()) {
                path.push(":");
                path.push(old);
            }
            cmd.env("LD_LIBRARY_PATH", path)
                .env("MPI4PY_LIBMPI", dir.join(super::MPI_LIBRARY));
        }
        // As mpirun does: rank 0 reads the launcher's stdin, the others read nothing (several
        // readers of one terminal would each get random pieces of it).
        if rank != 0 {
            cmd.stdin(Stdio::null());
        }
        if opts.tag_output {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let setup = ChildSetup {
            launcher: self.launcher,
            segment_fd: self.segment_fd.as_raw_fd(),
            file_limit: self.file_limit.original,
        };
        // SAFETY: `ChildSetup::run` only makes system calls (prctl, getppid, fcntl, setrlimit)
        // through rustix, all async-signal-safe; it neither allocates nor takes locks, so it is
        // sound between fork and exec even though the launcher has other threads.
        unsafe { cmd.pre_exec(move || setup.run()) };
        cmd
    }
}

/// What a rank does between fork and exec.
#[derive(Clone, Copy)]
struct ChildSetup {
    launcher: Pid,
    segment_fd: RawFd,
    file_limit: Option<Rlimit>,
}

impl ChildSetup {
    fn run(&self) -> std::io::Result<()> {
        // The kernel sends SIGKILL when the thread that forked us dies, even by SIGKILL, so no
        // rank outlives its launcher. (The spawning thread is the one that waits for the ranks,
        // so it lives as long as the job.)
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        // The launcher may have died before the line above took effect: then we were already
        // reparented, and must not run.
        if rustix::process::getppid() != Some(self.launcher) {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        // Only the ranks inherit the segment: it is close-on-exec in the launcher, and this fork's
        // copy of the descriptor table is the only one changed.
        // SAFETY: the launcher holds the descriptor open for the whole spawn, so it is open in
        // this copy of its descriptor table too.
        let fd = unsafe { BorrowedFd::borrow_raw(self.segment_fd) };
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        if let Some(limit) = self.file_limit {
            rustix::process::setrlimit(Resource::Nofile, limit)?;
        }
        Ok(())
    }
}

/// A descriptor for the segment numbered 3 or more, so that it can never land on a standard stream
/// that spawning replaces (when the launcher was started with one of them closed).
pub(super) fn segment_descriptor(segment: BorrowedFd<'_>) -> Result<OwnedFd, LaunchError> {
    rustix::io::fcntl_dupfd_cloexec(segment, 3).map_err(|e| LaunchError::Io {
        op: "fcntl(F_DUPFD_CLOEXEC)",
        source: e.into(),
    })
}
