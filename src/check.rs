//! The self-test behind `onecopy check`: does Cross Memory Attach work correctly on this kernel,
//! case by case.
//!
//! It forks its own helper processes and runs a self-contained suite: data correctness, every
//! errno, partial transfers, write protection, and the capability report from [`crate::vm::probe`].
//! A forked [`Child`] holds every buffer of the parent at the same address, so the suite always
//! knows what the helper's memory contains; writes are verified by reading them back with CMA.
//!
//! Most cases go through the safe [`Process`] API; the errno cases make raw calls (through
//! `vm::sys`) because the safe API rejects or hides what they need to send the kernel.
//! This module does not decide whether CMA is *usable* (that is [`crate::vm::probe`]); cases that
//! cannot run because CMA is blocked are skipped with the probe's reason.

use std::fmt::Write as _;
use std::io::{IoSlice, IoSliceMut};
use std::time::Duration;

use crate::child::{self, Child, Exit, Pages, Protection};
use crate::vm::sys::{self, Direction};
use crate::vm::{Capability, Process, RemoteRange, SyscallState, VmError};

/// The environment variable that fixes the seed of the random layouts, so that a failure can be
/// repeated: `ONECOPY_CHECK_SEED=0x1234 onecopy check` (each random case prints its seed).
pub const SEED_VAR: &str = "ONECOPY_CHECK_SEED";

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

    /// One line per case, `PASS name: detail`, then the capability summary (kernel, Yama,
    /// seccomp, advice) and the totals.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.cases {
            let word = match c.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "SKIP",
            };
            let _ = writeln!(out, "{word} {}: {}", c.name, c.detail);
        }
        let cap = &self.capability;
        let _ = writeln!(out, "kernel: {}", cap.kernel);
        let _ = writeln!(out, "syscalls: {}", syscalls_text(cap.syscalls));
        let _ = writeln!(out, "yama: {}", yama_text(cap.yama_ptrace_scope));
        let _ = writeln!(out, "seccomp: {}", seccomp_text(cap.seccomp_mode));
        let _ = writeln!(
            out,
            "cap_sys_ptrace: {}",
            if cap.cap_sys_ptrace { "yes" } else { "no" }
        );
        if cap.advice.is_empty() {
            let _ = writeln!(out, "advice: none, single copy works here");
        }
        for advice in &cap.advice {
            let _ = writeln!(out, "advice: {advice}");
        }
        let count = |o| self.cases.iter().filter(|c| c.outcome == o).count();
        let _ = writeln!(
            out,
            "summary: {} passed, {} failed, {} skipped",
            count(Outcome::Pass),
            count(Outcome::Fail),
            count(Outcome::Skip)
        );
        out
    }
}

fn syscalls_text(state: SyscallState) -> &'static str {
    match state {
        SyscallState::Available => "available",
        SyscallState::BlockedBySeccomp => "blocked by a seccomp filter",
        SyscallState::Missing => "missing from this kernel",
    }
}

fn yama_text(scope: Option<u8>) -> String {
    match scope {
        None => "not present".into(),
        Some(0) => "ptrace_scope 0 (classic ptrace permissions)".into(),
        Some(1) => "ptrace_scope 1 (restricted to descendants and declared ptracers)".into(),
        Some(2) => "ptrace_scope 2 (CAP_SYS_PTRACE only)".into(),
        Some(s) => format!("ptrace_scope {s} (no attach at all)"),
    }
}

fn seccomp_text(mode: Option<u8>) -> String {
    match mode {
        None => "unknown".into(),
        Some(0) => "0 (none)".into(),
        Some(1) => "1 (strict)".into(),
        Some(2) => "2 (filter)".into(),
        Some(m) => format!("{m}"),
    }
}

/// Runs the suite, with the seed from [`SEED_VAR`] if set, else one taken from the clock.
pub fn run() -> Report {
    match std::env::var(SEED_VAR) {
        Err(_) => run_with_seed(clock_seed()),
        Ok(text) => match crate::tools::parse_number(&text) {
            Ok(seed) => run_with_seed(seed as u64),
            Err(e) => {
                let mut report = run_with_seed(clock_seed());
                report.cases.insert(
                    0,
                    CaseResult {
                        name: "check/seed".into(),
                        outcome: Outcome::Fail,
                        detail: format!("{SEED_VAR}: {e}; a seed from the clock was used"),
                    },
                );
                report
            }
        },
    }
}

/// Runs the suite with the random layouts drawn from `seed`.
pub fn run_with_seed(seed: u64) -> Report {
    let capability = crate::vm::probe();
    let mut cases = vec![probe_case(&capability)];
    for case in CASES {
        let (outcome, detail) = match blocked(case.needs, &capability) {
            Some(reason) => (Outcome::Skip, reason),
            None => {
                let mut ctx = Ctx {
                    seed,
                    rng: Rng::new(seed ^ fnv1a(case.name)),
                };
                // A panic inside a case is a bug of the suite, not of the kernel, but it must
                // still end as a failed case rather than take the other cases down with it.
                let ran =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&mut ctx)));
                match ran {
                    Ok(Ok(detail)) => (Outcome::Pass, detail),
                    Ok(Err(NotPassed::Fail(why))) => (Outcome::Fail, ctx.with_seed(why)),
                    Ok(Err(NotPassed::Skip(why))) => (Outcome::Skip, why),
                    Err(_) => (
                        Outcome::Fail,
                        ctx.with_seed("the case panicked (see the message above)".into()),
                    ),
                }
            }
        };
        cases.push(CaseResult {
            name: case.name.into(),
            outcome,
            detail,
        });
    }
    Report { capability, cases }
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn probe_case(cap: &Capability) -> CaseResult {
    let facts = format!(
        "kernel {}, syscalls {}, yama {}, seccomp {}, CAP_SYS_PTRACE {}",
        cap.kernel,
        syscalls_text(cap.syscalls),
        yama_text(cap.yama_ptrace_scope),
        seccomp_text(cap.seccomp_mode),
        if cap.cap_sys_ptrace { "yes" } else { "no" },
    );
    if cap.usable() {
        CaseResult {
            name: "capability/probe".into(),
            outcome: Outcome::Pass,
            detail: format!("a forked child was read correctly; {facts}"),
        }
    } else {
        // Blocked CMA is a property of this machine, not a kernel misbehaving: the cases that
        // need it are skipped, and the advice says how to enable it.
        CaseResult {
            name: "capability/probe".into(),
            outcome: Outcome::Skip,
            detail: format!(
                "single copy is not usable here: {}; {facts}",
                block_reason(cap)
            ),
        }
    }
}

