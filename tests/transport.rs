//! The conformance suite, instantiated for every mechanism as the runtime uses it: two-rank jobs
//! on that mechanism with every message a rendezvous (inline and eager limits at 0), sizes from
//! 0 to 64 MiB + 1 checked byte for byte with a guard after the buffer, both directions, many
//! messages, truncation on both sides, and the same traffic with the normal limits so that the
//! protocols mix. (A peer that dies mid-transfer, on every mechanism: tests/faults.rs. The
//! movers' iovec windows: the unit tests in src/transport.)

mod common;

use common::{assert_all_ok, run_job_config, watchdog};

use onecopy::World;
use onecopy::comm::CommError;
use onecopy::config::Config;
use onecopy::traits::*;
use onecopy::transport::{Mechanism, NAMES, TransportChoice};

/// The byte at position `i` of message `seed`.
fn pattern(seed: u64, i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    (x ^ (x >> 29)) as u8
}

fn message(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern(seed, i)).collect()
}

/// Settings with every message by rendezvous, so that the mechanism moves all of it, and small
/// slots, so that streaming takes many pieces.
fn rendezvous_only() -> Config {
    Config {
        inline_limit_bytes: Some(0),
        eager_limit_bytes: Some(0),
        eager_slot_bytes: 4096,
        ..Config::default()
    }
}

const SIZES: [usize; 8] = [0, 1, 4095, 4096, 4097, 65537, 1 << 20, (64 << 20) + 1];
const GUARD: u8 = 0xA5;

/// Rank 0 sends every size; rank 1 receives each into a buffer one byte longer, checks every
/// byte and the guard, and echoes it back; rank 0 checks the echo.
fn sizes_both_ways(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for (k, &size) in SIZES.iter().enumerate() {
        let seed = size as u64 * 31 + k as u64;
        let mut buf = vec![GUARD; size + 1];
        if world.rank() == 0 {
            let msg = message(seed, size);
            peer.send(&msg).map_err(|e| format!("send {size}: {e}"))?;
            let status = peer
                .receive_into(&mut buf)
                .map_err(|e| format!("receive echo {size}: {e}"))?;
            if status.count_bytes() != size || buf[..size] != msg[..] || buf[size] != GUARD {
                return Err(format!("echo of {size} bytes differs"));
            }
        } else {
            let status = peer
                .receive_into(&mut buf)
                .map_err(|e| format!("receive {size}: {e}"))?;
            if status.count_bytes() != size {
                return Err(format!("{size} bytes arrived as {}", status.count_bytes()));
            }
            if let Some(i) = (0..size).find(|&i| buf[i] != pattern(seed, i)) {
                return Err(format!("byte {i} of {size} is wrong"));
            }
            if buf[size] != GUARD {
                return Err(format!("the byte after {size} was written"));
            }
            peer.send(&buf[..size])
                .map_err(|e| format!("echo {size}: {e}"))?;
        }
    }
    Ok(())
}

/// 20 rounds of messages of changing size, each way, several in flight at once.
fn many_messages(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    for round in 0..20usize {
        let len = round * 3000 + world.rank() as usize;
        let out = message(round as u64 * 2 + world.rank() as u64, len);
        let mut a = vec![0u8; 70_000];
        let mut b = vec![0u8; 70_000];
        onecopy::request::scope(|scope| -> Result<(), String> {
            let sent = peer
                .immediate_send_with_tag(scope, &out, 1)
                .map_err(|e| e.to_string())?;
            let twice = peer
                .immediate_send_with_tag(scope, &out, 2)
                .map_err(|e| e.to_string())?;
            let r2 = peer
                .immediate_receive_into_with_tag(scope, &mut b, 2)
                .map_err(|e| e.to_string())?;
            let r1 = peer
                .immediate_receive_into_with_tag(scope, &mut a, 1)
                .map_err(|e| e.to_string())?;
            for r in [r1, r2, sent, twice] {
                r.wait().map_err(|e| format!("round {round}: {e}"))?;
            }
            Ok(())
        })?;
        let theirs = round * 3000 + (1 - world.rank()) as usize;
        let expect = message(round as u64 * 2 + 1 - world.rank() as u64, theirs);
        if a[..theirs] != expect[..] || b[..theirs] != expect[..] {
            return Err(format!("round {round}: wrong bytes"));
        }
    }
    Ok(())
}

