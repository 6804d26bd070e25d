//! Bad input everywhere: every CLI command with garbage arguments and environment, and the public
//! API with negative, zero, huge, misaligned and mismatched arguments. Each must give a clear error
//! (or a correct result), never a panic, a signal or a hang.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use onecopy::child::Child;
use onecopy::comm::{self, JobSpec};
use onecopy::shm::Segment;
use onecopy::traits::*;
use onecopy::vm::{Process, RemoteRange};
use onecopy::{CommError, World};

/// Runs the CLI with `args` (and `env`), with a time limit.
fn cli(args: &[String], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_onecopy"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start onecopy");
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("onecopy {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A command line and the environment variables to set for it.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);

#[test]
fn every_command_rejects_garbage_with_a_clear_error() {
    let _dog = common::watchdog("every_command_rejects_garbage_with_a_clear_error", 300);
    let sleeper = Child::sleeper().expect("a process to aim at");
    let pid = sleeper.pid().to_string();
    let p = pid.as_str();
    let cases: Vec<Case> = vec![
        // check
        (vec!["check", "--bogus"], vec![]),
        (vec!["check", "extra"], vec![]),
        // peek: pids, addresses, lengths
        (vec!["peek"], vec![]),
        (vec!["peek", "-1", "0x1000", "1"], vec![]),
        (vec!["peek", "0", "0x1000", "1"], vec![]),
        (vec!["peek", "abc", "0x1000", "1"], vec![]),
        (vec!["peek", "4194304999", "0", "1"], vec![]),
        (vec!["peek", "2147483647", "0x1000", "1"], vec![]),
        (vec!["peek", p, "0", "16"], vec![]),
        (vec!["peek", p, "-5", "16"], vec![]),
        (vec!["peek", p, "0x", "16"], vec![]),
        (vec!["peek", p, "0xZZ", "16"], vec![]),
        (vec!["peek", p, "0xffffffffffffffff", "16"], vec![]),
        (vec!["peek", p, "0x10000000000000000", "16"], vec![]),
        (vec!["peek", p, "0x1000", "-1"], vec![]),
        (vec!["peek", p, "0x1000", "0xffffffffffffffff"], vec![]),
        (vec!["peek", p, "0x1001", "4097"], vec![]),
        (vec!["peek", p, "0x1000", "16", "--raw", "--hex"], vec![]),
        // poke
        (vec!["poke", p, "0x1000"], vec![]),
        (vec!["poke", p, "0x1000", "--hex", "zz"], vec![]),
        (vec!["poke", p, "0x1000", "--hex", "abc"], vec![]),
        (vec!["poke", p, "0", "--hex", "00"], vec![]),
        (
            vec!["poke", p, "0xffffffffffffffff", "--hex", "0000"],
            vec![],
        ),
        (vec!["poke", p, "0x1000", "--file", "/nonexistent"], vec![]),
        (vec!["poke", p, "0x1000", "--file", "/"], vec![]),
        (
            vec![
                "poke",
                p,
                "0x1000",
                "--hex",
                "00",
                "--file",
                "/etc/hostname",
            ],
            vec![],
        ),
        (vec!["poke", "-7", "0x1000", "--hex", "00"], vec![]),
        // bench
        (vec!["bench", "nothing"], vec![]),
        (vec!["bench", "mechanisms", "--sizes", "0"], vec![]),
        (vec!["bench", "mechanisms", "--sizes", "-1"], vec![]),
        (vec!["bench", "mechanisms", "--sizes", "1,,2"], vec![]),
        (vec!["bench", "mechanisms", "--sizes", "1024G"], vec![]),
        (
            vec!["bench", "mechanisms", "--sizes", "99999999999999999999"],
            vec![],
        ),
        (vec!["bench", "mechanisms", "--transports", ""], vec![]),
        (vec!["bench", "mechanisms", "--budget-ms", "-5"], vec![]),
        (
            vec!["bench", "mechanisms", "--budget-ms", "99999999999999999999"],
            vec![],
        ),
        (vec!["bench", "mechanisms", "--rounds", "0x"], vec![]),
        (
            vec![
                "bench",
                "mechanisms",
                "--sizes",
                "4K",
                "--budget-ms",
                "5",
                "--rounds",
                "1",
                "--plot",
                "/nonexistent/dir/x.svg",
            ],
            vec![],
        ),
        (vec!["bench", "p2p", "--sizes", "-1"], vec![]),
        (vec!["bench", "p2p", "--sizes", "1024G"], vec![]),
        (vec!["bench", "p2p", "--transports", "teleport"], vec![]),
        (vec!["bench", "p2p", "--transports", "cma"], vec![]),
        (vec!["bench", "p2p", "--tests", "speed"], vec![]),
        (vec!["bench", "p2p", "--tests", ""], vec![]),
        (vec!["bench", "p2p", "--format", "xml"], vec![]),
        (vec!["bench", "p2p", "--budget-ms", "0"], vec![]),
        (vec!["bench", "coll", "--transports", "teleport"], vec![]),
        (vec!["bench", "coll", "--transports", "auto,ftp"], vec![]),
        (vec!["bench", "coll", "--collectives", "scan"], vec![]),
        (vec!["bench", "coll", "-n", "0"], vec![]),
        (vec!["bench", "coll", "--sizes", "1,,2"], vec![]),
        // run
        (vec!["run"], vec![]),
        (vec!["run", "-n", "0", "--", "true"], vec![]),
        (vec!["run", "-n", "-1", "--", "true"], vec![]),
        (vec!["run", "-n", "4097", "--", "true"], vec![]),
        (
            vec!["run", "-n", "99999999999999999999", "--", "true"],
            vec![],
        ),
        (vec!["run", "-n", "abc", "--", "true"], vec![]),
        (vec!["run", "-n", "2"], vec![]),
        (vec!["run", "-n", "2", "--", ""], vec![]),
        (vec!["run", "-n", "2", "--", "/nonexistent"], vec![]),
        (vec!["run", "-n", "2", "--", "/"], vec![]),
        (vec!["run", "-n", "2", "--", "/etc/hostname"], vec![]),
        (
            vec!["run", "-n", "2", "--transport", "teleport", "--", "true"],
            vec![],
        ),
        // garbage in the environment the runtime reads
        (
            vec!["run", "-n", "2", "--", "true"],
            vec![("ONECOPY_RING_CELLS", "0")],
        ),
        (
            vec!["run", "-n", "2", "--", "true"],
            vec![("ONECOPY_RING_CELLS", "abc")],
        ),
        (
            vec!["run", "-n", "2", "--", "true"],
            vec![("ONECOPY_EAGER_SLOTS", "99999999999999999999")],
        ),
        (
            vec!["run", "-n", "2", "--", "true"],
            vec![("ONECOPY_EAGER_SLOT_BYTES", "-1")],
        ),
    ];
    let mut tried = 0;
    for (args, env) in &cases {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (code, stderr) = cli(&args, env);
        let shown = format!("onecopy {} (env {env:?})", args.join(" "));
        assert!(
            code.is_some_and(|c| c != 0 && c != 101 && c < 128),
            "{shown}: exit {code:?}, stderr: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.trim().is_empty(),
            "{shown}: {stderr}"
        );
        // One clear message: the first line says what is wrong.
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.len() > 10, "{shown}: {stderr}");
        tried += 1;
    }
    eprintln!("{tried} garbage command lines, each refused with a clear error");
}