fn block_reason(cap: &Capability) -> String {
    if cap.syscalls != SyscallState::Available {
        return cap
            .advice
            .first()
            .cloned()
            .unwrap_or_else(|| format!("the system calls are {}", syscalls_text(cap.syscalls)));
    }
    match &cap.child_error {
        Some(e) => format!("reading a child failed: {e}"),
        None => "reading a child failed".into(),
    }
}

/// What a case needs from this machine before it can run.
#[derive(Debug, Clone, Copy)]
enum Needs {
    /// The system calls must reach the kernel (errors that come before any permission check).
    Syscalls,
    /// This process must be able to read and write its children.
    ChildAccess,
}

fn blocked(needs: Needs, cap: &Capability) -> Option<String> {
    let ok = match needs {
        Needs::Syscalls => cap.syscalls == SyscallState::Available,
        Needs::ChildAccess => cap.usable(),
    };
    (!ok).then(|| format!("CMA is not usable here: {}", block_reason(cap)))
}

struct Case {
    name: &'static str,
    needs: Needs,
    run: fn(&mut Ctx) -> Checked,
}

const CASES: &[Case] = &[
    Case {
        name: "data/random-iovecs-read",
        needs: Needs::ChildAccess,
        run: |ctx| random_iovecs(ctx, Direction::Read),
    },
    Case {
        name: "data/random-iovecs-write",
        needs: Needs::ChildAccess,
        run: |ctx| random_iovecs(ctx, Direction::Write),
    },
    Case {
        name: "data/unaligned-page-crossing",
        needs: Needs::ChildAccess,
        run: unaligned_page_crossing,
    },
    Case {
        name: "data/large-transfer",
        needs: Needs::ChildAccess,
        run: large_transfer,
    },
    Case {
        name: "data/many-ranges",
        needs: Needs::ChildAccess,
        run: many_ranges,
    },
    Case {
        name: "data/remote-trimmed-to-local",
        needs: Needs::ChildAccess,
        run: remote_trimmed_to_local,
    },
    Case {
        name: "errno/einval-flags",
        needs: Needs::Syscalls,
        run: einval_flags,
    },
    Case {
        name: "errno/einval-iovcnt",
        needs: Needs::Syscalls,
        run: einval_iovcnt,
    },
    Case {
        name: "errno/einval-ssize-max",
        needs: Needs::Syscalls,
        run: einval_ssize_max,
    },
    Case {
        name: "limits/max-rw-count",
        needs: Needs::ChildAccess,
        run: max_rw_count,
    },
    Case {
        name: "errno/efault-local",
        needs: Needs::ChildAccess,
        run: efault_local,
    },
    Case {
        name: "errno/efault-remote",
        needs: Needs::ChildAccess,
        run: efault_remote,
    },
    Case {
        name: "errno/esrch-missing-pid",
        needs: Needs::Syscalls,
        run: esrch_missing_pid,
    },
    Case {
        name: "errno/esrch-zombie",
        needs: Needs::Syscalls,
        run: esrch_zombie,
    },
    Case {
        name: "errno/eperm-unprivileged",
        needs: Needs::Syscalls,
        run: eperm_unprivileged,
    },
    Case {
        name: "partial/prot-none-read",
        needs: Needs::ChildAccess,
        run: |ctx| prot_none_boundary(ctx, Direction::Read),
    },
    Case {
        name: "partial/prot-none-write",
        needs: Needs::ChildAccess,
        run: |ctx| prot_none_boundary(ctx, Direction::Write),
    },
    Case {
        name: "protect/write-readonly",
        needs: Needs::ChildAccess,
        run: write_readonly,
    },
];

/// Why a case did not pass.
enum NotPassed {
    Fail(String),
    Skip(String),
}

/// A case's verdict: the detail of a pass, or why not.
type Checked = Result<String, NotPassed>;

fn fail(why: impl Into<String>) -> NotPassed {
    NotPassed::Fail(why.into())
}

/// Turns a failure to set a case up (fork, mmap) into a failed case: a check that could not look
/// must not pass.
fn setup<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> NotPassed {
    move |e| fail(format!("could not {what}: {e}"))
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), NotPassed> {
    if ok { Ok(()) } else { Err(fail(why())) }
}

struct Ctx {
    seed: u64,
    rng: Rng,
}

impl Ctx {
    fn with_seed(&self, why: String) -> String {
        format!(
            "{why} (seed {:#x}; {SEED_VAR}={:#x} repeats it)",
            self.seed, self.seed
        )
    }
}

