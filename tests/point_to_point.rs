//! Point to point, complete: probes and matched probes of unknown sizes across every protocol,
//! receive_vec, send-receive, every send mode (synchronous, ready, buffered), the null process,
//! cancel, persistent requests, completion of several requests at once, requests outside a
//! scope (static buffers, free, get_status), and progress of every pending request while one
//! is waited for.

mod common;

use std::time::{Duration, Instant};

use common::{assert_all_ok, run_job, watchdog};

use onecopy::World;
use onecopy::comm::CommError;
use onecopy::point_to_point::{ANY_TAG, send_receive_into, send_receive_replace_into_with_tags};
use onecopy::request::{self, StaticScope, wait_all, wait_any, wait_some};
use onecopy::topology::PROC_NULL;
use onecopy::traits::*;

fn err(what: &str) -> impl Fn(CommError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn message(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) ^ seed) as u8)
        .collect()
}

/// An inline, an eager and a rendezvous size.
const PROTOCOL_SIZES: [usize; 4] = [8, 900, 10_000, 1 << 20];

/// Rank 0 sends messages of sizes rank 1 does not know; rank 1 probes them (blocking and not),
/// takes one with a matched probe that no other receive may steal, and receives the rest into
/// vectors of the right length.
fn probes(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for (k, &size) in PROTOCOL_SIZES.iter().enumerate() {
        let seed = k as u64;
        if world.rank() == 0 {
            // Wait until rank 1 has looked for a message that is not there yet.
            let mut go = [0u8];
            peer.receive_into_with_tag(&mut go, 50).map_err(err("go"))?;
            // Immediate sends: a rendezvous send waits for its receive, and rank 1 receives
            // tag 2 before tag 1.
            let (one, two, three) = (
                message(seed, size),
                message(seed + 100, size / 2 + 1),
                message(seed + 200, size),
            );
            request::scope(|scope| -> Result<(), String> {
                let reqs = [
                    peer.immediate_send_with_tag(scope, &one, 1),
                    peer.immediate_send_with_tag(scope, &two, 2),
                    peer.immediate_send_with_tag(scope, &three, 3),
                ];
                for r in reqs {
                    r.map_err(err("isend"))?.wait().map_err(err("send"))?;
                }
                Ok(())
            })?;
        } else {
            check(
                peer.immediate_probe_with_tag(1)
                    .map_err(err("iprobe"))?
                    .is_none(),
                || "a probe found a message not sent yet".into(),
            )?;
            peer.send_with_tag(&[1u8], 50).map_err(err("go"))?;
            // A blocking probe: the size before any receive.
            let s = peer.probe_with_tag(1).map_err(err("probe"))?;
            check(
                s.count_bytes() == size && s.tag() == 1 && s.source_rank() == 0,
                || format!("probe said {s:?} for {size} bytes"),
            )?;
            // Once it has arrived, the non-blocking probe sees it too, and leaves it.
            let again = peer
                .immediate_probe()
                .map_err(err("iprobe"))?
                .ok_or("the probed message went away")?;
            check(again == s, || "the second probe differs".into())?;
            // Matched probe of tag 1; then an any-tag receive must take tag 2, not the probed one.
            let (msg, status) = peer.matched_probe_with_tag(1).map_err(err("mprobe"))?;
            check(status.count_bytes() == size, || "mprobe size".into())?;
            let mut two = vec![0u8; size / 2 + 1];
            let got = peer
                .receive_into(&mut two)
                .map_err(err("any-tag receive"))?;
            check(
                got.tag() == 2 && two == message(seed + 100, size / 2 + 1),
                || format!("the any-tag receive took tag {}", got.tag()),
            )?;
            let mut one = vec![0u8; size];
            let got = msg.matched_receive_into(&mut one).map_err(err("mrecv"))?;
            check(
                got.count_bytes() == size && one == message(seed, size),
                || "the matched receive got other bytes".into(),
            )?;
            // receive_vec: a message of unknown size into a vector of its length.
            let (v, s) = peer
                .receive_vec_with_tag::<u8>(3)
                .map_err(err("receive_vec"))?;
            check(
                v == message(seed + 200, size) && s.count_bytes() == size,
                || format!("receive_vec got {} bytes", v.len()),
            )?;
        }
    }
    // An immediate matched probe, and a probed message dropped unreceived (a large one's
    // sender is told).
    if world.rank() == 0 {
        peer.send_with_tag(&[5u64; 3], 7).map_err(err("send 7"))?;
        match peer.send_with_tag(&vec![1u8; 200_000], 8) {
            Err(CommError::ReceiverRefused { rank: 1, .. }) => {}
            other => return Err(format!("a dropped probed message's send ended {other:?}")),
        }
    } else {
        let found = loop {
            if let Some(found) = peer
                .immediate_matched_probe_with_tag(7)
                .map_err(err("improbe"))?
            {
                break found;
            }
        };
        let (v, _) = found
            .0
            .matched_receive_vec::<u64>(&found.1)
            .map_err(err("mrecv"))?;
        check(v == [5, 5, 5], || format!("improbe got {v:?}"))?;
        let (dropped, _) = peer.matched_probe_with_tag(8).map_err(err("mprobe 8"))?;
        drop(dropped);
    }
    Ok(())
}

