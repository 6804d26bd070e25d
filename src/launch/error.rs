//! The error type of the `launch` layer, and the exit status each error maps to.

/// Exit status for a usage error (bad or missing argument).
pub const EXIT_USAGE: i32 = 2;
/// Exit status when the program exists but cannot be executed (as in shells).
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit status when the program cannot be found (as in shells).
pub const EXIT_NOT_FOUND: i32 = 127;

/// Errors starting or supervising a job.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The rank count is not an integer from 1 to [`MAX_RANKS`](super::MAX_RANKS).
    #[error("invalid number of ranks '{given}': {why}")]
    InvalidRanks {
        /// What was given.
        given: String,
        /// What is wrong with it.
        why: String,
    },
    /// The transport is neither `auto` nor a known name.
    #[error(transparent)]
    UnknownTransport(#[from] crate::transport::UnknownTransport),
    /// No program was given.
    #[error("no program given; usage: onecopy run -n N -- PROG [ARGS...]")]
    MissingProgram,
    /// The program is neither a path to a file nor found in `PATH`.
    #[error("cannot run '{program}': not found{where_}", where_ = if .program.contains('/') { "" } else { " in PATH" })]
    ProgramNotFound {
        /// The program as given.
        program: String,
    },
    /// The program exists but cannot be executed.
    #[error("cannot run '{program}': {why}")]
    NotExecutable {
        /// The program as given.
        program: String,
        /// Why not (a directory, no execute permission).
        why: String,
    },
    /// The job needs more file descriptors than `RLIMIT_NOFILE` allows, even raised to its hard
    /// limit.
    #[error(
        "{ranks} ranks need about {needed} file descriptors but RLIMIT_NOFILE allows {limit}; \
         raise it (ulimit -n) or use fewer ranks"
    )]
    TooManyFiles {
        /// Ranks asked for.
        ranks: usize,
        /// Descriptors the launcher would hold.
        needed: u64,
        /// The hard limit.
        limit: u64,
    },
    /// The job needs more processes than `RLIMIT_NPROC` allows.
    #[error(
        "{ranks} ranks exceed RLIMIT_NPROC ({limit} processes for this user); \
         raise it (ulimit -u) or use fewer ranks"
    )]
    TooManyProcesses {
        /// Ranks asked for.
        ranks: usize,
        /// The soft limit.
        limit: u64,
    },
    /// Creating the job's shared segment failed.
    #[error(transparent)]
    Segment(#[from] crate::shm::ShmError),
    /// The job's layout (sizes from the environment) is not usable.
    #[error(transparent)]
    Layout(#[from] crate::comm::CommError),
    /// A setting in the environment is not usable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Starting a rank failed (the ranks already started have been stopped).
    #[error("cannot start rank {rank} ('{program}'): {source}{hint}", hint = spawn_hint(.source))]
    Spawn {
        /// The rank that could not start.
        rank: usize,
        /// The program as given.
        program: String,
        /// The error from fork or exec.
        #[source]
        source: std::io::Error,
    },
    /// A system call the launcher needs failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// [`run`](super::run) was called while another job was running in this process.
    #[error("another job is already running in this process; run one job at a time")]
    Busy,
}

/// What to do about the commonest reasons a fork fails.
fn spawn_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => " (too many processes: check ulimit -u)",
        Some(libc::EMFILE) | Some(libc::ENFILE) => " (too many open files: check ulimit -n)",
        Some(libc::ENOMEM) => " (out of memory)",
        _ => "",
    }
}

impl LaunchError {
    /// The exit status `onecopy run` ends with for this error: 2 usage error, 127 program not
    /// found, 126 program not executable, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::InvalidRanks { .. }
            | LaunchError::UnknownTransport(_)
            | LaunchError::MissingProgram => EXIT_USAGE,
            LaunchError::ProgramNotFound { .. } => EXIT_NOT_FOUND,
            LaunchError::NotExecutable { .. } => EXIT_NOT_EXECUTABLE,
            LaunchError::Spawn { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
                std::io::ErrorKind::PermissionDenied => EXIT_NOT_EXECUTABLE,
                _ => 1,
            },
            _ => 1,
        }
    }
}
