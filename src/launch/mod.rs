//! The launcher behind `onecopy run`: it creates the job's shared segment, starts N ranks of one
//! program, forwards their output, notices the first failure, and tears the whole job down.
//!
//! It owns processes, not messages: what the ranks do with the segment is the runtime's business
//! ([`crate::comm`]); a rank finds what the launcher gave it with
//! [`crate::comm::env::rank_env`]. The launcher sits above the runtime: it calls
//! [`crate::comm::init_segment`] to lay out the segment, and nothing in the runtime calls back.
//!
//! # What a rank gets
//! - The environment variables `ONECOPY_RANK` (0 to N-1), `ONECOPY_SIZE` (N),
//!   `ONECOPY_SEGMENT_FD`, `ONECOPY_LAUNCHER_PID` and `ONECOPY_TRANSPORT` (`auto` or a name from
//!   [`crate::transport::NAMES`]), named in [`crate::comm::env`].
//! - The segment: a memfd (nothing under /dev/shm, so nothing to clean up after a crash and nothing
//!   another user could open), close-on-exec in the launcher and inherited by the ranks alone, at
//!   the descriptor number `ONECOPY_SEGMENT_FD` names.
//! - Death with the launcher: each rank asks for SIGKILL when the launcher dies
//!   (`PR_SET_PDEATHSIG`), so no rank survives it, even when the launcher itself is SIGKILLed.
//! - Stdin: rank 0 reads the launcher's; the others read `/dev/null`.
//! - With [`RunOptions::mpi_library`]: that folder first on `LD_LIBRARY_PATH`, so that a
//!   program built against MPICH (its `libmpich.so.12` or `libmpi.so.12`) loads onecopy's
//!   library instead, and `MPI4PY_LIBMPI` naming the library, for mpi4py.
//! - Stdout and stderr: the launcher's, shared; with `--tag-output`, every line a rank writes is
//!   prefixed with `[RANK] ` (`[3] hello`) on the same stream. Lines are never interleaved, a
//!   last line without a newline gets one, and a line longer than [`MAX_LINE_BYTES`] is cut into
//!   tagged pieces.
//!
//! # Failure and teardown
//! The launcher waits on a pidfd per rank, in one `poll` with a self-pipe for signals. When a rank
//! exits non-zero or dies by a signal, the launcher reports it at once (an [`Event`], printed by
//! `onecopy run` as one line: `onecopy: rank 1 (pid 4242) exited with code 3; stopping the other 3
//! ranks`, or `... killed by signal 9 (SIGKILL); ...`), sends SIGTERM to the others, and SIGKILL
//! to those still running after [`TEARDOWN_GRACE`]. SIGINT, SIGTERM or SIGHUP to the launcher is
//! forwarded to the ranks and followed by the same SIGKILL; a second one skips the grace.
//!
//! # Exit status of `onecopy run`
//! 0 when every rank exits 0; otherwise the first failing rank's exit code, or 128 + the signal
//! that killed it; 128 + the signal when the launcher was interrupted (130 for Ctrl-C); 2 for a
//! usage error; 127 when the program is not found and 126 when it is not executable (as shells
//! do); 1 when the launcher itself fails (see [`JobOutcome::exit_code`], [`LaunchError::exit_code`]).

mod error;
mod output;
mod signals;
mod spawn;

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

pub use crate::transport::TransportChoice;
pub use error::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_USAGE, LaunchError};
pub use output::{DRAIN_IDLE, DRAIN_LIMIT, MAX_LINE_BYTES};
pub use signals::signal_name;

/// The most ranks one job may have: far beyond one machine's cores, low enough that a typo
/// (`-n 40000`) fails cleanly instead of exhausting the process table.
pub const MAX_RANKS: usize = 4096;

/// How long ranks have between SIGTERM and SIGKILL when a job is torn down.
pub const TEARDOWN_GRACE: Duration = Duration::from_secs(1);

/// How long the launcher waits for ranks to vanish after SIGKILL before it stops waiting (a process
/// stuck in the kernel may take longer; it still dies, unreaped by the launcher).
pub const REAP_LIMIT: Duration = Duration::from_millis(500);