#[test]
fn probes_and_matched_probes_of_unknown_sizes_across_every_protocol() {
    let _dog = watchdog(
        "probes_and_matched_probes_of_unknown_sizes_across_every_protocol",
        180,
    );
    for t in onecopy::transport::NAMES.into_iter().chain(["auto"]) {
        assert_all_ok(&run_job(2, t, probes), t);
    }
}

/// A ring shift with send_receive_into and send_receive_replace_into, 1 to 8 ranks.
fn shifts(world: &World) -> Result<(), String> {
    let (n, r) = (world.size(), world.rank());
    let next = world.process_at_rank((r + 1) % n);
    let prev = world.process_at_rank((r + n - 1) % n);
    for &size in &PROTOCOL_SIZES {
        let out = message(r as u64, size);
        let mut inn = vec![0u8; size];
        let s = send_receive_into(&out, &next, &mut inn, &prev).map_err(err("sendrecv"))?;
        check(
            inn == message(((r + n - 1) % n) as u64, size) && s.source_rank() == (r + n - 1) % n,
            || format!("sendrecv of {size} bytes"),
        )?;
        let mut buf = message(100 + r as u64, size);
        send_receive_replace_into_with_tags(&mut buf, &next, 4, &prev, 4)
            .map_err(err("sendrecv_replace"))?;
        check(buf == message(100 + ((r + n - 1) % n) as u64, size), || {
            format!("sendrecv_replace of {size} bytes")
        })?;
    }
    Ok(())
}

#[test]
fn send_receive_and_replace_on_1_to_8_ranks() {
    let _dog = watchdog("send_receive_and_replace_on_1_to_8_ranks", 120);
    for n in 1..=8 {
        assert_all_ok(&run_job(n, "auto", shifts), &format!("{n} ranks"));
    }
}

