//! The mechanisms benchmark end to end: real transfers between processes, every output format.

mod common;

use common::watchdog;

use std::process::Command;
use std::time::Duration;

use onecopy::bench::{self, Format, Pages, Progress, Record, mechanisms};

fn onecopy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_onecopy"))
        .args(args)
        .output()
        .expect("run onecopy")
}

#[test]
fn mechanisms_measures_every_transport_and_memcpy() {
    let _dog = watchdog("mechanisms_measures_every_transport_and_memcpy", 120);
    let options = mechanisms::Options {
        sizes: vec![4096, 100_003],
        budget: Duration::from_millis(20),
        rounds: 2,
        ..Default::default()
    };
    let outcome = mechanisms::run(
        &options,
        &Progress::new(mechanisms::progress_steps(&options), "test"),
    )
    .expect("run");
    let measured = onecopy::transport::NAMES.len() - outcome.skipped.len();
    assert_eq!(outcome.records.len(), 2 * (measured + 1));
    for r in &outcome.records {
        assert_eq!((r.bench.as_str(), r.unit.as_str()), ("mechanisms", "GB/s"));
        assert!(r.value.is_finite() && r.value > 0.0, "{r:?}");
        assert!(r.bytes == 4096 || r.bytes == 100_003);
    }
    assert!(outcome.records.iter().any(|r| r.transport == bench::MEMCPY));
    for s in &outcome.skipped {
        eprintln!("SKIP {}: {}", s.transport, s.reason);
    }
}

#[test]
fn mechanisms_with_huge_pages() {
    let _dog = watchdog("mechanisms_with_huge_pages", 60);
    let options = mechanisms::Options {
        sizes: vec![4 << 20],
        transports: vec!["cma-split".into(), "shm-copy".into()],
        pages: Pages::Huge,
        budget: Duration::from_millis(20),
        rounds: 1,
    };
    let outcome = mechanisms::run(&options, &Progress::new(1, "test")).expect("run");
    assert_eq!(outcome.records.len() + outcome.skipped.len(), 3);
}

#[test]
fn zero_size_and_unknown_transport_are_refused() {
    let bad = mechanisms::Options {
        sizes: vec![0],
        ..Default::default()
    };
    assert!(mechanisms::run(&bad, &Progress::new(1, "test")).is_err());
    let bad = mechanisms::Options {
        transports: vec!["teleport".into()],
        sizes: vec![8],
        ..Default::default()
    };
    assert!(mechanisms::run(&bad, &Progress::new(1, "test")).is_err());
}

#[test]
fn cli_json_csv_table_and_plot() {
    let _dog = watchdog("cli_json_csv_table_and_plot", 120);
    let common = [
        "bench",
        "mechanisms",
        "--sizes",
        "4K,64K",
        "--transports",
        "cma-read,shm-copy",
        "--budget-ms",
        "10",
        "--rounds",
        "1",
    ];
    let out = onecopy(&[&common[..], &["--format", "json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Record> =
        serde_json::from_slice(&out.stdout).expect("one JSON array of records");
    assert!(records.len() >= 2 && records.len() <= 6, "{records:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let first = &json[0];
    for key in ["bench", "transport", "ranks", "bytes", "value", "unit"] {
        assert!(first.get(key).is_some(), "record lacks {key}: {first}");
    }
    let again: Vec<Record> =
        serde_json::from_str(&bench::render(&records, Format::Json)).expect("render json");
    assert_eq!(again, records);

    let out = onecopy(&[&common[..], &["--format", "csv"]].concat());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("bench,transport,ranks,bytes,value,unit"),
        "{text}"
    );

    let dir = std::env::temp_dir().join(format!("onecopy-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let svg = dir.join("m.svg");
    let out = onecopy(&[&common[..], &["--plot", svg.to_str().expect("utf-8 path")]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("memcpy") && table.contains("x)"), "{table}");
    let plot = std::fs::read_to_string(&svg).expect("plot written");
    assert!(plot.contains("<svg") && plot.contains("shm-copy"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_rejects_bad_bench_arguments() {
    for args in [
        &["bench", "mechanisms", "--sizes", "0"][..],
        &["bench", "mechanisms", "--sizes", "4Q"],
        &["bench", "mechanisms", "--sizes", ""],
        &["bench", "mechanisms", "--transports", "teleport"],
        &["bench", "mechanisms", "--format", "xml"],
        &["bench", "mechanisms", "--pages", "giant"],
        &["bench", "mechanisms", "--budget-ms", "0"],
        &["bench", "mechanisms", "--rounds", "-1"],
        &["bench", "nothing"],
    ] {
        let out = onecopy(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn p2p_measures_every_test_and_transport() {
    let _dog = watchdog("p2p_measures_every_test_and_transport", 120);
    let out = onecopy(&[
        "bench",
        "p2p",
        "--sizes",
        "0,1,70000,2M",
        "--transports",
        "all",
        "--budget-ms",
        "5",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Record> = serde_json::from_slice(&out.stdout).expect("JSON records");
    // 3 tests x 4 sizes x 7 transports (auto and every mechanism); bandwidth of a 0-byte
    // message is 0, every other value positive.
    let transports = onecopy::bench::p2p::TRANSPORTS;
    assert_eq!(records.len(), 3 * 4 * transports.len(), "{records:?}");
    for r in &records {
        assert_eq!(r.ranks, 2);
        let unit = if r.bench == "latency" { "us" } else { "MB/s" };
        assert_eq!(r.unit, unit, "{r:?}");
        assert!(
            r.value.is_finite() && (r.value > 0.0 || (r.bytes == 0 && r.bench != "latency")),
            "{r:?}"
        );
    }
    // A mechanism this machine refuses is measured as the shm-copy it falls back to.
    for t in transports {
        assert!(
            records
                .iter()
                .any(|r| r.transport == t || r.transport == "shm-copy"),
            "no {t} records"
        );
    }
    let table = onecopy(&["bench", "p2p", "--sizes", "8", "--budget-ms", "5"]);
    let text = String::from_utf8_lossy(&table.stdout);
    for heading in [
        "# Size",
        "Latency (us)",
        "Bandwidth (MB/s)",
        "Bi-Bandwidth (MB/s)",
    ] {
        assert!(text.contains(heading), "{heading} missing in {text}");
    }
}

#[test]
fn p2p_rejects_bad_arguments() {
    for args in [
        &["bench", "p2p", "--transports", "smoke-signals"][..],
        &["bench", "p2p", "--tests", "latency,jitter"],
        &["bench", "p2p", "--sizes", "1,-4"],
        &["bench", "p2p", "--budget-ms", "0"],
    ] {
        let out = onecopy(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
