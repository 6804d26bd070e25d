//! `onecopy bench iallreduce`: how much of a nonblocking all-reduce hides behind computation,
//! measured as osu_iallreduce does. For each size:
//! 1. pure communication: the mean time of `immediate_all_reduce_into` + `wait`;
//! 2. a computation calibrated to last that long, cut into slices with a `test` of the request
//!    after each (OSU's probes), run between the post and the wait;
//! 3. overall: the mean time of post + computation + wait, and the computation's own time.
//!
//! Overlap % = max(0, 100 - (overall - compute) / pure × 100): 100 when the all-reduce costs
//! nothing beyond the computation, 0 when it costs as much as it does alone. Each number is the
//! mean over ranks. Sizes are bytes of each rank's contribution (`f64` values, summed). This
//! process is rank 0 and drives; the other ranks are forked children that follow its orders.

use std::time::{Duration, Instant};

use super::{BenchError, Progress, Record};
use crate::coll::SystemOperation;
use crate::comm::{self, CommError, World};
use crate::config::Config;
use crate::request;
use crate::traits::*;
use crate::transport::TransportChoice;

/// The records' `bench` names: overall time, computation time, pure communication time
/// (microseconds), and overlap (percent).
pub const NAMES: [&str; 4] = [
    "iallreduce_overall",
    "iallreduce_compute",
    "iallreduce_pure_comm",
    "iallreduce_overlap",
];

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Ranks in the job (this process and `ranks - 1` forked ones).
    pub ranks: usize,
    /// Bytes per rank.
    pub sizes: Vec<usize>,
    /// Runtime transports: one job each.
    pub transports: Vec<String>,
    /// Time aimed at for each of the two timed runs of a size.
    pub budget: Duration,
    /// Tests of the request during each computation (at least 1).
    pub probes: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ranks: 2,
            sizes: super::p2p::powers_of_two(8, 1 << 20),
            transports: vec!["auto".into()],
            budget: Duration::from_millis(100),
            probes: 10,
        }
    }
}

/// Steps of progress [`run`] reports.
pub fn progress_steps(o: &Options) -> u64 {
    (o.sizes.len() * o.transports.len()) as u64
}

/// Runs the benchmark: one job of `options.ranks` ranks per transport; four records per size.
pub fn run(options: &Options, progress: &Progress) -> Result<Vec<Record>, BenchError> {
    let n = options.ranks;
    if n == 0 || n > comm::MAX_RANKS {
        return Err(BenchError::InvalidOption(format!(
            "-n {n}: a job has 1 to {} ranks",
            comm::MAX_RANKS
        )));
    }
    let config = Config::from_env().map_err(|e| BenchError::InvalidOption(e.to_string()))?;
    let largest = options.sizes.iter().copied().max().unwrap_or(0);
    let mut records = Vec::new();
    for t in &options.transports {
        let choice: TransportChoice = t
            .parse()
            .map_err(|_| BenchError::InvalidOption(format!("unknown transport '{t}'")))?;
        let what = format!("iallreduce with {n} ranks");
        records.extend(super::job::run(
            n,
            choice,
            &config,
            &what,
            |world| follow(world, largest),
            |world| lead(world, options, t, progress),
        )?);
    }
    Ok(records)
}

/// What rank 0 orders: a phase, a size, a call count, a computation per call and how many
/// tests of the request cut it.
#[derive(Clone, Copy)]
struct Order {
    phase: u64,
    size: usize,
    iters: u64,
    compute: Duration,
    probes: u32,
}

const STOP: u64 = 0;
const PURE: u64 = 1;
const OVERLAPPED: u64 = 2;

impl Order {
    /// Rank 0's `order` (`None`: stop) on every rank.
    fn broadcast(world: &World, order: Option<Order>) -> Result<Order, CommError> {
        let mut words = order.map_or([STOP, 0, 0, 0, 0], |o| {
            [
                o.phase,
                o.size as u64,
                o.iters,
                o.compute.as_nanos() as u64,
                o.probes as u64,
            ]
        });
        world.process_at_rank(0).broadcast_into(&mut words)?;
        Ok(Order {
            phase: words[0],
            size: words[1] as usize,
            iters: words[2],
            compute: Duration::from_nanos(words[3]),
            probes: (words[4] as u32).max(1),
        })
    }
}