/// Synchronous sends finish only once the receive has matched; ready sends go to a posted
/// receive; buffered sends return at once from a copy, and say so when the buffer is short.
fn send_modes(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for &size in &PROTOCOL_SIZES {
        let data = message(size as u64, size);
        if world.rank() == 0 {
            request::scope(|scope| -> Result<(), String> {
                let ssend = peer
                    .immediate_synchronous_send_with_tag(scope, &data, 1)
                    .map_err(err("issend"))?;
                // Rank 1 posts its receive only after the go below: until then the synchronous
                // send must not finish, however long we look.
                let until = Instant::now() + Duration::from_millis(30);
                let mut ssend = Some(ssend);
                while Instant::now() < until {
                    match ssend.take().map(|r| r.test()) {
                        Some(Err(pending)) => ssend = Some(pending),
                        Some(Ok(r)) => {
                            return Err(format!(
                                "a synchronous send of {size} bytes finished before its receive: {r:?}"
                            ));
                        }
                        None => unreachable!(),
                    }
                }
                peer.send_with_tag(&[1u8], 2).map_err(err("go"))?;
                ssend
                    .ok_or("no request")?
                    .wait()
                    .map_err(err("issend wait"))?;
                Ok(())
            })?;
            // Blocking synchronous send, then ready send into the receive rank 1 posted.
            peer.synchronous_send_with_tag(&data, 3)
                .map_err(err("ssend"))?;
            let mut posted = [0u8];
            peer.receive_into_with_tag(&mut posted, 5)
                .map_err(err("posted"))?;
            peer.ready_send_with_tag(&data, 4).map_err(err("rsend"))?;
        } else {
            let mut go = [0u8];
            peer.receive_into_with_tag(&mut go, 2).map_err(err("go"))?;
            let mut buf = vec![0u8; size];
            peer.receive_into_with_tag(&mut buf, 1)
                .map_err(err("receive 1"))?;
            check(buf == data, || "issend bytes".into())?;
            peer.receive_into_with_tag(&mut buf, 3)
                .map_err(err("receive 3"))?;
            check(buf == data, || "ssend bytes".into())?;
            request::scope(|scope| -> Result<(), String> {
                let r = peer
                    .immediate_receive_into_with_tag(scope, &mut buf, 4)
                    .map_err(err("irecv 4"))?;
                peer.send_with_tag(&[1u8], 5).map_err(err("posted"))?;
                r.wait().map_err(err("receive 4"))?;
                Ok(())
            })?;
            check(buf == data, || "rsend bytes".into())?;
        }
    }
    Ok(())
}

#[test]
fn synchronous_and_ready_sends() {
    let _dog = watchdog("synchronous_and_ready_sends", 180);
    for t in onecopy::transport::NAMES.into_iter().chain(["auto"]) {
        assert_all_ok(&run_job(2, t, send_modes), t);
    }
}

/// Buffered sends: several return at once while the receiver is not receiving, large ones
/// (which hold their copy until the receiver takes it) and eager ones beyond the free slots
/// (started later, in order); one that does not fit the attached buffer is a clear error;
/// detaching waits for the sends.
fn buffered(world: &World) -> Result<(), String> {
    let overhead = onecopy::comm::BSEND_OVERHEAD;
    let big_pool = 4 * (100_000 + overhead + 8);
    let peer = world.process_at_rank(1 - world.rank());
    if world.rank() == 0 {
        // No buffer attached yet.
        match peer.buffered_send(&[1u8]) {
            Err(CommError::BufferTooSmall { attached: 0, .. }) => {}
            other => return Err(format!("bsend without a buffer: {other:?}")),
        }
        let universe = world_universe();
        universe.set_buffer_size(big_pool).map_err(err("attach"))?;
        for k in 0..4u64 {
            peer.buffered_send_with_tag(&message(k, 100_000), 1)
                .map_err(err("bsend"))?;
        }
        // Full now: the fifth does not fit, and says what to do.
        match peer.buffered_send_with_tag(&message(9, 100_000), 1) {
            Err(e @ CommError::BufferTooSmall { .. }) => {
                check(e.to_string().contains("attach a larger buffer"), || {
                    e.to_string()
                })?
            }
            other => return Err(format!("an oversized bsend: {other:?}")),
        }
        peer.send_with_tag(&[1u8], 2).map_err(err("go"))?;
        let size = universe.detach_buffer().map_err(err("detach"))?;
        check(size == big_pool, || format!("detached {size}"))?;
        // Twelve eager-sized ones while only four slots are free: all return at once.
        universe
            .set_buffer_size(12 * (20_000 + overhead + 8))
            .map_err(err("attach"))?;
        for k in 0..12u64 {
            peer.buffered_send_with_tag(&message(50 + k, 20_000), 3)
                .map_err(err("eager bsend"))?;
        }
        // A standard send after them does not overtake them.
        peer.send_with_tag(&message(99, 8), 3)
            .map_err(err("send after"))?;
        peer.send_with_tag(&[1u8], 2).map_err(err("go 2"))?;
        universe.detach_buffer().map_err(err("detach"))?;
        // The immediate form, through a fresh buffer.
        universe.set_buffer_size(1 << 21).map_err(err("attach"))?;
        let big = message(21, 1 << 20);
        request::scope(|scope| -> Result<(), String> {
            let r = peer
                .immediate_buffered_send_with_tag(scope, &big, 4)
                .map_err(err("ibsend"))?;
            r.wait().map_err(err("ibsend wait"))?;
            Ok(())
        })?;
        universe.detach_buffer().map_err(err("detach"))?;
    } else {
        let mut go = [0u8];
        peer.receive_into_with_tag(&mut go, 2).map_err(err("go"))?;
        for k in 0..4u64 {
            let mut buf = vec![0u8; 100_000];
            peer.receive_into_with_tag(&mut buf, 1)
                .map_err(err("receive"))?;
            check(buf == message(k, 100_000), || format!("bsend {k} bytes"))?;
        }
        peer.receive_into_with_tag(&mut go, 2)
            .map_err(err("go 2"))?;
        for k in 0..12u64 {
            let mut buf = vec![0u8; 20_000];
            let s = peer
                .receive_into_with_tag(&mut buf, 3)
                .map_err(err("eager receive"))?;
            check(
                s.count_bytes() == 20_000 && buf == message(50 + k, 20_000),
                || format!("eager bsend {k} out of order"),
            )?;
        }
        let mut last = [0u8; 8];
        peer.receive_into_with_tag(&mut last, 3)
            .map_err(err("send after"))?;
        check(last[..] == message(99, 8)[..], || {
            "the standard send overtook".into()
        })?;
        let mut big = vec![0u8; 1 << 20];
        peer.receive_into_with_tag(&mut big, 4)
            .map_err(err("big"))?;
        check(big == message(21, 1 << 20), || "ibsend bytes".into())?;
    }
    Ok(())
}