/// splitmix64: tiny, fast, and good enough to draw layouts; seeded so runs can be repeated.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }

    /// Cuts `total` into `count` lengths (at least one), some of them possibly zero.
    fn cut(&mut self, total: usize, count: usize) -> Vec<usize> {
        let count = count.max(1);
        let mut points: Vec<usize> = (1..count).map(|_| self.below(total + 1)).collect();
        points.push(0);
        points.push(total);
        points.sort_unstable();
        points.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// FNV-1a, to give every case its own stream from one seed.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Places pieces of these lengths at random, non-overlapping offsets of an arena of `arena_len`
/// bytes, then shuffles them, so the transfer's order is not the address order.
fn scatter(rng: &mut Rng, arena_len: usize, lens: &[usize]) -> Vec<(usize, usize)> {
    let used: usize = lens.iter().sum();
    let gaps = rng.cut(arena_len.saturating_sub(used), lens.len() + 1);
    let mut at = gaps[0];
    let mut pieces = Vec::with_capacity(lens.len());
    for (len, gap) in lens.iter().zip(&gaps[1..]) {
        pieces.push((at, *len));
        at += len + gap;
    }
    rng.shuffle(&mut pieces);
    pieces
}

/// The bytes a transfer over these pieces of `arena` sees, in order.
fn stream(arena: &[u8], pieces: &[(usize, usize)]) -> Vec<u8> {
    pieces
        .iter()
        .flat_map(|&(at, len)| &arena[at..at + len])
        .copied()
        .collect()
}

/// Applies a write of `bytes` over these pieces of `arena`, as the kernel does: in order.
fn apply(arena: &mut [u8], pieces: &[(usize, usize)], mut bytes: &[u8]) {
    for &(at, len) in pieces {
        let n = len.min(bytes.len());
        arena[at..at + n].copy_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
    }
}

/// Says where two byte strings first differ, for a failure message.
fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<(), NotPassed> {
    if got == want {
        return Ok(());
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(fail(format!(
        "{what}: {} bytes expected, {} seen, first difference at byte {at} ({:?} instead of {:?})",
        want.len(),
        got.len(),
        got.get(at),
        want.get(at)
    )))
}

fn sleeper() -> Result<Child, NotPassed> {
    Child::sleeper().map_err(setup("fork a helper"))
}

fn open(child: &Child) -> Result<Process, NotPassed> {
    Process::from_pid(child.pid()).map_err(|e| fail(format!("opening the helper: {e}")))
}

/// A `vm` error where success was expected.
fn vm_failed(what: &str) -> impl FnOnce(VmError) -> NotPassed {
    move |e| fail(format!("{what}: {e}"))
}

fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ESRCH => "ESRCH",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::ENOMEM => "ENOMEM",
        libc::ENOSYS => "ENOSYS",
        libc::EACCES => "EACCES",
        _ => return format!("errno {errno}"),
    };
    name.into()
}

fn show(result: Result<usize, i32>) -> String {
    match result {
        Ok(n) => format!("returned {n}"),
        Err(e) => format!("failed with {}", errno_name(e)),
    }
}

/// Checks that a raw call failed with `errno`.
fn expect_errno(what: &str, result: Result<usize, i32>, errno: i32) -> Result<(), NotPassed> {
    ensure(result == Err(errno), || {
        format!(
            "{what}: expected {}, the call {}",
            errno_name(errno),
            show(result)
        )
    })
}

fn iov_mut(buf: &mut [u8]) -> libc::iovec {
    sys::iovec(buf.as_mut_ptr() as usize, buf.len())
}

fn iov(addr: usize, len: usize) -> libc::iovec {
    sys::iovec(addr, len)
}

// ---------------------------------------------------------------------------------------------
// Data correctness

/// Bytes a fresh local buffer holds, to see that nothing past the expected count was written.
const UNTOUCHED: u8 = 0xa5;

fn random_iovecs(ctx: &mut Ctx, dir: Direction) -> Checked {
    const ARENA: usize = 1 << 20;
    const ROUNDS: usize = 24;
    const MAX_RANGES: usize = 48;
    let rng = &mut ctx.rng;
    let mut model = rng.bytes(ARENA);
    let arena_addr = model.as_ptr() as usize;
    // The helper holds `model` as it is now, at the same address; from here on `model` tracks
    // what the helper holds, and is never reallocated.
    let child = sleeper()?;
    let process = open(&child)?;
    let mut moved = 0;
    for round in 0..ROUNDS {
        let remote_total = rng.below(ARENA / 2);
        let remote_count = 1 + rng.below(MAX_RANGES);
        let remote_lens = rng.cut(remote_total, remote_count);
        let pieces = scatter(rng, ARENA, &remote_lens);
        let remote: Vec<RemoteRange> = pieces
            .iter()
            .map(|&(at, len)| RemoteRange::new(arena_addr + at, len))
            .collect();
        // Local totals below, equal to and above the remote one: the shorter side decides.
        let local_total = match rng.below(3) {
            0 => rng.below(remote_total + 1),
            1 => remote_total,
            _ => remote_total + rng.below(5000),
        };
        let local_count = 1 + rng.below(MAX_RANGES);
        let local_lens = rng.cut(local_total, local_count);
        let want = local_total.min(remote_total);
        let layout = || {
            format!(
                "round {round}: {} local ranges of {local_total} bytes, {} remote ranges of \
                 {remote_total} bytes",
                local_lens.len(),
                remote.len()
            )
        };
        match dir {
            Direction::Read => {
                let mut bufs: Vec<Vec<u8>> =
                    local_lens.iter().map(|&l| vec![UNTOUCHED; l]).collect();
                let mut slices: Vec<IoSliceMut<'_>> =
                    bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                let n = process
                    .read_vectored(&mut slices, &remote)
                    .map_err(|e| fail(format!("{}: {e}", layout())))?;
                ensure(n == want, || {
                    format!("{}: read {n} bytes, expected {want}", layout())
                })?;
                let got = bufs.concat();
                let expected = stream(&model, &pieces);
                compare(&layout(), &got[..want], &expected[..want])?;
                ensure(got[want..].iter().all(|&b| b == UNTOUCHED), || {
                    format!(
                        "{}: local bytes past the {want} read were changed",
                        layout()
                    )
                })?;
            }
            Direction::Write => {
                let bufs: Vec<Vec<u8>> = local_lens.iter().map(|&l| rng.bytes(l)).collect();
                let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
                let n = process
                    .write_vectored(&slices, &remote)
                    .map_err(|e| fail(format!("{}: {e}", layout())))?;
                ensure(n == want, || {
                    format!("{}: wrote {n} bytes, expected {want}", layout())
                })?;
                apply(&mut model, &pieces, &bufs.concat()[..want]);
                let mut back = vec![0u8; ARENA];
                process
                    .read_exact(arena_addr, &mut back)
                    .map_err(vm_failed("reading the helper back"))?;
                compare(
                    &format!("{}: the helper's memory after the write", layout()),
                    &back,
                    &model,
                )?;
            }
        }
        moved += want;
    }
    Ok(format!(
        "{ROUNDS} random layouts (up to {MAX_RANGES} ranges a side, shuffled, unaligned, zero-length \
         ones included), {moved} bytes {}; seed {:#x}",
        match dir {
            Direction::Read => "read and verified",
            Direction::Write => "written and verified by reading back",
        },
        ctx.seed
    ))
}

