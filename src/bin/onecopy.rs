//! The `onecopy` command: argument parsing and printing only; behaviour lives in the library.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use onecopy::tools::{self, EXIT_USAGE};
use onecopy::vm::Process;

/// Move bytes between processes with one copy (Cross Memory Attach).
#[derive(Parser)]
#[command(name = "onecopy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure: `bench` alone runs a short default suite and prints a table.
    Bench {
        #[command(subcommand)]
        what: Option<BenchCommand>,
    },
    /// Check, case by case, that CMA works on this machine.
    Check {
        /// Print one JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Read LEN bytes at ADDR from process PID.
    Peek {
        /// Target process id.
        pid: i32,
        /// Address (decimal or 0x hex).
        #[arg(value_parser = tools::parse_number)]
        addr: usize,
        /// Length in bytes (decimal or 0x hex).
        #[arg(value_parser = tools::parse_number)]
        len: usize,
        /// Hex dump (the default).
        #[arg(long, conflicts_with = "raw")]
        hex: bool,
        /// The bytes themselves, on stdout.
        #[arg(long)]
        raw: bool,
    },
    /// Write bytes at ADDR into process PID.
    Poke {
        /// Target process id.
        pid: i32,
        /// Address (decimal or 0x hex).
        #[arg(value_parser = tools::parse_number)]
        addr: usize,
        /// The bytes, as hex (`deadbeef`).
        // The full path keeps clap from reading `Vec<u8>` as "many u8 values": one value parses
        // into all the bytes.
        #[arg(long, value_parser = tools::parse_hex, conflicts_with = "file", required_unless_present = "file")]
        hex: Option<::std::vec::Vec<u8>>,
        /// A file holding the bytes.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Start a job: N ranks of PROG sharing one segment; stops them all at the first failure.
    ///
    /// Exit status: 0 when every rank exits 0; else the first failing rank's exit code, or 128 +
    /// the signal that killed it (or that interrupted the launcher); 2 usage error; 127 PROG not
    /// found; 126 PROG not executable; 1 other launcher errors.
    Run(RunArgs),
    /// Start a job as mpiexec does: `onecopy mpiexec -n N PROG ARGS...`, for scripts written for
    /// mpiexec (the same as `onecopy run`).
    Mpiexec(RunArgs),
    /// Compile and link C against onecopy's mpi.h and libmpi.so.12, as mpicc does: the compiler
    /// is $ONECOPY_CC, else cc; `-show` prints the command instead of running it.
    Mpicc(CompileArgs),
    /// `onecopy mpicc` for C++: the compiler is $ONECOPY_CXX, else c++.
    Mpicxx(CompileArgs),
    /// Measure which mechanism `auto` should choose per message size and pattern on this
    /// machine, and cache the choice for every later job (see `--show` and `--reset`).
    Tune(TuneArgs),
}

#[derive(clap::Args)]
struct TuneArgs {
    /// Print the cached table and its measurements; measure nothing.
    #[arg(long, conflicts_with = "reset")]
    show: bool,
    /// Remove the cache, so that `auto` uses its built-in table again.
    #[arg(long)]
    reset: bool,
    /// The cache file [default: ONECOPY_TUNE_FILE, else $XDG_CACHE_HOME/onecopy/tune.json, else
    /// ~/.cache/onecopy/tune.json].
    #[arg(long)]
    file: Option<std::path::PathBuf>,
    /// Size classes to measure, comma-separated, K/M/G meaning KiB/MiB/GiB [default:
    /// 128K,512K,2M,8M,32M].
    #[arg(long, value_parser = parse_sizes)]
    sizes: Option<SizeList>,
    /// Interleaved rounds; each cell is the median of its rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=50))]
    rounds: u64,
    /// Milliseconds aimed at for each (mechanism, pattern, size) in one round.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    budget_ms: u64,
    /// Measure and print, but leave the cache as it is.
    #[arg(long, conflicts_with_all = ["show", "reset"])]
    dry_run: bool,
}

#[derive(clap::Args)]
struct CompileArgs {
    /// The compiler's arguments, passed through (`-show`: print the command instead).
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<std::ffi::OsString>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Number of ranks, 1 to 4096 (`-np N` works too).
    #[arg(short = 'n', long = "np", value_name = "N", allow_hyphen_values = true)]
    ranks: String,
    /// The transport the ranks use: auto, or one of cma-read, cma-write, cma-split, shm-copy,
    /// procmem, vmsplice.
    #[arg(long, default_value = "auto")]
    transport: String,
    /// Prefix every line the ranks print with `[RANK] `.
    #[arg(long)]
    tag_output: bool,
    /// The program every rank runs, and its arguments (put `--` before it).
    // Not `required`: a missing PROG gets the launcher's one-line error rather than clap's.
    #[arg(
        value_name = "PROG",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<std::ffi::OsString>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Every way to move bytes between two processes, against memcpy.
    Mechanisms(MechanismsArgs),
    /// Point to point between two ranks: latency, bandwidth, bidirectional bandwidth (OSU style).
    P2p(P2pArgs),
    /// Collectives on N ranks: average latency per call (OSU style).
    Coll(CollArgs),
    /// A ping-pong of one non-contiguous message (a derived datatype on both sides): latency as
    /// osu_latency, by single copy between the layouts, packed by hand, or by any mechanism.
    Datatype(DatatypeArgs),
    /// The nonblocking all-reduce on N ranks: how much of it hides behind computation
    /// (osu_iallreduce's overall, compute and pure communication times, and overlap %).
    Iallreduce(IallreduceArgs),
}

#[derive(clap::Args)]
struct DatatypeArgs {
    /// Payload bytes (the data, not the extent), comma-separated, K/M/G meaning KiB/MiB/GiB;
    /// whole 64-byte blocks [default: 4K to 64M, 4x steps].
    #[arg(long, value_parser = parse_p2p_sizes)]
    sizes: Option<SizeList>,
    /// Layouts, comma-separated: vector (64-byte blocks at a 128-byte stride), column (one f64
    /// per 512-byte row).
    #[arg(long, default_value = "vector,column")]
    layouts: String,
    /// `auto`, `all` (auto, pack and every mechanism), or a comma-separated list of auto, pack,
    /// cma-read, cma-write, cma-split, shm-copy, procmem, vmsplice; one job per transport.
    #[arg(long, default_value = "auto")]
    transports: String,
    /// Output: table, csv or json.
    #[arg(long, default_value = "table")]
    format: onecopy::bench::Format,
    /// Milliseconds aimed at for each (layout, size).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    budget_ms: u64,
}

#[derive(clap::Args)]
struct IallreduceArgs {
    /// Ranks in the job.
    #[arg(short = 'n', long = "ranks", default_value_t = 2)]
    ranks: usize,
    /// Bytes per rank, comma-separated, K/M/G meaning KiB/MiB/GiB [default: 8 B to 1 MiB,
    /// powers of two].
    #[arg(long, value_parser = parse_p2p_sizes)]
    sizes: Option<SizeList>,
    /// `auto` (the runtime's own choice), `all`, or a comma-separated list of cma-read,
    /// cma-write, cma-split, shm-copy, procmem, vmsplice; one job per transport.
    #[arg(long, default_value = "auto")]
    transports: String,
    /// Tests of the request during each computation (OSU's probes).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    probes: u32,
    /// Output: table, csv or json.
    #[arg(long, default_value = "table")]
    format: onecopy::bench::Format,
    /// Milliseconds aimed at for each timed run of a size.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    budget_ms: u64,
}

#[derive(clap::Args)]
struct CollArgs {
    /// Ranks in the job.
    #[arg(short = 'n', long = "ranks", default_value_t = 2)]
    ranks: usize,
    /// Bytes per rank (for alltoall, per peer), comma-separated, K/M/G meaning KiB/MiB/GiB
    /// [default: 8 B to 1 MiB, powers of two].
    #[arg(long, value_parser = parse_p2p_sizes)]
    sizes: Option<SizeList>,
    /// Collectives, comma-separated: allreduce, bcast, alltoall, allgather, reduce, barrier.
    #[arg(
        long,
        default_value = "allreduce,bcast,alltoall,allgather,reduce,barrier"
    )]
    collectives: String,
    /// `auto` (the runtime's own choice), `all`, or a comma-separated list of cma-read,
    /// cma-write, cma-split, shm-copy, procmem, vmsplice; one job per transport.
    #[arg(long, default_value = "auto")]
    transports: String,
    /// Output: table, csv or json.
    #[arg(long, default_value = "table")]
    format: onecopy::bench::Format,
    /// Also draw the results into this SVG file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Milliseconds aimed at for each (collective, size).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    budget_ms: u64,
}

