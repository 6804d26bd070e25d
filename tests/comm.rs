//! The runtime end to end: ranks in forked processes joining one job, every protocol (inline,
//! eager, rendezvous by each transport), matching rules, non-blocking scopes, errors.

mod common;

use std::time::Duration;

use onecopy::{CommError, World};

use common::{assert_all_ok, run_job, run_job_with};
use onecopy::traits::*;

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 131 + seed * 7) % 251) as u8)
        .collect()
}

const SIZES: [usize; 13] = [
    (16 << 20) + 5,
    0,
    1,
    100,
    1024,
    1025,
    4096,
    32 << 10,
    (32 << 10) + 1,
    1 << 20,
    (1 << 20) + 7,
    (4 << 20) + 3,
    9 << 20,
];

fn pingpong(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for (i, &len) in SIZES.iter().enumerate() {
        let msg = pattern(i, len);
        let mut back = vec![0u8; len];
        if world.rank() == 0 {
            peer.send(&msg).map_err(|e| format!("send {len}: {e}"))?;
            let st = peer
                .receive_into(&mut back)
                .map_err(|e| format!("receive {len}: {e}"))?;
            if st.count_bytes() != len || back != msg || st.source_rank() != 1 {
                return Err(format!("echo of {len} bytes differs ({st:?})"));
            }
        } else {
            let st = peer
                .receive_into(&mut back)
                .map_err(|e| format!("receive {len}: {e}"))?;
            if st.count_bytes() != len || back != msg {
                return Err(format!("{len} bytes arrived wrong ({st:?})"));
            }
            peer.send(&back).map_err(|e| format!("send {len}: {e}"))?;
        }
    }
    Ok(())
}

#[test]
fn pingpong_every_size_every_transport() {
    let _dog = common::watchdog("pingpong_every_size_every_transport", 120);
    for t in ["cma-read", "cma-split", "shm-copy", "auto"] {
        assert_all_ok(&run_job(2, t, pingpong), t);
    }
}

