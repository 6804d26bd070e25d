//! `onecopy bench p2p`: point-to-point latency, bandwidth and bidirectional bandwidth between two
//! ranks, measured as the OSU micro-benchmarks do.
//!
//! - latency: half the round trip of a blocking ping-pong;
//! - bw: rank 0 posts a window of 64 non-blocking sends, rank 1 64 receives, then a 4-byte
//!   acknowledgement; MB/s = bytes × 64 × iterations / time;
//! - bibw: both ranks do the window in both directions at once.
//!
//! This process is rank 0 and drives; rank 1 is a forked child that joins the same job. Before
//! each measurement rank 0 tells rank 1 what to run and how many iterations (chosen from a short
//! trial so that each size takes about the time budget); a tenth of them run untimed first.

use std::time::{Duration, Instant};

use super::{BenchError, Progress, Record};
use crate::comm::{CommError, World};
use crate::config::Config;
use crate::traits::*;
use crate::transport::TransportChoice;

/// The runtime's transports: `auto` (the runtime's own choice) and every mechanism.
pub const TRANSPORTS: [&str; 7] = [
    "auto",
    "cma-read",
    "cma-write",
    "cma-split",
    "shm-copy",
    "procmem",
    "vmsplice",
];

/// Which test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Test {
    /// Half round trip, µs.
    Latency,
    /// One direction, MB/s.
    Bandwidth,
    /// Both directions at once, MB/s.
    BiBandwidth,
}

impl Test {
    /// The record's `bench` name.
    pub fn name(self) -> &'static str {
        match self {
            Test::Latency => "latency",
            Test::Bandwidth => "bw",
            Test::BiBandwidth => "bibw",
        }
    }

    fn code(self) -> u64 {
        match self {
            Test::Latency => 1,
            Test::Bandwidth => 2,
            Test::BiBandwidth => 3,
        }
    }

    fn from_code(c: u64) -> Option<Test> {
        [Test::Latency, Test::Bandwidth, Test::BiBandwidth]
            .into_iter()
            .find(|t| t.code() == c)
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sizes for the latency test (bytes, 0 allowed).
    pub latency_sizes: Vec<usize>,
    /// Sizes for bw and bibw.
    pub bandwidth_sizes: Vec<usize>,
    /// Which tests.
    pub tests: Vec<Test>,
    /// Transports, from [`TRANSPORTS`].
    pub transports: Vec<String>,
    /// Time aimed at for each (test, size).
    pub budget: Duration,
}

/// Powers of two from `from` to `to`.
pub fn powers_of_two(from: usize, to: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut s = from.max(1);
    while s <= to {
        out.push(s);
        s *= 2;
    }
    out
}

impl Default for Options {
    fn default() -> Self {
        Options {
            latency_sizes: powers_of_two(1, 4 << 20),
            bandwidth_sizes: powers_of_two(1, 64 << 20),
            tests: vec![Test::Latency, Test::Bandwidth, Test::BiBandwidth],
            transports: vec!["auto".into()],
            budget: Duration::from_millis(150),
        }
    }
}

/// The window of non-blocking operations in bw and bibw.
pub const WINDOW: usize = 64;
/// Tag of the control messages between the two ranks.
const CONTROL_TAG: i32 = 32_000;

/// Steps of progress [`run`] reports.
pub fn progress_steps(o: &Options) -> u64 {
    let per = o
        .tests
        .iter()
        .map(|t| {
            if *t == Test::Latency {
                o.latency_sizes.len()
            } else {
                o.bandwidth_sizes.len()
            }
        })
        .sum::<usize>();
    (per * o.transports.len()) as u64
}

/// Runs the benchmark; one job (this process and a forked rank 1) per transport.
pub fn run(options: &Options, progress: &Progress) -> Result<Vec<Record>, BenchError> {
    let mut choices = Vec::new();
    for t in &options.transports {
        let choice: TransportChoice = t.parse().map_err(|_| {
            BenchError::InvalidOption(format!(
                "transport '{t}' is not one of {}",
                TRANSPORTS.join(", ")
            ))
        })?;
        choices.push(choice);
    }
    let config = Config::from_env().map_err(|e| BenchError::InvalidOption(e.to_string()))?;
    let largest = options
        .latency_sizes
        .iter()
        .chain(&options.bandwidth_sizes)
        .copied()
        .max()
        .unwrap_or(0);
    let mut records = Vec::new();
    for choice in choices {
        let what = format!("p2p with {choice}");
        records.extend(super::job::run(
            2,
            choice,
            &config,
            &what,
            |world| follow(world, largest),
            |world| {
                let label = match choice {
                    TransportChoice::Auto => "auto".to_string(),
                    TransportChoice::Named(_) => world.mode().name().to_string(),
                };
                lead(world, options, &label, largest, progress)
            },
        )?);
    }
    Ok(records)
}