#[derive(clap::Args)]
struct P2pArgs {
    /// Message sizes for every test, comma-separated, K/M/G meaning KiB/MiB/GiB
    /// [default: latency 1 B to 4 MiB, bw and bibw 1 B to 64 MiB, powers of two].
    #[arg(long, value_parser = parse_p2p_sizes)]
    sizes: Option<SizeList>,
    /// `auto` (the runtime's own choice), `all` (auto and every mechanism), or a
    /// comma-separated list of auto, cma-read, cma-write, cma-split, shm-copy, procmem, vmsplice.
    #[arg(long, default_value = "auto")]
    transports: String,
    /// Tests, comma-separated: latency, bw, bibw.
    #[arg(long, default_value = "latency,bw,bibw")]
    tests: String,
    /// Output: table, csv or json.
    #[arg(long, default_value = "table")]
    format: onecopy::bench::Format,
    /// Also draw the results into this SVG file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Milliseconds aimed at for each (test, size).
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    budget_ms: u64,
}

fn parse_p2p_sizes(s: &str) -> Result<SizeList, String> {
    onecopy::bench::parse_sizes_at_least(s, 0)
        .map(SizeList)
        .map_err(|e| e.to_string())
}

#[derive(clap::Args)]
struct MechanismsArgs {
    /// Message sizes, comma-separated, K/M/G meaning KiB/MiB/GiB [default: 4K to 256M, 4x steps].
    #[arg(long, value_parser = parse_sizes)]
    sizes: Option<SizeList>,
    /// Transports, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    transports: String,
    /// Output: table, csv or json.
    #[arg(long, default_value = "table")]
    format: onecopy::bench::Format,
    /// Also draw GB/s against size into this SVG file.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Pages behind every buffer: 4k or huge (transparent huge pages).
    #[arg(long, default_value = "4k")]
    pages: onecopy::bench::Pages,
    /// Milliseconds spent on each (size, transport) pair.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    budget_ms: u64,
    /// Interleaved rounds the time is spread over.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
}

