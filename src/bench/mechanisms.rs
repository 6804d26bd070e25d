//! `onecopy bench mechanisms`: every mechanism between two processes, against the memcpy ceiling
//! measured in the same run.
//!
//! Each mechanism is measured as the runtime uses it: a two-rank job on that mechanism, with the
//! inline and eager limits at 0 so that every message is a rendezvous (RTS, the mechanism's
//! transfer, the receiver's verdict), so what is measured is what runs. For each size one job
//! per mechanism is started and kept for the whole size; this process (rank 0 of each) then
//! measures memcpy and every mechanism in turn, several rounds interleaved, so that a noisy moment
//! on a shared machine spreads over all of them instead of landing on one. Each value is the median
//! GB/s over all rounds' samples. The first message each receiver gets is checked byte for byte:
//! a fast wrong answer is an error, not a number.

use std::time::Duration;

use super::job::Forked;
use super::{
    BenchError, Buffer, MEMCPY, Pages, Progress, Record, gbps, median, memcpy_gbps, time_calls,
};
use crate::child::Exit;
use crate::comm::World;
use crate::config::Config;
use crate::traits::*;
use crate::transport::{self, Mechanism, TransportChoice};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Message sizes in bytes (each at least 1).
    pub sizes: Vec<usize>,
    /// Mechanism names (see [`transport::NAMES`]).
    pub transports: Vec<String>,
    /// Which pages back the buffers (of the mechanisms and of memcpy alike).
    pub pages: Pages,
    /// Time spent on each (size, mechanism) pair, over all rounds.
    pub budget: Duration,
    /// How many interleaved rounds the budget is spread over.
    pub rounds: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sizes: super::mechanisms_sizes(),
            transports: transport::NAMES.iter().map(|s| s.to_string()).collect(),
            pages: Pages::Small,
            budget: Duration::from_millis(300),
            rounds: 3,
        }
    }
}

/// A mechanism that could not be measured here, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The mechanism.
    pub transport: String,
    /// Why (what the job said when it fell back).
    pub reason: String,
}

/// The records, and what was skipped.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// One record per (size, mechanism), memcpy included.
    pub records: Vec<Record>,
    /// Mechanisms not available here.
    pub skipped: Vec<Skipped>,
}

/// The byte at position `i` of every benchmark message.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// The tag of the message that ends a receiver.
const STOP: i32 = 1;

/// The receiver's life: check the first message, then take messages until told to stop.
/// Exit codes: 11 wrong data, 20 a failed receive, 22 no buffer.
fn receive_all(world: &World, size: usize, pages: Pages) -> Result<(), i32> {
    let mut buf = Buffer::new(size, pages, 0).map_err(|_| 22)?;
    let peer = world.process_at_rank(0);
    let status = peer.receive_into(&mut buf[..]).map_err(|_| 20)?;
    if status.tag() == STOP {
        return Ok(());
    }
    if status.count_bytes() != size || !buf.iter().enumerate().all(|(i, &b)| b == pattern(i)) {
        return Err(11);
    }
    loop {
        let status = peer.receive_into(&mut buf[..]).map_err(|_| 20)?;
        if status.tag() == STOP {
            return Ok(());
        }
    }
}

/// Runs the benchmark. Fails on the first transfer error; mechanisms that cannot reach the
/// peer here are listed in [`Outcome::skipped`] instead.
pub fn run(options: &Options, progress: &Progress) -> Result<Outcome, BenchError> {
    if options.sizes.contains(&0) {
        return Err(BenchError::InvalidOption(
            "sizes must be at least 1 byte".into(),
        ));
    }
    let mut mechanisms = Vec::new();
    for name in &options.transports {
        mechanisms.push(Mechanism::from_name(name).ok_or_else(|| {
            BenchError::InvalidOption(transport::UnknownTransport(name.clone()).to_string())
        })?);
    }
    let mut config = Config::from_env().map_err(|e| BenchError::InvalidOption(e.to_string()))?;
    // Every message by rendezvous: the mechanism moves all of it.
    config.inline_limit_bytes = Some(0);
    config.eager_limit_bytes = Some(0);
    let rounds = options.rounds.max(1);
    let mut outcome = Outcome::default();
    let slice = options.budget / rounds as u32;
    for &size in &options.sizes {
        let label = super::format_size(size as u64);
        let mut jobs = Vec::new();
        for &m in &mechanisms {
            let pages = options.pages;
            let job = Forked::start(2, TransportChoice::Named(m), &config, m.name(), |world| {
                receive_all(world, size, pages)
            })?;
            let world = job.world();
            if world.mode() != m {
                let reason = world
                    .fallback_reason()
                    .unwrap_or_else(|| "the job chose another mechanism".into());
                if !outcome.skipped.iter().any(|s| s.transport == m.name()) {
                    outcome.skipped.push(Skipped {
                        transport: m.name().to_string(),
                        reason,
                    });
                }
                stop(&world);
                job.finish();
                continue;
            }
            jobs.push((m, job));
        }
        let mut src = Buffer::new(size, options.pages, 0)?;
        src.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = pattern(i));
        let mut dst = Buffer::new(size, options.pages, 1)?;

        let mut memcpy_rates = Vec::new();
        let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); jobs.len()];
        let mut failure = None;
        'rounds: for _ in 0..rounds {
            progress.set_message(format!("{label} memcpy"));
            memcpy_rates.push(memcpy_gbps(&src, &mut dst, slice));
            progress.step(format!("{label} memcpy"));
            for (i, (m, job)) in jobs.iter().enumerate() {
                progress.set_message(format!("{label} {m}"));
                let world = job.world();
                let peer = world.process_at_rank(1);
                match time_calls(slice, 3, || peer.send(&src[..])) {
                    Ok(timing) => seconds[i].extend(timing.seconds_per_call),
                    Err(e) => {
                        failure = Some((i, e));
                        break 'rounds;
                    }
                }
                progress.step(format!("{label} {m}"));
            }
        }
        let mut ends = Vec::new();
        for (m, job) in jobs {
            stop(&job.world());
            ends.push((m, job.finish()));
        }
        if let Some((i, e)) = failure {
            let (m, end) = &ends[i];
            return Err(match end.first() {
                Some(Some(Exit::Code(11))) => BenchError::Peer(format!(
                    "{m} at {size} bytes: the receiver got wrong data; this is a bug in the mechanism"
                )),
                _ => BenchError::Peer(format!("{m} at {size} bytes: {e}")),
            });
        }
        outcome.records.push(Record::new(
            "mechanisms",
            MEMCPY,
            1,
            size as u64,
            median(&mut memcpy_rates),
            "GB/s",
        ));
        for ((m, _), s) in ends.iter().zip(&mut seconds) {
            let rate = gbps(size, median(s));
            outcome.records.push(Record::new(
                "mechanisms",
                m.name(),
                2,
                size as u64,
                rate,
                "GB/s",
            ));
        }
    }
    Ok(outcome)
}

/// Tells rank 1 to stop (best effort: it may be gone already).
fn stop(world: &World) {
    let _ = world.process_at_rank(1).send_with_tag(&[0u8], STOP);
}

/// Steps of progress [`run`] reports for these options.
pub fn progress_steps(options: &Options) -> u64 {
    (options.sizes.len() * options.rounds.max(1) * (options.transports.len() + 1)) as u64
}