fn unaligned_page_crossing(ctx: &mut Ctx) -> Checked {
    const PAGES: usize = 4;
    let mut remote_pages = Pages::new(PAGES).map_err(setup("map pages"))?;
    let page = remote_pages.page_size();
    let size = remote_pages.len_bytes();
    let mut model = ctx.rng.bytes(size);
    remote_pages
        .bytes_mut(0, size)
        .ok_or_else(|| fail("the fresh pages are not writable"))?
        .copy_from_slice(&model);
    let child = sleeper()?;
    let process = open(&child)?;
    let mut local_pages = Pages::new(PAGES).map_err(setup("map local pages"))?;
    let starts = [1, 7, page - 1, page - 3, 2 * page - 5, page + 11];
    let lens = [1, 2, 7, page, page + 3, 2 * page + 1];
    let mut count = 0;
    for &remote_at in &starts {
        for &len in &lens {
            // The local side crosses pages at a different offset from the remote side.
            let local_at = (remote_at * 3 + 13) % page + page / 2;
            if remote_at + len > size || local_at + len > size {
                continue;
            }
            let remote = RemoteRange::new(remote_pages.addr() + remote_at, len);
            let what = format!("{len} bytes at remote page offset {remote_at:#x}");
            let local = local_pages
                .bytes_mut(local_at, len)
                .ok_or_else(|| fail("local pages not writable"))?;
            local.fill(UNTOUCHED);
            let n = process
                .read_vectored(&mut [IoSliceMut::new(local)], &[remote])
                .map_err(vm_failed(&what))?;
            ensure(n == len, || format!("{what}: read {n}"))?;
            compare(&what, local, &model[remote_at..remote_at + len])?;
            ctx.rng.fill(local);
            let n = process
                .write_vectored(&[IoSlice::new(local)], &[remote])
                .map_err(vm_failed(&what))?;
            ensure(n == len, || format!("{what}: wrote {n}"))?;
            model[remote_at..remote_at + len].copy_from_slice(local);
            count += 1;
        }
    }
    let mut back = vec![0u8; size];
    process
        .read_exact(remote_pages.addr(), &mut back)
        .map_err(vm_failed("reading the helper back"))?;
    compare("the helper's pages after the writes", &back, &model)?;
    Ok(format!(
        "{count} transfers from 1 byte to 2 pages + 1 at unaligned offsets, crossing page \
         boundaries on both sides, read and written; seed {:#x}",
        ctx.seed
    ))
}

fn large_transfer(ctx: &mut Ctx) -> Checked {
    // Over 8 MiB and not a multiple of anything, at an odd address on both sides.
    const LEN: usize = (9 << 20) + 4097;
    let source = ctx.rng.bytes(LEN + 16);
    let remote_addr = source.as_ptr() as usize + 3;
    let child = sleeper()?;
    let process = open(&child)?;
    let mut local = vec![0u8; LEN + 16];
    process
        .read_exact(remote_addr, &mut local[5..5 + LEN])
        .map_err(vm_failed("reading"))?;
    compare("read", &local[5..5 + LEN], &source[3..3 + LEN])?;
    let fresh = ctx.rng.bytes(LEN);
    process
        .write_all(remote_addr, &fresh)
        .map_err(vm_failed("writing"))?;
    let mut back = vec![0u8; LEN + 16];
    process
        .read_exact(source.as_ptr() as usize, &mut back)
        .map_err(vm_failed("reading back"))?;
    compare("written bytes", &back[3..3 + LEN], &fresh)?;
    compare("bytes around the write", &back[..3], &source[..3])?;
    compare(
        "bytes around the write",
        &back[3 + LEN..],
        &source[3 + LEN..],
    )?;
    Ok(format!(
        "{LEN} bytes ({:.1} MiB) read and written at unaligned addresses, every byte verified; \
         seed {:#x}",
        LEN as f64 / f64::from(1 << 20),
        ctx.seed
    ))
}

fn many_ranges(ctx: &mut Ctx) -> Checked {
    const ARENA: usize = 512 << 10;
    const REMOTE_RANGES: usize = 3000;
    const LOCAL_RANGES: usize = 1700;
    let rng = &mut ctx.rng;
    let mut model = rng.bytes(ARENA);
    let arena_addr = model.as_ptr() as usize;
    let child = sleeper()?;
    let process = open(&child)?;
    let lens: Vec<usize> = (0..REMOTE_RANGES).map(|_| rng.below(80)).collect();
    let total: usize = lens.iter().sum();
    let pieces = scatter(rng, ARENA, &lens);
    let remote: Vec<RemoteRange> = pieces
        .iter()
        .map(|&(at, len)| RemoteRange::new(arena_addr + at, len))
        .collect();
    let local_lens = rng.cut(total, LOCAL_RANGES);

    let mut bufs: Vec<Vec<u8>> = local_lens.iter().map(|&l| vec![0; l]).collect();
    let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
    let n = process
        .read_vectored(&mut slices, &remote)
        .map_err(vm_failed("reading"))?;
    ensure(n == total, || format!("read {n} bytes, expected {total}"))?;
    compare("read", &bufs.concat(), &stream(&model, &pieces))?;

    let bufs: Vec<Vec<u8>> = local_lens.iter().map(|&l| rng.bytes(l)).collect();
    let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let n = process
        .write_vectored(&slices, &remote)
        .map_err(vm_failed("writing"))?;
    ensure(n == total, || format!("wrote {n} bytes, expected {total}"))?;
    apply(&mut model, &pieces, &bufs.concat());
    let mut back = vec![0u8; ARENA];
    process
        .read_exact(arena_addr, &mut back)
        .map_err(vm_failed("reading back"))?;
    compare("the helper's memory after the write", &back, &model)?;
    Ok(format!(
        "{REMOTE_RANGES} remote and {LOCAL_RANGES} local ranges (IOV_MAX is {}), {total} bytes \
         read and written in split calls, verified; seed {:#x}",
        crate::vm::split::IOV_MAX,
        ctx.seed
    ))
}

