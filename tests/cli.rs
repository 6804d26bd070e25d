//! The `onecopy` binary: `peek` and `poke` against a helper process, every documented exit status,
//! and `check` in both output modes.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{is_root, open_sleeper, pattern, skip, watchdog};
use onecopy::child::{NOBODY, Pages, Protection};
use onecopy::tools::hexdump;
use onecopy::vm::Process;

const BINARY: &str = env!("CARGO_BIN_EXE_onecopy");

/// Runs the command to completion, killing it (and failing the test) if it takes over `limit`.
fn run_command(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    // Drained on threads, so a large output cannot fill a pipe and stall the command.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for onecopy") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn onecopy(args: &[&str]) -> Output {
    let mut cmd = Command::new(BINARY);
    cmd.args(args);
    run_command(cmd, Duration::from_secs(60))
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn hex(n: usize) -> String {
    format!("{n:#x}")
}

#[test]
fn peek_prints_a_hex_dump_or_raw_bytes() {
    let _w = watchdog("peek_prints_a_hex_dump_or_raw_bytes", 60);
    let data: Vec<u8> = (0..100).map(pattern).collect();
    let addr = data.as_ptr() as usize;
    let child = open_sleeper();
    let pid = child.pid().to_string();

    let out = onecopy(&["peek", &pid, &hex(addr), "100"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), hexdump(addr, &data));
    let out = onecopy(&["peek", &pid, &addr.to_string(), "100", "--hex"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), hexdump(addr, &data));

    let out = onecopy(&["peek", &pid, &hex(addr + 1), "0x50", "--raw"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, data[1..81]);
}

#[test]
fn poke_writes_hex_or_a_file() {
    let _w = watchdog("poke_writes_hex_or_a_file", 60);
    let data = vec![0u8; 1000];
    let addr = data.as_ptr() as usize;
    let child = open_sleeper();
    let pid = child.pid().to_string();

    let out = onecopy(&["poke", &pid, &hex(addr + 3), "--hex", "deadbeef"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = onecopy(&["peek", &pid, &hex(addr), "8", "--raw"]);
    assert_eq!(out.stdout, [0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0]);

    let contents: Vec<u8> = (0..700).map(pattern).collect();
    let path = std::env::temp_dir().join(format!("onecopy-poke-{}.bin", std::process::id()));
    std::fs::write(&path, &contents).unwrap();
    let out = onecopy(&[
        "poke",
        &pid,
        &hex(addr + 100),
        "--file",
        path.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = onecopy(&["peek", &pid, &hex(addr + 100), "700", "--raw"]);
    assert_eq!(out.stdout, contents);
    // And through the library, for good measure: nothing else changed.
    let mut back = vec![0u8; 1000];
    Process::from_pid(child.pid())
        .unwrap()
        .read_exact(addr, &mut back)
        .unwrap();
    assert_eq!(back[3..7], [0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(back[100..800], contents[..]);
    assert!(back[7..100].iter().chain(&back[800..]).all(|&b| b == 0));
}

#[test]
fn usage_errors_exit_2() {
    let _w = watchdog("usage_errors_exit_2", 60);
    let child = open_sleeper();
    let pid = child.pid().to_string();
    for args in [
        &[][..],
        &["peek"],
        &["peek", &pid],
        &["peek", &pid, "0x1000"],
        &["frobnicate"],
        &["peek", &pid, "0xzz", "4"],
        &["peek", &pid, "0x1000", "lots"],
        &["peek", "-5", "0x1000", "4"],
        &["peek", "--", "-5", "0x1000", "4"],
        &["peek", "0", "0x1000", "4"],
        &["peek", "99999999999", "0x1000", "4"],
        &["poke", &pid, "0x1000"],
        &["poke", &pid, "0x1000", "--hex", "abc"],
        &["peek", &pid, &hex(usize::MAX - 1), "16"],
    ] {
        let out = onecopy(args);
        assert_eq!(code(&out), 2, "onecopy {args:?}: {}", stderr(&out));
        assert!(!out.stderr.is_empty(), "onecopy {args:?} says nothing");
    }
}

#[test]
fn permission_denied_exits_3() {
    let _w = watchdog("permission_denied_exits_3", 60);
    if !is_root() {
        skip("not root: cannot run onecopy as another user against a root process");
        return;
    }
    let data = [1u8; 16];
    let child = open_sleeper();
    let mut cmd = Command::new(BINARY);
    cmd.args([
        "peek",
        &child.pid().to_string(),
        &hex(data.as_ptr() as usize),
        "16",
    ])
    // std drops supplementary groups when it changes the uid of a root process.
    .uid(NOBODY)
    .gid(NOBODY);
    let probe = Command::new(BINARY)
        .arg("--version")
        .uid(NOBODY)
        .gid(NOBODY)
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip("the built binary cannot be run by uid 65534 (its directory is not searchable)");
        return;
    }
    let out = run_command(cmd, Duration::from_secs(60));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_process_exits_4() {
    let _w = watchdog("missing_process_exits_4", 60);
    let out = onecopy(&["peek", &i32::MAX.to_string(), "0x1000", "16"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("no such process"), "{}", stderr(&out));
    let out = onecopy(&["poke", &i32::MAX.to_string(), "0x1000", "--hex", "00"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
}

#[test]
fn bad_address_exits_5_with_count_and_address() {
    let _w = watchdog("bad_address_exits_5_with_count_and_address", 60);
    let mut pages = Pages::new(3).unwrap();
    let page = pages.page_size();
    pages.protect(1, Protection::None).unwrap();
    pages.protect(2, Protection::ReadOnly).unwrap();
    let child = open_sleeper();
    let pid = child.pid().to_string();

    let out = onecopy(&["peek", &pid, &hex(pages.page_addr(1) - 16), "64"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains(&hex(pages.page_addr(1))), "{message}");
    assert!(message.contains("16 bytes moved"), "{message}");

    let out = onecopy(&["poke", &pid, &hex(pages.page_addr(2) + 4), "--hex", "0102"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains(&hex(pages.page_addr(2) + 4)), "{message}");
    assert!(message.contains("0 bytes moved"), "{message}");
    drop(child);

    // A peek larger than one read: the count covers the chunks already printed.
    let big = Pages::new((16 << 20) / page + 2);
    let mut big = big.unwrap();
    let last = big.page_count() - 1;
    big.protect(last, Protection::None).unwrap();
    let child = open_sleeper();
    let out = onecopy(&[
        "peek",
        &child.pid().to_string(),
        &hex(big.addr()),
        &big.len_bytes().to_string(),
        "--raw",
    ]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let message = stderr(&out);
    let moved = last * page;
    assert!(message.contains(&hex(big.page_addr(last))), "{message}");
    assert!(
        message.contains(&format!("{moved} bytes moved")),
        "{message}"
    );
}

#[test]
fn check_passes_here_and_speaks_json() {
    let _w = watchdog("check_passes_here_and_speaks_json", 120);
    let out = onecopy(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    let case_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('/') && l.contains(": "))
        .filter(|l| !l.starts_with("advice"))
        .collect();
    assert!(case_lines.len() >= 10, "{text}");
    for line in case_lines {
        assert!(
            line.starts_with("PASS ") || line.starts_with("SKIP "),
            "{line}"
        );
    }
    assert!(text.contains("\nkernel: "), "{text}");

    let out = onecopy(&["check", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json is JSON");
    let cases = doc["cases"].as_array().expect("a cases array");
    assert!(!cases.is_empty());
    for case in cases {
        assert!(case["name"].is_string(), "{case}");
        assert!(
            ["PASS", "SKIP"].contains(&case["outcome"].as_str().unwrap_or("")),
            "{case}"
        );
        assert!(case["detail"].is_string(), "{case}");
    }
    assert!(doc["capability"]["kernel"].is_string());
}