#[test]
fn the_vm_api_refuses_garbage() {
    let me = Child::sleeper().expect("sleeper");
    for pid in [-1, 0, i32::MIN, i32::MAX] {
        assert!(Process::from_pid(pid).is_err(), "pid {pid} accepted");
    }
    let p = Process::from_pid(me.pid()).expect("open the sleeper");
    let mut buf = [0u8; 16];
    for addr in [0usize, 1, usize::MAX, usize::MAX - 8, 1 << 63] {
        assert!(p.read_exact(addr, &mut buf).is_err(), "read at {addr:#x}");
        assert!(p.write_all(addr, &buf).is_err(), "write at {addr:#x}");
    }
    // Remote ranges that wrap or are absurdly long, with a small local buffer.
    for r in [
        RemoteRange::new(usize::MAX - 1, 10),
        RemoteRange::new(0x1000, usize::MAX),
        RemoteRange::new(1 << 63, 1 << 63),
    ] {
        let mut local = [std::io::IoSliceMut::new(&mut buf)];
        assert!(p.read_vectored(&mut local, &[r]).is_err(), "{r:?}");
    }
    // Nothing to move is not an error, and moves nothing.
    assert_eq!(p.read_vectored(&mut [], &[]).ok(), Some(0));
}

#[test]
fn the_setup_api_refuses_garbage() {
    for name in ["", "teleport", "CMA-READ", "cma-read ", "\0"] {
        assert!(
            onecopy::transport::Mechanism::from_name(name).is_none()
                && name.parse::<onecopy::transport::TransportChoice>().is_err(),
            "transport {name:?}"
        );
    }
    for ranks in ["", "0", "-1", "abc", "4097", "1e3", "99999999999999999999"] {
        assert!(
            onecopy::launch::parse_ranks(ranks).is_err(),
            "ranks {ranks:?}"
        );
    }
    for sizes in [
        "",
        "0",
        "-1",
        "1,,2",
        "64Q",
        "65G",
        "99999999999999999999",
        "K",
    ] {
        assert!(
            onecopy::bench::parse_sizes(sizes).is_err(),
            "sizes {sizes:?}"
        );
    }
    let config = onecopy::config::Config::default();
    for ranks in [0, comm::MAX_RANKS + 1, usize::MAX] {
        assert!(
            comm::segment_bytes(ranks, &config).is_err(),
            "{ranks} ranks"
        );
    }
    assert!(Segment::create("onecopy-huge", usize::MAX).is_err());
    assert!(Segment::create("onecopy-huge", usize::MAX - 4095).is_err());
    assert!(Segment::create("onecopy-huge", 1 << 62).is_err());
    // A segment too small for the job, or a job that does not match its segment.
    let small = Segment::create("onecopy-small", 4096).expect("segment");
    assert!(comm::init_segment(&small, 2, &config).is_err());
    let two = Segment::create(
        "onecopy-two",
        comm::segment_bytes(2, &config).expect("layout"),
    )
    .expect("segment");
    comm::init_segment(&two, 2, &config).expect("init");
    let me = std::process::id() as i32;
    let small_ring = onecopy::config::Config {
        inline_limit_bytes: Some(1 << 20),
        ..config.clone()
    };
    for (rank, size, config) in [
        (2, 2, &config),
        (0, 0, &config),
        (0, 4, &config),
        (0, 5000, &config),
        (usize::MAX, 2, &config),
        (0, 1, &config),
        (0, 2, &small_ring),
    ] {
        let spec = JobSpec {
            segment: two.try_clone().expect("clone"),
            rank,
            size,
            launcher_pid: me,
            transport: onecopy::transport::TransportChoice::Auto,
            config: config.clone(),
        };
        assert!(
            comm::join(spec).is_err(),
            "joined as rank {rank} of {size} with {config:?}"
        );
    }
}

