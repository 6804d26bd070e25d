//! `onecopy tune`: measures, on this machine, every mechanism `auto` may choose per message
//! ([`crate::transport::auto::CANDIDATES`]) at each size class, one message at a time (the
//! latency ping-pong of [`super::p2p`]) and in windows (its bandwidth tests, one way and both
//! ways), and chooses the table `auto` follows from then on
//! ([`crate::transport::auto::choose_table`]).
//!
//! The mechanisms are measured in interleaved rounds, each round in another order, and every
//! cell is the median of its rounds: a neighbour that steals the CPU for a while spoils one
//! round of each mechanism, not all rounds of one.

use std::collections::HashMap;
use std::time::Duration;

use super::p2p::{self, Test};
use super::{BenchError, Progress};
use crate::transport::Mechanism;
use crate::transport::auto::{self, AutoTable, CANDIDATES, Cell, Pattern};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The size classes: each is measured, and its row starts halfway (geometrically) from the
    /// class below.
    pub sizes: Vec<usize>,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Time aimed at for each (mechanism, test, size) in one round.
    pub budget: Duration,
    /// How much faster another mechanism must measure before it replaces the built-in choice.
    pub margin: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sizes: vec![128 << 10, 512 << 10, 2 << 20, 8 << 20, 32 << 20],
            rounds: 3,
            budget: Duration::from_millis(40),
            margin: 0.05,
        }
    }
}

/// The tests, and the pattern each stands for.
const TESTS: [Test; 3] = [Test::Latency, Test::Bandwidth, Test::BiBandwidth];

/// The pattern `test` measures: a ping-pong is one message at a time, the windows are many.
fn pattern_of(test: Test) -> Pattern {
    if test == Test::Latency {
        Pattern::Single
    } else {
        Pattern::Many
    }
}

/// Steps of progress [`run`] reports.
pub fn progress_steps(o: &Options) -> u64 {
    (o.rounds * CANDIDATES.len() * TESTS.len() * o.sizes.len()) as u64
}

/// What a tuning run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The chosen table.
    pub table: AutoTable,
    /// Every cell: the median over the rounds, and their spread.
    pub cells: Vec<Cell>,
    /// Mechanisms this machine refused (they fell back to `shm-copy`), with nothing measured.
    pub unavailable: Vec<Mechanism>,
}

/// Measures and chooses.
pub fn run(o: &Options, progress: &Progress) -> Result<Outcome, BenchError> {
    if o.sizes.is_empty() || o.rounds == 0 {
        return Err(BenchError::InvalidOption(
            "tune needs at least one size and one round".into(),
        ));
    }
    let mut samples: HashMap<(usize, Test, Mechanism), Vec<f64>> = HashMap::new();
    let mut unavailable = Vec::new();
    for round in 0..o.rounds {
        let mut order = CANDIDATES.to_vec();
        order.rotate_left(round % CANDIDATES.len());
        for m in order {
            if unavailable.contains(&m) {
                for _ in 0..TESTS.len() * o.sizes.len() {
                    progress.step(format!("{m} (unavailable)"));
                }
                continue;
            }
            let options = p2p::Options {
                latency_sizes: o.sizes.clone(),
                bandwidth_sizes: o.sizes.clone(),
                tests: TESTS.to_vec(),
                transports: vec![m.name().into()],
                budget: o.budget,
            };
            let records = p2p::run(&options, progress)?;
            // A mechanism this machine refuses runs the job on shm-copy, and says so in the
            // records' transport.
            if records.iter().any(|r| r.transport != m.name()) {
                unavailable.push(m);
                continue;
            }
            for r in records {
                let Some(test) = TESTS.into_iter().find(|t| t.name() == r.bench) else {
                    continue;
                };
                samples
                    .entry((r.bytes as usize, test, m))
                    .or_default()
                    .push(r.value);
            }
        }
    }
    let mut samples: Vec<_> = samples.into_iter().collect();
    let rank = |m: &Mechanism| CANDIDATES.iter().position(|c| c == m);
    samples.sort_by_key(|((bytes, test, m), _)| (*bytes, test.name(), rank(m)));
    let cells: Vec<Cell> = samples
        .into_iter()
        .map(|((bytes, test, m), mut values)| {
            let pattern = pattern_of(test);
            let rounds = values.clone();
            let median = super::median(&mut values);
            let (lo, hi) = values.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
            Cell {
                bytes,
                pattern: pattern.name().into(),
                test: test.name().into(),
                mechanism: m.name().into(),
                value: median,
                unit: if pattern == Pattern::Single {
                    "us"
                } else {
                    "MB/s"
                }
                .into(),
                spread: if median > 0.0 {
                    (hi - lo) / median
                } else {
                    0.0
                },
                rounds,
            }
        })
        .collect();
    let table = auto::choose_table(&cells, &AutoTable::builtin(), o.margin);
    Ok(Outcome {
        table,
        cells,
        unavailable,
    })
}

/// The cells as a table: one line per size and pattern, one column per mechanism, the chosen
/// one marked with `*`.
pub fn describe_cells(cells: &[Cell], table: &AutoTable) -> String {
    let mut out = format!("{:>8}  {:>7}", "size", "test");
    for m in CANDIDATES {
        out += &format!("  {:>14}", m.name());
    }
    out.push('\n');
    let mut sizes: Vec<usize> = cells.iter().map(|c| c.bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for size in sizes {
        for test in TESTS {
            let pattern = pattern_of(test);
            out += &format!("{:>8}  {:>7}", super::format_size(size as u64), test.name());
            let chosen = table.choose(size, pattern);
            for m in CANDIDATES {
                let text = cells
                    .iter()
                    .find(|c| c.bytes == size && c.test == test.name() && c.mechanism == m.name())
                    .map_or("-".to_string(), |c| {
                        format!(
                            "{}{:.1} ±{:.0}%",
                            if m == chosen { "*" } else { "" },
                            c.value,
                            c.spread * 50.0
                        )
                    });
                out += &format!("  {text:>14}");
            }
            out.push('\n');
        }
    }
    out += "latency (pattern single): half the round trip of a ping-pong, us; bw and bibw \
            (pattern many): windows of 64 sends one way and both ways, MB/s; * = auto's choice \
            for the pattern; ± = half the spread of the rounds\n";
    out
}
