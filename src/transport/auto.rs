//! How `auto` picks the mechanism of each rendezvous message: a table from message size and
//! traffic pattern to mechanism, measured on this machine by `onecopy tune` and cached in a file,
//! or built in where no measurement exists.
//!
//! The sender decides, when it posts the request to send: it knows the size, and whether other
//! rendezvous sends of its own are unfinished (the [`Pattern`]). The receiver follows whatever
//! the request to send names, so ranks whose tables differ (a file rewritten while a job starts)
//! still agree on every message. Only mechanisms that one probe at job start covers may appear
//! in a table: `shm-copy`, which needs nothing, and the three `cma-*` ones, which need the same
//! ptrace access to the peer.
//!
//! The cache is a JSON file, `$XDG_CACHE_HOME/onecopy/tune.json` (else
//! `~/.cache/onecopy/tune.json`), or the path `ONECOPY_TUNE_FILE` names. It records the machine
//! it was measured on; a rank on another machine (another CPU model, CPU count or kernel) ignores
//! it and says so once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Mechanism;

/// The traffic a message is part of, as its sender sees it when posting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// No other rendezvous send of this rank is unfinished: a ping-pong, one message at a time.
    Single,
    /// Others are: a window of sends, an all-to-all, both directions at once.
    Many,
}

impl Pattern {
    /// Both patterns, in the order tables list them.
    pub const ALL: [Pattern; 2] = [Pattern::Single, Pattern::Many];

    /// The name used in files and output.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Single => "single",
            Pattern::Many => "many",
        }
    }
}

/// The mechanisms a table may name.
pub const CANDIDATES: [Mechanism; 4] = [
    Mechanism::CmaRead,
    Mechanism::CmaWrite,
    Mechanism::CmaSplit,
    Mechanism::ShmCopy,
];

/// One row: messages of `from_bytes` bytes or more (up to the next row) take `single` or `many`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The smallest size this row covers.
    pub from_bytes: usize,
    /// The mechanism for [`Pattern::Single`].
    pub single: Mechanism,
    /// The mechanism for [`Pattern::Many`].
    pub many: Mechanism,
}

impl Row {
    /// This row's mechanism for `pattern`.
    pub fn get(&self, pattern: Pattern) -> Mechanism {
        match pattern {
            Pattern::Single => self.single,
            Pattern::Many => self.many,
        }
    }
}

/// The size and pattern → mechanism table; rows sorted by size, the first from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoTable {
    rows: Vec<Row>,
}

/// A table or cache file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The file could not be read or written.
    #[error("{path}: {why}")]
    Io {
        /// The file.
        path: String,
        /// The system's message.
        why: String,
    },
    /// The file's contents are not a table.
    #[error("{path}: {why}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

impl AutoTable {
    /// The table without a measurement: single copy with both sides copying (`cma-split`) for
    /// every rendezvous message. On the reference machine it was the fastest or close to it in
    /// most size classes and patterns, and the steadiest from round to round; `shm-copy` won
    /// some classes by more in some rounds and lost by more in others (BENCHMARKS.md, "The
    /// choice onecopy tune made").
    pub fn builtin() -> AutoTable {
        AutoTable::uniform(Mechanism::CmaSplit)
    }

    /// `mechanism` for every message.
    pub fn uniform(mechanism: Mechanism) -> AutoTable {
        AutoTable {
            rows: vec![Row {
                from_bytes: 0,
                single: mechanism,
                many: mechanism,
            }],
        }
    }

    /// Streaming through shared memory below `threshold` bytes, `mechanism` from there
    /// (`ONECOPY_CMA_THRESHOLD`).
    pub fn threshold(threshold: usize, mechanism: Mechanism) -> AutoTable {
        let stream = Row {
            from_bytes: 0,
            single: Mechanism::ShmCopy,
            many: Mechanism::ShmCopy,
        };
        let copy = Row {
            from_bytes: threshold,
            single: mechanism,
            many: mechanism,
        };
        AutoTable::new(if threshold == 0 {
            vec![copy]
        } else {
            vec![stream, copy]
        })
        .unwrap_or_else(|_| AutoTable::uniform(mechanism))
    }