/// Rank 0: for each size, the pure communication time (after a trial that sets the call count
/// and warms up), then the overlapped run with a computation that long.
fn lead(
    world: &World,
    o: &Options,
    transport: &str,
    progress: &Progress,
) -> Result<Vec<Record>, CommError> {
    let n = world.size() as u32;
    let largest = o.sizes.iter().copied().max().unwrap_or(0);
    let mut b = Buffers::new(largest);
    let mut records = Vec::new();
    for &size in &o.sizes {
        let label = format!("iallreduce {} {transport}", super::format_size(size as u64));
        progress.set_message(label.clone());
        let mut order = Order {
            phase: PURE,
            size,
            iters: 10,
            compute: Duration::ZERO,
            probes: o.probes.max(1),
        };
        let (trial, _) = ordered(world, order, &mut b)?;
        order.iters = ((o.budget.as_secs_f64() / trial.max(1e-9)) as u64).clamp(5, 100_000);
        let (pure, _) = ordered(world, order, &mut b)?;
        order.phase = OVERLAPPED;
        order.compute = Duration::from_secs_f64(pure);
        let (overall, compute) = ordered(world, order, &mut b)?;
        let overlap = (100.0 - (overall - compute) / pure.max(1e-12) * 100.0).max(0.0);
        let us = |s: f64| s * 1e6;
        for (name, value, unit) in [
            (NAMES[0], us(overall), "us"),
            (NAMES[1], us(compute), "us"),
            (NAMES[2], us(pure), "us"),
            (NAMES[3], overlap.min(100.0), "%"),
        ] {
            records.push(Record::new(name, transport, n, size as u64, value, unit));
        }
        progress.step(label);
    }
    Order::broadcast(world, None)?;
    Ok(records)
}

/// Broadcasts `order` and runs it: the mean over ranks of the seconds per call, and of the
/// computation's seconds per call.
fn ordered(world: &World, order: Order, b: &mut Buffers) -> Result<(f64, f64), CommError> {
    let order = Order::broadcast(world, Some(order))?;
    timed(world, order, b)
}

/// Every rank but 0: runs what rank 0 broadcasts until the stop order.
fn follow(world: &World, largest: usize) -> Result<(), CommError> {
    let mut b = Buffers::new(largest);
    loop {
        let order = Order::broadcast(world, None)?;
        if order.phase == STOP {
            return Ok(());
        }
        if order.size > largest {
            return Err(CommError::Protocol {
                rank: 0,
                what: format!("size {} is larger than agreed", order.size),
            });
        }
        timed(world, order, &mut b)?;
    }
}

struct Buffers {
    send: Vec<f64>,
    recv: Vec<f64>,
}

impl Buffers {
    fn new(largest: usize) -> Buffers {
        let words = largest.div_ceil(8).max(1);
        Buffers {
            send: (0..words).map(|i| (i % 1000) as f64 * 0.5).collect(),
            recv: vec![0.0; words],
        }
    }
}

/// Busy work for `d`: floating-point arithmetic the compiler cannot drop.
fn compute_for(d: Duration) {
    let start = Instant::now();
    let mut x = 1.0f64;
    while start.elapsed() < d {
        for _ in 0..64 {
            x = std::hint::black_box(x * 1.000_000_1 + 1e-9);
        }
    }
    std::hint::black_box(x);
}

/// `order.iters` calls after a barrier; the mean over ranks of the seconds per call and of the
/// computation's seconds per call.
fn timed(world: &World, order: Order, b: &mut Buffers) -> Result<(f64, f64), CommError> {
    let probes = order.probes;
    let words = order.size / 8;
    let (send, recv) = (&b.send[..words], &mut b.recv[..words]);
    let slice = order.compute / probes;
    world.barrier()?;
    let mut computing = Duration::ZERO;
    let start = Instant::now();
    for _ in 0..order.iters {
        request::scope(|s| -> Result<(), CommError> {
            let mut req = Some(world.immediate_all_reduce_into(
                s,
                send,
                &mut *recv,
                SystemOperation::sum(),
            )?);
            if order.phase == OVERLAPPED {
                let began = Instant::now();
                for _ in 0..probes {
                    compute_for(slice);
                    if let Some(r) = req.take() {
                        match r.test() {
                            Ok(done) => {
                                done?;
                            }
                            Err(again) => req = Some(again),
                        }
                    }
                }
                computing += began.elapsed();
            }
            if let Some(r) = req {
                r.wait()?;
            }
            Ok(())
        })?;
    }
    let mine = [
        start.elapsed().as_secs_f64() / order.iters as f64,
        computing.as_secs_f64() / order.iters as f64,
    ];
    let mut total = [0.0f64; 2];
    let root = world.process_at_rank(0);
    if world.rank() == 0 {
        root.reduce_into_root(&mine, &mut total, SystemOperation::sum())?;
    } else {
        root.reduce_into(&mine, SystemOperation::sum())?;
    }
    let n = world.size() as f64;
    Ok((total[0] / n, total[1] / n))
}