/// A message larger than the receive buffer is an error on both sides, the buffer untouched
/// (large enough to be a rendezvous at the usual limits too: an eager send is done before its
/// receive looks).
fn truncation(world: &World) -> Result<(), String> {
    let peer = world.process_at_rank(1 - world.rank());
    if world.rank() == 0 {
        match peer.send(&vec![7u8; 100_000]) {
            Err(CommError::ReceiverRefused { rank: 1, .. }) => {}
            other => return Err(format!("the sender got {other:?}")),
        }
    } else {
        let mut buf = [0u8; 1000];
        match peer.receive_into(&mut buf) {
            Err(CommError::Truncated {
                len: 100_000,
                capacity: 1000,
                ..
            }) if buf.iter().all(|&b| b == 0) => {}
            other => return Err(format!("the receiver got {other:?}")),
        }
    }
    // The pair still works afterwards.
    let mut x = [0u32];
    if world.rank() == 0 {
        peer.send(&[42u32]).map_err(|e| e.to_string())?;
    } else {
        peer.receive_into(&mut x).map_err(|e| e.to_string())?;
        if x[0] != 42 {
            return Err(format!("after truncation: {}", x[0]));
        }
    }
    Ok(())
}

/// The job falls back to shm-copy where the mechanism cannot reach the peer (a seccomp
/// filter, Yama): then there is nothing of it to test here.
fn fell_back(world: &World) -> Result<(), String> {
    match world.fallback_reason() {
        Some(why) => Err(format!("SKIP: {why}")),
        None => Ok(()),
    }
}

fn body(world: &World) -> Result<(), String> {
    fell_back(world)?;
    sizes_both_ways(world)?;
    many_messages(world)?;
    truncation(world)
}

fn conformance(name: &'static str) {
    let _dog = watchdog(name, 300);
    let mechanism = Mechanism::from_name(name).expect("known mechanism");
    for (what, config) in [
        ("rendezvous only", rendezvous_only()),
        ("usual limits", Config::default()),
    ] {
        let errors = run_job_config(2, name, config, body);
        let skipped = errors.iter().flatten().find(|e| e.starts_with("SKIP"));
        if let Some(why) = skipped {
            println!("{name}: {why}");
            return;
        }
        assert_all_ok(&errors, &format!("{} ({what})", mechanism.name()));
    }
}

#[test]
fn cma_read_conforms() {
    conformance("cma-read");
}

#[test]
fn cma_write_conforms() {
    conformance("cma-write");
}

#[test]
fn cma_split_conforms() {
    conformance("cma-split");
}

#[test]
fn shm_copy_conforms() {
    conformance("shm-copy");
}

#[test]
fn procmem_conforms() {
    conformance("procmem");
}

#[test]
fn vmsplice_conforms() {
    conformance("vmsplice");
}

#[test]
fn the_vocabulary_is_one_and_unknown_names_are_refused() {
    for name in NAMES {
        let m = Mechanism::from_name(name).expect(name);
        assert_eq!(m.name(), name);
        assert_eq!(
            name.parse::<TransportChoice>(),
            Ok(TransportChoice::Named(m))
        );
    }
    assert_eq!(Mechanism::ALL.len(), NAMES.len());
    assert_eq!("auto".parse(), Ok(TransportChoice::Auto));
    let e = "carrier-pigeon"
        .parse::<TransportChoice>()
        .expect_err("unknown");
    assert!(e.to_string().contains("carrier-pigeon") && e.to_string().contains("vmsplice"));
    assert!(
        Mechanism::ALL
            .iter()
            .all(|m| m.needs_peer_access() == (*m != Mechanism::ShmCopy))
    );
}