    /// A table of `rows`: sorted by size without repeats, the first from 0, every mechanism a
    /// [`CANDIDATES`] one. Neighbouring rows that choose alike are merged.
    pub fn new(rows: Vec<Row>) -> Result<AutoTable, String> {
        match rows.first() {
            None => return Err("a table needs at least one row".into()),
            Some(r) if r.from_bytes != 0 => {
                return Err(format!(
                    "the first row starts at {} bytes, not 0",
                    r.from_bytes
                ));
            }
            Some(_) => {}
        }
        if let Some(w) = rows.windows(2).find(|w| w[1].from_bytes <= w[0].from_bytes) {
            return Err(format!(
                "rows out of order: {} bytes after {}",
                w[1].from_bytes, w[0].from_bytes
            ));
        }
        if let Some(m) = rows
            .iter()
            .flat_map(|r| [r.single, r.many])
            .find(|m| !CANDIDATES.contains(m))
        {
            return Err(format!(
                "{m} cannot be chosen per message (only cma-read, cma-write, cma-split, shm-copy)"
            ));
        }
        let mut merged: Vec<Row> = Vec::with_capacity(rows.len());
        for r in rows {
            match merged.last() {
                Some(last) if last.single == r.single && last.many == r.many => {}
                _ => merged.push(r),
            }
        }
        Ok(AutoTable { rows: merged })
    }

    /// The mechanism of a `len`-byte message sent in `pattern`.
    pub fn choose(&self, len: usize, pattern: Pattern) -> Mechanism {
        let i = self.rows.partition_point(|r| r.from_bytes <= len);
        // The first row starts at 0, so `i` is at least 1.
        self.rows[i.saturating_sub(1)].get(pattern)
    }

    /// The rows.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Whether any message takes a mechanism that reaches into the peer's memory.
    pub fn needs_peer_access(&self) -> bool {
        self.rows
            .iter()
            .any(|r| r.single.needs_peer_access() || r.many.needs_peer_access())
    }

    /// The table as text: one line per row.
    pub fn describe(&self) -> String {
        let mut out = format!("{:>12}  {:>10}  {:>10}\n", "from", "single", "many");
        for r in &self.rows {
            out += &format!(
                "{:>12}  {:>10}  {:>10}\n",
                crate::bench::format_size(r.from_bytes as u64),
                r.single.name(),
                r.many.name()
            );
        }
        out
    }
}

/// What identifies a machine for the cache: a measurement holds on the machine it was made on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPU's model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// CPUs online.
    pub cpus: usize,
    /// The kernel's release.
    pub kernel: String,
}

impl Machine {
    /// This machine.
    pub fn this() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .and_then(|rest| rest.split_once(':'))
                    .map(|(_, name)| name.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            // The machine's, not this process's affinity: ranks are bound to one CPU each.
            // SAFETY: sysconf reads a value and has no other effect.
            cpus: usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) })
                .unwrap_or(1)
                .max(1),
            kernel: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
        }
    }
}

/// One measured cell: a mechanism's median at one size in one test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Message bytes.
    pub bytes: usize,
    /// The pattern the test stands for: `single` (the latency of a ping-pong, µs) or `many`
    /// (the bandwidth of windows, MB/s).
    pub pattern: String,
    /// The test: `latency`, `bw` (a window one way) or `bibw` (windows both ways at once).
    #[serde(default)]
    pub test: String,
    /// The mechanism.
    pub mechanism: String,
    /// The median over the rounds.
    pub value: f64,
    /// `us` or `MB/s`.
    pub unit: String,
    /// The relative spread of the rounds: (largest - smallest) / median.
    pub spread: f64,
    /// Each round's value, in the order of the rounds (the mechanisms took turns in each).
    #[serde(default)]
    pub rounds: Vec<f64>,
}

/// The cache file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    /// The format's version.
    pub version: u32,
    /// The machine measured.
    pub machine: Machine,
    /// When, as seconds since the epoch.
    pub measured_at: u64,
    /// The onecopy version that measured it.
    pub onecopy: String,
    /// The chosen table, as rows of (from bytes, single, many).
    pub table: Vec<(usize, String, String)>,
    /// Every measured cell.
    pub cells: Vec<Cell>,
}