thread_local! {
    static UNIVERSE: std::cell::RefCell<Option<&'static onecopy::Universe>> = const { std::cell::RefCell::new(None) };
}

/// The universe of this forked rank (kept by `with_universe`).
fn world_universe() -> &'static onecopy::Universe {
    UNIVERSE.with(|u| u.borrow().expect("the universe of this rank"))
}

#[test]
fn buffered_sends_with_an_attached_buffer() {
    let _dog = watchdog("buffered_sends_with_an_attached_buffer", 120);
    for t in ["auto", "shm-copy", "cma-read"] {
        assert_all_ok(
            &common::run_job_universe(2, t, |u| {
                let leaked: &'static onecopy::Universe = Box::leak(Box::new(u));
                UNIVERSE.with(|slot| *slot.borrow_mut() = Some(leaked));
                buffered(&leaked.world())
            }),
            t,
        );
    }
}

/// The null process: everything completes at once with the standard's status.
fn null_process(world: &World) -> Result<(), String> {
    let null = world.process_at_rank(PROC_NULL);
    null.send(&[1u8; 100]).map_err(err("send"))?;
    null.synchronous_send(&[1u8]).map_err(err("ssend"))?;
    let mut buf = [7u8; 4];
    let s = null.receive_into(&mut buf).map_err(err("receive"))?;
    check(
        s.source_rank() == PROC_NULL && s.tag() == ANY_TAG && s.count_bytes() == 0 && buf == [7; 4],
        || format!("receive from the null process: {s:?}"),
    )?;
    let s = null.probe().map_err(err("probe"))?;
    check(s.source_rank() == PROC_NULL, || "probe".into())?;
    let (m, s) = null.matched_probe().map_err(err("mprobe"))?;
    check(m.is_no_proc() && s.count_bytes() == 0, || "mprobe".into())?;
    let s = m.matched_receive_into(&mut buf).map_err(err("mrecv"))?;
    check(s.source_rank() == PROC_NULL, || "mrecv".into())?;
    let s = send_receive_into(&[1u8], &null, &mut buf, &null).map_err(err("sendrecv"))?;
    check(s.source_rank() == PROC_NULL, || "sendrecv".into())?;
    request::scope(|scope| -> Result<(), String> {
        let a = null.immediate_send(scope, &[1u8]).map_err(err("isend"))?;
        let b = null
            .immediate_receive_into(scope, &mut buf)
            .map_err(err("irecv"))?;
        a.wait().map_err(err("isend wait"))?;
        let s = b.wait().map_err(err("irecv wait"))?;
        check(s.source_rank() == PROC_NULL, || "irecv status".into())
    })
}

