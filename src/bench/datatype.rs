//! `onecopy bench datatype`: a ping-pong of one non-contiguous message, laid out by a derived
//! datatype on both sides, timed as osu_latency times a contiguous one (half the round trip).
//!
//! Layouts (the size is the payload: the data bytes, not the extent):
//! - `vector`: blocks of 8 `f64` (64 bytes) at a 128-byte stride;
//! - `column`: one `f64` per row of a row-major matrix of 64 `f64` per row (a 512-byte stride).
//!
//! Transports: `auto` and every mechanism send the layout itself through the runtime (by single
//! copy between the layouts where the runtime chooses it); `pack` packs into a contiguous buffer,
//! sends that, and unpacks on the other side, as a program does by hand on stacks that pack.
//!
//! Rank 1 checks once after each measurement that every element it received is the one rank 0
//! sent and that no byte between them changed; a wrong byte fails the run.

use std::time::{Duration, Instant};

use super::{BenchError, Progress, Record};
use crate::comm::{CommError, World};
use crate::config::Config;
use crate::datatype::{Equivalence, MutView, UserDatatype, View};
use crate::traits::*;
use crate::transport::TransportChoice;

/// The layouts.
pub const LAYOUTS: [&str; 2] = ["vector", "column"];

/// `auto`, every mechanism, and `pack`.
pub const TRANSPORTS: [&str; 8] = [
    "auto",
    "pack",
    "cma-read",
    "cma-write",
    "cma-split",
    "shm-copy",
    "procmem",
    "vmsplice",
];

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Payload sizes in bytes (multiples of 64).
    pub sizes: Vec<usize>,
    /// Layouts, from [`LAYOUTS`].
    pub layouts: Vec<String>,
    /// Transports, from [`TRANSPORTS`].
    pub transports: Vec<String>,
    /// Time aimed at for each (layout, size).
    pub budget: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sizes: (0..=7).map(|i| (4 << 10) << (2 * i)).collect(),
            layouts: LAYOUTS.iter().map(|s| s.to_string()).collect(),
            transports: vec!["auto".into()],
            budget: Duration::from_millis(300),
        }
    }
}

/// A layout's shape: `f64`s per block, and the stride between blocks in `f64`s. Besides the
/// two named layouts, `blocks-N` is blocks of `N` bytes (a multiple of 8) at a stride of `2N`,
/// for finding where single copy of the layout overtakes packing.
fn shape(layout: &str) -> Option<(usize, usize)> {
    match layout {
        "vector" => Some((8, 16)),
        "column" => Some((1, 64)),
        other => {
            let bytes: usize = other.strip_prefix("blocks-")?.parse().ok()?;
            (bytes >= 8 && bytes.is_multiple_of(8)).then_some((bytes / 8, bytes / 4))
        }
    }
}

/// Steps of progress [`run`] reports.
pub fn progress_steps(o: &Options) -> u64 {
    (o.sizes.len() * o.layouts.len() * o.transports.len()) as u64
}

const CONTROL_TAG: i32 = 31_000;

/// A layout's number in rank 0's orders (0 is the stop order): 1 and 2 for the named ones,
/// `2 + N` for `blocks-N`.
fn layout_code(layout: &str) -> u64 {
    match layout {
        "vector" => 1,
        "column" => 2,
        other => 2 + shape(other).map_or(0, |(b, _)| b as u64 * 8),
    }
}

fn layout_of(code: u64) -> Option<String> {
    match code {
        0 => None,
        1 => Some("vector".into()),
        2 => Some("column".into()),
        c => Some(format!("blocks-{}", c - 2)),
    }
}

/// Checks the options: known layouts and transports, sizes of whole blocks.
fn check(o: &Options) -> Result<(), BenchError> {
    for l in &o.layouts {
        if shape(l).is_none() {
            return Err(BenchError::InvalidOption(format!(
                "layout '{l}' is not one of {}",
                LAYOUTS.join(", ")
            )));
        }
    }
    for t in &o.transports {
        if !TRANSPORTS.contains(&t.as_str()) {
            return Err(BenchError::InvalidOption(format!(
                "transport '{t}' is not one of {}",
                TRANSPORTS.join(", ")
            )));
        }
    }
    for &s in &o.sizes {
        let block = o
            .layouts
            .iter()
            .filter_map(|l| shape(l))
            .map(|(b, _)| b * 8)
            .max()
            .unwrap_or(8);
        if s == 0 || s % block != 0 {
            return Err(BenchError::InvalidOption(format!(
                "size {s} is not a whole number of {block}-byte blocks"
            )));
        }
    }
    Ok(())
}