/// The cache format's version.
pub const FORMAT: u32 = 2;

impl Tuned {
    /// The table of `rows` for this file.
    pub fn of(machine: Machine, table: &AutoTable, cells: Vec<Cell>) -> Tuned {
        Tuned {
            version: FORMAT,
            machine,
            measured_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            onecopy: env!("CARGO_PKG_VERSION").into(),
            table: table
                .rows
                .iter()
                .map(|r| (r.from_bytes, r.single.name().into(), r.many.name().into()))
                .collect(),
            cells,
        }
    }

    /// The table it holds.
    pub fn table(&self) -> Result<AutoTable, String> {
        let mechanism = |name: &str| {
            Mechanism::from_name(name).ok_or_else(|| format!("unknown mechanism '{name}'"))
        };
        let rows = self
            .table
            .iter()
            .map(|(from, single, many)| {
                Ok(Row {
                    from_bytes: *from,
                    single: mechanism(single)?,
                    many: mechanism(many)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        AutoTable::new(rows)
    }

    /// Reads the file at `path`; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<Tuned>, TableError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(TableError::Io {
                    path: path.display().to_string(),
                    why: e.to_string(),
                });
            }
        };
        let invalid = |why: String| TableError::Invalid {
            path: path.display().to_string(),
            why,
        };
        let tuned: Tuned = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if tuned.version != FORMAT {
            return Err(invalid(format!(
                "format {} (this onecopy reads format {FORMAT}); run `onecopy tune` again",
                tuned.version
            )));
        }
        tuned.table().map_err(invalid)?;
        Ok(Some(tuned))
    }

    /// Writes the file at `path` (its folder made if needed), replacing it at once: a rank
    /// reading it meanwhile sees the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<(), TableError> {
        let io = |e: std::io::Error| TableError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| TableError::Invalid {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

/// Where the cache lives when `ONECOPY_TUNE_FILE` does not say: `$XDG_CACHE_HOME/onecopy/tune.json`,
/// else `$HOME/.cache/onecopy/tune.json`; `None` without either variable.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("onecopy").join("tune.json"))
}

/// Where `auto` found its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `ONECOPY_CMA_THRESHOLD` set the crossover.
    Threshold(usize),
    /// Measured on this machine, in this file.
    Tuned(PathBuf),
    /// Built in: no file, or one that cannot be used (the reason).
    Builtin(Option<String>),
    /// Built in, as `ONECOPY_TUNE_FILE=none` asks.
    Off,
    /// No table to follow: the job moves every large message by this mechanism (an explicit
    /// transport, or `shm-copy` where single copy is out of reach).
    Transport(Mechanism),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Threshold(t) => write!(f, "ONECOPY_CMA_THRESHOLD={t}"),
            Source::Tuned(p) => write!(f, "measured by `onecopy tune` ({})", p.display()),
            Source::Builtin(None) => f.write_str("built in (no `onecopy tune` measurement)"),
            Source::Builtin(Some(why)) => write!(f, "built in ({why})"),
            Source::Off => f.write_str("built in (ONECOPY_TUNE_FILE=none)"),
            Source::Transport(m) => write!(f, "transport {m}"),
        }
    }
}

/// The table `auto` uses with `config`, and where it comes from.
pub fn table_for(config: &crate::config::Config) -> (AutoTable, Source) {
    if let Some(t) = config.cma_threshold_bytes {
        return (
            AutoTable::threshold(t, Mechanism::CmaSplit),
            Source::Threshold(t),
        );
    }
    let path = match &config.tune_file {
        crate::config::TuneFile::Off => return (AutoTable::builtin(), Source::Off),
        crate::config::TuneFile::At(p) => p.clone(),
        crate::config::TuneFile::Default => match default_path() {
            Some(p) => p,
            None => return (AutoTable::builtin(), Source::Builtin(None)),
        },
    };
    match Tuned::load(&path) {
        Ok(None) => (AutoTable::builtin(), Source::Builtin(None)),
        Ok(Some(tuned)) if tuned.machine != Machine::this() => (
            AutoTable::builtin(),
            Source::Builtin(Some(format!(
                "{} was measured on another machine; run `onecopy tune` again",
                path.display()
            ))),
        ),
        Ok(Some(tuned)) => match tuned.table() {
            Ok(table) => (table, Source::Tuned(path)),
            Err(why) => (AutoTable::builtin(), Source::Builtin(Some(why))),
        },
        Err(e) => (AutoTable::builtin(), Source::Builtin(Some(e.to_string()))),
    }
}