#[test]
fn the_null_process() {
    let _dog = watchdog("the_null_process", 60);
    assert_all_ok(&run_job(2, "auto", null_process), "null process");
    assert_all_ok(&run_job(1, "auto", null_process), "null process, 1 rank");
}

/// Cancel: a receive that nothing matches is cancelled; one already matched is not.
fn cancel(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    if world.rank() == 1 {
        let mut a = [0u32];
        let mut b = [0u32];
        request::scope(|scope| -> Result<(), String> {
            let never = peer
                .immediate_receive_into_with_tag(scope, &mut a, 99)
                .map_err(err("irecv 99"))?;
            let matched = peer
                .immediate_receive_into_with_tag(scope, &mut b, 1)
                .map_err(err("irecv 1"))?;
            // Wait until the tag-1 message has matched, then cancel both.
            let s = loop {
                if let Some(s) = matched.get_status() {
                    break s.map_err(err("get_status"))?;
                }
            };
            check(!s.is_cancelled() && s.tag() == 1, || format!("{s:?}"))?;
            never.cancel();
            matched.cancel();
            let s = never.wait().map_err(err("cancelled wait"))?;
            check(s.is_cancelled(), || {
                "the unmatched receive was not cancelled".into()
            })?;
            let s = matched.wait().map_err(err("matched wait"))?;
            check(!s.is_cancelled() && s.count_bytes() == 4, || {
                "a matched receive was cancelled".into()
            })?;
            Ok(())
        })?;
        check(a == [0] && b == [42], || format!("{a:?} {b:?}"))?;
        world.barrier().map_err(err("barrier"))?;
        // The cancelled receive took nothing: tag 99 still arrives for a new receive.
        peer.receive_into_with_tag(&mut a, 99)
            .map_err(err("receive 99"))?;
        check(a == [99], || format!("tag 99 got {a:?}"))
    } else {
        peer.send_with_tag(&[42u32], 1).map_err(err("send 1"))?;
        world.barrier().map_err(err("barrier"))?;
        peer.send_with_tag(&[99u32], 99).map_err(err("send 99"))
    }
}

#[test]
fn cancel_of_a_posted_receive() {
    let _dog = watchdog("cancel_of_a_posted_receive", 60);
    assert_all_ok(&run_job(2, "auto", cancel), "cancel");
}

/// Persistent sends and receives started many times, one by one and all at once; waiting on an
/// inactive one returns at once; starting an active one is an error.
fn persistent(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for &size in &PROTOCOL_SIZES {
        let out = message(size as u64 + world.rank() as u64, size);
        let mut inn = vec![0u8; size];
        let theirs = message(size as u64 + 1 - world.rank() as u64, size);
        request::scope(|scope| -> Result<(), String> {
            let mut send = peer
                .send_init_with_tag(scope, &out, 6)
                .map_err(err("send_init"))?;
            let mut recv = peer
                .receive_init_with_tag(scope, &mut inn, 6)
                .map_err(err("recv_init"))?;
            let s = recv.wait().map_err(err("inactive wait"))?;
            check(s.source_rank() == PROC_NULL && !recv.is_active(), || {
                "an inactive request's wait".into()
            })?;
            for round in 0..20 {
                recv.start().map_err(err("start recv"))?;
                send.start().map_err(err("start send"))?;
                check(send.start().is_err(), || {
                    "an active request started again".into()
                })?;
                let s = recv.wait().map_err(err("recv wait"))?;
                send.wait().map_err(err("send wait"))?;
                check(
                    s.count_bytes() == size && s.source_rank() == 1 - world.rank(),
                    || format!("round {round}: {s:?}"),
                )?;
            }
            Ok(())
        })?;
        check(inn == theirs, || format!("persistent bytes of {size}"))?;
        // start_all, then completion of both at once.
        request::scope(|scope| -> Result<(), String> {
            let mut reqs = vec![
                peer.receive_init_with_tag(scope, &mut inn, 7)
                    .map_err(err("recv_init"))?,
                peer.send_init_with_tag(scope, &out, 7)
                    .map_err(err("send_init"))?,
            ];
            for _ in 0..5 {
                request::start_all(&mut reqs).map_err(err("start_all"))?;
                for r in wait_all(&mut reqs) {
                    r.map_err(err("wait_all"))?;
                }
            }
            Ok(())
        })?;
        check(inn == theirs, || "start_all bytes".into())?;
    }
    Ok(())
}

