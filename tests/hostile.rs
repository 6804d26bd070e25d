//! Hostile conditions around a job: CMA blocked by a seccomp filter on the launcher, Yama, an
//! unprivileged outsider trying to reach a job's memory, /dev/shm full, a small RLIMIT_FSIZE, and
//! more ranks than cores.

mod common;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn onecopy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_onecopy"))
}

fn example(name: &str) -> PathBuf {
    // Examples are built next to the test binaries' target folder by `cargo test`.
    PathBuf::from(env!("CARGO_BIN_EXE_onecopy"))
        .parent()
        .expect("target dir")
        .join("examples")
        .join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args` with CMA blocked by a seccomp filter installed just before exec.
fn under_seccomp(args: &[&str]) -> Output {
    let mut cmd = onecopy();
    cmd.args(args);
    // SAFETY: the closure runs in the forked child before exec and only makes two prctl calls.
    unsafe {
        cmd.pre_exec(|| {
            if common::block_cma_with_seccomp() {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    };
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start onecopy under a seccomp filter: {e}"))
}

/// Whether this process may install a seccomp filter (tried in a throwaway child).
fn seccomp_available() -> bool {
    // SAFETY: the child makes two prctl calls and exits.
    let child =
        unsafe { onecopy::child::Child::fork(|| i32::from(!common::block_cma_with_seccomp())) };
    child
        .ok()
        .and_then(|mut c| c.wait_timeout(Duration::from_secs(10)).ok().flatten())
        == Some(onecopy::child::Exit::Code(0))
}

/// The `onecopy:` lines of stderr.
fn notes(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("onecopy:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn seccomp_on_the_launcher_check_says_so_and_everything_falls_back() {
    let _dog = common::watchdog(
        "seccomp_on_the_launcher_check_says_so_and_everything_falls_back",
        120,
    );
    if !seccomp_available() {
        common::skip("this process may not install a seccomp filter");
        return;
    }
    let check = under_seccomp(&["check"]);
    assert!(
        text(&check.stdout).contains("blocked by a seccomp filter"),
        "check: {}",
        text(&check.stdout)
    );

    let pingpong = example("pingpong");
    if pingpong.exists() {
        let pingpong = pingpong.to_string_lossy().into_owned();
        let run = under_seccomp(&["run", "-n", "2", "--", &pingpong]);
        assert!(run.status.success(), "run: {}", text(&run.stderr));
        let lines = notes(&run);
        assert_eq!(lines.len(), 1, "run: {lines:?}");
        assert!(
            lines[0].contains("seccomp") && lines[0].contains("shm-copy"),
            "{lines:?}"
        );
    } else {
        common::skip("the pingpong example is not built (run `cargo build --examples`)");
    }

    let p2p = under_seccomp(&[
        "bench",
        "p2p",
        "--sizes",
        "1K,1M",
        "--tests",
        "latency",
        "--budget-ms",
        "20",
    ]);
    assert!(p2p.status.success(), "bench p2p: {}", text(&p2p.stderr));
    let lines = notes(&p2p);
    assert_eq!(lines.len(), 1, "bench p2p: {lines:?}");
    assert!(
        lines[0].contains("seccomp") && lines[0].contains("shm-copy"),
        "{lines:?}"
    );

    let mechanisms = under_seccomp(&[
        "bench",
        "mechanisms",
        "--sizes",
        "64K",
        "--budget-ms",
        "20",
        "--rounds",
        "1",
    ]);
    assert!(
        mechanisms.status.success(),
        "bench mechanisms: {}",
        text(&mechanisms.stderr)
    );
    let lines = notes(&mechanisms);
    for cma in ["cma-read", "cma-write", "cma-split"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("skipped {cma}: ")) && l.contains("seccomp")),
            "{cma} not skipped with the reason: {lines:?}"
        );
    }
    // /proc/PID/mem is not a CMA call: the filter leaves it working, so it is measured.
    let stdout = text(&mechanisms.stdout);
    for measured in ["shm-copy", "procmem"] {
        assert!(stdout.contains(measured), "{measured} missing: {stdout}");
    }
}

/// Starts `onecopy run -n 2 -- sleep 30` and returns it with its ranks' pids.
// The launcher is handed to the caller, which kills and waits for it.
#[allow(clippy::zombie_processes)]
fn sleeping_job() -> (std::process::Child, Vec<i32>) {
    let mut launcher = onecopy()
        .args(["run", "-n", "2", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start onecopy run");
    let start = Instant::now();
    loop {
        let path = format!("/proc/{}/task/{}/children", launcher.id(), launcher.id());
        let pids: Vec<i32> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        // Wait until both ranks have exec'd `sleep` (so they hold the segment as a rank does).
        let ready = pids.len() == 2
            && pids.iter().all(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            });
        if ready {
            return (launcher, pids);
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = launcher.kill();
            let _ = launcher.wait();
            panic!("ranks not started");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The fd number of the job's memfd in `pid`.
fn memfd_of(pid: i32) -> Option<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:"))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

#[test]
fn an_unprivileged_outsider_cannot_reach_a_jobs_memory_or_segment() {
    let _dog = common::watchdog(
        "an_unprivileged_outsider_cannot_reach_a_jobs_memory_or_segment",
        60,
    );
    if !common::is_root() {
        common::skip("needs root to run a helper as uid 65534");
        return;
    }
    let (mut launcher, ranks) = sleeping_job();
    let mut refused = Vec::new();
    for &pid in &ranks {
        let fd = memfd_of(pid).expect("the rank holds the job's memfd");
        let addr = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .ok()
            .and_then(|m| m.split('-').next().map(str::to_string))
            .expect("maps");
        // The outsider: a child of this test (not of the launcher) as uid/gid 65534.
        let peek = {
            let mut cmd = onecopy();
            cmd.args(["peek", &pid.to_string(), &format!("0x{addr}"), "16"]);
            // SAFETY: the closure runs in the forked child before exec: raw setgroups/setresgid/
            // setresuid system calls only.
            unsafe {
                cmd.pre_exec(|| {
                    onecopy::child::become_user(onecopy::child::NOBODY, onecopy::child::NOBODY)
                })
            };
            cmd.output().expect("run peek as nobody")
        };
        assert!(!peek.status.success(), "nobody read rank {pid}");
        assert!(
            text(&peek.stderr).contains("permission denied"),
            "peek as nobody: {}",
            text(&peek.stderr)
        );
        // SAFETY: the child only changes its ids and tries three opens, then exits.
        let mut child = unsafe {
            onecopy::child::Child::fork(move || {
                if onecopy::child::become_user(onecopy::child::NOBODY, onecopy::child::NOBODY)
                    .is_err()
                {
                    return 100;
                }
                let mut reached = 0;
                if std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok() {
                    reached |= 1;
                }
                if std::fs::File::open(format!("/proc/{pid}/fd/{fd}")).is_ok() {
                    reached |= 2;
                }
                if std::fs::File::open(format!("/proc/{pid}/mem")).is_ok() {
                    reached |= 4;
                }
                reached
            })
        }
        .expect("fork an outsider");
        let exit = child.wait_timeout(Duration::from_secs(10)).expect("wait");
        assert_eq!(
            exit,
            Some(onecopy::child::Exit::Code(0)),
            "the outsider reached rank {pid} (1: fd list, 2: the segment, 4: memory, 100: setuid failed)"
        );
        refused.push(pid);
    }
    let _ = launcher.kill();
    let _ = launcher.wait();
    eprintln!(
        "uid 65534 refused: peek, /proc/PID/fd, the memfd, /proc/PID/mem of ranks {refused:?}"
    );
}

#[test]
fn yama_ptrace_scope_1_admits_the_job_and_refuses_outsiders() {
    let _dog = common::watchdog(
        "yama_ptrace_scope_1_admits_the_job_and_refuses_outsiders",
        60,
    );
    let scope = match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Ok(s) => s.trim().to_string(),
        Err(_) => {
            common::skip(
                "Yama is not in this kernel (/proc/sys/kernel/yama/ptrace_scope is absent)",
            );
            return;
        }
    };
    if scope != "1" {
        common::skip(&format!(
            "Yama ptrace_scope is {scope} here; this test needs 1"
        ));
        return;
    }
    if !common::is_root() {
        common::skip("needs root to run the job and the outsider as uid 65534 (no CAP_SYS_PTRACE)");
        return;
    }
    let pingpong = example("pingpong");
    if !pingpong.exists() {
        common::skip("the pingpong example is not built (run `cargo build --examples`)");
        return;
    }
    // The job as uid 65534, so that no capability lets it past Yama: the ranks must reach each
    // other by single copy (no fallback line).
    let as_nobody = |cmd: &mut Command| {
        // SAFETY: raw id-changing system calls only, in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                onecopy::child::become_user(onecopy::child::NOBODY, onecopy::child::NOBODY)
            })
        };
    };
    let mut job = onecopy();
    job.args(["run", "-n", "2", "--transport", "cma-read", "--"])
        .arg(&pingpong);
    as_nobody(&mut job);
    let out = job.output().expect("run the job as nobody");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        notes(&out).is_empty(),
        "fell back under Yama 1: {:?}",
        notes(&out)
    );
    // An outsider of the same uid, not a descendant of the job's launcher, is refused.
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30");
    as_nobody(&mut sleeper);
    let mut sleeper = sleeper.spawn().expect("sleep as nobody");
    let mut peek = onecopy();
    peek.args(["peek", &sleeper.id().to_string(), "0x1000", "1"]);
    as_nobody(&mut peek);
    let out = peek.output().expect("peek as nobody");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("Yama"), "{}", text(&out.stderr));
}

#[test]
fn a_full_dev_shm_does_not_matter() {
    let _dog = common::watchdog("a_full_dev_shm_does_not_matter", 60);
    let pingpong = example("pingpong");
    if !pingpong.exists() {
        common::skip("the pingpong example is not built (run `cargo build --examples`)");
        return;
    }
    // A private mount namespace with a 4 KiB /dev/shm, filled up, then a whole job.
    let script = format!(
        "mount -t tmpfs -o size=4k tmpfs /dev/shm || exit 77
         head -c 8192 /dev/zero > /dev/shm/fill 2>/dev/null
         [ $(df --output=avail /dev/shm | tail -1) -eq 0 ] || exit 78
         exec {} run -n 2 -- {}",
        env!("CARGO_BIN_EXE_onecopy"),
        pingpong.display()
    );
    let out = match Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            common::skip(&format!("cannot run unshare: {e}"));
            return;
        }
    };
    if matches!(out.status.code(), Some(77) | Some(1)) && text(&out.stderr).contains("unshare") {
        common::skip(&format!(
            "no private mount namespace here: {}",
            text(&out.stderr)
        ));
        return;
    }
    if out.status.code() == Some(77) {
        common::skip(&format!("cannot mount a tmpfs: {}", text(&out.stderr)));
        return;
    }
    assert!(
        out.status.success(),
        "job with a full /dev/shm: {:?} {}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn a_small_file_size_limit_is_a_clear_error_not_sigxfsz() {
    let _dog = common::watchdog("a_small_file_size_limit_is_a_clear_error_not_sigxfsz", 60);
    let mut cmd = onecopy();
    cmd.args(["run", "-n", "2", "--", "true"]);
    // SAFETY: one setrlimit system call in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(64 << 10),
                // Keep the hard limit: raising it needs privilege.
                maximum: rustix::process::getrlimit(rustix::process::Resource::Fsize).maximum,
            };
            rustix::process::setrlimit(rustix::process::Resource::Fsize, limit)
                .map_err(std::io::Error::from)
        })
    };
    let out = cmd.output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?} {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("RLIMIT_FSIZE"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn eight_communicating_ranks_on_two_cores() {
    let _dog = common::watchdog("eight_communicating_ranks_on_two_cores", 120);
    let ring = example("ring");
    if !ring.exists() {
        common::skip("the ring example is not built (run `cargo build --examples`)");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    let out = onecopy()
        .args(["run", "-n", "8", "--"])
        .arg(&ring)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    eprintln!(
        "ring example, 8 ranks on {cores} cores: {:?} ({} lines of output)",
        start.elapsed(),
        text(&out.stdout).lines().count()
    );
}

#[test]
fn a_segment_too_large_to_map_is_a_clear_error() {
    let _dog = common::watchdog("a_segment_too_large_to_map_is_a_clear_error", 60);
    // 4096 ranks need a segment of several TiB; with 2 GiB of address space it cannot be mapped.
    let mut cmd = onecopy();
    cmd.args(["run", "-n", "4096", "--", "true"]);
    // SAFETY: one setrlimit system call in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(2 << 30),
                // Keep the hard limit: raising it needs privilege.
                maximum: rustix::process::getrlimit(rustix::process::Resource::As).maximum,
            };
            rustix::process::setrlimit(rustix::process::Resource::As, limit)
                .map_err(std::io::Error::from)
        })
    };
    let out = cmd.output().expect("run");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{:?} {stderr}", out.status);
    assert!(
        stderr.starts_with("onecopy: shared memory segment of ")
            && (stderr.contains("mmap failed") || stderr.contains("RLIMIT_FSIZE")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