fn remote_trimmed_to_local(ctx: &mut Ctx) -> Checked {
    const LEN: usize = 4096 + 13;
    let mut source = ctx.rng.bytes(2 * LEN);
    let addr = source.as_ptr() as usize;
    let child = sleeper()?;
    let process = open(&child)?;
    // 1 TiB of remote range: far past what is mapped, so only trimming makes this succeed.
    let huge = RemoteRange::new(addr, 1 << 40);
    let mut local = vec![0u8; LEN];
    let n = process
        .read_vectored(&mut [IoSliceMut::new(&mut local)], &[huge])
        .map_err(vm_failed("reading a 1 TiB range into a small buffer"))?;
    ensure(n == LEN, || format!("read {n} bytes, expected {LEN}"))?;
    compare("read", &local, &source[..LEN])?;
    let fresh = ctx.rng.bytes(100);
    let n = process
        .write_vectored(&[IoSlice::new(&fresh)], &[huge])
        .map_err(vm_failed("writing a small buffer into a 1 TiB range"))?;
    ensure(n == fresh.len(), || {
        format!("wrote {n} bytes, expected 100")
    })?;
    source[..100].copy_from_slice(&fresh);
    let mut back = vec![0u8; 2 * LEN];
    process
        .read_exact(addr, &mut back)
        .map_err(vm_failed("reading back"))?;
    compare("the helper's memory after the write", &back, &source)?;
    Ok(format!(
        "a 1 TiB remote range moved exactly the local {LEN} bytes (read) and 100 bytes (write); \
         seed {:#x}",
        ctx.seed
    ))
}

// ---------------------------------------------------------------------------------------------
// Errors, through raw calls

fn einval_flags(ctx: &mut Ctx) -> Checked {
    let source = ctx.rng.bytes(64);
    let child = sleeper()?;
    let mut buf = [UNTOUCHED; 64];
    let remote = [iov(source.as_ptr() as usize, 64)];
    for flags in [1, 2, 1 << 63] {
        let local = [iov_mut(&mut buf)];
        // SAFETY: `local` is our own 64-byte buffer, borrowed for the call; the kernel rejects
        // the flags before touching any memory.
        let r = unsafe { sys::cma(Direction::Read, child.pid(), &local, &remote, flags) };
        expect_errno(&format!("read with flags {flags:#x}"), r, libc::EINVAL)?;
        // SAFETY: as above; a write only reads the local buffer.
        let r = unsafe { sys::cma(Direction::Write, child.pid(), &local, &remote, flags) };
        expect_errno(&format!("write with flags {flags:#x}"), r, libc::EINVAL)?;
    }
    ensure(buf.iter().all(|&b| b == UNTOUCHED), || {
        "a call rejected for its flags changed the local buffer".into()
    })?;
    let local = [iov_mut(&mut buf)];
    // SAFETY: as above.
    let r = unsafe { sys::cma(Direction::Read, child.pid(), &local, &remote, 0) };
    ensure(r == Ok(64), || {
        format!("the same read with flags 0 {}", show(r))
    })?;
    compare("read with flags 0", &buf, &source)?;
    Ok("flags 0x1, 0x2, 1<<63 refused with EINVAL in both directions; flags 0 reads".into())
}

fn einval_iovcnt(_: &mut Ctx) -> Checked {
    const MAX: usize = crate::vm::split::IOV_MAX;
    let source = vec![0x5au8; MAX + 1];
    let child = sleeper()?;
    let mut buf = vec![0u8; MAX + 1];
    let base = buf.as_mut_ptr() as usize;
    let one_each = |count: usize, at: usize| -> Vec<libc::iovec> {
        (0..count).map(|i| iov(at + i, 1)).collect()
    };
    let src = source.as_ptr() as usize;
    for (what, count, local_many) in [
        ("1025 local iovecs", MAX + 1, true),
        ("1025 remote iovecs", MAX + 1, false),
        ("1024 local iovecs", MAX, true),
        ("1024 remote iovecs", MAX, false),
    ] {
        let (local, remote) = if local_many {
            (one_each(count, base), vec![iov(src, count)])
        } else {
            (vec![iov(base, count)], one_each(count, src))
        };
        // SAFETY: every local iovec lies inside `buf` (1025 bytes), which this function owns and
        // no reference points into during the call.
        let r = unsafe { sys::cma(Direction::Read, child.pid(), &local, &remote, 0) };
        if count > MAX {
            expect_errno(what, r, libc::EINVAL)?;
        } else {
            ensure(r == Ok(count), || {
                format!("{what}: expected {count} bytes, the call {}", show(r))
            })?;
        }
    }
    ensure(buf[..MAX].iter().all(|&b| b == 0x5a), || {
        "the accepted 1024-iovec reads returned wrong bytes".into()
    })?;
    Ok("1025 iovecs on either side refused with EINVAL; 1024 accepted".into())
}

fn einval_ssize_max(ctx: &mut Ctx) -> Checked {
    const OVER: usize = isize::MAX as usize + 1;
    let source = ctx.rng.bytes(64);
    let child = sleeper()?;
    let pid = child.pid();
    let src = source.as_ptr() as usize;
    let mut buf = vec![UNTOUCHED; 64];
    for len in [OVER, usize::MAX] {
        let local = [iov(buf.as_ptr() as usize, len)];
        let remote = [iov(src, 64)];
        // SAFETY: the local iovec claims more than `buf`, but the kernel rejects a length over
        // SSIZE_MAX before any copy, and a write only reads local memory anyway.
        let r = unsafe { sys::cma(Direction::Write, pid, &local, &remote, 0) };
        expect_errno(&format!("local length {len:#x}"), r, libc::EINVAL)?;
        let local = [iov_mut(&mut buf)];
        let remote = [iov(src, len)];
        // SAFETY: the local iovec is our own buffer; only the remote one is oversized.
        let r = unsafe { sys::cma(Direction::Read, pid, &local, &remote, 0) };
        expect_errno(&format!("remote length {len:#x}"), r, libc::EINVAL)?;
    }
    ensure(buf.iter().all(|&b| b == UNTOUCHED), || {
        "a refused call changed the local buffer".into()
    })?;
    // The boundary itself: SSIZE_MAX is accepted, and the shorter side bounds the copy.
    let local = [iov(buf.as_ptr() as usize, isize::MAX as usize)];
    let remote = [iov(src, 64)];
    // SAFETY: the local iovec claims SSIZE_MAX bytes, but the remote side is 64 bytes, so the
    // kernel reads only the first 64 local bytes, which are `buf`'s; a write never writes locally.
    let r = unsafe { sys::cma(Direction::Write, pid, &local, &remote, 0) };
    ensure(r == Ok(64), || {
        format!(
            "a local length of exactly SSIZE_MAX: expected 64 bytes, the call {}",
            show(r)
        )
    })?;
    Ok("lengths over SSIZE_MAX refused with EINVAL on either side; SSIZE_MAX accepted".into())
}