/// A parsed `--sizes` list (a newtype so clap keeps it as one value).
#[derive(Clone)]
struct SizeList(Vec<usize>);

fn parse_sizes(s: &str) -> Result<SizeList, String> {
    onecopy::bench::parse_sizes(s)
        .map(SizeList)
        .map_err(|e| e.to_string())
}

/// The largest peek that is read into memory at once.
const PEEK_CHUNK: usize = 16 << 20;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(np_alias(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    let code = match cli.command {
        Command::Bench { what } => bench(what),
        Command::Check { json } => check(json),
        Command::Peek {
            pid,
            addr,
            len,
            raw,
            ..
        } => peek(pid, addr, len, raw),
        Command::Poke {
            pid,
            addr,
            hex,
            file,
        } => poke(pid, addr, hex, file),
        Command::Run(args) | Command::Mpiexec(args) => run(args),
        Command::Mpicc(args) => compile(args, "ONECOPY_CC", "cc"),
        Command::Mpicxx(args) => compile(args, "ONECOPY_CXX", "c++"),
        Command::Tune(args) => tune(args),
    };
    ExitCode::from(code as u8)
}

/// mpirun's `-np N`: clap would read `-np` as `-n p`, so it becomes `--np` before parsing, but only
/// among `run`'s own options, never in the program's arguments.
fn np_alias(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_none_or(|a| a != "run") {
        return args;
    }
    let mut i = 2;
    while let Some(arg) = args.get(i) {
        let Some(text) = arg.to_str() else { break };
        if text == "--" || !text.starts_with('-') {
            break;
        }
        if let Some(value) = text.strip_prefix("-np=") {
            args[i] = format!("--np={value}").into();
        } else if text == "-np" {
            args[i] = "--np".into();
            i += 1;
        } else if matches!(text, "-n" | "--np" | "--transport") {
            i += 1;
        }
        i += 1;
    }
    args
}

/// Writes one line to stderr in one system call, so that the ranks' own output (which shares the
/// stream) cannot land in the middle of it.
fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

fn fail(message: impl std::fmt::Display, code: i32) -> i32 {
    say(&format!("onecopy: {message}"));
    code
}

fn bench(what: Option<BenchCommand>) -> i32 {
    let args = match what {
        Some(BenchCommand::Mechanisms(args)) => args,
        Some(BenchCommand::P2p(args)) => return p2p(args),
        Some(BenchCommand::Coll(args)) => return coll(args),
        Some(BenchCommand::Datatype(args)) => return datatype(args),
        Some(BenchCommand::Iallreduce(args)) => return iallreduce(args),
        // The short default suite: a few sizes of every mechanism, then point to point.
        None => {
            let code = mechanisms(MechanismsArgs {
                sizes: Some(SizeList(vec![64 << 10, 4 << 20, 64 << 20])),
                transports: "all".into(),
                format: onecopy::bench::Format::Table,
                plot: None,
                pages: onecopy::bench::Pages::Small,
                budget_ms: 300,
                rounds: 3,
            });
            if code != 0 {
                return code;
            }
            println!();
            return p2p(P2pArgs {
                sizes: Some(SizeList(vec![8, 1024, 64 << 10, 4 << 20])),
                transports: "auto".into(),
                tests: "latency,bw,bibw".into(),
                format: onecopy::bench::Format::Table,
                plot: None,
                budget_ms: 150,
            });
        }
    };
    mechanisms(args)
}

/// The runtime transports a `--transports` argument names (`all` or a comma-separated list).
fn runtime_transports(arg: &str, bench: &str) -> Result<Vec<String>, String> {
    use onecopy::bench::p2p::TRANSPORTS;
    let transports: Vec<String> = match arg.trim() {
        "all" => TRANSPORTS.iter().map(|s| s.to_string()).collect(),
        list => list.split(',').map(|s| s.trim().to_string()).collect(),
    };
    match transports
        .iter()
        .find(|t| !TRANSPORTS.contains(&t.as_str()))
    {
        Some(bad) => Err(format!(
            "unknown transport '{bad}' for bench {bench}; choose from {}",
            TRANSPORTS.join(", ")
        )),
        None => Ok(transports),
    }
}

fn datatype(args: DatatypeArgs) -> i32 {
    use onecopy::bench::{Progress, datatype};
    let list = |arg: &str, all: &[&str]| -> Vec<String> {
        match arg.trim() {
            "all" => all.iter().map(|s| s.to_string()).collect(),
            list => list.split(',').map(|s| s.trim().to_string()).collect(),
        }
    };
    let mut options = datatype::Options {
        layouts: list(&args.layouts, &datatype::LAYOUTS),
        transports: list(&args.transports, &datatype::TRANSPORTS),
        budget: std::time::Duration::from_millis(args.budget_ms),
        ..Default::default()
    };
    if let Some(SizeList(sizes)) = args.sizes {
        options.sizes = sizes;
    }
    let progress = Progress::new(datatype::progress_steps(&options), "datatype");
    let records = datatype::run(&options, &progress);
    progress.finish();
    match records {
        Ok(records) => show(&records, args.format, None, "onecopy bench datatype"),
        Err(e @ onecopy::bench::BenchError::InvalidOption(_)) => fail(e, EXIT_USAGE),
        Err(e) => fail(e, 1),
    }
}

fn tune(args: TuneArgs) -> i32 {
    use onecopy::bench::{Progress, tune};
    use onecopy::config::{Config, TuneFile};
    use onecopy::transport::auto::{self, AutoTable, Machine, Tuned};
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(e, EXIT_USAGE),
    };
    let path = match (args.file, &config.tune_file) {
        (Some(p), _) => p,
        (None, TuneFile::At(p)) => p.clone(),
        (None, TuneFile::Off) => {
            return fail(
                "ONECOPY_TUNE_FILE=none: no cache to use; name one with --file",
                EXIT_USAGE,
            );
        }
        (None, TuneFile::Default) => match auto::default_path() {
            Some(p) => p,
            None => {
                return fail(
                    "neither XDG_CACHE_HOME nor HOME is set: name the cache with --file",
                    EXIT_USAGE,
                );
            }
        },
    };
    if args.reset {
        return match std::fs::remove_file(&path) {
            Ok(()) => {
                println!(
                    "removed {}: auto uses its built-in table again",
                    path.display()
                );
                0
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                println!("no cache at {}: nothing to remove", path.display());
                0
            }
            Err(e) => fail(format!("{}: {e}", path.display()), 1),
        };
    }
    if args.show {
        let tuned = match Tuned::load(&path) {
            Ok(t) => t,
            Err(e) => return fail(e, 1),
        };
        let Some(tuned) = tuned else {
            println!(
                "no measurement at {}: auto uses its built-in table (run `onecopy tune`)",
                path.display()
            );
            print!("{}", AutoTable::builtin().describe());
            return 0;
        };
        let table = match tuned.table() {
            Ok(t) => t,
            Err(e) => return fail(format!("{}: {e}", path.display()), 1),
        };
        let age = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(tuned.measured_at);
        println!(
            "{}: measured {} ago by onecopy {} on {} ({} CPUs, Linux {})",
            path.display(),
            age_text(age),
            tuned.onecopy,
            tuned.machine.cpu,
            tuned.machine.cpus,
            tuned.machine.kernel
        );
        if config.cma_threshold_bytes.is_some() {
            println!("ONECOPY_CMA_THRESHOLD is set: auto follows it instead of this table");
        } else if tuned.machine != Machine::this() {
            println!(
                "this machine differs (measured on another CPU, CPU count or kernel): auto ignores \
                 the file here"
            );
        }
        print!("{}", table.describe());
        if !tuned.cells.is_empty() {
            println!();
            print!("{}", tune::describe_cells(&tuned.cells, &table));
        }
        return 0;
    }
    let mut options = tune::Options {
        rounds: args.rounds as usize,
        budget: std::time::Duration::from_millis(args.budget_ms),
        ..Default::default()
    };
    if let Some(SizeList(sizes)) = args.sizes {
        options.sizes = sizes;
    }
    let progress = Progress::new(tune::progress_steps(&options), "tune");
    let outcome = tune::run(&options, &progress);
    progress.finish();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e @ onecopy::bench::BenchError::InvalidOption(_)) => return fail(e, EXIT_USAGE),
        Err(e) => return fail(e, 1),
    };
    for m in &outcome.unavailable {
        println!("{m}: not usable on this machine (the job fell back to shm-copy); not measured");
    }
    print!("{}", tune::describe_cells(&outcome.cells, &outcome.table));
    println!();
    println!("auto's table:");
    print!("{}", outcome.table.describe());
    if args.dry_run {
        println!("(--dry-run: {} left as it was)", path.display());
        return 0;
    }
    match Tuned::of(Machine::this(), &outcome.table, outcome.cells).save(&path) {
        Ok(()) => {
            println!(
                "saved to {}: every job with transport auto on this machine follows it \
                 (`onecopy tune --show`, `onecopy tune --reset`)",
                path.display()
            );
            0
        }
        Err(e) => fail(e, 1),
    }
}