/// Runs the benchmark: one job (this process and a forked rank 1) per transport.
pub fn run(options: &Options, progress: &Progress) -> Result<Vec<Record>, BenchError> {
    check(options)?;
    let config = Config::from_env().map_err(|e| BenchError::InvalidOption(e.to_string()))?;
    let largest = options.sizes.iter().copied().max().unwrap_or(0);
    let mut records = Vec::new();
    for t in &options.transports {
        let choice: TransportChoice = match t.as_str() {
            "pack" => TransportChoice::Auto,
            name => name
                .parse()
                .map_err(|_| BenchError::InvalidOption(format!("unknown transport '{name}'")))?,
        };
        let pack = t == "pack";
        let what = format!("datatype with {t}");
        records.extend(super::job::run(
            2,
            choice,
            &config,
            &what,
            |world| follow(world, largest, pack),
            |world| lead(world, options, t, pack, progress),
        )?);
    }
    Ok(records)
}

/// A rank's matrix for `layout` at `bytes` of payload, and its datatype: the data elements hold
/// `value(i)` (or 0), the rest `GAP`.
struct Matrix {
    memory: Vec<f64>,
    datatype: UserDatatype,
    packed: Vec<u8>,
}

/// What lies between a layout's elements.
const GAP: f64 = -7.25;

fn value(i: usize) -> f64 {
    i as f64 * 0.5 + 1.0
}

impl Matrix {
    fn new(layout: &str, bytes: usize, filled: bool) -> Result<Matrix, CommError> {
        let (block, stride) = shape(layout).unwrap_or((1, 1));
        let blocks = bytes / 8 / block;
        let datatype =
            UserDatatype::vector(blocks, block, stride as isize, &f64::equivalent_datatype())
                .map_err(|e| CommError::InvalidArgument(e.to_string()))?;
        let extent = (blocks.saturating_sub(1)) * stride + block;
        let mut memory = vec![GAP; extent.max(1)];
        for b in 0..blocks {
            for j in 0..block {
                let i = b * block + j;
                memory[b * stride + j] = if filled { value(i) } else { 0.0 };
            }
        }
        Ok(Matrix {
            memory,
            datatype,
            packed: vec![0u8; bytes],
        })
    }

    /// Whether the data elements hold `value(i)` and the gaps `GAP`.
    fn holds_the_data(&self, layout: &str, bytes: usize) -> Result<(), String> {
        let (block, stride) = shape(layout).unwrap_or((1, 1));
        for (k, &x) in self.memory.iter().enumerate() {
            let (b, j) = (k / stride, k % stride);
            let want = if j < block { value(b * block + j) } else { GAP };
            if x.to_bits() != want.to_bits() {
                return Err(format!(
                    "{layout} of {bytes} bytes: element {k} holds {x}, not {want}"
                ));
            }
        }
        Ok(())
    }
}

/// One ping or pong: the layout itself, or packed by hand.
fn send(world: &World, m: &mut Matrix, pack: bool) -> Result<(), CommError> {
    let peer = world.process_at_rank(1 - world.rank());
    let view = View::with_count_and_datatype(&m.memory, 1, &m.datatype)
        .map_err(|e| CommError::InvalidArgument(e.to_string()))?;
    if pack {
        view.pack_into(&mut m.packed)
            .map_err(|e| CommError::InvalidArgument(e.to_string()))?;
        peer.send(&m.packed)
    } else {
        peer.send(&view)
    }
}

