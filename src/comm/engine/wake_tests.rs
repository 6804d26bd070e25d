//! Sleeping ranks, with the premise made true rather than hoped for: a rank waits until its peer
//! is asleep (its doorbell counts a sleeper, seen in the segment) before it acts.
//!
//! - A rank that sends again without receiving in between rings its peer without a fence
//!   (`Doorbell::notify_light`); the sleeper's announcement makes up for it. For every pair of
//!   messages rank 0 waits until rank 1 is asleep before it sends the message that must wake it,
//!   rung light. A ring that did not wake rank 1 would show as sleeps of the whole interval.
//! - A peer that sends its last messages while this rank sleeps and exits before this rank wakes:
//!   the messages still complete the receives waiting for them.

use std::time::{Duration, Instant};

use super::super::start::join_forked;
use super::super::{Universe, init_segment, segment_bytes};
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
        until_asleep(u, 1).map_err(|e| format!("pair {i}: {e}"))?;
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

/// Spins until rank `rank`'s doorbell counts a sleeper; an error after 10 s.
fn until_asleep(u: &Universe, rank: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let world = u.world();
    while world
        .core
        .rt
        .engine
        .borrow()
        .job
        .segment
        .rank(rank)
        .bell
        .sleepers()
        == 0
    {
        if Instant::now() > deadline {
            return Err(format!("rank {rank} did not go to sleep within 10 s"));
        }
        std::hint::spin_loop();
    }
    Ok(())
}

const LAST: [usize; 2] = [8, 700];

/// Rank 0 posts receives for rank 1's last messages, tells rank 1, and waits for them all.
fn receiver_of_last_words(u: &Universe) -> Result<(), String> {
    let world = u.world();
    let peer = world.process_at_rank(1);
    let e = |e: crate::comm::CommError| e.to_string();
    let (mut a, mut b) = (vec![0u8; LAST[0]], vec![0u8; LAST[1]]);
    crate::request::scope(|scope| -> Result<(), String> {
        let mut reqs = [
            Some(
                peer.immediate_receive_into_with_tag(scope, &mut a[..], 1)
                    .map_err(e)?,
            ),
            Some(
                peer.immediate_receive_into_with_tag(scope, &mut b[..], 2)
                    .map_err(e)?,
            ),
        ];
        peer.send_with_tag(&[1u8], 9).map_err(e)?;
        for (i, r) in crate::request::wait_all(&mut reqs).into_iter().enumerate() {
            r.map_err(|err| format!("receive {i}: {err}"))?;
        }
        Ok(())
    })?;
    if a.iter().chain(&b).any(|&x| x != 0xAB) {
        return Err("the last messages arrived wrong".into());
    }
    Ok(())
}

/// Rank 1 waits until rank 0 sleeps on its receives, puts its two messages into the ring
/// without ringing (rank 0 sleeps its whole interval), and exits at once: rank 0 wakes to find
/// the messages and its peer gone.
fn last_words(u: &Universe) -> Result<(), String> {
    let world = u.world();
    let mut go = [0u8];
    world
        .process_at_rank(0)
        .receive_into_with_tag(&mut go, 9)
        .map_err(|e| e.to_string())?;
    until_asleep(u, 0)?;
    // Past its last look at the rings and into the futex wait (a look takes microseconds);
    // the messages are then found only once the interval has passed, when this rank is gone.
    std::thread::sleep(Duration::from_millis(2));
    let context = world.core.p2p_context();
    let mut engine = world.core.rt.engine();
    for (tag, &len) in LAST.iter().enumerate() {
        let head = super::super::ring::Head {
            context,
            ..super::super::ring::Head::new(
                super::super::wire::kind::INLINE,
                tag as i32 + 1,
                len as u32,
            )
        };
        if !engine.push_silently(0, head, &[&vec![0xABu8; len]]) {
            return Err("the ring to rank 0 is full".into());
        }
    }
    Ok(())
}

#[test]
fn messages_that_arrive_as_their_sender_exits_complete_their_receives() {
    for _ in 0..10 {
        run(TransportChoice::Auto, receiver_of_last_words, last_words);
    }
}

type RankFn = fn(&Universe) -> Result<(), String>;

fn run(transport: TransportChoice, rank0: RankFn, rank1: RankFn) {
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
                let outcome = join_forked(segment, rank, 2, me, transport, config)
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
        run(t, rank0, rank1);
    }
}
