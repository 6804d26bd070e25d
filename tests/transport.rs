//! The conformance suite, instantiated for every transport: sizes from 0 to 64 MiB + 1, scattered
//! buffers on both sides, exact data checks, truncation, and a peer that dies mid-transfer.

mod common;

use common::watchdog;

use std::io::{IoSlice, IoSliceMut};
use std::time::{Duration, Instant};

use std::os::fd::AsFd;

use onecopy::child::{Child, Exit};
use onecopy::transport::{self, Channel, ChannelConfig, Side, Transport, TransportError};

/// The byte at position `i` of message `seed`.
fn pattern(seed: u64, i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    (x ^ (x >> 29)) as u8
}

/// Cuts `total` into pieces by a deterministic scheme: `style` 0 one piece, 1 pieces of uneven
/// sizes including empty ones, 2 many small pieces then a large one.
fn layout(total: usize, style: u32) -> Vec<usize> {
    match style {
        0 => vec![total],
        1 => {
            let mut out = Vec::new();
            let mut left = total;
            let mut step = 1usize;
            while left > 0 {
                let n = step.min(left);
                out.push(n);
                out.push(0);
                left -= n;
                step = step * 7 + 3;
            }
            out
        }
        _ => {
            let mut out = Vec::new();
            let mut left = total;
            for i in 0..2000 {
                if left == 0 {
                    break;
                }
                let n = (1 + i % 13).min(left);
                out.push(n);
                left -= n;
            }
            if left > 0 {
                out.push(left);
            }
            out
        }
    }
}

/// Buffers of the given lengths, each with a guard byte after it.
fn buffers(lens: &[usize]) -> Vec<Vec<u8>> {
    lens.iter().map(|&n| vec![0xA5; n + 1]).collect()
}

/// The forked child's end of `channel`, talking to its parent.
fn link_to_parent(channel: &Channel) -> Option<onecopy::transport::Link<'_>> {
    let parent = rustix::process::getppid()?.as_raw_nonzero().get();
    channel.link(Side::B, parent).ok()
}

/// The child receives one message into `layout`-shaped buffers and checks every byte; its exit
/// code says how it went (0 good, 10 wrong length, 11 wrong data, 12 guard overwritten, 20 error).
fn receiver_body(channel: &Channel, t: &dyn Transport, total: usize, style: u32, seed: u64) -> i32 {
    let Some(link) = link_to_parent(channel) else {
        return 21;
    };
    let lens = layout(total, (style + 1) % 3);
    let mut bufs = buffers(&lens);
    let mut slices: Vec<IoSliceMut<'_>> = bufs
        .iter_mut()
        .zip(&lens)
        .map(|(b, &n)| IoSliceMut::new(&mut b[..n]))
        .collect();
    let n = match t.receive(&link, &mut slices) {
        Ok(n) => n,
        Err(_) => return 20,
    };
    if n != total {
        return 10;
    }
    let mut i = 0;
    for (b, &len) in bufs.iter().zip(&lens) {
        for &byte in &b[..len] {
            if byte != pattern(seed, i) {
                return 11;
            }
            i += 1;
        }
        if b[len] != 0xA5 {
            return 12;
        }
    }
    0
}

fn send_message(
    channel: &Channel,
    t: &dyn Transport,
    peer: i32,
    total: usize,
    style: u32,
    seed: u64,
) -> Result<(), TransportError> {
    let link = channel.link(Side::A, peer)?;
    let lens = layout(total, style);
    let mut data = Vec::new();
    let mut i = 0;
    for &n in &lens {
        data.push((0..n).map(|k| pattern(seed, i + k)).collect::<Vec<u8>>());
        i += n;
    }
    let slices: Vec<IoSlice<'_>> = data.iter().map(|d| IoSlice::new(d)).collect();
    t.send(&link, &slices)
}

fn skip_if_unavailable(t: &dyn Transport) -> bool {
    if let Some(why) = t.unavailable() {
        eprintln!("SKIP {}: {why}", t.name());
        return true;
    }
    false
}

const SIZES: [usize; 7] = [0, 1, 4095, 4096, 4097, 1 << 20, (64 << 20) + 1];

