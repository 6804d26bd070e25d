//! The self-test suite: it passes on a machine where CMA works, skips (never fails) where a
//! seccomp filter blocks CMA, and prints one line per case plus the capability summary.

mod common;

use std::time::Duration;

use common::watchdog;
use onecopy::check::{self, CaseResult, Outcome, Report};
use onecopy::child::{Child, Exit};
use onecopy::vm::{Capability, SyscallState, probe};

#[test]
fn every_case_passes_or_skips_here() {
    let _w = watchdog("every_case_passes_or_skips_here", 120);
    let report = check::run_with_seed(0x5eed);
    let failures: Vec<&CaseResult> = report
        .cases
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(!report.failed());
    let names: Vec<&str> = report.cases.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        "capability/probe",
        "data/random-iovecs-read",
        "data/random-iovecs-write",
        "data/large-transfer",
        "data/many-ranges",
        "limits/max-rw-count",
        "errno/einval-flags",
        "errno/einval-iovcnt",
        "errno/einval-ssize-max",
        "errno/efault-local",
        "errno/efault-remote",
        "errno/esrch-missing-pid",
        "errno/esrch-zombie",
        "errno/eperm-unprivileged",
        "partial/prot-none-read",
        "protect/write-readonly",
    ] {
        assert!(names.contains(&expected), "no case {expected} in {names:?}");
    }
    if probe().usable() {
        let probe_case = &report.cases[0];
        assert_eq!(probe_case.outcome, Outcome::Pass, "{probe_case:?}");
        assert!(probe_case.detail.contains("kernel"));
        // Random cases name their seed, so that a failure can be repeated.
        let random = report
            .cases
            .iter()
            .find(|c| c.name == "data/random-iovecs-read")
            .unwrap();
        assert!(random.detail.contains("0x5eed"), "{random:?}");
    }
}

#[test]
fn text_has_one_line_per_case_and_the_summary() {
    let capability = Capability {
        kernel: "6.1.0-test".into(),
        syscalls: SyscallState::Available,
        yama_ptrace_scope: Some(1),
        seccomp_mode: Some(0),
        cap_sys_ptrace: false,
        can_read_child: true,
        child_error: None,
        advice: vec!["do something".into()],
    };
    let case = |name: &str, outcome| CaseResult {
        name: name.into(),
        outcome,
        detail: "why".into(),
    };
    let report = Report {
        capability,
        cases: vec![
            case("a/pass", Outcome::Pass),
            case("b/fail", Outcome::Fail),
            case("c/skip", Outcome::Skip),
        ],
    };
    assert!(report.failed());
    let text = report.to_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        ["PASS a/pass: why", "FAIL b/fail: why", "SKIP c/skip: why"]
    );
    assert!(lines.contains(&"kernel: 6.1.0-test"), "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("yama: ptrace_scope 1")),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.starts_with("seccomp: 0")), "{text}");
    assert!(lines.contains(&"advice: do something"), "{text}");
    assert!(
        lines.contains(&"summary: 1 passed, 1 failed, 1 skipped"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["cases"][1]["outcome"], "FAIL");
}

#[test]
fn blocked_cma_is_skipped_with_the_reason() {
    let _w = watchdog("blocked_cma_is_skipped_with_the_reason", 120);
    // The child's verdict, as its exit code.
    const AS_EXPECTED: i32 = 0;
    const NO_FILTER: i32 = 10;
    const NOT_DETECTED: i32 = 11;
    const A_CASE_RAN: i32 = 12;
    let body = || {
        if !common::block_cma_with_seccomp() {
            return NO_FILTER;
        }
        let report = check::run_with_seed(1);
        if report.capability.syscalls != SyscallState::BlockedBySeccomp
            || report.capability.usable()
            || report.capability.advice.is_empty()
        {
            return NOT_DETECTED;
        }
        let all_skipped_with_reason = report
            .cases
            .iter()
            .all(|c| c.outcome == Outcome::Skip && c.detail.contains("seccomp"));
        if all_skipped_with_reason && !report.failed() {
            AS_EXPECTED
        } else {
            A_CASE_RAN
        }
    };
    // SAFETY: the child installs a filter, then runs the suite, which forks, maps memory and
    // allocates (glibc's allocator is fork-safe) but takes no lock shared with other threads.
    let mut child = unsafe { Child::fork(body) }.unwrap();
    let exit = child.wait_timeout(Duration::from_secs(100)).unwrap();
    assert_eq!(exit, Some(Exit::Code(AS_EXPECTED)), "child verdict");
}