/// Rank 0: decides, tells rank 1, measures.
fn lead(
    world: &World,
    o: &Options,
    label: &str,
    largest: usize,
    progress: &Progress,
) -> Result<Vec<Record>, CommError> {
    let peer = world.process_at_rank(1);
    let mut send = vec![0xA5u8; largest.max(1)];
    let mut recv = vec![0u8; largest.max(1)];
    send.iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i % 251) as u8);
    let mut records = Vec::new();
    for &test in &o.tests {
        let sizes = if test == Test::Latency {
            &o.latency_sizes
        } else {
            &o.bandwidth_sizes
        };
        for &size in sizes {
            progress.set_message(format!(
                "{label} {} {}",
                test.name(),
                super::format_size(size as u64)
            ));
            // A short trial sets the iteration count for the budget.
            let trial = 3;
            peer.send_with_tag(&[test.code(), size as u64, trial], CONTROL_TAG)?;
            let t = timed(world, test, size, trial as usize, &send, &mut recv, true)?;
            let per = (t.as_secs_f64() / trial as f64).max(1e-9);
            let iters = ((o.budget.as_secs_f64() / per) as u64).clamp(5, 200_000);
            // An untimed tenth first, as the OSU suite's warm-up: the first calls at a size
            // touch new pages of the buffers and slots, and the rings' lines are cold.
            let warm = (iters / 10).max(2);
            peer.send_with_tag(&[test.code(), size as u64, warm], CONTROL_TAG)?;
            timed(world, test, size, warm as usize, &send, &mut recv, true)?;
            peer.send_with_tag(&[test.code(), size as u64, iters], CONTROL_TAG)?;
            let t = timed(world, test, size, iters as usize, &send, &mut recv, true)?.as_secs_f64();
            let (value, unit) = match test {
                Test::Latency => (t * 1e6 / (2.0 * iters as f64), "us"),
                Test::Bandwidth => ((size * WINDOW) as f64 * iters as f64 / t / 1e6, "MB/s"),
                Test::BiBandwidth => ((2 * size * WINDOW) as f64 * iters as f64 / t / 1e6, "MB/s"),
            };
            records.push(Record::new(test.name(), label, 2, size as u64, value, unit));
            progress.step(format!(
                "{label} {} {}",
                test.name(),
                super::format_size(size as u64)
            ));
        }
    }
    // The stop order.
    peer.send_with_tag(&[0u64, 0, 0], CONTROL_TAG)?;
    Ok(records)
}

/// Rank 1: does what rank 0 says until told to stop.
fn follow(world: &World, largest: usize) -> Result<(), CommError> {
    let peer = world.process_at_rank(0);
    let send = vec![0x5Au8; largest.max(1)];
    let mut recv = vec![0u8; largest.max(1)];
    loop {
        let mut order = [0u64; 3];
        peer.receive_into_with_tag(&mut order, CONTROL_TAG)?;
        let Some(test) = Test::from_code(order[0]) else {
            return Ok(());
        };
        let size = usize::try_from(order[1])
            .ok()
            .filter(|&s| s <= largest)
            .ok_or_else(|| CommError::Protocol {
                rank: 0,
                what: format!("size {} is larger than agreed", order[1]),
            })?;
        timed(
            world,
            test,
            size,
            order[2] as usize,
            &send,
            &mut recv,
            false,
        )?;
    }
}

/// One measurement: `iters` iterations of `test` with `size`-byte messages; rank 0's wall time.
fn timed(
    world: &World,
    test: Test,
    size: usize,
    iters: usize,
    send: &[u8],
    recv: &mut [u8],
    leader: bool,
) -> Result<Duration, CommError> {
    let peer = world.process_at_rank(if leader { 1 } else { 0 });
    let (out, inn) = (&send[..size], &mut recv[..size]);
    let start = Instant::now();
    match test {
        Test::Latency => {
            for _ in 0..iters {
                if leader {
                    peer.send(out)?;
                    peer.receive_into(inn)?;
                } else {
                    peer.receive_into(inn)?;
                    peer.send(out)?;
                }
            }
        }
        Test::Bandwidth => {
            let mut ack = [0u32; 1];
            for _ in 0..iters {
                if leader {
                    window(world, Some(out), None)?;
                    peer.receive_into(&mut ack)?;
                } else {
                    window(world, None, Some(&mut *inn))?;
                    peer.send(&ack)?;
                }
            }
        }
        Test::BiBandwidth => {
            for _ in 0..iters {
                window(world, Some(out), Some(&mut *inn))?;
            }
        }
    }
    Ok(start.elapsed())
}

/// Posts a window of [`WINDOW`] receives into `inn` and/or sends of `out`, and waits for all.
fn window(world: &World, out: Option<&[u8]>, inn: Option<&mut [u8]>) -> Result<(), CommError> {
    let peer = world.process_at_rank(1 - world.rank());
    crate::request::scope(|scope| {
        let mut reqs = Vec::with_capacity(2 * WINDOW);
        if let Some(inn) = inn {
            for _ in 0..WINDOW {
                // SAFETY: every receive of the window lands in the same buffer, as in the OSU
                // suite; its contents are never read, it outlives the scope (borrowed mutably
                // by this function), and no reference to it is used while the scope runs.
                reqs.push(unsafe {
                    peer.immediate_receive_into_shared(scope, inn.as_mut_ptr(), inn.len())
                }?);
            }
        }
        if let Some(out) = out {
            for _ in 0..WINDOW {
                reqs.push(peer.immediate_send(scope, out)?);
            }
        }
        for r in reqs {
            r.wait()?;
        }
        Ok(())
    })
}
