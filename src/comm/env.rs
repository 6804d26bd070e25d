//! The environment contract between the launcher and its ranks: the variables `onecopy run` sets
//! in every rank, and their parsing on the rank's side. The launcher writes them
//! ([`crate::launch`]); the runtime reads them when a rank joins ([`crate::comm::initialize`]).

use std::ffi::OsString;
use std::os::fd::RawFd;

use super::MAX_RANKS;
use crate::transport::TransportChoice;

/// A rank's environment is incomplete or holds values the launcher never writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A rank variable is missing while others are set.
    #[error(
        "{var} is not set, though other ONECOPY_ variables are; start ranks with `onecopy run`"
    )]
    MissingVariable {
        /// The variable.
        var: &'static str,
    },
    /// A rank variable holds something the launcher never writes.
    #[error("{var}='{value}' is invalid: {why}; start ranks with `onecopy run`")]
    InvalidVariable {
        /// The variable.
        var: &'static str,
        /// Its value (lossily decoded).
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

/// This rank's number, `0..ONECOPY_SIZE`.
pub const VAR_RANK: &str = "ONECOPY_RANK";
/// The number of ranks in the job.
pub const VAR_SIZE: &str = "ONECOPY_SIZE";
/// The descriptor number of the job's shared segment (a memfd), open in every rank.
pub const VAR_SEGMENT_FD: &str = "ONECOPY_SEGMENT_FD";
/// The launcher's pid (what a rank names in `PR_SET_PTRACER`).
pub const VAR_LAUNCHER_PID: &str = "ONECOPY_LAUNCHER_PID";
/// `auto` or a mechanism name from [`crate::transport::NAMES`].
pub const VAR_TRANSPORT: &str = "ONECOPY_TRANSPORT";

/// What a rank learns from the launcher through its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEnv {
    /// This rank's number, below `size`.
    pub rank: usize,
    /// The number of ranks in the job, 1 to [`MAX_RANKS`].
    pub size: usize,
    /// The job's shared segment, open (without close-on-exec) in this process.
    pub segment_fd: RawFd,
    /// The launcher's pid.
    pub launcher_pid: i32,
    /// The transport the job asked for.
    pub transport: TransportChoice,
}

/// Reads this process's rank environment: `Ok(None)` when it was not started by `onecopy run`
/// (none of the variables is set), an error when they are incomplete or malformed.
///
/// ```
/// match onecopy::comm::env::rank_env() {
///     Ok(Some(env)) => println!("rank {} of {}", env.rank, env.size),
///     Ok(None) => println!("not under onecopy run: a job of one"),
///     Err(e) => eprintln!("{e}"),
/// }
/// ```
pub fn rank_env() -> Result<Option<RankEnv>, EnvError> {
    rank_env_from(|var| std::env::var_os(var))
}

/// [`rank_env`] with the variables looked up by `lookup` instead of in the environment.
pub fn rank_env_from(
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<Option<RankEnv>, EnvError> {
    let required = [VAR_RANK, VAR_SIZE, VAR_SEGMENT_FD, VAR_LAUNCHER_PID];
    if required.iter().all(|var| lookup(var).is_none()) {
        return Ok(None);
    }
    let get = |var: &'static str| -> Result<String, EnvError> {
        let value = lookup(var).ok_or(EnvError::MissingVariable { var })?;
        value
            .into_string()
            .map_err(|v| invalid(var, &v.to_string_lossy(), "not UTF-8"))
    };
    let number = |var: &'static str| -> Result<u64, EnvError> {
        let text = get(var)?;
        text.parse::<u64>()
            .map_err(|_| invalid(var, &text, "not a non-negative decimal integer"))
    };
    let size = number(VAR_SIZE)?;
    if !(1..=MAX_RANKS as u64).contains(&size) {
        return Err(invalid(
            VAR_SIZE,
            &size.to_string(),
            &format!("must be 1 to {MAX_RANKS}"),
        ));
    }
    let rank = number(VAR_RANK)?;
    if rank >= size {
        return Err(invalid(
            VAR_RANK,
            &rank.to_string(),
            &format!("must be below {VAR_SIZE} ({size})"),
        ));
    }
    let fd = number(VAR_SEGMENT_FD)?;
    let segment_fd = RawFd::try_from(fd).map_err(|_| {
        invalid(
            VAR_SEGMENT_FD,
            &fd.to_string(),
            "too large for a descriptor",
        )
    })?;
    let pid = number(VAR_LAUNCHER_PID)?;
    let launcher_pid = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| invalid(VAR_LAUNCHER_PID, &pid.to_string(), "not a valid pid"))?;
    // The launcher always sets it; a rank started by hand may leave it out and get the default.
    let transport = match lookup(VAR_TRANSPORT) {
        None => TransportChoice::Auto,
        Some(_) => {
            let text = get(VAR_TRANSPORT)?;
            text.parse::<TransportChoice>()
                .map_err(|_| invalid(VAR_TRANSPORT, &text, "not auto or a transport name"))?
        }
    };
    Ok(Some(RankEnv {
        rank: rank as usize,
        size: size as usize,
        segment_fd,
        launcher_pid,
        transport,
    }))
}

fn invalid(var: &'static str, value: &str, why: &str) -> EnvError {
    EnvError::InvalidVariable {
        var,
        value: value.to_string(),
        why: why.to_string(),
    }
}
