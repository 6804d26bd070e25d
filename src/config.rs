//! Every setting a user can change, in one place: [`SETTINGS`] lists them (name, default, range,
//! meaning), and [`Config::from_env`] reads them all from the environment at once, checking each.
//!
//! A process reads its configuration once, when it starts doing the work it configures: a rank
//! when it joins its job (so a test's forked rank can set a variable before joining), the
//! launcher before it lays out the job's segment, a benchmark before its first measurement. The
//! values then travel with the objects that use them; nothing below reads the environment again.
//! A value that is not a number in its range is an error naming the variable, never ignored.
//!
//! The variables through which the launcher tells a rank where it is (`ONECOPY_RANK`, ...) are
//! not settings: they are the launcher's contract with its ranks, in [`crate::comm::env`].

use std::time::Duration;

/// How a reduction step moves a peer's contribution (see [`crate::coll::reduce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceStep {
    /// A message, combined into the accumulator piece by piece as it arrives.
    Copy,
    /// A single-copy read of the whole contribution into a temporary buffer, then the
    /// combination.
    ReadThenReduce,
    /// Single-copy reads of cache-sized chunks, each combined at once.
    Fused,
}

/// Where `auto` looks for its measured table ([`crate::transport::auto`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TuneFile {
    /// `$XDG_CACHE_HOME/onecopy/tune.json`, else `~/.cache/onecopy/tune.json`.
    Default,
    /// This file.
    At(std::path::PathBuf),
    /// None: the built-in table.
    Off,
}

/// Where each rank runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// Each rank on its own CPU when there are enough, else consecutive ranks on a shared one.
    Core,
    /// Left to the scheduler.
    None,
}

/// One setting, as the documentation lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    /// Its default, as a user would write it.
    pub default: &'static str,
    /// The values it takes.
    pub range: &'static str,
    /// What it changes.
    pub meaning: &'static str,
}

/// Every setting, in the order the documentation lists them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "ONECOPY_INLINE_LIMIT",
        default: "1024",
        range: "0 to half a ring, less its header",
        meaning: "largest message carried in the ring record itself",
    },
    Setting {
        name: "ONECOPY_EAGER_LIMIT",
        default: "the eager slot size",
        range: "the inline limit to the slot size",
        meaning: "largest message sent through an eager slot without waiting for its receive",
    },
    Setting {
        name: "ONECOPY_EAGER_SLOT_BYTES",
        default: "65536",
        range: "4096 to 16777216",
        meaning: "bytes per eager slot (rounded up to 64); shm-copy streams through these slots",
    },
    Setting {
        name: "ONECOPY_EAGER_SLOTS",
        default: "64, fewer from 7 ranks on",
        range: "1 to 1024",
        meaning: "eager slots per ordered pair of ranks; by default as many as keep all slots of the job within 128 MiB, 4 to 64",
    },
    Setting {
        name: "ONECOPY_RING_CELLS",
        default: "1024",
        range: "64 to 1048576",
        meaning: "64-byte cells per ring (one ring per ordered pair of ranks)",
    },
    Setting {
        name: "ONECOPY_CMA_CHUNK_BYTES",
        default: "1048576",
        range: "4096 to 1073741824",
        meaning: "bytes per single-copy system call (cma-read, cma-write, cma-split, procmem)",
    },
    Setting {
        name: "ONECOPY_CMA_THRESHOLD",
        default: "unset",
        range: "0 to 2^64-1",
        meaning: "transport auto: instead of the measured table, rendezvous messages this large or larger use cma-split and shorter ones stream through shared memory",
    },
    Setting {
        name: "ONECOPY_TUNE_FILE",
        default: "$XDG_CACHE_HOME/onecopy/tune.json",
        range: "a path, or none",
        meaning: "transport auto: the table of mechanisms per size and pattern that `onecopy tune` measured (else ~/.cache/onecopy/tune.json); none: the built-in table",
    },
    Setting {
        name: "ONECOPY_LAYOUT_SEND_PIECE_BYTES",
        default: "1048576",
        range: "0 to 2^64-1",
        meaning: "derived datatypes: a message of a size that moves by single copy, whose pieces average this many bytes or more, is read where it lies; others are packed into the stream",
    },
    Setting {
        name: "ONECOPY_LAYOUT_RECV_PIECE_BYTES",
        default: "64",
        range: "0 to 2^64-1",
        meaning: "derived datatypes: a receive whose pieces average this many bytes or more takes a single-copy message straight into them; smaller pieces are unpacked from a staging copy",
    },
    Setting {
        name: "ONECOPY_PIPE_BYTES",
        default: "1048576",
        range: "4096 to 1073741824",
        meaning: "capacity asked for each vmsplice pipe (the kernel may round it)",
    },
    Setting {
        name: "ONECOPY_SPIN_US",
        default: "1000",
        range: "0 to 100000",
        meaning: "microseconds a waiting rank spins before it sleeps on its doorbell",
    },
    Setting {
        name: "ONECOPY_BIND",
        default: "core",
        range: "core or none",
        meaning: "bind each rank to a CPU (its own when there are enough), or leave it to the scheduler",
    },
    Setting {
        name: "ONECOPY_COLL_LINEAR",
        default: "1024",
        range: "0 to 2^64-1",
        meaning: "all-to-all and all-gather blocks this small post every message at once",
    },
    Setting {
        name: "ONECOPY_REDUCE",
        default: "copy",
        range: "copy, read or fused",
        meaning: "how a reduction step takes a peer's part (single-copy steps need CMA)",
    },
    Setting {
        name: "ONECOPY_REDUCE_CHUNK",
        default: "65536",
        range: "64 to 1073741824",
        meaning: "bytes read per call in a fused reduction step",
    },
];

