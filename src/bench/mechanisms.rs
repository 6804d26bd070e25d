//! `onecopy bench mechanisms`: every transport between two processes, against the memcpy ceiling
//! measured in the same run.
//!
//! For each size, one receiver child is forked per transport and kept for the whole size; the
//! sender (this process) then measures memcpy and every transport in turn, several rounds
//! interleaved, so that a noisy moment on a shared machine spreads over all of them instead of
//! landing on one. Each value is the median GB/s over all rounds' samples. The first message each
//! receiver gets is checked byte for byte: a fast wrong answer is an error, not a number.

use std::io::{IoSlice, IoSliceMut};
use std::time::Duration;

use super::{
    BenchError, Buffer, MEMCPY, Pages, Progress, Record, gbps, median, memcpy_gbps, time_calls,
};
use crate::child::{Child, Exit};
use crate::transport::{self, Channel, ChannelConfig, Link, Side, Transport};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Message sizes in bytes (each at least 1).
    pub sizes: Vec<usize>,
    /// Transport names (see [`transport::NAMES`]).
    pub transports: Vec<String>,
    /// Which pages back the buffers (of the transports and of memcpy alike).
    pub pages: Pages,
    /// Time spent on each (size, transport) pair, over all rounds.
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

/// A transport that could not be measured here, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The transport.
    pub transport: String,
    /// The probe's reason.
    pub reason: String,
}

/// The records, and what was skipped.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// One record per (size, transport), memcpy included.
    pub records: Vec<Record>,
    /// Transports not available here.
    pub skipped: Vec<Skipped>,
}

/// The byte at position `i` of every benchmark message.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// The receiver's life: check the first message, then take messages until killed.
fn receive_forever(channel: &Channel, t: &dyn Transport, size: usize, pages: Pages) -> i32 {
    let Some(parent) = rustix::process::getppid() else {
        return 21;
    };
    let Ok(link) = channel.link(Side::B, parent.as_raw_nonzero().get()) else {
        return 21;
    };
    let Ok(mut buf) = Buffer::new(size, pages, 0) else {
        return 22;
    };
    match t.receive(&link, &mut [IoSliceMut::new(&mut buf)]) {
        Ok(n) if n == size && buf.iter().enumerate().all(|(i, &b)| b == pattern(i)) => {}
        Ok(_) => return 11,
        Err(_) => return 20,
    }
    loop {
        if t.receive(&link, &mut [IoSliceMut::new(&mut buf)]).is_err() {
            return 20;
        }
    }
}

/// Runs the benchmark. Fails on the first transfer error; transports unavailable here are
/// listed in [`Outcome::skipped`] instead.
pub fn run(options: &Options, progress: &Progress) -> Result<Outcome, BenchError> {
    if options.sizes.contains(&0) {
        return Err(BenchError::InvalidOption(
            "sizes must be at least 1 byte".into(),
        ));
    }
    let rounds = options.rounds.max(1);
    let mut outcome = Outcome::default();
    let mut transports = Vec::new();
    for name in &options.transports {
        let t = transport::by_name(name).map_err(|e| BenchError::InvalidOption(e.to_string()))?;
        match t.unavailable() {
            Some(reason) => outcome.skipped.push(Skipped {
                transport: name.clone(),
                reason,
            }),
            None => transports.push(t),
        }
    }
    let slice = options.budget / rounds as u32;
    for &size in &options.sizes {
        let label = super::format_size(size as u64);
        let channels = transports
            .iter()
            .map(|_| Channel::new(ChannelConfig::from_env()?))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BenchError::Peer(format!("cannot create a channel: {e}")))?;
        let mut children = Vec::new();
        for (t, channel) in transports.iter().zip(&channels) {
            // SAFETY: the child runs only transport code and the check of its buffer: no stdio,
            // no locks shared with other threads (the benchmark itself starts none).
            let child =
                unsafe { Child::fork(|| receive_forever(channel, &**t, size, options.pages)) }
                    .map_err(|e| BenchError::Peer(format!("cannot fork a receiver: {e}")))?;
            children.push(child);
        }
        let links = channels
            .iter()
            .zip(&children)
            .map(|(c, child)| c.link(Side::A, child.pid()))
            .collect::<Result<Vec<Link<'_>>, _>>()
            .map_err(|e| BenchError::Peer(format!("cannot reach a receiver: {e}")))?;
        let mut src = Buffer::new(size, options.pages, 0)?;
        src.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = pattern(i));
        let mut dst = Buffer::new(size, options.pages, 1)?;

        let mut memcpy_rates = Vec::new();
        let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); transports.len()];
        for _ in 0..rounds {
            progress.set_message(format!("{label} memcpy"));
            memcpy_rates.push(memcpy_gbps(&src, &mut dst, slice));
            progress.step(format!("{label} memcpy"));
            for (i, t) in transports.iter().enumerate() {
                progress.set_message(format!("{label} {}", t.name()));
                let timing = time_calls(slice, 3, || t.send(&links[i], &[IoSlice::new(&src)]))
                    .map_err(|e| transfer_error(t.name(), size, e, &mut children[i]))?;
                seconds[i].extend(timing.seconds_per_call);
                progress.step(format!("{label} {}", t.name()));
            }
        }
        outcome.records.push(Record::new(
            "mechanisms",
            MEMCPY,
            1,
            size as u64,
            median(&mut memcpy_rates),
            "GB/s",
        ));
        for (t, s) in transports.iter().zip(&mut seconds) {
            let rate = gbps(size, median(s));
            outcome.records.push(Record::new(
                "mechanisms",
                t.name(),
                2,
                size as u64,
                rate,
                "GB/s",
            ));
        }
        drop(links);
        drop(children);
    }
    Ok(outcome)
}

/// Turns a failed send into a benchmark error, with the receiver's own verdict where it has one.
fn transfer_error(
    name: &str,
    size: usize,
    e: transport::TransportError,
    child: &mut Child,
) -> BenchError {
    match child.wait_timeout(Duration::from_millis(200)) {
        Ok(Some(Exit::Code(11))) => BenchError::Peer(format!(
            "{name} at {size} bytes: the receiver got wrong data; this is a bug in the transport"
        )),
        _ => BenchError::Transfer {
            transport: name.to_string(),
            bytes: size,
            source: e,
        },
    }
}

/// Steps of progress [`run`] reports for these options.
pub fn progress_steps(options: &Options) -> u64 {
    (options.sizes.len() * options.rounds.max(1) * (options.transports.len() + 1)) as u64
}