/// `secs` as the largest whole unit: `3 days`, `5 minutes`.
fn age_text(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s >= 86_400 => (s / 86_400, "day"),
        s if s >= 3_600 => (s / 3_600, "hour"),
        s if s >= 60 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn p2p(args: P2pArgs) -> i32 {
    use onecopy::bench::{Progress, p2p};
    let transports = match runtime_transports(&args.transports, "p2p") {
        Ok(t) => t,
        Err(e) => return fail(e, EXIT_USAGE),
    };
    let mut tests = Vec::new();
    for name in args.tests.split(',').map(str::trim) {
        tests.push(match name {
            "latency" => p2p::Test::Latency,
            "bw" => p2p::Test::Bandwidth,
            "bibw" => p2p::Test::BiBandwidth,
            other => {
                return fail(
                    format!("unknown test '{other}'; choose from latency, bw, bibw"),
                    EXIT_USAGE,
                );
            }
        });
    }
    let mut options = p2p::Options {
        tests,
        transports,
        budget: std::time::Duration::from_millis(args.budget_ms),
        ..Default::default()
    };
    if let Some(SizeList(sizes)) = args.sizes {
        options.latency_sizes = sizes.clone();
        options.bandwidth_sizes = sizes;
    }
    let progress = Progress::new(p2p::progress_steps(&options), "p2p");
    let records = p2p::run(&options, &progress);
    progress.finish();
    if options.transports.iter().any(|t| t == "auto")
        && let Ok(config) = onecopy::config::Config::from_env()
    {
        let (table, source) = onecopy::transport::auto::table_for(&config);
        let rows: Vec<String> = table
            .rows()
            .iter()
            .map(|r| {
                format!(
                    "from {}: {}/{}",
                    onecopy::bench::format_size(r.from_bytes as u64),
                    r.single,
                    r.many
                )
            })
            .collect();
        say(&format!(
            "# auto's table (single/many), {source}: {}",
            rows.join(", ")
        ));
    }
    match records {
        Ok(records) => show(&records, args.format, args.plot, "onecopy bench p2p"),
        Err(e) => fail(e, 1),
    }
}

fn coll(args: CollArgs) -> i32 {
    use onecopy::bench::{Progress, coll};
    let mut collectives = Vec::new();
    for name in args.collectives.split(',').map(str::trim) {
        match coll::Collective::from_name(name) {
            Some(c) => collectives.push(c),
            None => {
                return fail(
                    format!(
                        "unknown collective '{name}'; choose from allreduce, bcast, alltoall, allgather, reduce, barrier"
                    ),
                    EXIT_USAGE,
                );
            }
        }
    }
    let transports = match runtime_transports(&args.transports, "coll") {
        Ok(t) => t,
        Err(e) => return fail(e, EXIT_USAGE),
    };
    let mut options = coll::Options {
        ranks: args.ranks,
        collectives,
        transports,
        budget: std::time::Duration::from_millis(args.budget_ms),
        ..Default::default()
    };
    if let Some(SizeList(sizes)) = args.sizes {
        options.sizes = sizes;
    }
    let progress = Progress::new(coll::progress_steps(&options), "coll");
    let records = coll::run(&options, &progress);
    progress.finish();
    match records {
        Ok(records) => show(&records, args.format, args.plot, "onecopy bench coll"),
        Err(e) => fail(e, 1),
    }
}

fn iallreduce(args: IallreduceArgs) -> i32 {
    use onecopy::bench::{Progress, overlap};
    let transports = match runtime_transports(&args.transports, "iallreduce") {
        Ok(t) => t,
        Err(e) => return fail(e, EXIT_USAGE),
    };
    let mut options = overlap::Options {
        ranks: args.ranks,
        transports,
        budget: std::time::Duration::from_millis(args.budget_ms),
        probes: args.probes,
        ..Default::default()
    };
    if let Some(SizeList(sizes)) = args.sizes {
        options.sizes = sizes;
    }
    let progress = Progress::new(overlap::progress_steps(&options), "iallreduce");
    let records = overlap::run(&options, &progress);
    progress.finish();
    match records {
        Ok(records) => show(&records, args.format, None, "onecopy bench iallreduce"),
        Err(e) => fail(e, 1),
    }
}

fn mechanisms(args: MechanismsArgs) -> i32 {
    use onecopy::bench::{Progress, mechanisms};
    let transports: Vec<String> = if args.transports.trim() == "all" {
        onecopy::transport::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        args.transports
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    for name in &transports {
        if onecopy::transport::Mechanism::from_name(name).is_none() {
            return fail(
                onecopy::transport::UnknownTransport(name.clone()),
                EXIT_USAGE,
            );
        }
    }
    let options = mechanisms::Options {
        sizes: args
            .sizes
            .map(|s| s.0)
            .unwrap_or_else(onecopy::bench::mechanisms_sizes),
        transports,
        pages: args.pages,
        budget: std::time::Duration::from_millis(args.budget_ms),
        rounds: args.rounds as usize,
    };
    let progress = Progress::new(mechanisms::progress_steps(&options), "mechanisms");
    let outcome = mechanisms::run(&options, &progress);
    progress.finish();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return fail(e, 1),
    };
    for s in &outcome.skipped {
        say(&format!("onecopy: skipped {}: {}", s.transport, s.reason));
    }
    let title = "onecopy bench mechanisms: GB/s between two processes";
    show(&outcome.records, args.format, args.plot, title)
}

/// Prints a benchmark's records in `format` and, if asked, plots them; the exit status.
fn show(
    records: &[onecopy::bench::Record],
    format: onecopy::bench::Format,
    plot: Option<std::path::PathBuf>,
    title: &str,
) -> i32 {
    print!("{}", onecopy::bench::render(records, format));
    match plot.map(|path| onecopy::bench::plot_svg(records, &path, title)) {
        Some(Err(e)) => fail(e, 1),
        _ => 0,
    }
}

fn check(json: bool) -> i32 {
    let report = onecopy::check::run();
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(e, 1),
        }
    } else {
        print!("{}", report.to_text());
    }
    i32::from(report.failed())
}