/// The table chosen from `cells` (medians per size, test and mechanism): for each measured
/// size and pattern, the fastest mechanism, unless `keep`'s choice there is within `margin`
/// (0.05: 5%) of it. Where a pattern has several tests (`many`: bw and bibw), a mechanism's
/// score is the mean over the tests of its value over the best value of that test, so each
/// test weighs the same whatever its unit; a mechanism missing from a test scores 0 there.
/// A faster mechanism also replaces the kept one only if it was faster by the margin in most
/// of the rounds, compared round by round (the mechanisms took turns within each round, so a
/// round's values were measured under the same conditions): a median that one lucky round
/// made fast does not win. The margin keeps a second run on a noisy machine from flipping between two
/// mechanisms that measure alike. A size's row starts halfway (geometrically) from the size
/// below it; the smallest measured size's row starts at 0.
pub fn choose_table(cells: &[Cell], keep: &AutoTable, margin: f64) -> AutoTable {
    let mut sizes: Vec<usize> = cells.iter().map(|c| c.bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut rows = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let pick = |pattern: Pattern| {
            // Higher is better for both: bandwidth as it is, latency inverted.
            let better = |c: &Cell, v: f64| if c.unit == "us" { 1.0 / v } else { v };
            let raw = |c: &Cell| better(c, c.value);
            let usable: Vec<(&Cell, Mechanism)> = cells
                .iter()
                .filter(|c| c.bytes == size && c.pattern == pattern.name())
                .filter(|c| c.value.is_finite() && c.value > 0.0)
                .filter_map(|c| Some((c, Mechanism::from_name(&c.mechanism)?)))
                .filter(|(_, m)| CANDIDATES.contains(m))
                .collect();
            let mut tests: Vec<&str> = usable.iter().map(|(c, _)| c.test.as_str()).collect();
            tests.sort_unstable();
            tests.dedup();
            let best_of = |test: &str| {
                usable
                    .iter()
                    .filter(|(c, _)| c.test == test)
                    .map(|(c, _)| raw(c))
                    .fold(0.0, f64::max)
            };
            let mut here: Vec<(Mechanism, f64)> = Vec::new();
            for &(_, m) in &usable {
                if here.iter().any(|(h, _)| *h == m) {
                    continue;
                }
                let score = tests
                    .iter()
                    .map(|&t| {
                        usable
                            .iter()
                            .find(|(c, cm)| *cm == m && c.test == t)
                            .map_or(0.0, |(c, _)| raw(c) / best_of(t))
                    })
                    .sum::<f64>()
                    / tests.len() as f64;
                here.push((m, score));
            }
            let kept = keep.choose(size, pattern);
            let best = here
                .iter()
                .copied()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(m, _)| m);
            // Round by round, in every test: how often `b` beat `kept` by the margin, of how
            // many comparisons.
            let rounds_won = |b: Mechanism| {
                let (mut won, mut of) = (0, 0);
                for &t in &tests {
                    let of_m = |m: Mechanism| {
                        usable
                            .iter()
                            .find(|(c, cm)| *cm == m && c.test == t)
                            .map(|(c, _)| *c)
                    };
                    let (Some(cb), Some(ck)) = (of_m(b), of_m(kept)) else {
                        continue;
                    };
                    for (&vb, &vk) in cb.rounds.iter().zip(&ck.rounds) {
                        of += 1;
                        if better(cb, vb) > better(ck, vk) * (1.0 + margin) {
                            won += 1;
                        }
                    }
                }
                (won, of)
            };
            match (best, here.iter().find(|(m, _)| *m == kept)) {
                (None, _) => kept,
                (Some(b), Some(&(_, k))) => {
                    let top = here.iter().map(|x| x.1).fold(0.0, f64::max);
                    let (won, of) = rounds_won(b);
                    if k >= top * (1.0 - margin) || (of > 0 && 2 * won <= of) {
                        kept
                    } else {
                        b
                    }
                }
                (Some(b), None) => b,
            }
        };
        let from = if i == 0 {
            0
        } else {
            ((sizes[i - 1] as f64 * size as f64).sqrt()) as usize
        };
        rows.push(Row {
            from_bytes: from,
            single: pick(Pattern::Single),
            many: pick(Pattern::Many),
        });
    }
    AutoTable::new(rows).unwrap_or_else(|_| keep.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(bytes: usize, pattern: Pattern, m: Mechanism, value: f64) -> Cell {
        Cell {
            bytes,
            pattern: pattern.name().into(),
            test: if pattern == Pattern::Single {
                "latency"
            } else {
                "bw"
            }
            .into(),
            mechanism: m.name().into(),
            value,
            unit: if pattern == Pattern::Single {
                "us"
            } else {
                "MB/s"
            }
            .into(),
            spread: 0.0,
            rounds: Vec::new(),
        }
    }

    #[test]
    fn a_message_takes_the_row_that_covers_its_size() {
        let t = AutoTable::new(vec![
            Row {
                from_bytes: 0,
                single: Mechanism::ShmCopy,
                many: Mechanism::ShmCopy,
            },
            Row {
                from_bytes: 1000,
                single: Mechanism::CmaRead,
                many: Mechanism::CmaSplit,
            },
        ])
        .expect("valid");
        assert_eq!(t.choose(0, Pattern::Single), Mechanism::ShmCopy);
        assert_eq!(t.choose(999, Pattern::Many), Mechanism::ShmCopy);
        assert_eq!(t.choose(1000, Pattern::Single), Mechanism::CmaRead);
        assert_eq!(t.choose(usize::MAX, Pattern::Many), Mechanism::CmaSplit);
        assert!(t.needs_peer_access());
        assert!(!AutoTable::uniform(Mechanism::ShmCopy).needs_peer_access());
    }

    #[test]
    fn bad_tables_are_refused() {
        let row = |from, m| Row {
            from_bytes: from,
            single: m,
            many: m,
        };
        assert!(AutoTable::new(vec![]).is_err());
        assert!(AutoTable::new(vec![row(5, Mechanism::CmaRead)]).is_err());
        assert!(
            AutoTable::new(vec![row(0, Mechanism::CmaRead), row(0, Mechanism::ShmCopy)]).is_err()
        );
        let e = AutoTable::new(vec![row(0, Mechanism::Vmsplice)]).expect_err("vmsplice");
        assert!(e.contains("vmsplice"), "{e}");
        let merged = AutoTable::new(vec![
            row(0, Mechanism::CmaRead),
            row(10, Mechanism::CmaRead),
        ])
        .unwrap();
        assert_eq!(merged.rows().len(), 1);
        assert_eq!(AutoTable::threshold(0, Mechanism::CmaSplit).rows().len(), 1);
        let t = AutoTable::threshold(100, Mechanism::CmaSplit);
        assert_eq!(t.choose(99, Pattern::Single), Mechanism::ShmCopy);
        assert_eq!(t.choose(100, Pattern::Single), Mechanism::CmaSplit);
    }

    #[test]
    fn the_fastest_wins_unless_the_kept_choice_is_within_the_margin() {
        use Mechanism::*;
        use Pattern::*;
        let keep = AutoTable::uniform(CmaSplit);
        let cells = vec![
            // 128 KiB: cma-read clearly faster one at a time; shm-copy clearly wider.
            cell(128 << 10, Single, CmaRead, 10.0),
            cell(128 << 10, Single, CmaSplit, 20.0),
            cell(128 << 10, Many, ShmCopy, 9000.0),
            cell(128 << 10, Many, CmaSplit, 5000.0),
            // 2 MiB: cma-read 3% faster and 3% wider: within the margin, cma-split stays.
            cell(2 << 20, Single, CmaRead, 97.0),
            cell(2 << 20, Single, CmaSplit, 100.0),
            cell(2 << 20, Many, CmaRead, 10300.0),
            cell(2 << 20, Many, CmaSplit, 10000.0),
        ];
        let t = choose_table(&cells, &keep, 0.05);
        assert_eq!(t.choose(0, Single), CmaRead);
        assert_eq!(t.choose(100 << 10, Many), ShmCopy);
        // The 2 MiB row starts at the geometric midpoint, 512 KiB.
        assert_eq!(t.choose((512 << 10) - 1, Single), CmaRead);
        assert_eq!(t.choose(512 << 10, Single), CmaSplit);
        assert_eq!(t.choose(1 << 30, Many), CmaSplit);
    }

    #[test]
    fn a_faster_median_wins_only_if_most_rounds_agree() {
        use Mechanism::*;
        let keep = AutoTable::uniform(CmaSplit);
        let with = |m: Mechanism, rounds: [f64; 3]| {
            let mut sorted = rounds;
            sorted.sort_by(f64::total_cmp);
            Cell {
                rounds: rounds.to_vec(),
                ..cell(512 << 10, Pattern::Single, m, sorted[1])
            }
        };
        let single =
            |cells: &[Cell]| choose_table(cells, &keep, 0.05).choose(512 << 10, Pattern::Single);
        // A median 9% lower, but faster than cma-split in one round of three: cma-split stays.
        let cells = [
            with(CmaSplit, [40.0, 55.0, 70.0]),
            with(ShmCopy, [45.0, 50.0, 80.0]),
        ];
        assert_eq!(single(&cells), CmaSplit);
        // Faster in two rounds of three: it wins.
        let cells = [
            with(CmaSplit, [40.0, 55.0, 70.0]),
            with(ShmCopy, [35.0, 50.0, 80.0]),
        ];
        assert_eq!(single(&cells), ShmCopy);
    }

    #[test]
    fn every_test_of_a_pattern_weighs_the_same() {
        use Mechanism::*;
        let keep = AutoTable::uniform(CmaSplit);
        let bibw = |m: Mechanism, value: f64| Cell {
            test: "bibw".into(),
            ..cell(1 << 20, Pattern::Many, m, value)
        };
        // cma-split is 10% wider one way; shm-copy is twice as wide both ways: shm-copy wins
        // (0.95 against 0.75), whatever the absolute numbers.
        let cells = vec![
            cell(1 << 20, Pattern::Many, CmaSplit, 11000.0),
            cell(1 << 20, Pattern::Many, ShmCopy, 10000.0),
            bibw(CmaSplit, 10000.0),
            bibw(ShmCopy, 20000.0),
        ];
        assert_eq!(
            choose_table(&cells, &keep, 0.05).choose(1 << 20, Pattern::Many),
            ShmCopy
        );
    }

    #[test]
    fn a_cache_file_round_trips_and_bad_ones_say_why() {
        let dir = std::env::temp_dir().join(format!("onecopy-tune-test-{}", std::process::id()));
        let path = dir.join("sub").join("tune.json");
        let table = AutoTable::threshold(1 << 20, Mechanism::CmaRead);
        let tuned = Tuned::of(Machine::this(), &table, vec![]);
        tuned.save(&path).expect("save");
        let back = Tuned::load(&path).expect("load").expect("present");
        assert_eq!(back, tuned);
        assert_eq!(back.table().expect("table"), table);
        assert_eq!(Tuned::load(&dir.join("absent.json")), Ok(None));
        std::fs::write(&path, "{ not json").unwrap();
        assert!(matches!(
            Tuned::load(&path),
            Err(TableError::Invalid { .. })
        ));
        let mut wrong = tuned.clone();
        wrong.table = vec![(0, "vmsplice".into(), "shm-copy".into())];
        wrong.save(&path).unwrap();
        let e = Tuned::load(&path).expect_err("vmsplice").to_string();
        assert!(e.contains("vmsplice"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