#[test]
fn persistent_requests() {
    let _dog = watchdog("persistent_requests", 120);
    for t in ["auto", "shm-copy", "cma-split"] {
        assert_all_ok(&run_job(2, t, persistent), t);
    }
}

/// wait_any, wait_some, test_some, test_all over mixed requests (sends and receives of every
/// protocol, to and from several ranks).
fn many_at_once(world: &World) -> Result<(), String> {
    let (n, r) = (world.size(), world.rank());
    let others: Vec<i32> = (0..n).filter(|&x| x != r).collect();
    let outs: Vec<Vec<u8>> = PROTOCOL_SIZES
        .iter()
        .map(|&s| message(r as u64 * 10 + s as u64, s))
        .collect();
    let mut inns: Vec<Vec<Vec<u8>>> = others
        .iter()
        .map(|_| PROTOCOL_SIZES.iter().map(|&s| vec![0u8; s]).collect())
        .collect();
    request::scope(|scope| -> Result<(), String> {
        let mut reqs = Vec::new();
        for (inn, &o) in inns.iter_mut().zip(&others) {
            for (k, buf) in inn.iter_mut().enumerate() {
                reqs.push(Some(
                    world
                        .process_at_rank(o)
                        .immediate_receive_into_with_tag(scope, buf, k as i32)
                        .map_err(err("irecv"))?,
                ));
            }
        }
        let receives = reqs.len();
        for &o in &others {
            for (k, out) in outs.iter().enumerate() {
                reqs.push(Some(
                    world
                        .process_at_rank(o)
                        .immediate_send_with_tag(scope, out, k as i32)
                        .map_err(err("isend"))?,
                ));
            }
        }
        let total = reqs.len();
        let mut done = vec![false; total];
        // A third with wait_any, then wait_some and test_some until all are done.
        for _ in 0..total / 3 {
            let (i, s) = wait_any(&mut reqs).ok_or("wait_any found nothing pending")?;
            s.map_err(err("wait_any"))?;
            check(!done[i] && reqs[i].is_none(), || format!("index {i} twice"))?;
            done[i] = true;
        }
        while done.iter().any(|d| !d) {
            let some = if done.iter().filter(|d| !**d).count() % 2 == 0 {
                wait_some(&mut reqs)
            } else {
                onecopy::request::test_some(&mut reqs)
            };
            for (i, s) in some {
                let s = s.map_err(err("wait_some"))?;
                check(!done[i], || format!("index {i} twice"))?;
                if i < receives {
                    let from = others[i / PROTOCOL_SIZES.len()];
                    check(s.source_rank() == from, || format!("{s:?} from {from}"))?;
                }
                done[i] = true;
            }
        }
        check(wait_any(&mut reqs).is_none(), || {
            "wait_any on nothing".into()
        })?;
        check(
            onecopy::request::test_all(&mut reqs).is_some_and(|v| v.len() == total),
            || "test_all on completed requests".into(),
        )
    })?;
    for (inn, &o) in inns.iter().zip(&others) {
        for (k, buf) in inn.iter().enumerate() {
            check(
                *buf == message(o as u64 * 10 + PROTOCOL_SIZES[k] as u64, PROTOCOL_SIZES[k]),
                || format!("bytes from {o}, message {k}"),
            )?;
        }
    }
    Ok(())
}

#[test]
fn wait_any_and_wait_some_over_mixed_requests_on_1_to_8_ranks() {
    let _dog = watchdog(
        "wait_any_and_wait_some_over_mixed_requests_on_1_to_8_ranks",
        180,
    );
    for n in 1..=8 {
        assert_all_ok(&run_job(n, "auto", many_at_once), &format!("{n} ranks"));
    }
}