fn peek(pid: i32, addr: usize, len: usize, raw: bool) -> i32 {
    let process = match Process::from_pid(pid) {
        Ok(p) => p,
        Err(e) => return fail(&e, tools::exit_code(&e)),
    };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; len.min(PEEK_CHUNK)];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len());
        let Some(at) = addr.checked_add(done) else {
            return fail(
                format!("address {addr:#x} + {len} wraps around"),
                EXIT_USAGE,
            );
        };
        if let Err(e) = process.read_exact(at, &mut buf[..n]) {
            let e = match e {
                onecopy::vm::VmError::BadAddress { transferred, addr } => {
                    onecopy::vm::VmError::BadAddress {
                        transferred: transferred + done,
                        addr,
                    }
                }
                e => e,
            };
            return fail(&e, tools::exit_code(&e));
        }
        let written = if raw {
            out.write_all(&buf[..n])
        } else {
            out.write_all(tools::hexdump(at, &buf[..n]).as_bytes())
        };
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return 0;
            }
            return fail(format!("writing to stdout: {e}"), 1);
        }
        done += n;
    }
    0
}

fn run(args: RunArgs) -> i32 {
    use onecopy::launch::{self, RunOptions};
    let ranks = match launch::parse_ranks(&args.ranks) {
        Ok(n) => n,
        Err(e) => return fail(&e, e.exit_code()),
    };
    let transport = match args.transport.parse() {
        Ok(t) => t,
        Err(e) => {
            let e = launch::LaunchError::from(e);
            return fail(&e, e.exit_code());
        }
    };
    let mut command = args.command.into_iter();
    let Some(program) = command.next() else {
        return fail(launch::LaunchError::MissingProgram, EXIT_USAGE);
    };
    let opts = RunOptions {
        ranks,
        transport,
        tag_output: args.tag_output,
        program,
        args: command.collect(),
        mpi_library: launch::mpi_library_dir(),
    };
    match launch::run_observed(&opts, |event| say(&format!("onecopy: {event}"))) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => fail(&e, e.exit_code()),
    }
}