/// While starting many ranks, how often the launcher looks for one that already failed.
const SPAWN_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The name of the job's memfd (seen in `/proc/PID/fd` as `/memfd:onecopy-world`).
pub const SEGMENT_NAME: &str = "onecopy-world";

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// How many ranks, 1 to [`MAX_RANKS`].
    pub ranks: usize,
    /// The transport the ranks are told to use.
    pub transport: TransportChoice,
    /// Prefix every line of output with its rank (`[RANK] `).
    pub tag_output: bool,
    /// The program every rank runs: a path, or a name looked up in `PATH`.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The folder of onecopy's `libmpi.so.12`, put first on every rank's `LD_LIBRARY_PATH` (so
    /// that a program linked against MPICH's library loads onecopy's) and named by
    /// `MPI4PY_LIBMPI`; `None` leaves the environment as it is ([`mpi_library_dir`]).
    pub mpi_library: Option<PathBuf>,
}

impl RunOptions {
    /// `ranks` ranks of `program` without arguments, transport `auto`, untagged output.
    pub fn new(ranks: usize, program: impl Into<OsString>) -> RunOptions {
        RunOptions {
            ranks,
            transport: TransportChoice::Auto,
            tag_output: false,
            program: program.into(),
            args: Vec::new(),
            mpi_library: None,
        }
    }
}

/// The environment variable that names the folder of onecopy's `libmpi.so.12`, where it is not
/// beside the `onecopy` executable.
pub const VAR_MPI_LIBRARY_DIR: &str = "ONECOPY_MPI_LIBRARY_DIR";

/// The file name of onecopy's MPI library (MPICH's SONAME).
pub const MPI_LIBRARY: &str = "libmpi.so.12";

/// Where onecopy's `libmpi.so.12` is: the folder [`VAR_MPI_LIBRARY_DIR`] names, else the
/// folder of the running executable (where `cargo build` puts both), if it holds the library.
pub fn mpi_library_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os(VAR_MPI_LIBRARY_DIR) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::current_exe().ok()?.parent()?.to_path_buf(),
    };
    let dir = dir.canonicalize().ok()?;
    dir.join(MPI_LIBRARY).is_file().then_some(dir)
}

/// Parses a rank count as typed by a user: an integer from 1 to [`MAX_RANKS`].
pub fn parse_ranks(text: &str) -> Result<usize, LaunchError> {
    let t = text.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    let why = if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        "not an integer".to_string()
    } else if t.starts_with('-') || digits.bytes().all(|b| b == b'0') {
        "a job needs at least 1 rank".to_string()
    } else {
        match t.parse::<usize>() {
            Ok(n) if n <= MAX_RANKS => return Ok(n),
            _ => format!("at most {MAX_RANKS} ranks are supported"),
        }
    };
    Err(LaunchError::InvalidRanks {
        given: text.to_string(),
        why,
    })
}

/// How a rank ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankEnd {
    /// It exited with this code.
    Exited(i32),
    /// This signal killed it.
    Killed(i32),
}

impl RankEnd {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == RankEnd::Exited(0)
    }

    /// The exit code a shell would report for it: the code itself, or 128 + the signal.
    pub fn exit_code(&self) -> i32 {
        match *self {
            RankEnd::Exited(code) => code,
            RankEnd::Killed(signal) => 128 + signal,
        }
    }
}

impl std::fmt::Display for RankEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            RankEnd::Exited(code) => write!(f, "exited with code {code}"),
            RankEnd::Killed(signal) => {
                write!(f, "killed by signal {signal} ({})", signal_name(signal))
            }
        }
    }
}

/// How one rank of a finished job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankOutcome {
    /// Its rank.
    pub rank: usize,
    /// Its pid.
    pub pid: i32,
    /// How it ended; `None` when it had not vanished [`REAP_LIMIT`] after SIGKILL.
    pub end: Option<RankEnd>,
    /// Whether the launcher signalled it while tearing the job down.
    pub stopped: bool,
}

/// Why a job was torn down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// This rank failed first.
    Rank {
        /// Its rank.
        rank: usize,
        /// Its pid.
        pid: i32,
        /// How it ended.
        end: RankEnd,
    },
    /// The launcher received this signal.
    Signal(i32),
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// Every rank started, in rank order: all of them, unless the job was stopped (a failure, a
    /// signal) while ranks were still being started.
    pub ranks: Vec<RankOutcome>,
    /// Why the job was torn down; `None` when every rank exited 0.
    pub failure: Option<Failure>,
}

