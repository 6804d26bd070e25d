//! `onecopy bench coll`: average latency of each collective per call, measured as the OSU
//! micro-benchmarks (osu_allreduce, osu_bcast, osu_reduce, osu_allgather, osu_alltoall,
//! osu_barrier) do: every rank times its own calls after a barrier, and the report is the mean
//! over ranks.
//!
//! Sizes are bytes of each rank's contribution (for all-to-all, bytes sent to each peer);
//! reduce and all-reduce sum `f64` values. This process is rank 0 and drives; the other ranks
//! are forked children of it that join the same job and do what rank 0 broadcasts.

use std::time::{Duration, Instant};

use super::{BenchError, Progress, Record};
use crate::coll::SystemOperation;
use crate::comm::{self, CommError, World};
use crate::config::Config;
use crate::traits::*;
use crate::transport::TransportChoice;

/// One collective to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collective {
    /// `all_reduce_into`, sum of f64.
    AllReduce,
    /// `broadcast_into` from rank 0.
    Broadcast,
    /// `all_to_all_into`.
    AllToAll,
    /// `all_gather_into`.
    AllGather,
    /// `reduce_into_root` to rank 0, sum of f64.
    Reduce,
    /// `barrier` (no size).
    Barrier,
}

impl Collective {
    /// Every collective, in report order.
    pub const ALL: [Collective; 6] = [
        Collective::AllReduce,
        Collective::Broadcast,
        Collective::AllToAll,
        Collective::AllGather,
        Collective::Reduce,
        Collective::Barrier,
    ];

    /// The record's `bench` name (OSU's test name without `osu_`).
    pub fn name(self) -> &'static str {
        match self {
            Collective::AllReduce => "allreduce",
            Collective::Broadcast => "bcast",
            Collective::AllToAll => "alltoall",
            Collective::AllGather => "allgather",
            Collective::Reduce => "reduce",
            Collective::Barrier => "barrier",
        }
    }

    /// The collective called `name`.
    pub fn from_name(name: &str) -> Option<Collective> {
        Collective::ALL.into_iter().find(|c| c.name() == name)
    }

    fn code(self) -> u64 {
        Collective::ALL
            .iter()
            .position(|&c| c == self)
            .map_or(0, |i| i as u64 + 1)
    }

    fn from_code(code: u64) -> Option<Collective> {
        let i = usize::try_from(code).ok()?.checked_sub(1)?;
        Collective::ALL.get(i).copied()
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Ranks in the job (this process and `ranks - 1` forked ones).
    pub ranks: usize,
    /// Bytes per rank (barrier ignores them and is measured once).
    pub sizes: Vec<usize>,
    /// Which collectives.
    pub collectives: Vec<Collective>,
    /// Runtime transports (`auto`, `cma-read`, `cma-split`, `shm-copy`): one job each.
    pub transports: Vec<String>,
    /// Time aimed at for each (collective, size).
    pub budget: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ranks: 2,
            sizes: super::p2p::powers_of_two(8, 1 << 20),
            collectives: Collective::ALL.to_vec(),
            transports: vec!["auto".into()],
            budget: Duration::from_millis(100),
        }
    }
}

/// Steps of progress [`run`] reports.
pub fn progress_steps(o: &Options) -> u64 {
    o.collectives
        .iter()
        .map(|&c| {
            if c == Collective::Barrier {
                1
            } else {
                o.sizes.len()
            }
        })
        .sum::<usize>() as u64
        * o.transports.len() as u64
}

/// Runs the benchmark: one job of `options.ranks` ranks per transport.
pub fn run(options: &Options, progress: &Progress) -> Result<Vec<Record>, BenchError> {
    let n = options.ranks;
    if n == 0 || n > comm::MAX_RANKS {
        return Err(BenchError::InvalidOption(format!(
            "-n {n}: a job has 1 to {} ranks",
            comm::MAX_RANKS
        )));
    }
    let mut choices = Vec::new();
    for t in &options.transports {
        let choice: TransportChoice = t
            .parse()
            .map_err(|_| BenchError::InvalidOption(format!("unknown transport '{t}'")))?;
        choices.push((t.as_str(), choice));
    }
    let config = Config::from_env().map_err(|e| BenchError::InvalidOption(e.to_string()))?;
    let largest = options.sizes.iter().copied().max().unwrap_or(0);
    let mut records = Vec::new();
    for (name, choice) in choices {
        let what = format!("coll with {n} ranks");
        records.extend(super::job::run(
            n,
            choice,
            &config,
            &what,
            |world| follow(world, largest),
            |world| lead(world, options, name, progress),
        )?);
    }
    Ok(records)
}

/// Buffers for one rank, large enough for every collective at `largest` bytes.
struct Buffers {
    send: Vec<f64>,
    recv: Vec<f64>,
}

impl Buffers {
    fn new(n: usize, largest: usize) -> Buffers {
        let words = largest.div_ceil(8).max(1) * n;
        Buffers {
            send: (0..words).map(|i| (i % 1000) as f64 * 0.5).collect(),
            recv: vec![0.0; words],
        }
    }
}