/// Every rank passes a token around a ring of `size` ranks, several laps, sizes of every protocol.
fn ring_laps(world: &World) -> Result<(), String> {
    let (rank, size) = (world.rank(), world.size());
    let next = world.process_at_rank((rank + 1) % size);
    let prev = world.process_at_rank((rank + size - 1) % size);
    for (lap, len) in [8usize, 2000, 40_000, 3 << 20].into_iter().enumerate() {
        let mut token = vec![0u8; len];
        if rank == 0 {
            let msg = pattern(lap, len);
            next.send(&msg).map_err(|e| e.to_string())?;
            prev.receive_into(&mut token).map_err(|e| e.to_string())?;
            if token != msg {
                return Err(format!("lap {lap}: the token came back changed"));
            }
        } else {
            prev.receive_into(&mut token).map_err(|e| e.to_string())?;
            next.send(&token).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[test]
fn ring_of_four_and_eight_ranks() {
    let _dog = common::watchdog("ring_of_four_and_eight_ranks", 120);
    for n in [1, 3, 4, 8] {
        for t in ["auto", "shm-copy"] {
            assert_all_ok(&run_job(n, t, ring_laps), &format!("{n} ranks {t}"));
        }
    }
}

/// Rank 0 takes messages from anyone, in whatever order they come; per source and tag, order
/// is kept; a receive with a tag skips other tags (they wait in the unexpected queue).
fn matching(world: &World) -> Result<(), String> {
    let (rank, size) = (world.rank(), world.size());
    if rank != 0 {
        let zero = world.process_at_rank(0);
        let msgs: Vec<Vec<u32>> = (0..20u32)
            .map(|i| {
                let len = if i % 5 == 4 { 100_000 } else { 4 };
                let mut msg = vec![0u32; len];
                msg[0] = rank as u32 * 1000 + i;
                msg
            })
            .collect();
        // Non-blocking: rank 0 takes rank 1's tag 1 messages first, so a blocking send of a large
        // tag 0 message would wait for it forever (as in MPI).
        return onecopy::request::scope(|scope| -> Result<(), String> {
            let mut reqs = Vec::new();
            for (i, msg) in msgs.iter().enumerate() {
                reqs.push(
                    zero.immediate_send_with_tag(scope, msg, (i % 2) as i32)
                        .map_err(|e| e.to_string())?,
                );
            }
            for r in reqs {
                r.wait().map_err(|e| e.to_string())?;
            }
            Ok(())
        });
    }
    // Tag 1 messages of rank 1 first (tag 0 ones queue up meanwhile), then the rest from anyone.
    let one = world.process_at_rank(1);
    let mut buf = vec![0u32; 100_000];
    for i in (1..20u32).step_by(2) {
        let st = one
            .receive_into_with_tag(&mut buf, 1)
            .map_err(|e| e.to_string())?;
        if buf[0] != 1000 + i || st.tag() != 1 || st.source_rank() != 1 {
            return Err(format!(
                "tag 1 message {i} of rank 1 came as {} ({st:?})",
                buf[0]
            ));
        }
    }
    let mut next = vec![0u32; size as usize];
    next[1] = 0;
    let mut seen_tag1 = vec![1u32; size as usize];
    seen_tag1[1] = 21;
    let total = 20 * (size as usize - 1) - 10;
    for _ in 0..total {
        let st = world
            .any_process()
            .receive_into(&mut buf)
            .map_err(|e| e.to_string())?;
        let src = st.source_rank() as usize;
        let i = buf[0] - src as u32 * 1000;
        if i % 2 != st.tag() as u32 {
            return Err(format!(
                "message {i} of rank {src} came with tag {}",
                st.tag()
            ));
        }
        if i.is_multiple_of(2) {
            if i != next[src] {
                return Err(format!(
                    "rank {src} tag 0: got message {i}, expected {}",
                    next[src]
                ));
            }
            next[src] += 2;
        } else {
            if i != seen_tag1[src] {
                return Err(format!(
                    "rank {src} tag 1: got message {i}, expected {}",
                    seen_tag1[src]
                ));
            }
            seen_tag1[src] += 2;
        }
        let len = if i % 5 == 4 { 100_000 * 4 } else { 16 };
        if st.count_bytes() != len || st.count::<u32>() != len / 4 {
            return Err(format!(
                "message {i} of rank {src}: {} bytes",
                st.count_bytes()
            ));
        }
    }
    Ok(())
}

#[test]
fn any_source_any_tag_and_ordering() {
    let _dog = common::watchdog("any_source_any_tag_and_ordering", 120);
    for t in ["auto", "cma-read", "shm-copy"] {
        assert_all_ok(&run_job(4, t, matching), t);
    }
}

/// A message larger than the receive buffer is an error for the receiver (and, for rendezvous,
/// for the sender too); the next message still arrives intact.
fn truncation(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for len in [10usize, 5000, 200_000] {
        if world.rank() == 0 {
            let r = peer.send(&pattern(1, len));
            if len > 32 << 10 && !matches!(r, Err(CommError::ReceiverRefused { .. })) {
                return Err(format!("sender of {len} bytes got {r:?}"));
            }
            peer.send(&pattern(2, 64)).map_err(|e| e.to_string())?;
        } else {
            let mut small = vec![0xEEu8; len - 1];
            match peer.receive_into(&mut small) {
                Err(CommError::Truncated {
                    len: l, capacity, ..
                }) if l == len && capacity == len - 1 => {}
                other => return Err(format!("truncated receive of {len} gave {other:?}")),
            }
            if small.iter().any(|&b| b != 0xEE) && len > 32 << 10 {
                return Err("a refused rendezvous wrote into the buffer".into());
            }
            let mut next = vec![0u8; 64];
            peer.receive_into(&mut next).map_err(|e| e.to_string())?;
            if next != pattern(2, 64) {
                return Err("the message after a truncation is wrong".into());
            }
        }
    }
    Ok(())
}

#[test]
fn truncation_is_an_error() {
    let _dog = common::watchdog("truncation_is_an_error", 60);
    for t in ["cma-split", "shm-copy"] {
        assert_all_ok(&run_job(2, t, truncation), t);
    }
}

/// Windows of non-blocking sends and receives in both directions at once, as osu_bibw does.
fn windows(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for len in [16usize, 20_000, 300_000, 2 << 20] {
        let out: Vec<Vec<u8>> = (0..16)
            .map(|i| pattern(i + world.rank() as usize, len))
            .collect();
        let mut inn: Vec<Vec<u8>> = (0..16).map(|_| vec![0u8; len]).collect();
        onecopy::request::scope(|scope| -> Result<(), String> {
            let mut reqs = Vec::new();
            for b in inn.iter_mut() {
                reqs.push(
                    peer.immediate_receive_into(scope, b)
                        .map_err(|e| e.to_string())?,
                );
            }
            for b in &out {
                reqs.push(peer.immediate_send(scope, b).map_err(|e| e.to_string())?);
            }
            for r in reqs {
                r.wait().map_err(|e| e.to_string())?;
            }
            Ok(())
        })?;
        let other = 1 - world.rank() as usize;
        for (i, b) in inn.iter().enumerate() {
            if *b != pattern(i + other, len) {
                return Err(format!("window message {i} of {len} bytes differs"));
            }
        }
    }
    Ok(())
}

#[test]
fn nonblocking_windows_both_directions() {
    let _dog = common::watchdog("nonblocking_windows_both_directions", 120);
    for t in onecopy::transport::NAMES {
        assert_all_ok(&run_job(2, t, windows), t);
    }
}

fn bad_arguments(world: &World) -> Result<(), String> {
    let checks = [
        matches!(
            world.process_at_rank(world.size()).send(&[1u8]),
            Err(CommError::InvalidRank { .. })
        ),
        matches!(
            world.process_at_rank(-2).receive_into(&mut [0u8]),
            Err(CommError::InvalidRank { .. })
        ),
        // -1 is the null process: its receive completes at once, empty.
        matches!(
            world.process_at_rank(-1).receive_into(&mut [0u8]),
            Ok(s) if s.source_rank() == -1 && s.count_bytes() == 0
        ),
        matches!(
            world.process_at_rank(0).send_with_tag(&[1u8], -5),
            Err(CommError::InvalidTag(-5))
        ),
        matches!(
            world.any_process().receive_into_with_tag(&mut [0u8], -2),
            Err(CommError::InvalidTag(-2))
        ),
    ];
    if checks.iter().all(|&c| c) {
        Ok(())
    } else {
        Err(format!("bad arguments accepted: {checks:?}"))
    }
}

#[test]
fn bad_ranks_and_tags_are_errors() {
    let _dog = common::watchdog("bad_ranks_and_tags_are_errors", 30);
    assert_all_ok(&run_job(2, "auto", bad_arguments), "auto");
}

/// Rank 1 exits at once; rank 0, waiting for a message from it, gets an error in bounded time.
fn peer_exits(world: &World) -> Result<(), String> {
    if world.rank() == 1 {
        return Ok(());
    }
    let start = std::time::Instant::now();
    let mut buf = [0u8; 8];
    match world.process_at_rank(1).receive_into(&mut buf) {
        Err(CommError::PeerGone { rank: 1, .. }) if start.elapsed() < Duration::from_secs(2) => {
            Ok(())
        }
        other => Err(format!(
            "waiting on a dead rank gave {other:?} after {:?}",
            start.elapsed()
        )),
    }
}

#[test]
fn a_dead_peer_is_an_error_not_a_hang() {
    let _dog = common::watchdog("a_dead_peer_is_an_error_not_a_hang", 30);
    for t in ["auto", "shm-copy"] {
        let errors = run_job(2, t, peer_exits);
        assert_all_ok(&errors, t);
    }
}

#[test]
fn a_world_of_one() {
    let universe = onecopy::Universe::single().expect("single");
    let world = universe.world();
    assert_eq!((world.rank(), world.size()), (0, 1));
    let me = world.process_at_rank(0);
    me.send_with_tag(&[1u64, 2, 3], 7).expect("self send");
    let mut back = [0u64; 3];
    let st = me
        .receive_into_with_tag(&mut back, 7)
        .expect("self receive");
    assert_eq!((back, st.tag(), st.count::<u64>()), ([1, 2, 3], 7, 3));
    assert!(
        onecopy::initialize().is_none(),
        "not started by onecopy run"
    );
}

/// Single copy blocked by a seccomp filter (as container runtimes do): the job agrees on
/// shm-copy at start-up and every message still arrives.
#[test]
fn blocked_single_copy_falls_back_to_shm_copy() {
    let _dog = common::watchdog("blocked_single_copy_falls_back_to_shm_copy", 60);
    fn fell_back(world: &World) -> Result<(), String> {
        if world.mode() != onecopy::transport::Mechanism::ShmCopy
            || world.fallback_reason().is_none()
        {
            return Err(format!(
                "mode is {:?} although CMA is blocked",
                world.mode()
            ));
        }
        pingpong(world)
    }
    for t in ["auto", "cma-read", "cma-write", "cma-split"] {
        assert_all_ok(
            &run_job_with(2, t, |_| common::block_cma_with_seccomp(), fell_back),
            t,
        );
    }
    // Only rank 2 of 3 is blocked: the others, which could read each other, must still agree
    // with it on shm-copy, or their messages to and from it would never match.
    let only_two = |rank: usize| rank != 2 || common::block_cma_with_seccomp();
    assert_all_ok(
        &run_job_with(3, "auto", only_two, ring_laps),
        "one rank blocked",
    );
}

/// Messages that arrive before their receives are kept in reused buffers: every one must come
/// out with its own length and bytes, whatever the sizes before it.
#[test]
fn early_messages_keep_their_own_bytes() {
    let _dog = common::watchdog("early_messages_keep_their_own_bytes", 60);
    fn body(world: &World) -> Result<(), String> {
        let peer = world.process_at_rank(1 - world.rank());
        // All inline or eager (at most 64 KiB): a blocking send of a larger message would wait
        // for its receive, which is posted only after the tag 6 message.
        let sizes: Vec<usize> = (0..120)
            .map(|i| [60_000, 10, 5000, 0, 65_000, 1024, 33_333][i % 7] + i)
            .collect();
        if world.rank() == 0 {
            for (i, &len) in sizes.iter().enumerate() {
                peer.send_with_tag(&pattern(i, len), 5)
                    .map_err(|e| e.to_string())?;
            }
            peer.send_with_tag(&[1u8], 6).map_err(|e| e.to_string())?;
        } else {
            // Wait until everything has arrived unexpected, then take it.
            peer.receive_into_with_tag(&mut [0u8; 1], 6)
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 70_000];
            for (i, &len) in sizes.iter().enumerate() {
                let st = peer
                    .receive_into_with_tag(&mut buf, 5)
                    .map_err(|e| e.to_string())?;
                if st.count_bytes() != len || buf[..len] != pattern(i, len)[..] {
                    return Err(format!(
                        "early message {i} ({len} bytes) came back as {} bytes",
                        st.count_bytes()
                    ));
                }
            }
        }
        Ok(())
    }
    for t in ["auto", "shm-copy"] {
        assert_all_ok(&run_job(2, t, body), t);
    }
}

/// Early eager messages of 4 KiB and more stay in their slots until their receives come, and a
/// sender short of slots asks for one back. Every rank here sends all its messages to every
/// other before receiving any, which only runs if the slots do come back; sizes straddle the
/// hold limit, and a receive too small for a held message fails without stopping the rest.
#[test]
fn held_slots_come_back_when_every_rank_sends_first() {
    let _dog = common::watchdog("held_slots_come_back_when_every_rank_sends_first", 120);
    const EACH: usize = 24;
    fn len(i: usize, from: usize) -> usize {
        // All eager (64 KiB at most): a blocking send of a larger message waits for its
        // receive, and with three ranks sending in a circle that would never come.
        [4096, 65_000, 5000, 40_000, 100, 4095, 60_000][(i + from) % 7] + from
    }
    fn body(world: &World) -> Result<(), String> {
        let (n, me) = (world.size() as usize, world.rank() as usize);
        for k in 1..n {
            let to = world.process_at_rank(((me + k) % n) as i32);
            for i in 0..EACH {
                to.send_with_tag(&pattern(i * 31 + me, len(i, me)), 7)
                    .map_err(|e| e.to_string())?;
            }
        }
        let mut buf = vec![0u8; 70_000];
        for k in 1..n {
            let from = (me + n - k) % n;
            let peer = world.process_at_rank(from as i32);
            for i in 0..EACH {
                let want = len(i, from);
                if i < 7 && (i + from) % 7 == 3 {
                    // About 40,000 bytes (a held message) into 1000: truncated.
                    match peer.receive_into_with_tag(&mut buf[..1000], 7) {
                        Err(CommError::Truncated { len, .. }) if len == want => continue,
                        other => return Err(format!("message {i} from {from}: {other:?}")),
                    }
                }
                let st = peer
                    .receive_into_with_tag(&mut buf, 7)
                    .map_err(|e| e.to_string())?;
                if st.count_bytes() != want || buf[..want] != pattern(i * 31 + from, want)[..] {
                    return Err(format!(
                        "message {i} from {from} ({want} bytes) came as {} bytes",
                        st.count_bytes()
                    ));
                }
            }
        }
        Ok(())
    }
    for (n, t) in [(2, "auto"), (2, "shm-copy"), (3, "auto"), (4, "cma-read")] {
        assert_all_ok(&run_job(n, t, body), &format!("{n} ranks, {t}"));
    }
}

/// A receiver that only tests a request (never waits) still gives held slots back: rank 0
/// sends more held-size messages than there are slots, then the one rank 1 tests for.
#[test]
fn a_testing_receiver_gives_slots_back() {
    let _dog = common::watchdog("a_testing_receiver_gives_slots_back", 60);
    fn body(world: &World) -> Result<(), String> {
        let peer = world.process_at_rank(1 - world.rank());
        const COUNT: usize = 12;
        if world.rank() == 0 {
            for i in 0..COUNT {
                peer.send_with_tag(&pattern(i, 50_000), 1)
                    .map_err(|e| e.to_string())?;
            }
            peer.send_with_tag(&[9u8], 2).map_err(|e| e.to_string())?;
            return Ok(());
        }
        let mut flag = [0u8];
        onecopy::request::scope(|scope| -> Result<(), String> {
            let mut r = peer
                .immediate_receive_into_with_tag(scope, &mut flag, 2)
                .map_err(|e| e.to_string())?;
            loop {
                match r.test() {
                    Ok(done) => return done.map(|_| ()).map_err(|e| e.to_string()),
                    Err(pending) => r = pending,
                }
                std::hint::spin_loop();
            }
        })?;
        let mut buf = vec![0u8; 50_000];
        for i in 0..COUNT {
            peer.receive_into_with_tag(&mut buf, 1)
                .map_err(|e| e.to_string())?;
            if buf != pattern(i, 50_000) {
                return Err(format!("message {i} differs"));
            }
        }
        (flag[0] == 9)
            .then_some(())
            .ok_or_else(|| format!("flag {}", flag[0]))
    }
    for t in ["auto", "shm-copy"] {
        assert_all_ok(&run_job(2, t, body), t);
    }
}