/// Runs the compiler with onecopy's header and library (as mpicc does).
fn compile(args: CompileArgs, var: &str, default: &str) -> i32 {
    use std::ffi::OsString;
    let Some(dir) = onecopy::launch::mpi_library_dir() else {
        return fail(
            format!(
                "cannot find {} beside this executable; build it with `cargo build` (or set {})",
                onecopy::launch::MPI_LIBRARY,
                onecopy::launch::VAR_MPI_LIBRARY_DIR
            ),
            1,
        );
    };
    let include = dir.join("include");
    if !include.join("mpi.h").is_file() {
        return fail(
            format!(
                "cannot find mpi.h in {}; rebuild with `cargo build`",
                include.display()
            ),
            1,
        );
    }
    let compiler = std::env::var_os(var)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| default.into());
    let show = args.args.first().is_some_and(|a| a == "-show");
    let user: Vec<OsString> = args.args.into_iter().skip(show as usize).collect();
    // Compiling only (or preprocessing): no link flags, as mpicc does.
    let links = !user
        .iter()
        .any(|a| ["-c", "-S", "-E", "-M", "-MM"].iter().any(|f| a == f));
    let mut full: Vec<OsString> = vec![format!("-I{}", include.display()).into()];
    full.extend(user);
    if links {
        full.push(format!("-L{}", dir.display()).into());
        full.push(format!("-Wl,-rpath,{}", dir.display()).into());
        full.push("-lmpi".into());
    }
    if show {
        let words: Vec<String> = std::iter::once(compiler)
            .chain(full)
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        println!("{}", words.join(" "));
        return 0;
    }
    match std::process::Command::new(&compiler).args(&full).status() {
        Ok(status) => status.code().unwrap_or(1),
        Err(e) => fail(
            format!(
                "cannot run the compiler {}: {e}",
                compiler.to_string_lossy()
            ),
            if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            },
        ),
    }
}

fn poke(pid: i32, addr: usize, hex: Option<Vec<u8>>, file: Option<std::path::PathBuf>) -> i32 {
    let bytes = match (hex, file) {
        (Some(b), _) => b,
        (None, Some(path)) => match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => return fail(format!("cannot read {}: {e}", path.display()), 1),
        },
        (None, None) => return fail("give the bytes with --hex HEX or --file PATH", EXIT_USAGE),
    };
    let process = match Process::from_pid(pid) {
        Ok(p) => p,
        Err(e) => return fail(&e, tools::exit_code(&e)),
    };
    match process.write_all(addr, &bytes) {
        Ok(()) => 0,
        Err(e) => fail(&e, tools::exit_code(&e)),
    }
}