/// Runs `body` in two forked ranks of one job; returns each rank's error, if any.
fn two_ranks(transport: &str, body: fn(&World) -> Result<(), String>) -> Vec<Option<String>> {
    common::run_job(2, transport, body)
}

/// Garbage between ranks: ranks and tags out of range, mismatched sizes (inline, eager and
/// rendezvous messages into too small buffers), element types that do not divide the message,
/// misaligned buffers, empty messages.
fn mismatched(world: &World) -> Result<(), String> {
    let me = world.rank();
    let peer = world.process_at_rank(1 - me);
    // MPI_PROC_NULL (-1) is the null process: sending to it does nothing.
    if world.process_at_rank(-1).send(&[1u8]).is_err() {
        return Err("a send to the null process failed".into());
    }
    for bad in [i32::MIN, -2, -3, 2, i32::MAX] {
        if !matches!(
            world.process_at_rank(bad).send(&[1u8]),
            Err(CommError::InvalidRank { .. })
        ) {
            return Err(format!("send to rank {bad} accepted"));
        }
    }
    if !matches!(
        peer.send_with_tag(&[1u8], i32::MIN),
        Err(CommError::InvalidTag(_))
    ) {
        return Err("tag i32::MIN accepted".into());
    }
    // Too small receive buffers, for each protocol: both sides hear about it, nothing hangs.
    for (i, len) in [100usize, 40 << 10, 3 << 20].into_iter().enumerate() {
        let tag = i as i32 + 10;
        if me == 0 {
            let data = vec![7u8; len];
            match peer.send_with_tag(&data, tag) {
                // Inline and eager sends finish before the receiver looks; rendezvous ones hear.
                Ok(_) => {}
                Err(CommError::ReceiverRefused { rank: 1, .. }) if len > 1 << 20 => {}
                Err(e) => return Err(format!("send of {len}: {e}")),
            }
        } else {
            let mut small = vec![0u8; 10];
            match peer.receive_into_with_tag(&mut small, tag) {
                Err(CommError::Truncated {
                    len: l,
                    capacity: 10,
                    ..
                }) if l == len => {}
                other => return Err(format!("receive of {len} into 10 bytes: {other:?}")),
            }
        }
    }
    // 13 bytes into u64s: the message does not fill a whole element.
    if me == 0 {
        peer.send_with_tag(&[9u8; 13], 20)
            .map_err(|e| e.to_string())?;
    } else {
        let mut words = [0u64; 4];
        let st = peer
            .receive_into_with_tag(&mut words, 20)
            .map_err(|e| e.to_string())?;
        if st.count_bytes() != 13 || st.count::<u64>() != 1 {
            return Err(format!(
                "13 bytes as u64s: {st:?} count {}",
                st.count::<u64>()
            ));
        }
    }
    // Misaligned buffers on both sides, each protocol, and an empty message.
    for (i, len) in [0usize, 33, 40 << 10, 3 << 20].into_iter().enumerate() {
        let tag = 30 + i as i32;
        let backing: Vec<u8> = (0..len + 8).map(|b| (b * 7 + i) as u8).collect();
        if me == 0 {
            peer.send_with_tag(&backing[3..3 + len], tag)
                .map_err(|e| e.to_string())?;
        } else {
            let mut into = vec![0u8; len + 8];
            let st = peer
                .receive_into_with_tag(&mut into[5..5 + len], tag)
                .map_err(|e| e.to_string())?;
            if st.count_bytes() != len || into[5..5 + len] != backing[3..3 + len] {
                return Err(format!("misaligned {len}-byte message arrived wrong"));
            }
        }
    }
    Ok(())
}

#[test]
fn mismatched_and_misaligned_calls_between_ranks_are_errors_or_correct() {
    let _dog = common::watchdog(
        "mismatched_and_misaligned_calls_between_ranks_are_errors_or_correct",
        120,
    );
    for transport in ["cma-read", "cma-split", "shm-copy"] {
        let errors = two_ranks(transport, mismatched);
        for (rank, e) in errors.iter().enumerate() {
            assert!(
                e.is_none(),
                "{transport}: rank {rank}: {}",
                e.as_deref().unwrap_or("")
            );
        }
    }
}