/// A setting's value was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value}: {why}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// What it held.
    pub value: String,
    /// What it must be.
    pub why: String,
}

/// Every setting's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `ONECOPY_INLINE_LIMIT`; `None`: [`DEFAULT_INLINE_LIMIT`], or less where the ring is small.
    pub inline_limit_bytes: Option<usize>,
    /// `ONECOPY_EAGER_LIMIT`; `None`: the slot size.
    pub eager_limit_bytes: Option<usize>,
    /// `ONECOPY_EAGER_SLOT_BYTES`, rounded up to a multiple of 64.
    pub eager_slot_bytes: usize,
    /// `ONECOPY_EAGER_SLOTS`: `None` when unset (the job's size decides,
    /// [`default_eager_slots`]).
    pub eager_slots: Option<usize>,
    /// `ONECOPY_RING_CELLS`.
    pub ring_cells: usize,
    /// `ONECOPY_CMA_CHUNK_BYTES`.
    pub cma_chunk_bytes: usize,
    /// `ONECOPY_CMA_THRESHOLD`: `None` when unset (the table decides).
    pub cma_threshold_bytes: Option<usize>,
    /// `ONECOPY_TUNE_FILE`.
    pub tune_file: TuneFile,
    /// `ONECOPY_LAYOUT_SEND_PIECE_BYTES`.
    pub layout_send_piece_bytes: usize,
    /// `ONECOPY_LAYOUT_RECV_PIECE_BYTES`.
    pub layout_recv_piece_bytes: usize,
    /// `ONECOPY_PIPE_BYTES`.
    pub pipe_bytes: usize,
    /// `ONECOPY_SPIN_US`.
    pub spin: Duration,
    /// `ONECOPY_BIND`.
    pub bind: Bind,
    /// `ONECOPY_COLL_LINEAR`.
    pub coll_linear_bytes: usize,
    /// `ONECOPY_REDUCE`: `None` when unset (the collectives choose).
    pub reduce_step: Option<ReduceStep>,
    /// `ONECOPY_REDUCE_CHUNK`.
    pub reduce_chunk_bytes: usize,
}

/// Bytes per CMA system call by default. One call over a whole large buffer is slower than the
/// same bytes in pieces that leave the other side something to overlap with (BENCHMARKS.md).
pub const DEFAULT_CMA_CHUNK_BYTES: usize = 1 << 20;

/// Large messages laid out in pieces of at least this many bytes (on average) are read by
/// single copy where they lie; smaller pieces are packed as they stream: the kernel pins each
/// piece of the other process's memory on its own, and streaming, both cores copying, won at
/// every piece size measured, 64 B to 64 KiB (BENCHMARKS.md, "Derived datatypes").
pub const DEFAULT_LAYOUT_SEND_PIECE_BYTES: usize = 1 << 20;

/// Receives laid out in pieces of at least this many bytes take a single-copy message
/// straight into them; smaller pieces are unpacked from a staging copy (BENCHMARKS.md,
/// "Derived datatypes").
pub const DEFAULT_LAYOUT_RECV_PIECE_BYTES: usize = 64;

