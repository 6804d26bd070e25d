//! `onecopy run` with the example programs as ranks: the launcher, the runtime and the protocols
//! together, as a user runs them.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    // Examples are built next to the test binaries' target folder by `cargo test`.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_onecopy"));
    bin.parent()
        .expect("target dir")
        .join("examples")
        .join(name)
}

fn run(args: &[&str], timeout: Duration) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_onecopy"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start onecopy run");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("onecopy {args:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn ring_example_on_1_to_8_ranks() {
    let _dog = common::watchdog("ring_example_on_1_to_8_ranks", 120);
    let ring = example("ring");
    if !ring.exists() {
        common::skip(&format!(
            "{} is not built (run `cargo build --examples`)",
            ring.display()
        ));
        return;
    }
    for n in [1, 2, 3, 8] {
        for transport in ["auto", "cma-read", "shm-copy"] {
            let n_text = n.to_string();
            let out = run(
                &[
                    "run",
                    "-n",
                    &n_text,
                    "--transport",
                    transport,
                    "--",
                    ring.to_str().expect("path"),
                ],
                Duration::from_secs(60),
            );
            let expected: u64 = (0..n as u64).sum();
            assert!(
                ok(&out).contains(&format!("token came back as {expected} ")),
                "{n} ranks {transport}"
            );
        }
    }
}

#[test]
fn pingpong_and_stream_examples() {
    let _dog = common::watchdog("pingpong_and_stream_examples", 180);
    let (pingpong, stream) = (example("pingpong"), example("stream"));
    if !pingpong.exists() || !stream.exists() {
        common::skip("examples are not built (run `cargo build --examples`)");
        return;
    }
    let out = ok(&run(
        &[
            "run",
            "-n",
            "4",
            "--tag-output",
            "--",
            pingpong.to_str().expect("path"),
        ],
        Duration::from_secs(120),
    ));
    assert!(
        out.contains("[0]") && out.contains("4194304 bytes"),
        "{out}"
    );
    let out = ok(&run(
        &[
            "run",
            "-n",
            "3",
            "--",
            stream.to_str().expect("path"),
            "2",
            "3",
        ],
        Duration::from_secs(120),
    ));
    assert_eq!(out.matches("6 MiB in 3 blocks").count(), 2, "{out}");
}

#[test]
fn a_rank_that_crashes_mid_job_ends_the_job() {
    let _dog = common::watchdog("a_rank_that_crashes_mid_job_ends_the_job", 60);
    let stream = example("stream");
    if !stream.exists() {
        common::skip("examples are not built (run `cargo build --examples`)");
        return;
    }
    // Bad arguments make every receiver exit 2 at once while rank 0 is sending.
    let start = Instant::now();
    let out = run(
        &["run", "-n", "3", "--", stream.to_str().expect("path"), "0"],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited with code 2"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
}