fn max_rw_count(ctx: &mut Ctx) -> Checked {
    const CHUNK: usize = 4 << 20;
    const COUNT: usize = crate::vm::split::IOV_MAX;
    let page = rustix::param::page_size();
    let expected = (i32::MAX as usize) & !(page - 1);
    let limit = crate::vm::split::Limits::kernel().max_bytes;
    ensure(limit == expected, || {
        format!("Limits::kernel() says {limit:#x}, INT_MAX rounded down to a page is {expected:#x}")
    })?;
    let source = ctx.rng.bytes(CHUNK);
    let child = sleeper()?;
    let mut buf = vec![0u8; CHUNK];
    // 4 GiB asked for on each side, with 4 MiB of memory: every iovec names the same buffer.
    let local = vec![iov_mut(&mut buf); COUNT];
    let remote = vec![iov(source.as_ptr() as usize, CHUNK); COUNT];
    // SAFETY: every local iovec is the whole of `buf`, which this function owns and nothing else
    // references during the call; the kernel writing it over and over is harmless.
    let r = unsafe { sys::cma(Direction::Read, child.pid(), &local, &remote, 0) };
    ensure(r == Ok(limit), || {
        format!(
            "a read of {COUNT} x {CHUNK} bytes: expected the kernel to stop at MAX_RW_COUNT              ({limit:#x}), the call {}",
            show(r)
        )
    })?;
    // The last pass over `buf` covered all but its last page, the one before it that page.
    compare("bytes of the truncated read", &buf, &source)?;
    Ok(format!(
        "a 4 GiB read returned exactly MAX_RW_COUNT = {limit:#x} (INT_MAX rounded down to a \
         {page}-byte page), as the splitter assumes"
    ))
}

fn efault_local(ctx: &mut Ctx) -> Checked {
    let source = ctx.rng.bytes(256);
    let src = source.as_ptr() as usize;
    let child = sleeper()?;
    let pid = child.pid();
    let mut pages = Pages::new(2).map_err(setup("map pages"))?;
    let page = pages.page_size();
    pages
        .protect(1, Protection::None)
        .map_err(setup("protect a page"))?;
    let bad = pages.page_addr(1);
    let local = [iov(bad, 64)];
    let remote = [iov(src, 64)];
    // SAFETY: the local iovec is an inaccessible page of our own mapping that no reference
    // points into: the kernel must fail with EFAULT, and could not harm anything if it wrote.
    let r = unsafe { sys::cma(Direction::Read, pid, &local, &remote, 0) };
    expect_errno("read into an inaccessible local page", r, libc::EFAULT)?;
    // SAFETY: a write only reads the local (inaccessible) page.
    let r = unsafe { sys::cma(Direction::Write, pid, &local, &remote, 0) };
    expect_errno("write from an inaccessible local page", r, libc::EFAULT)?;
    // A local list that runs into the bad page moves what comes before it, then stops.
    let local = [iov(bad - 100, 100), iov(bad, 64)];
    let remote = [iov(src, 164)];
    // SAFETY: the first iovec is the last 100 bytes of our own readable page 0, which no
    // reference points into; the second is the inaccessible page, as above.
    let r = unsafe { sys::cma(Direction::Read, pid, &local, &remote, 0) };
    ensure(r == Ok(100), || {
        format!(
            "a read running into an inaccessible local page: expected 100, the call {}",
            show(r)
        )
    })?;
    compare(
        "bytes before the local fault",
        pages.bytes(page - 100, 100).unwrap_or_default(),
        &source[..100],
    )?;
    let mut back = vec![0u8; 64];
    Process::from_pid(pid)
        .and_then(|p| p.read_exact(src, &mut back))
        .map_err(vm_failed("reading the helper back"))?;
    compare(
        "the helper's memory after the refused write",
        &back,
        &source[..64],
    )?;
    Ok(
        "read and write with an inaccessible local page: EFAULT; a read running into it \
         returned the 100 bytes before it"
            .into(),
    )
}

fn efault_remote(_: &mut Ctx) -> Checked {
    let mut pages = Pages::new(2).map_err(setup("map pages"))?;
    pages
        .protect(1, Protection::None)
        .map_err(setup("protect a page"))?;
    let inaccessible = pages.page_addr(1);
    // An address mapped nowhere: map a page and unmap it before the fork.
    let unmapped = Pages::new(1).map_err(setup("map a page"))?.addr();
    let child = sleeper()?;
    let mut buf = vec![UNTOUCHED; 64];
    for (what, addr) in [
        ("an inaccessible page", inaccessible),
        ("an unmapped page", unmapped),
    ] {
        let local = [iov_mut(&mut buf)];
        let remote = [iov(addr, 64)];
        // SAFETY: the local iovec is our own buffer, borrowed for the call.
        let r = unsafe { sys::cma(Direction::Read, child.pid(), &local, &remote, 0) };
        expect_errno(&format!("read from {what}"), r, libc::EFAULT)?;
        // SAFETY: as above; a write only reads it.
        let r = unsafe { sys::cma(Direction::Write, child.pid(), &local, &remote, 0) };
        expect_errno(&format!("write to {what}"), r, libc::EFAULT)?;
    }
    ensure(buf.iter().all(|&b| b == UNTOUCHED), || {
        "a failed read changed the local buffer".into()
    })?;
    Ok("read and write at an inaccessible and at an unmapped remote page: EFAULT".into())
}