/// The shared memory the eager slots of a job may take by default, all pairs together.
pub const EAGER_SLOTS_BUDGET: usize = 128 << 20;

/// Eager slots per ordered pair of ranks when `ONECOPY_EAGER_SLOTS` is unset: as many as keep
/// every pair's slots within [`EAGER_SLOTS_BUDGET`], from 4 to 64. A sender may run a whole
/// window of eager messages ahead of its receiver only if the window fits in the slots:
/// measured between two ranks at 64 KiB, a window of 64 sends moved at 7.0 GB/s with 4 slots,
/// 10.3 with 16 and 25.8 with 64, and one message at a time took 11.2 µs with 4 and 6.1 with
/// 16 (BENCHMARKS.md, "Thresholds and defaults").
pub fn default_eager_slots(ranks: usize, slot_bytes: usize) -> usize {
    let pairs = (ranks * ranks.saturating_sub(1)).max(1);
    (EAGER_SLOTS_BUDGET / pairs / slot_bytes.max(1)).clamp(4, 64)
}

/// Messages up to this many bytes travel inside the ring record by default.
pub const DEFAULT_INLINE_LIMIT: usize = 1024;

impl Default for Config {
    /// The defaults of [`SETTINGS`]: the best measured on the reference machine.
    fn default() -> Config {
        Config {
            inline_limit_bytes: None,
            eager_limit_bytes: None,
            eager_slot_bytes: 64 << 10,
            eager_slots: None,
            ring_cells: 1024,
            cma_chunk_bytes: DEFAULT_CMA_CHUNK_BYTES,
            cma_threshold_bytes: None,
            tune_file: TuneFile::Default,
            layout_send_piece_bytes: DEFAULT_LAYOUT_SEND_PIECE_BYTES,
            layout_recv_piece_bytes: DEFAULT_LAYOUT_RECV_PIECE_BYTES,
            pipe_bytes: 1 << 20,
            spin: Duration::from_micros(1000),
            bind: Bind::Core,
            coll_linear_bytes: 1 << 10,
            reduce_step: None,
            reduce_chunk_bytes: 64 << 10,
        }
    }
}

