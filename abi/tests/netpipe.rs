//! NetPIPE (Debian's `NPmpich2`, built against MPICH's libmpich.so.12) runs unmodified on
//! onecopy's library, on 2 ranks: its integrity mode checks every byte of every message from 1
//! byte to 6 MiB, and its timing mode's results are sane.

mod common;

use std::time::Duration;

#[test]
fn netpipe_checks_every_message_of_every_size_on_onecopy() {
    let Some(np) = common::mpich_tool("NPmpich2", "netpipe-mpich2") else {
        return;
    };
    let dir = common::scratch("netpipe-integrity");
    for extra in [&[][..], &["-a"][..], &["-S"][..], &["-2", "-a"][..]] {
        let out = dir.join("np.out");
        let mut args = vec!["-i", "-u", "8388608", "-o"];
        let out_s = out.to_string_lossy().into_owned();
        args.push(&out_s);
        args.extend_from_slice(extra);
        let ran = common::run_job(2, &np, &args, Duration::from_secs(300));
        assert_eq!(ran.code, Some(0), "NPmpich2 {args:?}:\n{}", ran.output);
        let lines: Vec<&str> = ran
            .output
            .lines()
            .filter(|l| l.contains("bytes") && l.contains("-->"))
            .collect();
        assert!(
            lines.len() >= 40,
            "NPmpich2 {args:?} measured only {} sizes:\n{}",
            lines.len(),
            ran.output
        );
        for l in &lines {
            assert!(
                l.contains("Integrity check passed"),
                "NPmpich2 {args:?}: {l}"
            );
        }
        assert!(
            lines.iter().any(|l| l.contains(" 6291459 bytes")
                || l.contains(" 6291456 bytes")
                || l.contains(" 6291457 bytes")),
            "no 6 MiB message:\n{}",
            ran.output
        );
    }
}

#[test]
fn netpipe_timing_mode_gives_sane_throughput() {
    let Some(np) = common::mpich_tool("NPmpich2", "netpipe-mpich2") else {
        return;
    };
    let out = common::scratch("netpipe-timing").join("np.out");
    let out_s = out.to_string_lossy().into_owned();
    let ran = common::run_job(
        2,
        &np,
        &["-u", "1048576", "-o", &out_s],
        Duration::from_secs(300),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.output);
    // Each line of the output file: bytes, Mbps, seconds.
    let text = std::fs::read_to_string(&out).expect("NetPIPE's output file");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .filter(|r: &Vec<f64>| r.len() >= 3)
        .collect();
    assert!(rows.len() >= 40, "{text}");
    for r in &rows {
        assert!(r[1] > 0.0 && r[1].is_finite(), "throughput {r:?}");
        assert!(r[2] > 0.0 && r[2] < 1.0, "time {r:?}");
    }
    let largest = rows
        .iter()
        .filter(|r| r[0] >= 500_000.0)
        .map(|r| r[1])
        .fold(0.0, f64::max);
    assert!(
        largest > 1000.0,
        "under 1 Gbit/s for large messages on one machine: {largest} Mbps"
    );
}