fn esrch_missing_pid(_: &mut Ctx) -> Checked {
    // Pids never reach PID_MAX_LIMIT (2^22), so this one is missing on every kernel.
    const MISSING: i32 = i32::MAX;
    let source = [1u8; 16];
    let mut buf = [0u8; 16];
    let local = [iov_mut(&mut buf)];
    let remote = [iov(source.as_ptr() as usize, 16)];
    // SAFETY: the local iovec is our own buffer, borrowed for the call.
    let r = unsafe { sys::cma(Direction::Read, MISSING, &local, &remote, 0) };
    expect_errno(&format!("read from pid {MISSING}"), r, libc::ESRCH)?;
    match Process::from_pid(MISSING) {
        Err(VmError::NoSuchProcess { .. }) => {}
        other => return Err(fail(format!("opening pid {MISSING}: {other:?}"))),
    }
    // A process opened while alive, then gone and reaped: the pidfd still says which it was.
    let mut child = sleeper()?;
    let process = open(&child)?;
    child.kill();
    match process.read_exact(source.as_ptr() as usize, &mut buf) {
        Err(VmError::NoSuchProcess { .. }) => {}
        other => {
            return Err(fail(format!(
                "reading a reaped child through its Process: {other:?}"
            )));
        }
    }
    Ok(format!(
        "pid {MISSING}: ESRCH (raw) and NoSuchProcess (API); a reaped child: NoSuchProcess"
    ))
}

fn esrch_zombie(_: &mut Ctx) -> Checked {
    let source = [1u8; 16];
    let mut buf = [0u8; 16];
    // SAFETY: the child only returns; nothing to lock.
    let zombie = unsafe { Child::fork(|| 0) }.map_err(setup("fork a child"))?;
    wait_exited(&zombie)?;
    let local = [iov_mut(&mut buf)];
    let remote = [iov(source.as_ptr() as usize, 16)];
    // SAFETY: the local iovec is our own buffer, borrowed for the call.
    let r = unsafe { sys::cma(Direction::Read, zombie.pid(), &local, &remote, 0) };
    expect_errno("read from a zombie", r, libc::ESRCH)?;
    match Process::from_pid(zombie.pid()) {
        Err(VmError::NoSuchProcess { .. }) => {}
        other => return Err(fail(format!("opening a zombie: {other:?}"))),
    }
    // Opened while alive, then killed but not reaped.
    let sleeper = sleeper()?;
    let process = open(&sleeper)?;
    rustix::process::Pid::from_raw(sleeper.pid())
        .ok_or_else(|| fail("the helper has no pid"))
        .and_then(|pid| {
            rustix::process::kill_process(pid, rustix::process::Signal::KILL)
                .map_err(setup("kill the helper"))
        })?;
    wait_exited(&sleeper)?;
    match process.read_exact(source.as_ptr() as usize, &mut buf) {
        Err(VmError::NoSuchProcess { .. }) => {}
        other => return Err(fail(format!("reading a killed, unreaped child: {other:?}"))),
    }
    Ok(
        "an exited, unreaped child: ESRCH (raw), NoSuchProcess (API, opened before or after)"
            .into(),
    )
}

fn wait_exited(child: &Child) -> Result<(), NotPassed> {
    match child.wait_exited(Duration::from_secs(10)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(fail("the child did not exit within 10 s")),
        Err(e) => Err(fail(format!("waiting for the child: {e}"))),
    }
}

fn eperm_unprivileged(_: &mut Ctx) -> Checked {
    if !rustix::process::geteuid().is_root() {
        return Err(NotPassed::Skip(
            "not running as root: needs a root process and the right to drop a child to \
             another user"
                .into(),
        ));
    }
    // Exit codes of the child besides the errno it saw (0 when the read worked).
    const SETUP_FAILED: i32 = 200;
    static TARGET: [u8; 16] = *b"root-owned bytes";
    let parent = std::process::id() as i32;
    let body = move || {
        if child::become_user(child::NOBODY, child::NOBODY).is_err() {
            return SETUP_FAILED;
        }
        let mut buf = [0u8; 16];
        let local = [iov_mut(&mut buf)];
        let remote = [iov(TARGET.as_ptr() as usize, TARGET.len())];
        // SAFETY: the local iovec is this child's own stack buffer, borrowed for the call.
        match unsafe { sys::cma(Direction::Read, parent, &local, &remote, 0) } {
            Ok(_) => 0,
            Err(errno) => errno.clamp(1, SETUP_FAILED - 1),
        }
    };
    // SAFETY: the child makes raw system calls only: no locks, no allocation.
    let mut child = unsafe { Child::fork(body) }.map_err(setup("fork a child"))?;
    let exit = child
        .wait_timeout(Duration::from_secs(10))
        .map_err(setup("wait for the child"))?;
    match exit {
        Some(Exit::Code(libc::EPERM)) => Ok(format!(
            "a child running as uid {} got EPERM reading this root process",
            child::NOBODY
        )),
        Some(Exit::Code(0)) => Err(fail(format!(
            "a child running as uid {} read this root process's memory",
            child::NOBODY
        ))),
        Some(Exit::Code(SETUP_FAILED)) => Err(fail("the child could not drop its privileges")),
        Some(Exit::Code(errno)) => Err(fail(format!(
            "the unprivileged child's read failed with {} instead of EPERM",
            errno_name(errno)
        ))),
        Some(Exit::Signal(sig)) => Err(fail(format!("the child was killed by signal {sig}"))),
        None => Err(fail("the child did not finish within 10 s")),
    }
}

// ---------------------------------------------------------------------------------------------
// Partial transfers and protection

