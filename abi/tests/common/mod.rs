//! What the library's integration tests share: building the launcher and the library (plain
//! `cargo test` builds no cdylib), running a job with a watchdog, and finding MPICH's tools.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace's root folder.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// The folder holding `onecopy`, `libmpi.so.12`, `include/mpi.h`, built once per test process
/// into a target folder of its own.
pub fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace().join("target/c-suite");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "onecopy",
                "-p",
                "onecopy-mpi",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the launcher and the library failed"
        );
        target.join("debug")
    })
}

/// The launcher.
pub fn onecopy() -> PathBuf {
    built().join("onecopy")
}

/// The library.
pub fn library() -> PathBuf {
    built().join("libmpi.so")
}

/// A tool of Debian's MPICH packages (`mpicc.mpich`, `NPmpich2`), if installed. Where it is
/// not, the caller skips with a line saying so, unless `ONECOPY_REQUIRE_MPICH=1` (CI installs
/// them), which makes its absence a failure.
pub fn mpich_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var("ONECOPY_REQUIRE_MPICH").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{name} is not installed (apt-get install {package}) and ONECOPY_REQUIRE_MPICH=1"
        );
        println!("SKIP: {name} not found (apt-get install {package})");
    }
    found
}

/// What a job printed and how it ended.
pub struct Ran {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output and error, interleaved as read.
    pub output: String,
}

/// Runs `cmd` with a watchdog: killed, and the test failed with what it printed, after `limit`.
pub fn run_with_watchdog(mut cmd: Command, limit: Duration) -> Ran {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = reader.join().unwrap() + &err_reader.join().unwrap();
    let Some(status) = status else {
        panic!("{cmd:?} did not finish within {limit:?}; it printed:\n{output}");
    };
    Ran {
        code: status.code(),
        output,
    }
}

/// `onecopy run -n N -- prog args`, with a watchdog.
pub fn run_job(ranks: usize, prog: &Path, args: &[&str], limit: Duration) -> Ran {
    let mut cmd = Command::new(onecopy());
    cmd.args(["run", "-n", &ranks.to_string(), "--"])
        .arg(prog)
        .args(args);
    run_with_watchdog(cmd, limit)
}

/// A scratch folder of this test process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = workspace()
        .join("target/c-suite/scratch")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}