fn conformance(name: &'static str) {
    let _dog = watchdog(name, 240);
    let t = transport::by_name(name).expect("known transport");
    if skip_if_unavailable(&*t) {
        return;
    }
    for &size in &SIZES {
        for style in 0..3u32 {
            if size > (1 << 20) && style == 2 {
                continue; // many tiny pieces of 64 MiB add nothing over style 1
            }
            let seed = size as u64 * 31 + style as u64;
            let channel = Channel::new(ChannelConfig::default()).expect("channel");
            // SAFETY: the child only runs transport code and exits (no stdio, no shared locks).
            let mut child =
                unsafe { Child::fork(|| receiver_body(&channel, &*t, size, style, seed)) }
                    .expect("fork");
            let sent = send_message(&channel, &*t, child.pid(), size, style, seed);
            let exit = child.wait_timeout(Duration::from_secs(60)).expect("wait");
            assert!(
                sent.is_ok(),
                "{name} size {size} style {style}: send failed: {sent:?}"
            );
            assert_eq!(
                exit,
                Some(Exit::Code(0)),
                "{name} size {size} style {style}: receiver said {exit:?}"
            );
        }
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

/// Several messages each way on one channel, alternating directions, for every transport.
#[test]
fn many_messages_both_directions() {
    let _dog = watchdog("many_messages_both_directions", 120);
    for t in transport::all() {
        if skip_if_unavailable(&*t) {
            continue;
        }
        let channel = Channel::new(ChannelConfig {
            slot_bytes: 4096,
            slots: 4,
            pipe_bytes: 65536,
        })
        .expect("channel");
        // SAFETY: the child only runs transport code and exits.
        let mut child = unsafe {
            Child::fork(|| {
                let Some(link) = link_to_parent(&channel) else {
                    return 21;
                };
                for round in 0..20usize {
                    let mut buf = vec![0u8; 70_000];
                    let n = match t.receive(&link, &mut [IoSliceMut::new(&mut buf)]) {
                        Ok(n) => n,
                        Err(_) => return 20,
                    };
                    if n != round * 3000 || (0..n).any(|i| buf[i] != pattern(round as u64, i)) {
                        return 11;
                    }
                    // Echo it back.
                    if t.send(&link, &[IoSlice::new(&buf[..n])]).is_err() {
                        return 22;
                    }
                }
                0
            })
        }
        .expect("fork");
        let link = channel.link(Side::A, child.pid()).expect("link");
        for round in 0..20usize {
            let msg: Vec<u8> = (0..round * 3000)
                .map(|i| pattern(round as u64, i))
                .collect();
            t.send(&link, &[IoSlice::new(&msg)])
                .unwrap_or_else(|e| panic!("{} round {round}: {e}", t.name()));
            let mut back = vec![0u8; msg.len() + 10];
            let n = t
                .receive(&link, &mut [IoSliceMut::new(&mut back)])
                .expect("echo");
            assert_eq!(
                &back[..n],
                &msg[..],
                "{} round {round}: echo differs",
                t.name()
            );
        }
        assert_eq!(
            child.wait_timeout(Duration::from_secs(30)).expect("wait"),
            Some(Exit::Code(0)),
            "{}",
            t.name()
        );
    }
}

/// A message larger than the receive buffers is an error on both sides, never a short delivery.
#[test]
fn truncation_is_an_error_on_both_sides() {
    let _dog = watchdog("truncation_is_an_error_on_both_sides", 60);
    for t in transport::all() {
        if skip_if_unavailable(&*t) {
            continue;
        }
        let channel = Channel::new(ChannelConfig::default()).expect("channel");
        // SAFETY: the child only runs transport code and exits.
        let mut child = unsafe {
            Child::fork(|| {
                let Some(link) = link_to_parent(&channel) else {
                    return 21;
                };
                let mut buf = vec![0u8; 1000];
                match t.receive(&link, &mut [IoSliceMut::new(&mut buf)]) {
                    Err(TransportError::Truncated {
                        sent: 5000,
                        capacity: 1000,
                    }) if buf.iter().all(|&b| b == 0) => 0,
                    _ => 11,
                }
            })
        }
        .expect("fork");
        let link = channel.link(Side::A, child.pid()).expect("link");
        let r = t.send(&link, &[IoSlice::new(&[7u8; 5000])]);
        assert!(
            matches!(
                r,
                Err(TransportError::Truncated {
                    sent: 5000,
                    capacity: 1000
                })
            ),
            "{}: {r:?}",
            t.name()
        );
        assert_eq!(
            child.wait_timeout(Duration::from_secs(10)).expect("wait"),
            Some(Exit::Code(0)),
            "{}",
            t.name()
        );
        // The link is poisoned after an error.
        assert!(matches!(
            t.send(&link, &[]),
            Err(TransportError::Poisoned(_))
        ));
    }
}

/// Both sides must use the same transport; a mismatch is a protocol error, not garbage.
#[test]
fn mismatched_transports_are_refused() {
    let _dog = watchdog("mismatched_transports_are_refused", 30);
    let channel = Channel::new(ChannelConfig::default()).expect("channel");
    // SAFETY: the child only runs transport code and exits.
    let mut child = unsafe {
        Child::fork(|| {
            let Some(link) = link_to_parent(&channel) else {
                return 21;
            };
            let t = transport::by_name("shm-copy").expect("known");
            let mut buf = vec![0u8; 100];
            match t.receive(&link, &mut [IoSliceMut::new(&mut buf)]) {
                Err(TransportError::Protocol { .. }) => 0,
                _ => 11,
            }
        })
    }
    .expect("fork");
    let link = channel.link(Side::A, child.pid()).expect("link");
    let t = transport::by_name("vmsplice").expect("known");
    let r = t.send(&link, &[IoSlice::new(&[1u8; 50])]);
    assert!(matches!(r, Err(TransportError::Protocol { .. })), "{r:?}");
    assert_eq!(
        child.wait_timeout(Duration::from_secs(10)).expect("wait"),
        Some(Exit::Code(0))
    );
    assert!(matches!(
        transport::by_name("carrier-pigeon"),
        Err(TransportError::UnknownTransport(_))
    ));
}

const BIG: usize = 512 << 20;

/// Starts a child that signals on a pipe just before its transfer begins; the parent kills it
/// a moment later, while its own half of the transfer runs, and must get an error in bounded time.
fn peer_dies_mid_transfer(child_sends: bool) {
    for t in transport::all() {
        if skip_if_unavailable(&*t) {
            continue;
        }
        let channel = Channel::new(ChannelConfig::default()).expect("channel");
        let (ready_r, ready_w) = rustix::pipe::pipe().expect("pipe");
        // SAFETY: the child only allocates, writes to a pipe and runs transport code.
        let child = unsafe {
            Child::fork(|| {
                let Some(link) = link_to_parent(&channel) else {
                    return 21;
                };
                let mut buf = vec![0x5Au8; BIG];
                let _ = rustix::io::write(ready_w.as_fd(), b"x");
                let _ = if child_sends {
                    t.send(&link, &[IoSlice::new(&buf)])
                } else {
                    t.receive(&link, &mut [IoSliceMut::new(&mut buf)])
                        .map(|_| ())
                };
                0
            })
        }
        .expect("fork");
        let pid = child.pid();
        let link = channel.link(Side::A, pid).expect("link");
        let mut buf = vec![0u8; BIG];
        let killer = std::thread::spawn(move || {
            let mut b = [0u8; 1];
            let _ = rustix::io::read(ready_r.as_fd(), &mut b);
            std::thread::sleep(Duration::from_millis(3));
            let mut child = child;
            child.kill()
        });
        let start = Instant::now();
        let r = if child_sends {
            t.receive(&link, &mut [IoSliceMut::new(&mut buf)])
                .map(|_| ())
        } else {
            t.send(&link, &[IoSlice::new(&buf)])
        };
        let took = start.elapsed();
        let exit = killer.join().expect("killer");
        assert_eq!(
            exit,
            Exit::Signal(libc::SIGKILL),
            "{}: the child ended before it was killed",
            t.name()
        );
        assert!(
            r.is_err(),
            "{}: a transfer whose peer died reported success",
            t.name()
        );
        assert!(
            took < Duration::from_secs(5),
            "{}: took {took:?} to notice",
            t.name()
        );
    }
}

#[test]
fn sender_dies_mid_transfer() {
    let _dog = watchdog("sender_dies_mid_transfer", 120);
    peer_dies_mid_transfer(true);
}

#[test]
fn receiver_dies_mid_transfer() {
    let _dog = watchdog("receiver_dies_mid_transfer", 120);
    peer_dies_mid_transfer(false);
}