fn prot_none_boundary(ctx: &mut Ctx, dir: Direction) -> Checked {
    let mut pages = Pages::new(3).map_err(setup("map pages"))?;
    let page = pages.page_size();
    let mut model = ctx.rng.bytes(page);
    pages
        .bytes_mut(0, page)
        .ok_or_else(|| fail("the fresh pages are not writable"))?
        .copy_from_slice(&model);
    pages
        .protect(1, Protection::None)
        .map_err(setup("protect a page"))?;
    let boundary = pages.page_addr(1);
    let child = sleeper()?;
    let process = open(&child)?;
    let start = 100;
    let len = 2 * page;
    let short = page - start;

    // The raw call: a short count, stopping exactly at the page boundary.
    let mut buf = vec![UNTOUCHED; len];
    let fresh = ctx.rng.bytes(len);
    let remote = [iov(pages.addr() + start, len)];
    let r = match dir {
        Direction::Read => {
            let local = [iov_mut(&mut buf)];
            // SAFETY: the local iovec is our own buffer, borrowed for the call.
            unsafe { sys::cma(dir, child.pid(), &local, &remote, 0) }
        }
        Direction::Write => {
            let local = [iov(fresh.as_ptr() as usize, len)];
            // SAFETY: the local iovec is our own buffer; a write only reads it.
            unsafe { sys::cma(dir, child.pid(), &local, &remote, 0) }
        }
    };
    ensure(r == Ok(short), || {
        format!(
            "raw call across the boundary: expected {short} bytes, the call {}",
            show(r)
        )
    })?;
    if dir == Direction::Write {
        model[start..].copy_from_slice(&fresh[..short]);
    }

    // The safe API: an error with the exact count and address, single and vectored.
    let remote_ranges = [
        vec![RemoteRange::new(pages.addr() + start, len)],
        vec![
            RemoteRange::new(pages.addr() + 10, 50),
            RemoteRange::new(pages.addr(), 0),
            RemoteRange::new(pages.addr() + page - 30, 60),
            RemoteRange::new(pages.page_addr(2), 10),
        ],
    ];
    for remote in &remote_ranges {
        let total: usize = remote.iter().map(|r| r.len).sum();
        // Bytes before the fault: every range up to the one reaching into page 1.
        let mut expected = 0;
        for r in remote {
            if r.addr + r.len <= boundary {
                expected += r.len;
            } else {
                expected += boundary - r.addr;
                break;
            }
        }
        let what = format!(
            "{} remote range(s) running into the inaccessible page",
            remote.len()
        );
        let result = match dir {
            Direction::Read => {
                let mut local = vec![UNTOUCHED; total];
                let r = process.read_vectored(&mut [IoSliceMut::new(&mut local)], remote);
                let before: Vec<u8> = remote
                    .iter()
                    .flat_map(|r| {
                        let at = r.addr - pages.addr();
                        model[at.min(page)..(at + r.len).min(page)].iter().copied()
                    })
                    .collect();
                compare(
                    &format!("{what}: bytes before the fault"),
                    &local[..expected],
                    &before[..expected],
                )?;
                ensure(local[expected..].iter().all(|&b| b == UNTOUCHED), || {
                    format!("{what}: local bytes past the fault were changed")
                })?;
                r
            }
            Direction::Write => {
                let fresh = ctx.rng.bytes(total);
                let r = process.write_vectored(&[IoSlice::new(&fresh)], remote);
                let mut left = &fresh[..expected];
                for range in remote {
                    if left.is_empty() {
                        break;
                    }
                    let at = range.addr - pages.addr();
                    let n = range.len.min(left.len());
                    model[at..at + n].copy_from_slice(&left[..n]);
                    left = &left[n..];
                }
                r
            }
        };
        match result {
            Err(VmError::BadAddress { transferred, addr })
                if transferred == expected && addr == boundary => {}
            other => {
                return Err(fail(format!(
                    "{what}: expected BadAddress {{ transferred: {expected}, addr: {boundary:#x} \
                     }}, got {other:?}"
                )));
            }
        }
    }
    let mut back = vec![0u8; page];
    process
        .read_exact(pages.addr(), &mut back)
        .map_err(vm_failed("reading page 0 back"))?;
    compare("the helper's page before the boundary", &back, &model)?;
    // Nothing past the fault was touched: page 2 is still as mapped, all zero.
    process
        .read_exact(pages.page_addr(2), &mut back)
        .map_err(vm_failed("reading page 2 back"))?;
    compare(
        "the helper's page after the boundary",
        &back,
        &vec![0; page],
    )?;
    Ok(format!(
        "{} across an inaccessible page: raw call returned {short} (stopped at {boundary:#x}); \
         the API returned BadAddress with the exact count and address, single and vectored",
        match dir {
            Direction::Read => "read",
            Direction::Write => "write",
        }
    ))
}

fn write_readonly(ctx: &mut Ctx) -> Checked {
    let mut pages = Pages::new(2).map_err(setup("map pages"))?;
    let page = pages.page_size();
    let original = ctx.rng.bytes(2 * page);
    pages
        .bytes_mut(0, 2 * page)
        .ok_or_else(|| fail("the fresh pages are not writable"))?
        .copy_from_slice(&original);
    pages
        .protect(1, Protection::ReadOnly)
        .map_err(setup("protect a page"))?;
    let readonly = pages.page_addr(1);
    let child = sleeper()?;
    let process = open(&child)?;
    let fresh = ctx.rng.bytes(64);

    let local = [iov(fresh.as_ptr() as usize, 16)];
    let remote = [iov(readonly + 8, 16)];
    // SAFETY: the local iovec is our own buffer; a write only reads it.
    let r = unsafe { sys::cma(Direction::Write, child.pid(), &local, &remote, 0) };
    expect_errno("raw write to a read-only page", r, libc::EFAULT)?;
    match process.write_all(readonly + 8, &fresh[..16]) {
        Err(VmError::BadAddress {
            transferred: 0,
            addr,
        }) if addr == readonly + 8 => {}
        other => {
            return Err(fail(format!(
                "writing a read-only page: expected BadAddress {{ transferred: 0, addr: {:#x} }}, \
                 got {other:?}",
                readonly + 8
            )));
        }
    }
    // A write starting on the writable page stops exactly where the read-only one begins.
    let mut expected = original.clone();
    match process.write_all(readonly - 8, &fresh[..24]) {
        Err(VmError::BadAddress {
            transferred: 8,
            addr,
        }) if addr == readonly => expected[page - 8..page].copy_from_slice(&fresh[..8]),
        other => {
            return Err(fail(format!(
                "writing across into a read-only page: expected BadAddress {{ transferred: 8, \
                 addr: {readonly:#x} }}, got {other:?}"
            )));
        }
    }
    let mut back = vec![0u8; 2 * page];
    process
        .read_exact(pages.addr(), &mut back)
        .map_err(vm_failed("reading the helper back"))?;
    compare(
        "the helper's pages after the refused writes",
        &back,
        &expected,
    )?;
    Ok(
        "writes to a read-only page refused (EFAULT raw, BadAddress via the API) and the page \
         unchanged; a write running into it stopped at its first byte"
            .into(),
    )
}
