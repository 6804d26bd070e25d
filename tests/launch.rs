//! `onecopy run` end to end: what each rank receives, output forwarding, failure detection and
//! teardown (a failing rank, signals to the launcher, the launcher killed outright), bad input, and
//! the library API under it.
//!
//! Ranks are `sh -c` scripts. Those that must be checked for survival write their pid (`$$`,
//! kept by `exec sleep`) to a file in a scratch directory; whatever is still alive when a test
//! ends, in any path, is killed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use onecopy::launch::{
    self, Event, Failure, JobOutcome, LaunchError, RankEnd, RankOutcome, RunOptions,
    TransportChoice,
};
use rustix::process::{Pid, Signal};

/// Fails the whole test binary if a test runs past `secs` (a hang must never stall CI).
struct Watchdog(mpsc::Sender<()>);

fn watchdog(name: &'static str, secs: u64) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("watchdog: {name} still running after {secs} s; failing");
            std::process::exit(3);
        }
    });
    Watchdog(tx)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// The launcher's longest teardown, plus what the spec allows: the job must be gone this soon
/// after a failure.
const STOP_WITHIN: Duration = Duration::from_secs(2);

fn onecopy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onecopy"));
    cmd.stdin(Stdio::null());
    cmd
}

fn output(args: &[&str]) -> Output {
    onecopy().args(args).output().expect("run onecopy")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `pid` is a live process (a zombie is dead: it only waits to be reaped, and in a
/// container the init process may never reap it).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

/// The command name of `pid`, if it exists.
fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn signal(pid: u32, sig: Signal) {
    let pid = Pid::from_raw(pid as i32).expect("a pid");
    rustix::process::kill_process(pid, sig).expect("signal the launcher");
}

/// A scratch directory with a file where ranks append their pids; on drop, every listed process
/// still alive is killed and the directory removed.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("onecopy-launch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        Scratch { dir }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("pids")
    }

    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.pid_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Waits until `n` pids are listed.
    fn wait_for_pids(&self, n: usize) -> Vec<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pids = self.pids();
            if pids.len() >= n {
                return pids;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} ranks started",
                pids.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A shell command that records the current time (for [`Scratch::failed_at`]).
    fn stamp(&self) -> String {
        format!("date +%s%N > {}", self.dir.join("failed_at").display())
    }

    /// When a rank ran [`Scratch::stamp`] (wall clock: the rank's only clock shared with us).
    fn failed_at(&self) -> SystemTime {
        let nanos: u64 = std::fs::read_to_string(self.dir.join("failed_at"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .expect("the failing rank's time stamp");
        SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
    }
}

/// How long after `from` the moment `to` came (zero if it came first).
fn after(to: SystemTime, from: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or(Duration::ZERO)
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in self.pids() {
            // Only what the ranks became: never a stranger that reused the pid.
            if alive(pid) && matches!(comm(pid).as_deref(), Some("sleep" | "sh")) {
                let _ =
                    rustix::process::kill_process(Pid::from_raw(pid).expect("a pid"), Signal::KILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A launcher started in the background, its stderr read line by line with arrival times; killed
/// and reaped on drop if still running.
struct Launcher {
    child: Child,
    lines: mpsc::Receiver<(SystemTime, String)>,
    stderr: Vec<(SystemTime, String)>,
}

impl Launcher {
    fn start(args: &[&str]) -> Launcher {
        let mut child = onecopy()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start onecopy run");
        let err = child.stderr.take().expect("stderr pipe");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send((SystemTime::now(), line)).is_err() {
                    break;
                }
            }
        });
        Launcher {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    /// Waits for the launcher to exit (at most `limit`); returns its exit code and when it exited.
    fn wait(&mut self, limit: Duration) -> (Option<i32>, SystemTime) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let at = SystemTime::now();
                // The stderr pipe closes once the launcher and its ranks are gone.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.stderr.push(line);
                }
                return (status.code(), at);
            }
            assert!(
                Instant::now() < deadline,
                "the launcher did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr.iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    /// When the first stderr line containing `needle` arrived.
    fn line_time(&self, needle: &str) -> Option<SystemTime> {
        self.stderr
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_all_gone(pids: &[i32]) {
    for &pid in pids {
        assert!(!alive(pid), "rank process {pid} survived the job");
    }
}

#[test]
fn every_rank_gets_its_environment() {
    let _w = watchdog("every_rank_gets_its_environment", 60);
    let child = onecopy()
        .args(["run", "-n", "4", "--", "sh", "-c"])
        .arg("echo $ONECOPY_RANK $ONECOPY_SIZE $ONECOPY_TRANSPORT $ONECOPY_LAUNCHER_PID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start onecopy run");
    let launcher_pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    let expected: Vec<String> = (0..4)
        .map(|r| format!("{r} 4 auto {launcher_pid}"))
        .collect();
    assert_eq!(lines, expected);
}

#[test]
fn a_named_transport_reaches_the_ranks() {
    let _w = watchdog("a_named_transport_reaches_the_ranks", 60);
    let out = output(&[
        "run",
        "--transport",
        "cma-split",
        "-n",
        "2",
        "--",
        "sh",
        "-c",
        "echo $ONECOPY_TRANSPORT",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "cma-split\ncma-split\n");
}

/// Entries under /dev/shm whose name mentions onecopy (others on this machine may create their own).
fn dev_shm_entries() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("onecopy"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The `flags:` line of a descriptor's fdinfo, as a number.
fn fd_flags(fdinfo: &str) -> u64 {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u64::from_str_radix(f.trim(), 8).ok())
        .expect("a flags line")
}

#[test]
fn the_segment_is_a_memfd_inherited_by_the_ranks_only() {
    let _w = watchdog("the_segment_is_a_memfd_inherited_by_the_ranks_only", 60);
    let before = dev_shm_entries();
    // The rank shows what the descriptor is (readlink, a further exec, still has it), its flags
    // in the rank, and its flags in the launcher.
    let script = r#"fd=$ONECOPY_SEGMENT_FD
        [ -e /proc/self/fd/$fd ] || { echo "fd $fd not open" >&2; exit 9; }
        echo "link $(readlink /proc/self/fd/$fd)"
        echo "rank $(grep flags: /proc/$$/fdinfo/$fd)"
        echo "launcher $(grep flags: /proc/$ONECOPY_LAUNCHER_PID/fdinfo/$fd)""#;
    let out = output(&["run", "-n", "2", "--tag-output", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    const O_CLOEXEC: u64 = 0o2000000;
    for rank in 0..2 {
        let field = |name: &str| {
            let prefix = format!("[{rank}] {name} ");
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no '{name}' line from rank {rank} in:\n{stdout}"))
                .to_string()
        };
        assert!(
            field("link").starts_with("/memfd:onecopy-world"),
            "{stdout}"
        );
        assert_eq!(fd_flags(&field("rank")) & O_CLOEXEC, 0, "{stdout}");
        assert_ne!(fd_flags(&field("launcher")) & O_CLOEXEC, 0, "{stdout}");
    }
    assert_eq!(
        dev_shm_entries(),
        before,
        "something appeared under /dev/shm"
    );
}

#[test]
fn tag_output_prefixes_every_line_with_its_rank() {
    let _w = watchdog("tag_output_prefixes_every_line_with_its_rank", 60);
    let script =
        "echo out $ONECOPY_RANK; echo err $ONECOPY_RANK >&2; printf 'last %s' $ONECOPY_RANK";
    let out = output(&["run", "-n", "3", "--tag-output", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let mut stdout: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    stdout.sort();
    let mut expected: Vec<String> = (0..3)
        .flat_map(|r| [format!("[{r}] out {r}"), format!("[{r}] last {r}")])
        .collect();
    expected.sort();
    assert_eq!(stdout, expected);
    let mut stderr: Vec<String> = text(&out.stderr).lines().map(String::from).collect();
    stderr.sort();
    assert_eq!(stderr, vec!["[0] err 0", "[1] err 1", "[2] err 2"]);
}

#[test]
fn tag_output_never_splits_or_loses_lines() {
    let _w = watchdog("tag_output_never_splits_or_loses_lines", 120);
    let payload = "x".repeat(300);
    let script = format!("yes \"$ONECOPY_RANK:{payload}\" | head -n 5000");
    let out = output(&["run", "-n", "4", "--tag-output", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut counts = [0usize; 4];
    for line in stdout.lines() {
        let rank: usize = line
            .strip_prefix('[')
            .and_then(|l| l.split_once(']'))
            .and_then(|(r, _)| r.parse().ok())
            .unwrap_or_else(|| panic!("untagged line: {line:.80}"));
        assert_eq!(line, format!("[{rank}] {rank}:{payload}"), "a mangled line");
        counts[rank] += 1;
    }
    assert_eq!(counts, [5000; 4]);
}

#[test]
fn np_is_an_alias_of_n() {
    let _w = watchdog("np_is_an_alias_of_n", 60);
    let out = output(&["run", "-np", "3", "--", "sh", "-c", "echo $ONECOPY_SIZE"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "3\n3\n3\n");
    // After the program, `-np` is the program's own argument.
    let out = output(&[
        "run",
        "-n",
        "1",
        "--",
        "sh",
        "-c",
        "echo \"$@\"",
        "sh",
        "-np",
        "7",
    ]);
    assert_eq!(text(&out.stdout), "-np 7\n");
}

/// Runs 4 ranks where `rank_script` runs in `failing_rank` once every rank has written its pid,
/// and the others sleep; checks the launcher reports and stops the job in time.
fn failing_rank_case(name: &str, failing_rank: usize, fail: &str) -> (Launcher, Option<i32>) {
    let scratch = Scratch::new(name);
    let pids = scratch.pid_file();
    let pids = pids.display();
    let stamp = scratch.stamp();
    let script = format!(
        "echo $$ >> {pids}
         if [ $ONECOPY_RANK = {failing_rank} ]; then
             while [ $(wc -l < {pids}) -lt 4 ]; do sleep 0.01; done
             {stamp}
             {fail}
         fi
         exec sleep 30"
    );
    let mut launcher = Launcher::start(&["run", "-n", "4", "--", "sh", "-c", &script]);
    let pids = scratch.wait_for_pids(4);
    let (code, exited) = launcher.wait(Duration::from_secs(10));
    let failed = scratch.failed_at();
    let reported = launcher
        .line_time(&format!("rank {failing_rank} "))
        .unwrap_or_else(|| panic!("no failure line; stderr: {}", launcher.stderr_text()));
    eprintln!(
        "{name}: failure line {:?} and launcher exit {:?} after the failure",
        after(reported, failed),
        after(exited, failed)
    );
    assert!(
        after(reported, failed) < STOP_WITHIN,
        "the failure was reported late"
    );
    assert!(
        after(exited, failed) < STOP_WITHIN,
        "the job was stopped late"
    );
    assert_all_gone(&pids);
    let failure_lines = launcher
        .stderr
        .iter()
        .filter(|(_, l)| l.starts_with("onecopy: "))
        .count();
    assert_eq!(failure_lines, 1, "stderr: {}", launcher.stderr_text());
    (launcher, code)
}

#[test]
fn a_rank_exiting_non_zero_stops_the_job() {
    let _w = watchdog("a_rank_exiting_non_zero_stops_the_job", 60);
    let (launcher, code) = failing_rank_case("exit", 1, "exit 3");
    assert_eq!(code, Some(3));
    let stderr = launcher.stderr_text();
    assert!(
        stderr.contains("onecopy: rank 1 (pid ")
            && stderr.contains(") exited with code 3; stopping the other 3 ranks"),
        "{stderr}"
    );
}

#[test]
fn a_rank_killed_by_a_signal_is_named() {
    let _w = watchdog("a_rank_killed_by_a_signal_is_named", 60);
    let (launcher, code) = failing_rank_case("signal", 2, "kill -9 $$");
    assert_eq!(code, Some(128 + 9));
    let stderr = launcher.stderr_text();
    assert!(
        stderr.contains("onecopy: rank 2 (pid ")
            && stderr.contains(") killed by signal 9 (SIGKILL); stopping the other 3 ranks"),
        "{stderr}"
    );
}

#[test]
fn a_rank_ignoring_sigterm_gets_sigkill_after_the_grace() {
    let _w = watchdog("a_rank_ignoring_sigterm_gets_sigkill_after_the_grace", 60);
    let scratch = Scratch::new("grace");
    let pids = scratch.pid_file();
    let pids = pids.display();
    let stamp = scratch.stamp();
    // Rank 1 ignores SIGTERM (an ignored signal stays ignored across exec).
    let script = format!(
        "echo $$ >> {pids}
         if [ $ONECOPY_RANK = 0 ]; then
             while [ $(wc -l < {pids}) -lt 2 ]; do sleep 0.01; done
             {stamp}
             exit 4
         fi
         trap '' TERM
         exec sleep 30"
    );
    let mut launcher = Launcher::start(&["run", "-n", "2", "--", "sh", "-c", &script]);
    let pids = scratch.wait_for_pids(2);
    let (code, exited) = launcher.wait(Duration::from_secs(10));
    let took = after(exited, scratch.failed_at());
    eprintln!("grace: job gone {took:?} after the failure");
    assert_eq!(code, Some(4), "stderr: {}", launcher.stderr_text());
    assert!(
        took >= launch::TEARDOWN_GRACE - Duration::from_millis(100),
        "SIGKILL came before the grace"
    );
    assert!(took < STOP_WITHIN, "the job was stopped late");
    assert_all_gone(&pids);
}

fn signal_to_launcher_case(name: &str, sig: Signal, expected_code: i32, expected_name: &str) {
    let scratch = Scratch::new(name);
    let script = format!("echo $$ >> {}; exec sleep 30", scratch.pid_file().display());
    let mut launcher = Launcher::start(&["run", "-n", "3", "--", "sh", "-c", &script]);
    let pids = scratch.wait_for_pids(3);
    let sent = SystemTime::now();
    signal(launcher.child.id(), sig);
    let (code, exited) = launcher.wait(Duration::from_secs(10));
    eprintln!(
        "{name}: launcher gone {:?} after the signal",
        after(exited, sent)
    );
    assert_eq!(
        code,
        Some(expected_code),
        "stderr: {}",
        launcher.stderr_text()
    );
    assert!(
        after(exited, sent) < STOP_WITHIN,
        "the job was stopped late"
    );
    assert!(
        launcher.stderr_text().contains(&format!(
            "onecopy: received signal {} ({expected_name}); stopping 3 ranks",
            sig.as_raw()
        )),
        "stderr: {}",
        launcher.stderr_text()
    );
    assert_all_gone(&pids);
}

#[test]
fn sigterm_to_the_launcher_stops_every_rank() {
    let _w = watchdog("sigterm_to_the_launcher_stops_every_rank", 60);
    signal_to_launcher_case("sigterm", Signal::TERM, 128 + 15, "SIGTERM");
}

#[test]
fn sigint_to_the_launcher_stops_every_rank() {
    let _w = watchdog("sigint_to_the_launcher_stops_every_rank", 60);
    signal_to_launcher_case("sigint", Signal::INT, 128 + 2, "SIGINT");
}

#[test]
fn sigkill_to_the_launcher_takes_the_ranks_along() {
    let _w = watchdog("sigkill_to_the_launcher_takes_the_ranks_along", 60);
    let scratch = Scratch::new("sigkill");
    let script = format!("echo $$ >> {}; exec sleep 30", scratch.pid_file().display());
    let mut launcher = Launcher::start(&["run", "-n", "3", "--", "sh", "-c", &script]);
    let pids = scratch.wait_for_pids(3);
    let sent = Instant::now();
    signal(launcher.child.id(), Signal::KILL);
    let (code, _) = launcher.wait(Duration::from_secs(10));
    assert_eq!(code, None, "the launcher was killed");
    // No launcher is left to reap or report: the kernel's death signal does the work.
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            sent.elapsed() < STOP_WITHIN,
            "ranks survived their launcher: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "sigkill: ranks gone {:?} after the launcher was killed",
        sent.elapsed()
    );
}

#[test]
fn bad_input_is_a_one_line_usage_error() {
    let _w = watchdog("bad_input_is_a_one_line_usage_error", 60);
    let cases: &[(&[&str], &str)] = &[
        (&["-n", "0", "--", "true"], "at least 1 rank"),
        (&["-n", "-3", "--", "true"], "at least 1 rank"),
        (&["-n", "5000", "--", "true"], "at most 4096"),
        (
            &["-n", "99999999999999999999", "--", "true"],
            "at most 4096",
        ),
        (&["-n", "abc", "--", "true"], "not an integer"),
        (&["-np", "0", "--", "true"], "at least 1 rank"),
        (&["-n", "2"], "no program given"),
        (&["-n", "2", "--"], "no program given"),
        (
            &["--transport", "nope", "-n", "2", "--", "true"],
            "unknown transport 'nope'",
        ),
    ];
    for (args, needle) in cases {
        let out = onecopy().arg("run").args(*args).output().expect("run");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("onecopy: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    // Without -n at all, clap's own usage error.
    let out = output(&["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn a_program_that_cannot_run_is_named_like_a_shell_would() {
    let _w = watchdog("a_program_that_cannot_run_is_named_like_a_shell_would", 60);
    let scratch = Scratch::new("program");
    let plain = scratch.dir.join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").expect("write file");
    let plain = plain.display().to_string();
    let dir = scratch.dir.display().to_string();
    let cases: &[(&str, i32, &str)] = &[
        ("/nonexistent/onecopy-prog", 127, "not found"),
        ("onecopy-no-such-program", 127, "not found in PATH"),
        (&plain, 126, "not executable"),
        (&dir, 126, "is a directory"),
    ];
    for (program, code, needle) in cases {
        let out = output(&["run", "-n", "2", "--", program]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{program}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{program}: {stderr}");
        assert!(
            stderr.contains(&format!("'{program}'")) && stderr.contains(needle),
            "{program}: {stderr}"
        );
    }
}

#[test]
fn eight_ranks_run_on_a_small_machine() {
    let _w = watchdog("eight_ranks_run_on_a_small_machine", 60);
    let out = output(&["run", "-n", "8", "--", "sh", "-c", "echo $ONECOPY_RANK"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let mut ranks: Vec<usize> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    ranks.sort();
    assert_eq!(ranks, (0..8).collect::<Vec<_>>());
    // Many more than cores, tagged.
    let out = output(&["run", "-n", "64", "--tag-output", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

/// Starts the launcher with RLIMIT_NOFILE set to (`soft`, `hard`).
fn with_file_limit(soft: u64, hard: u64, args: &[&str]) -> Output {
    let mut cmd = onecopy();
    cmd.args(args);
    let limit = rustix::process::Rlimit {
        current: Some(soft),
        maximum: Some(hard),
    };
    // SAFETY: setrlimit is a plain system call (async-signal-safe): nothing is allocated or locked
    // between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)?;
            Ok(())
        });
    }
    cmd.output().expect("run onecopy")
}

#[test]
fn the_file_descriptor_limit_is_raised_or_fails_cleanly() {
    let _w = watchdog("the_file_descriptor_limit_is_raised_or_fails_cleanly", 60);
    // 100 tagged ranks need about 364 descriptors: impossible under a hard limit of 64.
    let out = with_file_limit(64, 64, &["run", "-n", "100", "--tag-output", "--", "true"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("RLIMIT_NOFILE"), "{stderr}");
    // Under a soft limit of 64 with room above it, the launcher raises its own limit, and the
    // ranks get the original back.
    let out = with_file_limit(
        64,
        4096,
        &[
            "run",
            "-n",
            "100",
            "--tag-output",
            "--",
            "sh",
            "-c",
            "ulimit -n",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 100);
    assert!(stdout.lines().all(|l| l.ends_with("] 64")), "{stdout}");
}

#[test]
fn parse_ranks_accepts_one_to_max() {
    assert_eq!(launch::parse_ranks("1").ok(), Some(1));
    assert_eq!(launch::parse_ranks(" 16 ").ok(), Some(16));
    assert_eq!(launch::parse_ranks("4096").ok(), Some(launch::MAX_RANKS));
    for bad in [
        "0",
        "-1",
        "4097",
        "1e3",
        "",
        "0x10",
        "99999999999999999999999",
    ] {
        let err = launch::parse_ranks(bad).expect_err(bad);
        assert_eq!(err.exit_code(), launch::EXIT_USAGE, "{bad}");
    }
}

#[test]
fn transport_choice_parses_auto_and_known_names_only() {
    assert_eq!(
        "auto".parse::<TransportChoice>().ok(),
        Some(TransportChoice::Auto)
    );
    for name in onecopy::transport::NAMES {
        let choice: TransportChoice = name.parse().expect(name);
        assert_eq!(choice.to_string(), name);
    }
    let err = "fast".parse::<TransportChoice>().expect_err("unknown");
    assert_eq!(LaunchError::from(err).exit_code(), launch::EXIT_USAGE);
}

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |key| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.into())
}

#[test]
fn rank_env_parses_what_the_launcher_sets() {
    assert_eq!(
        onecopy::comm::env::rank_env_from(lookup(&[])).ok(),
        Some(None)
    );
    let full = [
        ("ONECOPY_RANK", "2"),
        ("ONECOPY_SIZE", "4"),
        ("ONECOPY_SEGMENT_FD", "5"),
        ("ONECOPY_LAUNCHER_PID", "4242"),
        ("ONECOPY_TRANSPORT", "shm-copy"),
    ];
    let env = onecopy::comm::env::rank_env_from(lookup(&full))
        .expect("valid")
        .expect("present");
    assert_eq!(
        env,
        onecopy::comm::env::RankEnv {
            rank: 2,
            size: 4,
            segment_fd: 5,
            launcher_pid: 4242,
            transport: TransportChoice::Named(onecopy::transport::Mechanism::ShmCopy),
        }
    );
    // Every variable broken in turn.
    let broken: &[(&str, &str)] = &[
        ("ONECOPY_RANK", "4"),
        ("ONECOPY_RANK", "-1"),
        ("ONECOPY_SIZE", "0"),
        ("ONECOPY_SIZE", "5000"),
        ("ONECOPY_SEGMENT_FD", "three"),
        ("ONECOPY_SEGMENT_FD", "99999999999"),
        ("ONECOPY_LAUNCHER_PID", "0"),
        ("ONECOPY_TRANSPORT", "fast"),
    ];
    for (var, value) in broken {
        let vars: Vec<(&str, &str)> = full
            .iter()
            .map(|&(k, v)| if k == *var { (k, *value) } else { (k, v) })
            .collect();
        let err = onecopy::comm::env::rank_env_from(lookup(&vars)).expect_err(var);
        assert!(
            matches!(err, onecopy::comm::env::EnvError::InvalidVariable { var: v, .. } if v == *var),
            "{var}={value}: {err}"
        );
    }
    let partial = lookup(&[("ONECOPY_RANK", "0"), ("ONECOPY_SIZE", "1")]);
    assert!(matches!(
        onecopy::comm::env::rank_env_from(partial),
        Err(onecopy::comm::env::EnvError::MissingVariable {
            var: "ONECOPY_SEGMENT_FD"
        })
    ));
    // Not under the launcher here.
    assert_eq!(onecopy::comm::env::rank_env().ok(), Some(None));
}

#[test]
fn outcomes_map_to_exit_codes_and_lines() {
    let outcome = |failure| JobOutcome {
        ranks: Vec::new(),
        failure,
    };
    assert_eq!(outcome(None).exit_code(), 0);
    let rank = |end| {
        Some(Failure::Rank {
            rank: 1,
            pid: 7,
            end,
        })
    };
    assert_eq!(outcome(rank(RankEnd::Exited(3))).exit_code(), 3);
    assert_eq!(outcome(rank(RankEnd::Killed(9))).exit_code(), 137);
    assert_eq!(outcome(Some(Failure::Signal(2))).exit_code(), 130);
    let failed = |end, still_running| Event::RankFailed {
        rank: 1,
        pid: 4242,
        end,
        still_running,
    };
    assert_eq!(
        failed(RankEnd::Exited(3), 3).to_string(),
        "rank 1 (pid 4242) exited with code 3; stopping the other 3 ranks"
    );
    assert_eq!(
        failed(RankEnd::Killed(9), 1).to_string(),
        "rank 1 (pid 4242) killed by signal 9 (SIGKILL); stopping the other rank"
    );
    assert_eq!(
        failed(RankEnd::Killed(11), 0).to_string(),
        "rank 1 (pid 4242) killed by signal 11 (SIGSEGV); no other rank was running"
    );
    let signal = Event::Signal {
        signal: 15,
        still_running: 4,
    };
    assert_eq!(
        signal.to_string(),
        "received signal 15 (SIGTERM); stopping 4 ranks"
    );
}

#[test]
fn the_library_runs_a_job_and_reports_each_rank() {
    let _w = watchdog("the_library_runs_a_job_and_reports_each_rank", 60);
    // Both jobs in one test: only one job may run per process at a time.
    let mut opts = RunOptions::new(3, "sh");
    opts.args = vec!["-c".into(), "exit 0".into()];
    let outcome = launch::run(&opts).expect("run");
    assert!(outcome.success());
    assert_eq!(outcome.ranks.len(), 3);
    assert!(
        outcome
            .ranks
            .iter()
            .all(|r| r.end == Some(RankEnd::Exited(0)) && !r.stopped)
    );

    opts.args = vec![
        "-c".into(),
        "[ $ONECOPY_RANK = 0 ] && exit 6; exec sleep 30".into(),
    ];
    let mut events = Vec::new();
    let outcome = launch::run_observed(&opts, |e| events.push(*e)).expect("run");
    assert_eq!(outcome.exit_code(), 6);
    let failed_pid = outcome.ranks[0].pid;
    assert_eq!(
        outcome.failure,
        Some(Failure::Rank {
            rank: 0,
            pid: failed_pid,
            end: RankEnd::Exited(6)
        })
    );
    assert_eq!(
        events,
        vec![Event::RankFailed {
            rank: 0,
            pid: failed_pid,
            end: RankEnd::Exited(6),
            still_running: 2
        }]
    );
    for r in &outcome.ranks[1..] {
        assert_eq!(
            r,
            &RankOutcome {
                rank: r.rank,
                pid: r.pid,
                end: Some(RankEnd::Killed(15)),
                stopped: true
            }
        );
        assert!(!alive(r.pid));
    }
    assert!(launch::run(&RunOptions::new(0, "true")).is_err());
    let missing = launch::run(&RunOptions::new(1, "/nonexistent/x")).expect_err("missing");
    assert_eq!(missing.exit_code(), launch::EXIT_NOT_FOUND);
    let empty = launch::run(&RunOptions::new(2, "")).expect_err("empty program");
    assert!(matches!(empty, LaunchError::MissingProgram));
}

#[test]
fn long_lines_are_cut_into_tagged_pieces() {
    let _w = watchdog("long_lines_are_cut_into_tagged_pieces", 60);
    let script = "head -c 200000 /dev/zero | tr '\\0' a";
    let out = output(&["run", "-n", "1", "--tag-output", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let max = launch::MAX_LINE_BYTES;
    let lengths: Vec<usize> = stdout.lines().map(|l| l.len()).collect();
    assert_eq!(
        lengths,
        vec![4 + max, 4 + max, 4 + max, 4 + 200_000 - 3 * max]
    );
    assert!(stdout.lines().all(|l| l.starts_with("[0] aaa")));
}

#[test]
fn a_background_writer_cannot_keep_the_launcher_alive() {
    let _w = watchdog("a_background_writer_cannot_keep_the_launcher_alive", 60);
    // `yes` outlives its rank and never stops writing into the rank's pipe; it dies of SIGPIPE
    // once the launcher has gone.
    let started = Instant::now();
    let out = output(&[
        "run",
        "-n",
        "1",
        "--tag-output",
        "--",
        "sh",
        "-c",
        "yes & echo done",
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("[0] done\n"));
    assert!(
        took < launch::DRAIN_LIMIT + STOP_WITHIN,
        "the launcher waited {took:?} for a background writer"
    );
}

#[test]
fn only_rank_zero_reads_stdin() {
    let _w = watchdog("only_rank_zero_reads_stdin", 60);
    let mut child = onecopy()
        .args(["run", "-n", "3", "--", "sh", "-c"])
        .arg("read line; echo \"$ONECOPY_RANK:$line\"")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start onecopy run");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin pipe");
        stdin.write_all(b"hello\n").expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, vec!["0:hello", "1:", "2:"]);
}