fn receive(world: &World, m: &mut Matrix, pack: bool) -> Result<(), CommError> {
    let peer = world.process_at_rank(1 - world.rank());
    let bad = |e: crate::datatype::DatatypeError| CommError::InvalidArgument(e.to_string());
    if pack {
        peer.receive_into(&mut m.packed)?;
        let mut view =
            MutView::with_count_and_datatype(&mut m.memory, 1, &m.datatype).map_err(bad)?;
        view.unpack_from(&m.packed).map_err(bad)?;
    } else {
        let mut view =
            MutView::with_count_and_datatype(&mut m.memory, 1, &m.datatype).map_err(bad)?;
        peer.receive_into(&mut view)?;
    }
    Ok(())
}

/// `iters` round trips; rank 0 starts each.
fn timed(world: &World, m: &mut Matrix, iters: usize, pack: bool) -> Result<Duration, CommError> {
    let start = Instant::now();
    for _ in 0..iters {
        if world.rank() == 0 {
            send(world, m, pack)?;
            receive(world, m, pack)?;
        } else {
            receive(world, m, pack)?;
            send(world, m, pack)?;
        }
    }
    Ok(start.elapsed())
}

/// Rank 0: tells rank 1 each (layout, size, iterations), measures, collects its verdict.
fn lead(
    world: &World,
    o: &Options,
    label: &str,
    pack: bool,
    progress: &Progress,
) -> Result<Vec<Record>, CommError> {
    let peer = world.process_at_rank(1);
    let mut records = Vec::new();
    for layout in &o.layouts {
        let code = layout_code(layout);
        for &size in &o.sizes {
            progress.set_message(format!(
                "{label} {layout} {}",
                super::format_size(size as u64)
            ));
            let mut m = Matrix::new(layout, size, true)?;
            let trial = 2u64;
            peer.send_with_tag(&[code, size as u64, trial], CONTROL_TAG)?;
            let t = timed(world, &mut m, trial as usize, pack)?;
            let per = (t.as_secs_f64() / trial as f64).max(1e-9);
            let iters = ((o.budget.as_secs_f64() / per) as u64).clamp(3, 100_000);
            peer.send_with_tag(&[code, size as u64, iters], CONTROL_TAG)?;
            let t = timed(world, &mut m, iters as usize, pack)?.as_secs_f64();
            let (verdict, _) = peer.receive_vec_with_tag::<u8>(CONTROL_TAG)?;
            if !verdict.is_empty() {
                return Err(CommError::Mismatch {
                    rank: 1,
                    what: String::from_utf8_lossy(&verdict).into_owned(),
                });
            }
            m.holds_the_data(layout, size)
                .map_err(|what| CommError::Mismatch { rank: 0, what })?;
            let us = t * 1e6 / (2.0 * iters as f64);
            records
                .push(Record::new("datatype", label, 2, size as u64, us, "us").with_layout(layout));
            progress.step(format!(
                "{label} {layout} {}",
                super::format_size(size as u64)
            ));
        }
    }
    peer.send_with_tag(&[0u64, 0, 0], CONTROL_TAG)?;
    Ok(records)
}

/// Rank 1: runs each measurement rank 0 orders and reports whether the data arrived intact.
fn follow(world: &World, largest: usize, pack: bool) -> Result<(), CommError> {
    let peer = world.process_at_rank(0);
    let mut current: Option<(u64, usize, Matrix)> = None;
    loop {
        let mut order = [0u64; 3];
        peer.receive_into_with_tag(&mut order, CONTROL_TAG)?;
        let Some(layout) = layout_of(order[0]) else {
            return Ok(());
        };
        let layout = layout.as_str();
        let size = usize::try_from(order[1])
            .ok()
            .filter(|&s| s <= largest)
            .ok_or_else(|| CommError::Protocol {
                rank: 0,
                what: format!("size {} is larger than agreed", order[1]),
            })?;
        let trial = current
            .as_ref()
            .is_none_or(|(code, s, _)| (*code, *s) != (order[0], size));
        if trial {
            current = Some((order[0], size, Matrix::new(layout, size, false)?));
        }
        let Some((_, _, m)) = current.as_mut() else {
            return Ok(());
        };
        timed(world, m, order[2] as usize, pack)?;
        if !trial {
            let verdict = m.holds_the_data(layout, size).err().unwrap_or_default();
            peer.send_with_tag(verdict.as_bytes(), CONTROL_TAG)?;
            current = None;
        }
    }
}
