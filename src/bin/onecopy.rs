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
}

/// The largest peek that is read into memory at once.
const PEEK_CHUNK: usize = 16 << 20;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code as u8);
        }
    };
    let code = match cli.command {
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
    };
    ExitCode::from(code as u8)
}

fn fail(message: impl std::fmt::Display, code: i32) -> i32 {
    eprintln!("onecopy: {message}");
    code
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