impl JobOutcome {
    /// Whether every rank exited 0.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// The exit status of `onecopy run`: 0 when every rank exited 0; the first failing rank's
    /// exit code, or 128 + the signal that killed it; 128 + the signal the launcher received.
    pub fn exit_code(&self) -> i32 {
        match self.failure {
            None => 0,
            Some(Failure::Rank { end, .. }) => end.exit_code(),
            Some(Failure::Signal(signal)) => 128 + signal,
        }
    }
}

/// Something the launcher reports the moment it happens, before the teardown it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A rank failed; the others are being stopped.
    RankFailed {
        /// Its rank.
        rank: usize,
        /// Its pid.
        pid: i32,
        /// How it ended.
        end: RankEnd,
        /// How many other ranks were still running.
        still_running: usize,
    },
    /// The launcher received a signal; the ranks are being stopped.
    Signal {
        /// The signal.
        signal: i32,
        /// How many ranks were still running.
        still_running: usize,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Event::RankFailed {
                rank,
                pid,
                end,
                still_running,
            } => {
                write!(f, "rank {rank} (pid {pid}) {end}; ")?;
                match still_running {
                    0 => f.write_str("no other rank was running"),
                    1 => f.write_str("stopping the other rank"),
                    n => write!(f, "stopping the other {n} ranks"),
                }
            }
            Event::Signal {
                signal,
                still_running,
            } => {
                write!(f, "received signal {signal} ({}); ", signal_name(signal))?;
                match still_running {
                    1 => f.write_str("stopping 1 rank"),
                    n => write!(f, "stopping {n} ranks"),
                }
            }
        }
    }
}

/// Runs a job to its end: see the [module documentation](self).
///
/// ```no_run
/// use onecopy::launch::{RunOptions, run};
///
/// let mut opts = RunOptions::new(4, "hostname");
/// opts.tag_output = true;
/// let outcome = run(&opts)?;
/// println!("exit status {}", outcome.exit_code());
/// # Ok::<(), onecopy::launch::LaunchError>(())
/// ```
pub fn run(opts: &RunOptions) -> Result<JobOutcome, LaunchError> {
    run_observed(opts, |_| {})
}

/// [`run`], calling `observe` with each [`Event`] as it happens.
///
/// Must be called from a thread that lives until it returns (it does not return before the job
/// ends): each rank's death signal is tied to the thread that started it. Only one job runs per
/// process at a time ([`LaunchError::Busy`] otherwise), since signal handlers are process-wide.
pub fn run_observed(
    opts: &RunOptions,
    mut observe: impl FnMut(&Event),
) -> Result<JobOutcome, LaunchError> {
    parse_ranks(&opts.ranks.to_string())?;
    if opts.program.is_empty() {
        return Err(LaunchError::MissingProgram);
    }
    spawn::check_program(&opts.program)?;
    let file_limit = spawn::FileLimit::prepare(opts.ranks, opts.tag_output)?;
    // Read once here for the segment's sizes; each rank reads the rest when it joins.
    let config = crate::config::Config::from_env()?;
    let segment = crate::shm::Segment::create(
        SEGMENT_NAME,
        crate::comm::segment_bytes(opts.ranks, &config)?,
    )?;
    crate::comm::init_segment(&segment, opts.ranks, &config)?;
    let segment_fd = spawn::segment_descriptor(segment.fd())?;
    let mut catcher = signals::Catcher::install()?;
    let template = spawn::Template {
        opts,
        segment_fd: segment_fd.as_fd(),
        launcher: rustix::process::getpid(),
        file_limit: &file_limit,
    };

    let mut job = Job {
        ranks: Vec::with_capacity(opts.ranks),
    };
    let mut streams = Vec::new();
    let mut early_signals = Vec::new();
    let mut last_check = Instant::now();
    for rank in 0..opts.ranks {
        if let Err(e) = job.start(&template, rank, &mut streams) {
            job.abort();
            return Err(e);
        }
        // Starting thousands of ranks takes seconds: a Ctrl-C, or a rank that already failed
        // (a program crashing at start-up), stops the job without starting the rest.
        early_signals = catcher.drain();
        if !early_signals.is_empty() {
            break;
        }
        if last_check.elapsed() >= SPAWN_CHECK_INTERVAL {
            last_check = Instant::now();
            if job.any_failed() {
                break;
            }
        }
    }

    let forwarder = if opts.tag_output {
        let pipe = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
        let (ended_read, ended_write) = match pipe {
            Ok(p) => p,
            Err(e) => {
                job.abort();
                return Err(LaunchError::Io {
                    op: "pipe",
                    source: e.into(),
                });
            }
        };
        let thread = std::thread::Builder::new()
            .name("onecopy-output".into())
            .spawn(move || output::forward(streams, ended_read));
        match thread {
            Ok(handle) => Some((handle, ended_write)),
            Err(e) => {
                job.abort();
                return Err(LaunchError::Io {
                    op: "starting the output thread",
                    source: e,
                });
            }
        }
    } else {
        None
    };

    let outcome = job.supervise(&mut catcher, early_signals, &mut observe);
    if let Some((handle, ended_write)) = forwarder {
        // Closing the write end makes the read end readable: the forwarder's cue to drain.
        drop(ended_write);
        let _ = handle.join();
    }
    Ok(outcome)
}

