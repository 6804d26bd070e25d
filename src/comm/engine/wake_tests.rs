//! A rank that sends again without receiving in between rings its peer without a fence
//! (`Doorbell::notify_light`); the sleeper's announcement makes up for it. Here the premise is
//! made true rather than hoped for: for every pair of messages rank 0 waits until rank 1 is asleep
//! (its doorbell counts a sleeper, seen in the segment) before it sends the message that must wake
//! it, and that message is rung light. A ring that did not wake rank 1 would show as sleeps of the
//! whole interval.

use std::time::{Duration, Instant};

use super::super::{JobSpec, Universe, init_segment, join, segment_bytes};
use crate::child::{Child, Exit};
use crate::config::Config;
use crate::shm::Segment;
use crate::traits::*;
use crate::transport::TransportChoice;

const PAIRS: u64 = 1000;

/// Tags of one pair: rank 1 acknowledges the first message, rank 0 sends a pad (so that its
/// next record follows a send, not a receipt, and is rung light), then the second, which rank 1
/// is asleep waiting for; rank 1 acknowledges the pair.
const FIRST: i32 = 1;
const SECOND: i32 = 2;
const GOT_FIRST: i32 = 3;
const PAD: i32 = 4;
const GOT_PAIR: i32 = 5;

fn rank0(u: &Universe) -> Result<(), String> {
    let world = u.world();
    let peer = world.process_at_rank(1);
    let e = |e: crate::comm::CommError| e.to_string();
    for i in 0..PAIRS {
        peer.send_with_tag(&[i], FIRST).map_err(e)?;
        let mut ack = [0u64];
        peer.receive_into_with_tag(&mut ack, GOT_FIRST).map_err(e)?;
        peer.send_with_tag(&[0u8], PAD).map_err(e)?;
        // Rank 1 now waits for SECOND alone: wait until it sleeps on its bell.
        let deadline = Instant::now() + Duration::from_secs(10);
        while world
            .core
            .rt
            .engine
            .borrow()
            .job
            .segment
            .rank(1)
            .bell
            .sleepers()
            == 0
        {
            if Instant::now() > deadline {
                return Err(format!("pair {i}: rank 1 did not go to sleep within 10 s"));
            }
            std::hint::spin_loop();
        }
        // Vary where in the sleep the ring lands: before the futex wait, or in it.
        let until = Instant::now() + Duration::from_micros(i % 24);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        peer.send_with_tag(&[!i], SECOND).map_err(e)?;
        peer.receive_into_with_tag(&mut ack, GOT_PAIR).map_err(e)?;
    }
    Ok(())
}

fn rank1(u: &Universe) -> Result<(), String> {
    let world = u.world();
    let peer = world.process_at_rank(0);
    let e = |e: crate::comm::CommError| e.to_string();
    for i in 0..PAIRS {
        let (mut a, mut b, mut pad) = ([0u64], [0u64], [0u8]);
        peer.receive_into_with_tag(&mut a, FIRST).map_err(e)?;
        peer.send_with_tag(&[i], GOT_FIRST).map_err(e)?;
        peer.receive_into_with_tag(&mut b, SECOND).map_err(e)?;
        peer.receive_into_with_tag(&mut pad, PAD).map_err(e)?;
        if (a[0], b[0]) != (i, !i) {
            return Err(format!("pair {i}: got {} and {}", a[0], b[0]));
        }
        let s = world.sleep_stats();
        // A sleep may run its whole interval when the sender was not running (this machine is
        // shared); a ring that never wakes would do so on every pair.
        if s.full_intervals > 3 + s.sleeps / 50 {
            return Err(format!("after {} pairs: {s:?}", i + 1));
        }
        peer.send_with_tag(&[i], GOT_PAIR).map_err(e)?;
    }
    // Rank 0 sent each second message only once this rank had announced its sleep; it may have
    // found the pad right then and not slept, but not for many pairs.
    let s = world.sleep_stats();
    if s.sleeps < PAIRS / 2 {
        return Err(format!(
            "rank 1 slept for only {} of {PAIRS} pairs ({s:?})",
            s.sleeps
        ));
    }
    Ok(())
}

fn run(transport: TransportChoice) {
    let config = Config {
        // Sleep as soon as a wait finds nothing: the sleep, not the spin, is under test.
        spin: Duration::ZERO,
        ..Config::default()
    };
    let segment = Segment::create("onecopy-wake", segment_bytes(2, &config).expect("layout"))
        .expect("segment");
    init_segment(&segment, 2, &config).expect("init");
    let dir = std::env::temp_dir().join(format!("onecopy-wake-{}-{transport}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let me = std::process::id() as i32;
    let mut ranks = Vec::new();
    for rank in 0..2 {
        let (segment, dir, config) = (&segment, &dir, &config);
        // SAFETY: the child joins the job, plays its part and exits; it shares nothing with the
        // parent's threads but the segment and its error file.
        let child = unsafe {
            Child::fork(move || {
                let outcome = segment
                    .try_clone()
                    .map_err(|e| e.to_string())
                    .and_then(|segment| {
                        join(JobSpec {
                            segment,
                            rank,
                            size: 2,
                            launcher_pid: me,
                            transport,
                            config: config.clone(),
                        })
                        .map_err(|e| e.to_string())
                    })
                    .and_then(|u| if rank == 0 { rank0(&u) } else { rank1(&u) });
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
        ranks.push(child);
    }
    for (rank, mut child) in ranks.into_iter().enumerate() {
        let exit = child.wait_timeout(Duration::from_secs(120)).expect("wait");
        if exit.is_none() {
            child.kill();
        }
        let why = std::fs::read_to_string(dir.join(format!("rank-{rank}"))).unwrap_or_default();
        assert_eq!(exit, Some(Exit::Code(0)), "{transport}, rank {rank}: {why}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rings_without_a_fence_wake_a_sleeping_peer() {
    for t in [
        TransportChoice::Auto,
        TransportChoice::Named(crate::transport::Mechanism::ShmCopy),
    ] {
        run(t);
    }
}