impl Config {
    /// Reads every setting from the environment (unset ones keep their defaults).
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] with the variables looked up by `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let number = |name: &'static str, min: usize, max: usize| -> Result<Option<usize>, _> {
            let Some(text) = lookup(name) else {
                return Ok(None);
            };
            crate::tools::parse_number(&text)
                .ok()
                .filter(|v| (min..=max).contains(v))
                .map(Some)
                .ok_or_else(|| ConfigError {
                    name,
                    value: text.clone(),
                    why: format!("must be a number from {min} to {max}"),
                })
        };
        let set = |field: &mut usize, value: Option<usize>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        c.inline_limit_bytes = number("ONECOPY_INLINE_LIMIT", 0, usize::MAX)?;
        c.eager_limit_bytes = number("ONECOPY_EAGER_LIMIT", 0, usize::MAX)?;
        set(
            &mut c.eager_slot_bytes,
            number("ONECOPY_EAGER_SLOT_BYTES", 4096, 16 << 20)?,
        );
        c.eager_slot_bytes = c.eager_slot_bytes.next_multiple_of(64);
        c.eager_slots = number("ONECOPY_EAGER_SLOTS", 1, 1024)?;
        set(
            &mut c.ring_cells,
            number("ONECOPY_RING_CELLS", 64, 1 << 20)?,
        );
        set(
            &mut c.cma_chunk_bytes,
            number("ONECOPY_CMA_CHUNK_BYTES", 4096, 1 << 30)?,
        );
        c.cma_threshold_bytes = number("ONECOPY_CMA_THRESHOLD", 0, usize::MAX)?;
        if let Some(text) = lookup("ONECOPY_TUNE_FILE") {
            c.tune_file = match text.trim() {
                "none" => TuneFile::Off,
                "" => {
                    return Err(ConfigError {
                        name: "ONECOPY_TUNE_FILE",
                        value: text,
                        why: "must be a path or none".into(),
                    });
                }
                path => TuneFile::At(path.into()),
            };
        }
        set(
            &mut c.layout_send_piece_bytes,
            number("ONECOPY_LAYOUT_SEND_PIECE_BYTES", 0, usize::MAX)?,
        );
        set(
            &mut c.layout_recv_piece_bytes,
            number("ONECOPY_LAYOUT_RECV_PIECE_BYTES", 0, usize::MAX)?,
        );
        set(
            &mut c.pipe_bytes,
            number("ONECOPY_PIPE_BYTES", 4096, 1 << 30)?,
        );
        if let Some(us) = number("ONECOPY_SPIN_US", 0, 100_000)? {
            c.spin = Duration::from_micros(us as u64);
        }
        set(
            &mut c.coll_linear_bytes,
            number("ONECOPY_COLL_LINEAR", 0, usize::MAX)?,
        );
        set(
            &mut c.reduce_chunk_bytes,
            number("ONECOPY_REDUCE_CHUNK", 64, 1 << 30)?,
        );
        if let Some(text) = lookup("ONECOPY_BIND") {
            c.bind = match text.trim() {
                "core" => Bind::Core,
                "none" => Bind::None,
                _ => {
                    return Err(ConfigError {
                        name: "ONECOPY_BIND",
                        value: text,
                        why: "must be core or none".into(),
                    });
                }
            };
        }
        if let Some(text) = lookup("ONECOPY_REDUCE") {
            c.reduce_step = Some(match text.trim() {
                "copy" => ReduceStep::Copy,
                "read" => ReduceStep::ReadThenReduce,
                "fused" => ReduceStep::Fused,
                _ => {
                    return Err(ConfigError {
                        name: "ONECOPY_REDUCE",
                        value: text,
                        why: "must be copy, read or fused".into(),
                    });
                }
            });
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_readme_lists_every_setting_and_no_other() {
        let readme = include_str!("../README.md");
        for s in SETTINGS {
            let row = format!(
                "| `{}` | {} | {} | {} |",
                s.name, s.default, s.range, s.meaning
            );
            assert!(readme.contains(&row), "README.md lacks the row\n{row}");
        }
        let rows = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `ONECOPY_"))
            .filter_map(|l| l.split_once('`'))
            .map(|(name, _)| format!("ONECOPY_{name}"));
        for name in rows {
            assert!(
                SETTINGS.iter().any(|s| s.name == name),
                "README.md lists {name}, which is not a setting"
            );
        }
    }

    #[test]
    fn unset_variables_give_the_defaults() {
        assert_eq!(with(&[]), Ok(Config::default()));
    }

    #[test]
    fn every_setting_is_read_and_checked() {
        let c = with(&[
            ("ONECOPY_SPIN_US", "0"),
            ("ONECOPY_EAGER_SLOT_BYTES", "5000"),
            ("ONECOPY_BIND", "none"),
            ("ONECOPY_REDUCE", "fused"),
            ("ONECOPY_CMA_CHUNK_BYTES", "0x10000"),
        ])
        .expect("valid");
        assert_eq!(c.spin, Duration::ZERO);
        assert_eq!(c.eager_slot_bytes, 5056);
        assert_eq!(c.bind, Bind::None);
        assert_eq!(c.reduce_step, Some(ReduceStep::Fused));
        assert_eq!(c.cma_chunk_bytes, 65536);
        for (name, bad) in [
            ("ONECOPY_SPIN_US", "abc"),
            ("ONECOPY_SPIN_US", "100001"),
            ("ONECOPY_RING_CELLS", "63"),
            ("ONECOPY_BIND", "socket"),
            ("ONECOPY_REDUCE", "sum"),
            ("ONECOPY_CMA_CHUNK_BYTES", "-1"),
        ] {
            let e = with(&[(name, bad)]).expect_err(name);
            assert_eq!(e.name, name);
            assert!(e.to_string().starts_with(&format!("{name}={bad}: ")), "{e}");
        }
    }

    #[test]
    fn every_setting_read_is_listed() {
        // Each variable `from_lookup` asks for is in SETTINGS, and the other way round.
        let asked = std::cell::RefCell::new(Vec::new());
        let _ = Config::from_lookup(|name| {
            asked.borrow_mut().push(name.to_string());
            None
        });
        let mut asked = asked.into_inner();
        asked.sort();
        let mut listed: Vec<String> = SETTINGS.iter().map(|s| s.name.to_string()).collect();
        listed.sort();
        assert_eq!(asked, listed);
    }
}
