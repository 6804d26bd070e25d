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

/// A job of forked ranks, each joining the same segment and running one body.
pub struct Job {
    children: Vec<Child>,
    dir: std::path::PathBuf,
    _segment: onecopy::shm::Segment,
}

/// Starts `n` forked ranks of one job with `transport`; each runs `prepare(rank)` (false fails
/// it), joins, and runs `body`. A rank that fails writes its error where [`Job::wait`] finds it.
pub fn start_job(
    n: usize,
    transport: &str,
    prepare: fn(usize) -> bool,
    body: fn(&onecopy::World) -> Result<(), String>,
) -> Job {
    start_job_config(n, transport, None, prepare, body)
}

/// [`start_job`] with the settings `config` for every rank (`None`: each rank reads them from
/// its environment after `prepare`, as a rank joining a job does).
pub fn start_job_config(
    n: usize,
    transport: &str,
    config: Option<onecopy::config::Config>,
    prepare: fn(usize) -> bool,
    body: fn(&onecopy::World) -> Result<(), String>,
) -> Job {
    start_job_universe(n, transport, config, prepare, move |u| body(&u.world()))
}

/// [`start_job_config`] with a body that takes the rank's whole universe.
pub fn start_job_universe(
    n: usize,
    transport: &str,
    config: Option<onecopy::config::Config>,
    prepare: fn(usize) -> bool,
    body: impl Fn(onecopy::Universe) -> Result<(), String> + Copy,
) -> Job {
    use onecopy::comm::{self, JobSpec};
    use std::sync::atomic::{AtomicU64, Ordering};
    static JOBS: AtomicU64 = AtomicU64::new(0);
    let given = config;
    let config = given
        .clone()
        .unwrap_or_else(|| onecopy::config::Config::from_env().expect("settings"));
    let transport: onecopy::transport::TransportChoice = transport.parse().expect("transport");
    let segment = onecopy::shm::Segment::create(
        "onecopy-test-job",
        comm::segment_bytes(n, &config).expect("layout"),
    )
    .expect("segment");
    comm::init_segment(&segment, n, &config).expect("init");
    let unique = JOBS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("onecopy-job-{}-{unique}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let me = std::process::id() as i32;
    let mut children = Vec::new();
    for rank in 0..n {
        let (segment, dir, given) = (&segment, &dir, &given);
        // SAFETY: the child joins the job and runs `body`; it writes a file on failure and exits.
        let child = unsafe {
            Child::fork(move || {
                if !prepare(rank) {
                    let _ = std::fs::write(dir.join(format!("rank-{rank}")), "preparation failed");
                    return 1;
                }
                let outcome = segment
                    .try_clone()
                    .map_err(|e| e.to_string())
                    .and_then(|segment| {
                        // Read here, after `prepare`, as a rank reads them when it joins.
                        let config = match given {
                            Some(c) => c.clone(),
                            None => {
                                onecopy::config::Config::from_env().map_err(|e| e.to_string())?
                            }
                        };
                        comm::join(JobSpec {
                            segment,
                            rank,
                            size: n,
                            launcher_pid: me,
                            transport,
                            config,
                        })
                        .map_err(|e| e.to_string())
                    })
                    .and_then(body);
                match outcome {
                    Ok(()) => 0,
                    Err(e) => {
                        let _ = std::fs::write(dir.join(format!("rank-{rank}")), e);
                        1
                    }
                }
            })
        }
        .expect("fork");
        children.push(child);
    }
    Job {
        children,
        dir,
        _segment: segment,
    }
}

impl Job {
    /// The pid of rank `rank`.
    pub fn pid(&self, rank: usize) -> i32 {
        self.children[rank].pid()
    }

    /// Waits up to `timeout` for each rank; returns how each ended (None: still running, then
    /// killed) and the error it wrote, if any.
    pub fn wait(self, timeout: Duration) -> Vec<(Option<onecopy::child::Exit>, Option<String>)> {
        let mut out = Vec::new();
        for (rank, mut c) in self.children.into_iter().enumerate() {
            let exit = c.wait_timeout(timeout).expect("wait");
            if exit.is_none() {
                c.kill();
            }
            let text = std::fs::read_to_string(self.dir.join(format!("rank-{rank}"))).ok();
            out.push((exit, text));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        out
    }
}

/// Runs `body` in `n` forked ranks of one job with the settings `config`; returns each rank's
/// error text, if any.
pub fn run_job_config(
    n: usize,
    transport: &str,
    config: onecopy::config::Config,
    body: fn(&onecopy::World) -> Result<(), String>,
) -> Vec<Option<String>> {
    outcomes(start_job_config(n, transport, Some(config), |_| true, body))
}

/// How each rank of `job` ended: `None` for success, else its error text.
fn outcomes(job: Job) -> Vec<Option<String>> {
    job.wait(Duration::from_secs(60))
        .into_iter()
        .map(|(exit, text)| match exit {
            Some(onecopy::child::Exit::Code(0)) => None,
            other => Some(text.unwrap_or_else(|| format!("ended with {other:?}"))),
        })
        .collect()
}

/// Runs `body`, given the rank's universe, in `n` forked ranks of one job; returns each rank's
/// error text, if any.
pub fn run_job_universe(
    n: usize,
    transport: &str,
    body: fn(onecopy::Universe) -> Result<(), String>,
) -> Vec<Option<String>> {
    outcomes(start_job_universe(n, transport, None, |_| true, body))
}

/// Runs `body` in `n` forked ranks of one job; returns each rank's error text, if any.
pub fn run_job(
    n: usize,
    transport: &str,
    body: fn(&onecopy::World) -> Result<(), String>,
) -> Vec<Option<String>> {
    run_job_with(n, transport, |_| true, body)
}

/// [`run_job`], with `prepare(rank)` run in each rank before it joins (false fails the rank).
pub fn run_job_with(
    n: usize,
    transport: &str,
    prepare: fn(usize) -> bool,
    body: fn(&onecopy::World) -> Result<(), String>,
) -> Vec<Option<String>> {
    outcomes(start_job(n, transport, prepare, body))
}

/// Fails the test with the first rank's error.
pub fn assert_all_ok(errors: &[Option<String>], what: &str) {
    for (rank, e) in errors.iter().enumerate() {
        assert!(
            e.is_none(),
            "{what}: rank {rank}: {}",
            e.as_deref().unwrap_or("")
        );
    }
}