/// Rank 0: chooses the iteration counts, broadcasts each order, collects the mean latency.
fn lead(
    world: &World,
    o: &Options,
    transport: &str,
    progress: &Progress,
) -> Result<Vec<Record>, CommError> {
    let n = world.size() as usize;
    let largest = o.sizes.iter().copied().max().unwrap_or(0);
    let mut buffers = Buffers::new(n, largest);
    let mut records = Vec::new();
    for &coll in &o.collectives {
        let sizes: &[usize] = if coll == Collective::Barrier {
            &[0]
        } else {
            &o.sizes
        };
        for &size in sizes {
            let label = format!(
                "{} {} {transport}",
                coll.name(),
                super::format_size(size as u64)
            );
            progress.set_message(label.clone());
            let iters = calibrate(world, coll, size, o.budget, &mut buffers)?;
            let mean = order(world, coll, size, iters, &mut buffers)?;
            records.push(Record::new(
                coll.name(),
                transport,
                n as u32,
                size as u64,
                mean * 1e6 / iters as f64,
                "us",
            ));
            progress.step(label);
        }
    }
    let mut stop = [0u64; 3];
    world.process_at_rank(0).broadcast_into(&mut stop)?;
    Ok(records)
}

/// The number of calls that takes about `budget`: trials of growing length until one takes a
/// tenth of it. The first calls of a size can be a hundred times slower than the rest (a peer
/// still asleep, buffers not yet faulted in); estimated from them alone, a run was a few hundred
/// calls long and its mean was set by those few. The trials also serve as the warm-up.
fn calibrate(
    world: &World,
    coll: Collective,
    size: usize,
    budget: Duration,
    buffers: &mut Buffers,
) -> Result<u64, CommError> {
    const MOST: u64 = 100_000;
    let budget = budget.as_secs_f64();
    let mut trial = 3u64;
    loop {
        let t = order(world, coll, size, trial, buffers)?;
        let per = (t / trial as f64).max(1e-9);
        let wanted = ((budget / per) as u64).clamp(5, MOST);
        // Done once a trial was a tenth of the run, in time or in calls (runs are capped).
        if t >= budget / 10.0 || trial * 10 >= wanted {
            return Ok(wanted);
        }
        // Grow tenfold at most, and no further than a tenth of the run by this estimate.
        trial = (trial * 10).min(wanted.div_ceil(10));
    }
}

/// Broadcasts an order and runs it; returns the mean over ranks of each rank's seconds.
fn order(
    world: &World,
    coll: Collective,
    size: usize,
    iters: u64,
    buffers: &mut Buffers,
) -> Result<f64, CommError> {
    let mut o = [coll.code(), size as u64, iters];
    world.process_at_rank(0).broadcast_into(&mut o)?;
    timed(world, coll, size, iters, buffers)
}

/// Every rank but 0: runs what rank 0 broadcasts until the stop order.
fn follow(world: &World, largest: usize) -> Result<(), CommError> {
    let mut buffers = Buffers::new(world.size() as usize, largest);
    loop {
        let mut o = [0u64; 3];
        world.process_at_rank(0).broadcast_into(&mut o)?;
        let Some(coll) = Collective::from_code(o[0]) else {
            return Ok(());
        };
        let size = usize::try_from(o[1])
            .ok()
            .filter(|&s| s <= largest)
            .ok_or_else(|| CommError::Protocol {
                rank: 0,
                what: format!("size {} is larger than agreed", o[1]),
            })?;
        timed(world, coll, size, o[2], &mut buffers)?;
    }
}

/// `iters` calls of `coll` after a barrier; returns the mean over ranks of the seconds taken
/// (on rank 0; elsewhere the rank's own).
fn timed(
    world: &World,
    coll: Collective,
    size: usize,
    iters: u64,
    b: &mut Buffers,
) -> Result<f64, CommError> {
    let n = world.size() as usize;
    let words = size / 8;
    world.barrier()?;
    let start = Instant::now();
    for _ in 0..iters {
        match coll {
            Collective::AllReduce => world.all_reduce_into(
                &b.send[..words],
                &mut b.recv[..words],
                SystemOperation::sum(),
            )?,
            Collective::Reduce => {
                let root = world.process_at_rank(0);
                if world.rank() == 0 {
                    root.reduce_into_root(
                        &b.send[..words],
                        &mut b.recv[..words],
                        SystemOperation::sum(),
                    )?
                } else {
                    root.reduce_into(&b.send[..words], SystemOperation::sum())?
                }
            }
            Collective::Broadcast => {
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut b.recv[..]);
                world
                    .process_at_rank(0)
                    .broadcast_into(&mut bytes[..size])?
            }
            Collective::AllGather => {
                let send: &[u8] = bytemuck::cast_slice(&b.send[..]);
                let recv: &mut [u8] = bytemuck::cast_slice_mut(&mut b.recv[..]);
                world.all_gather_into(&send[..size], &mut recv[..size * n])?
            }
            Collective::AllToAll => {
                let send: &[u8] = bytemuck::cast_slice(&b.send[..]);
                let recv: &mut [u8] = bytemuck::cast_slice_mut(&mut b.recv[..]);
                world.all_to_all_into(&send[..size * n], &mut recv[..size * n])?
            }
            Collective::Barrier => world.barrier()?,
        }
    }
    let mine = [start.elapsed().as_secs_f64()];
    let mut total = [0.0f64];
    let root = world.process_at_rank(0);
    if world.rank() == 0 {
        root.reduce_into_root(&mine, &mut total, SystemOperation::sum())?;
    } else {
        root.reduce_into(&mine, SystemOperation::sum())?;
    }
    Ok(total[0] / n as f64)
}