/// One rank, as the launcher holds it.
struct Rank {
    pid: i32,
    pidfd: OwnedFd,
    end: Option<RankEnd>,
    stopped: bool,
}

/// The ranks of a job.
struct Job {
    ranks: Vec<Rank>,
}

/// A teardown in progress.
#[derive(Clone, Copy)]
struct Teardown {
    /// When the ranks still running get SIGKILL.
    kill_at: Instant,
    /// When the launcher stops waiting for them, once SIGKILL was sent.
    give_up_at: Option<Instant>,
}

impl Job {
    fn start(
        &mut self,
        template: &spawn::Template<'_>,
        rank: usize,
        streams: &mut Vec<output::Stream>,
    ) -> Result<(), LaunchError> {
        let mut child = template
            .command(rank)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                rank,
                program: template.opts.program.to_string_lossy().into_owned(),
                source,
            })?;
        let pid = Pid::from_child(&child);
        let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LaunchError::Io {
                    op: "pidfd_open (Linux 5.3 or later)",
                    source: e.into(),
                });
            }
        };
        if let Some(out) = child.stdout.take() {
            streams.push(output::Stream {
                rank,
                fd: out.into(),
                stderr: false,
            });
        }
        if let Some(err) = child.stderr.take() {
            streams.push(output::Stream {
                rank,
                fd: err.into(),
                stderr: true,
            });
        }
        // From here on the pidfd stands for the child: dropping `child` neither kills nor waits.
        self.ranks.push(Rank {
            pid: pid.as_raw_nonzero().get(),
            pidfd,
            end: None,
            stopped: false,
        });
        Ok(())
    }

    fn running(&self) -> usize {
        self.ranks.iter().filter(|r| r.end.is_none()).count()
    }

    /// Sends `signal` to every rank still running.
    fn signal_all(&mut self, signal: Signal) {
        for rank in self.ranks.iter_mut().filter(|r| r.end.is_none()) {
            // ESRCH (it just exited, not yet reaped) is fine: its pidfd will say so.
            let _ = rustix::process::pidfd_send_signal(&rank.pidfd, signal);
            rank.stopped = true;
        }
    }

    /// Reaps `rank` if it has ended.
    fn reap(&mut self, index: usize) -> Option<RankEnd> {
        let rank = &mut self.ranks[index];
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        let status = rustix::process::waitid(WaitId::PidFd(rank.pidfd.as_fd()), options).ok()??;
        let end = match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => RankEnd::Exited(code),
            (None, Some(signal)) => RankEnd::Killed(signal),
            // Only exits were asked for; anything else is not an end.
            (None, None) => return None,
        };
        rank.end = Some(end);
        Some(end)
    }

    /// Whether a rank has failed, without reaping it (the supervising loop will, and report it).
    fn any_failed(&self) -> bool {
        let mut fds: Vec<PollFd<'_>> = self
            .ranks
            .iter()
            .map(|r| PollFd::new(&r.pidfd, PollFlags::IN))
            .collect();
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if !matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0) {
            return false;
        }
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        self.ranks.iter().zip(&fds).any(|(rank, fd)| {
            !fd.revents().is_empty()
                && rustix::process::waitid(WaitId::PidFd(rank.pidfd.as_fd()), options)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.exit_status() != Some(0))
        })
    }

    /// Kills every rank started so far and reaps them (a job that could not start completely).
    fn abort(&mut self) {
        self.signal_all(Signal::KILL);
        let deadline = Instant::now() + REAP_LIMIT;
        while self.running() > 0 && Instant::now() < deadline {
            self.wait_any(Some(deadline - Instant::now()), None);
        }
    }

    /// Polls the running ranks' pidfds (and `extra`) for at most `timeout`; returns the indices of
    /// ranks that ended, reaped, and whether `extra` is readable.
    fn wait_any(
        &mut self,
        timeout: Option<Duration>,
        extra: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> (Vec<usize>, bool) {
        let live: Vec<usize> = (0..self.ranks.len())
            .filter(|&i| self.ranks[i].end.is_none())
            .collect();
        let (ready, extra_ready) = {
            let mut fds: Vec<PollFd<'_>> = live
                .iter()
                .map(|&i| PollFd::new(&self.ranks[i].pidfd, PollFlags::IN))
                .collect();
            if let Some(fd) = &extra {
                fds.push(PollFd::from_borrowed_fd(*fd, PollFlags::IN));
            }
            let timeout = timeout.map(|t| Timespec {
                tv_sec: t.as_secs() as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {
                    let extra_ready =
                        extra.is_some() && fds.pop().is_some_and(|f| !f.revents().is_empty());
                    let ready: Vec<usize> = live
                        .iter()
                        .zip(&fds)
                        .filter(|(_, f)| !f.revents().is_empty())
                        .map(|(&i, _)| i)
                        .collect();
                    (ready, extra_ready)
                }
                // poll cannot fail on these descriptors; should it, fall back to asking every
                // rank (waitid with NOHANG) every 10 ms rather than spinning or going blind.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    (live, extra.is_some())
                }
            }
        };
        let ended = ready
            .into_iter()
            .filter(|&i| self.reap(i).is_some())
            .collect();
        (ended, extra_ready)
    }

    /// Waits for every rank, tearing the job down on the first failure or signal.
    fn supervise(
        &mut self,
        catcher: &mut signals::Catcher,
        mut signals: Vec<i32>,
        observe: &mut impl FnMut(&Event),
    ) -> JobOutcome {
        let mut failure = None;
        let mut teardown: Option<Teardown> = None;
        loop {
            for signal in signals.drain(..) {
                match &mut teardown {
                    None => {
                        failure = Some(Failure::Signal(signal));
                        observe(&Event::Signal {
                            signal,
                            still_running: self.running(),
                        });
                        // Forward the signal itself: a rank may handle SIGINT differently.
                        if let Some(s) = Signal::from_named_raw(signal) {
                            self.signal_all(s);
                        }
                        teardown = Some(Teardown {
                            kill_at: Instant::now() + TEARDOWN_GRACE,
                            give_up_at: None,
                        });
                    }
                    // A second Ctrl-C: the user does not want to wait for the grace period.
                    Some(t) => t.kill_at = t.kill_at.min(Instant::now()),
                }
            }
            let now = Instant::now();
            if let Some(t) = &mut teardown {
                if t.give_up_at.is_none() && now >= t.kill_at {
                    self.signal_all(Signal::KILL);
                    t.give_up_at = Some(now + REAP_LIMIT);
                }
                if t.give_up_at.is_some_and(|at| now >= at) {
                    break;
                }
            }
            if self.running() == 0 {
                break;
            }
            let timeout = teardown.map(|t| {
                t.give_up_at
                    .unwrap_or(t.kill_at)
                    .saturating_duration_since(now)
            });
            let (ended, signalled) = self.wait_any(timeout, Some(catcher.fd()));
            if signalled {
                signals = catcher.drain();
            }
            for index in ended {
                let rank = &self.ranks[index];
                let Some(end) = rank.end else { continue };
                if end.success() || rank.stopped || failure.is_some() {
                    continue;
                }
                failure = Some(Failure::Rank {
                    rank: index,
                    pid: rank.pid,
                    end,
                });
                observe(&Event::RankFailed {
                    rank: index,
                    pid: rank.pid,
                    end,
                    still_running: self.running(),
                });
                self.signal_all(Signal::TERM);
                teardown = Some(Teardown {
                    kill_at: Instant::now() + TEARDOWN_GRACE,
                    give_up_at: None,
                });
            }
        }
        JobOutcome {
            ranks: self
                .ranks
                .iter()
                .enumerate()
                .map(|(rank, r)| RankOutcome {
                    rank,
                    pid: r.pid,
                    end: r.end,
                    stopped: r.stopped,
                })
                .collect(),
            failure,
        }
    }
}