/// Requests outside a scope: 'static buffers, a freed send still read to its end, get_status.
fn static_requests(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for &size in &PROTOCOL_SIZES {
        if world.rank() == 0 {
            let data: &'static [u8] = Box::leak(message(size as u64, size).into_boxed_slice());
            let sent = peer
                .immediate_send_with_tag(StaticScope, data, 1)
                .map_err(err("isend"))?;
            // Freed: it still completes, and the receiver gets every byte.
            sent.free();
            let kept = peer
                .immediate_send_with_tag(StaticScope, data, 2)
                .map_err(err("isend 2"))?;
            let s = loop {
                if let Some(s) = kept.get_status() {
                    break s;
                }
            };
            s.map_err(err("get_status"))?;
            // get_status did not complete it: wait still gives the status.
            kept.wait().map_err(err("wait after get_status"))?;
        } else {
            let buf: &'static mut [u8] = Box::leak(vec![0u8; size].into_boxed_slice());
            let r = peer
                .immediate_receive_into_with_tag(StaticScope, buf, 1)
                .map_err(err("irecv"))?;
            let s = r.wait().map_err(err("irecv wait"))?;
            check(s.count_bytes() == size, || "size".into())?;
            let mut again = vec![0u8; size];
            peer.receive_into_with_tag(&mut again, 2)
                .map_err(err("receive 2"))?;
            check(again == message(size as u64, size), || {
                "bytes of tag 2".into()
            })?;
        }
    }
    world.barrier().map_err(err("barrier"))
}

#[test]
fn requests_outside_a_scope() {
    let _dog = watchdog("requests_outside_a_scope", 60);
    for t in ["auto", "cma-read", "shm-copy"] {
        assert_all_ok(&run_job(2, t, static_requests), t);
    }
}

/// A rank blocked on one receive still moves another request forward: rank 1's large send of
/// tag 1 needs rank 0 to take it while rank 0 waits for tag 2, which rank 1 sends after it.
fn progress_while_blocked(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    let size = 4 << 20;
    if world.rank() == 0 {
        let mut a = vec![0u8; size];
        let mut b = [0u8; 8];
        request::scope(|scope| -> Result<(), String> {
            let first = peer
                .immediate_receive_into_with_tag(scope, &mut a, 1)
                .map_err(err("irecv 1"))?;
            peer.receive_into_with_tag(&mut b, 2)
                .map_err(err("receive 2"))?;
            first.wait().map_err(err("wait 1"))?;
            Ok(())
        })?;
        check(a == message(1, size) && b == [2; 8], || "bytes".into())?;
    } else {
        peer.send_with_tag(&message(1, size), 1)
            .map_err(err("send 1"))?;
        peer.send_with_tag(&[2u8; 8], 2).map_err(err("send 2"))?;
    }
    Ok(())
}

#[test]
fn a_blocked_rank_progresses_its_other_requests() {
    let _dog = watchdog("a_blocked_rank_progresses_its_other_requests", 60);
    for t in onecopy::transport::NAMES {
        assert_all_ok(&run_job(2, t, progress_while_blocked), t);
    }
}

/// Tags: negative send tags are refused, ANY_TAG receives any, TAG_UB is the largest.
fn tags(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    check(
        matches!(
            peer.send_with_tag(&[1u8], -7),
            Err(CommError::InvalidTag(-7))
        ),
        || "a negative tag accepted".into(),
    )?;
    let ub = onecopy::point_to_point::TAG_UB;
    if world.rank() == 0 {
        peer.send_with_tag(&[3u8], ub)
            .map_err(err("send at TAG_UB"))?;
    } else {
        let mut x = [0u8];
        let s = peer
            .receive_into_with_tag(&mut x, ANY_TAG)
            .map_err(err("receive"))?;
        check(s.tag() == ub && x == [3], || format!("{s:?}"))?;
    }
    let _ = world.any_process();
    Ok(())
}

#[test]
fn tags_from_zero_to_the_upper_bound() {
    let _dog = watchdog("tags_from_zero_to_the_upper_bound", 60);
    assert_all_ok(&run_job(2, "auto", tags), "tags");
}
