//! `onecopy run` with the example programs, and this binary's own rank program, as ranks: the
//! launcher, the runtime and the protocols together, as a user runs them.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use onecopy::traits::*;

fn example(name: &str) -> PathBuf {
    // Examples are built next to the test binaries' target folder by `cargo test`.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_onecopy"));
    bin.parent()
        .expect("target dir")
        .join("examples")
        .join(name)
}

fn run(args: &[&str], timeout: Duration) -> std::process::Output {
    run_with(args, &[], timeout)
}

/// `onecopy ARGS` with the variables `env` set, killed (and the test failed) after `timeout`.
fn run_with(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_onecopy"))
        .args(args)
        .envs(env.iter().copied())
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

/// Set to tell [`rank_program`] which program to be.
const PROGRAM_VAR: &str = "ONECOPY_TEST_PROGRAM";

/// Runs this test binary's [`rank_program`] as `n` ranks of `onecopy run`.
fn run_rank_program(program: &str, n: usize, transport: &str) -> std::process::Output {
    let me = std::env::current_exe().expect("test binary");
    let (n, me) = (n.to_string(), me.to_str().expect("path").to_string());
    let args = [
        "run",
        "-n",
        &n,
        "--transport",
        transport,
        "--tag-output",
        "--",
        &me,
        "--exact",
        "rank_program",
        "--ignored",
        "--nocapture",
    ];
    run_with(&args, &[(PROGRAM_VAR, program)], Duration::from_secs(60))
}

/// Not a test by itself: the rank program that the tests below start under `onecopy run`
/// (this test binary, with `--exact rank_program --ignored`), told by `ONECOPY_TEST_PROGRAM`
/// what to do.
#[test]
#[ignore = "a rank program, started under `onecopy run` by the tests in this file"]
fn rank_program() {
    let Ok(program) = std::env::var(PROGRAM_VAR) else {
        common::skip("rank_program runs only as a rank of the jobs the other tests start");
        return;
    };
    let universe = onecopy::initialize().expect("started by onecopy run");
    let world = universe.world();
    let (rank, size) = (world.rank(), world.size());
    match program.as_str() {
        // Every rank passes 4 MiB and 100 KiB to the next and checks what the previous sent.
        "exchange" => {
            let next = world.process_at_rank((rank + 1) % size);
            let prev = world.process_at_rank((rank + size - 1) % size);
            for len in [4 << 20, 100 << 10] {
                let out: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ rank as u8).collect();
                let mut inn = vec![0u8; len];
                onecopy::point_to_point::send_receive_into(&out[..], &next, &mut inn[..], &prev)
                    .expect("exchange");
                let from = ((rank + size - 1) % size) as u8;
                assert!(
                    inn.iter()
                        .enumerate()
                        .all(|(i, &b)| b == (i % 251) as u8 ^ from),
                    "rank {rank}: {len} bytes from rank {from} arrived wrong"
                );
            }
            world.barrier().expect("barrier");
            match world.fallback_reason() {
                Some(why) => println!("mode {} (fallback: {why})", world.mode()),
                None => println!("mode {}", world.mode()),
            }
        }
        // Rank 1 aborts with code 7; the others wait for it in a barrier and, once it is gone,
        // wait to be stopped, so that rank 1 is the only rank that ends by itself.
        "abort" => {
            if rank == 1 {
                world.abort(7);
            }
            let err = world.barrier().expect_err("a barrier without rank 1");
            eprintln!("rank {rank}: {err}");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("no rank program {other}"),
    }
}

#[test]
fn every_transport_runs_a_job() {
    let _dog = common::watchdog("every_transport_runs_a_job", 300);
    for transport in std::iter::once("auto").chain(onecopy::transport::NAMES) {
        let out = run_rank_program("exchange", 3, transport);
        let stdout = ok(&out);
        let modes: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.split_once("] mode ").map(|(_, m)| m))
            .collect();
        assert_eq!(modes.len(), 3, "{transport}: {stdout}");
        for mode in modes {
            // Where the kernel refuses single copy (seccomp, Yama), the job streams and says why.
            let fell_back = mode.starts_with("shm-copy (fallback: ");
            let want = if transport == "auto" {
                "cma-split"
            } else {
                transport
            };
            assert!(
                mode == want || fell_back,
                "{transport}: a rank reports {mode}"
            );
        }
    }
}

#[test]
fn abort_ends_the_job_with_its_code() {
    let _dog = common::watchdog("abort_ends_the_job_with_its_code", 120);
    let start = Instant::now();
    let out = run_rank_program("abort", 3, "auto");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        err.contains("rank 1 of 3 called abort(7) on MPI_COMM_WORLD"),
        "{err}"
    );
    assert!(
        err.contains("rank 1") && err.contains("exited with code 7"),
        "{err}"
    );
    // The others were stopped by the launcher, not left waiting.
    assert!(start.elapsed() < Duration::from_secs(30), "{err}");
}

#[test]
fn communicators_example_on_1_to_7_ranks() {
    let _dog = common::watchdog("communicators_example_on_1_to_7_ranks", 120);
    let program = example("communicators");
    if !program.exists() {
        common::skip("examples are not built (run `cargo build --examples`)");
        return;
    }
    for n in ["1", "2", "3", "6", "7"] {
        let out = ok(&run(
            &["run", "-n", n, "--", program.to_str().expect("path")],
            Duration::from_secs(60),
        ));
        assert!(
            out.contains(&format!("communicators on {n} ranks: 0 wrong results")),
            "{n} ranks: {out}"
        );
    }
}
