//! The `vm` layer against real helper processes: exact and vectored transfers, the splitter's
//! limits, faults with exact counts, protection, vanished processes, argument checks, permissions
//! and the probe; and property tests for the splitter and for faults at random positions.

mod common;

use std::io::{IoSlice, IoSliceMut};
use std::time::Duration;

use common::{is_root, pattern, skip, watchdog};
use onecopy::child::{self, Child, Exit, Pages, Protection};
use onecopy::vm::split::{IOV_MAX, Limits, Segment, Splitter};
use onecopy::vm::{DenialReason, Process, RemoteRange, SyscallState, VmError, probe};
use proptest::prelude::*;

const UNTOUCHED: u8 = 0xa5;

fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

fn sleeper() -> (Child, Process) {
    let child = Child::sleeper().expect("fork a sleeper");
    let process = Process::from_pid(child.pid()).expect("open the sleeper");
    (child, process)
}

/// `count` pages of the pattern, with page `bad` (if any) made inaccessible.
fn pages_with_hole(count: usize, bad: Option<usize>) -> Pages {
    let mut pages = Pages::new(count).expect("map pages");
    let len = pages.len_bytes();
    let bytes = pages.bytes_mut(0, len).expect("fresh pages are writable");
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern(i);
    }
    if let Some(bad) = bad {
        pages.protect(bad, Protection::None).expect("mprotect");
    }
    pages
}

#[test]
fn read_exact_and_write_all() {
    let _w = watchdog("read_exact_and_write_all", 30);
    let source = patterned(10_000);
    let (_child, p) = sleeper();
    let addr = source.as_ptr() as usize;
    let mut buf = vec![0u8; 9_999];
    p.read_exact(addr + 1, &mut buf).unwrap();
    assert_eq!(buf, source[1..]);

    let fresh: Vec<u8> = (0..5_000).map(|i| (i % 251) as u8).collect();
    p.write_all(addr + 3, &fresh).unwrap();
    let mut back = vec![0u8; 10_000];
    p.read_exact(addr, &mut back).unwrap();
    assert_eq!(back[..3], source[..3]);
    assert_eq!(back[3..5_003], fresh[..]);
    assert_eq!(back[5_003..], source[5_003..]);
    // Our own copy is untouched: the child's memory is its own after the fork.
    assert_eq!(source, patterned(10_000));
}

#[test]
fn vectored_layouts_of_different_shapes() {
    let _w = watchdog("vectored_layouts_of_different_shapes", 30);
    let source = patterned(1 << 16);
    let base = source.as_ptr() as usize;
    let (_child, p) = sleeper();
    // Out of address order, with an empty range, against differently cut local buffers.
    let remote = [
        RemoteRange::new(base + 40_000, 5_000),
        RemoteRange::new(base + 7, 1),
        RemoteRange::new(base + 100, 0),
        RemoteRange::new(base + 4_090, 9_000),
    ];
    let want: Vec<u8> = remote
        .iter()
        .flat_map(|r| source[r.addr - base..r.addr - base + r.len].iter().copied())
        .collect();
    let (mut a, mut b, mut c, mut d) = (vec![0; 3], vec![], vec![0; 12_000], vec![0; 1_998]);
    let mut local = [
        IoSliceMut::new(&mut a),
        IoSliceMut::new(&mut b),
        IoSliceMut::new(&mut c),
        IoSliceMut::new(&mut d),
    ];
    assert_eq!(p.read_vectored(&mut local, &remote).unwrap(), 14_001);
    assert_eq!([a, c, d].concat(), want);

    // Local longer than remote: the remote total decides.
    let mut big = vec![UNTOUCHED; 20_000];
    let n = p
        .read_vectored(&mut [IoSliceMut::new(&mut big)], &remote)
        .unwrap();
    assert_eq!(n, 14_001);
    assert_eq!(big[..n], want[..]);
    assert!(big[n..].iter().all(|&x| x == UNTOUCHED));

    // Writes: three local pieces into two remote ranges.
    let pieces = [vec![1u8; 10], vec![2u8; 5], vec![3u8; 20]];
    let local: Vec<IoSlice<'_>> = pieces.iter().map(|v| IoSlice::new(v)).collect();
    let remote = [
        RemoteRange::new(base + 30_000, 30),
        RemoteRange::new(base + 10, 100),
    ];
    assert_eq!(p.write_vectored(&local, &remote).unwrap(), 35);
    let mut back = vec![0u8; 30];
    p.read_exact(base + 30_000, &mut back).unwrap();
    assert_eq!(back, [&[1u8; 10][..], &[2; 5], &[3; 15]].concat());
    let mut back = vec![0u8; 6];
    p.read_exact(base + 10, &mut back).unwrap();
    assert_eq!(back, [3, 3, 3, 3, 3, source[15]]);
}

#[test]
fn more_ranges_than_iov_max() {
    let _w = watchdog("more_ranges_than_iov_max", 60);
    let source = patterned(1 << 16);
    let base = source.as_ptr() as usize;
    let (_child, p) = sleeper();
    // 2500 remote ranges of 1..=20 bytes, every other one skipped, in reverse address order.
    let mut remote = Vec::new();
    let mut at = 0;
    for i in 0..2500 {
        let len = 1 + i % 20;
        remote.push(RemoteRange::new(base + at, len));
        at += 2 * len;
    }
    remote.reverse();
    let total: usize = remote.iter().map(|r| r.len).sum();
    let want: Vec<u8> = remote
        .iter()
        .flat_map(|r| source[r.addr - base..r.addr - base + r.len].iter().copied())
        .collect();
    // 1300 local buffers of another shape.
    let mut bufs: Vec<Vec<u8>> = (0..1300).map(|i| vec![0; 1 + i % 37]).collect();
    let local_total: usize = bufs.iter().map(Vec::len).sum();
    bufs.push(vec![0; total - local_total]);
    assert!(remote.len() > IOV_MAX && bufs.len() > IOV_MAX);
    let mut local: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
    assert_eq!(p.read_vectored(&mut local, &remote).unwrap(), total);
    assert_eq!(bufs.concat(), want);

    let fresh: Vec<Vec<u8>> = bufs
        .iter()
        .map(|b| b.iter().map(|x| x.wrapping_add(1)).collect())
        .collect();
    let local: Vec<IoSlice<'_>> = fresh.iter().map(|b| IoSlice::new(b)).collect();
    assert_eq!(p.write_vectored(&local, &remote).unwrap(), total);
    let mut again: Vec<Vec<u8>> = bufs.iter().map(|b| vec![0; b.len()]).collect();
    let mut local: Vec<IoSliceMut<'_>> = again.iter_mut().map(|b| IoSliceMut::new(b)).collect();
    assert_eq!(p.read_vectored(&mut local, &remote).unwrap(), total);
    assert_eq!(again, fresh);
}

#[test]
fn huge_remote_range_is_trimmed_to_the_local_buffer() {
    let _w = watchdog("huge_remote_range_is_trimmed_to_the_local_buffer", 30);
    let source = patterned(8192);
    let addr = source.as_ptr() as usize;
    let (_child, p) = sleeper();
    let huge = RemoteRange::new(addr, 1 << 40);
    let mut buf = vec![0u8; 5000];
    assert_eq!(
        p.read_vectored(&mut [IoSliceMut::new(&mut buf)], &[huge])
            .unwrap(),
        5000
    );
    assert_eq!(buf, source[..5000]);
    let fresh = [7u8; 100];
    assert_eq!(
        p.write_vectored(&[IoSlice::new(&fresh)], &[huge]).unwrap(),
        100
    );
    let mut back = vec![0u8; 8192];
    p.read_exact(addr, &mut back).unwrap();
    assert_eq!(back[..100], fresh);
    assert_eq!(back[100..], source[100..]);
}

#[test]
fn bad_address_reports_the_exact_count_and_fault() {
    let _w = watchdog("bad_address_reports_the_exact_count_and_fault", 30);
    let pages = pages_with_hole(3, Some(1));
    let page = pages.page_size();
    let boundary = pages.page_addr(1);
    let (_child, p) = sleeper();

    let mut buf = vec![UNTOUCHED; 2 * page];
    match p.read_exact(pages.addr() + 100, &mut buf) {
        Err(VmError::BadAddress { transferred, addr }) => {
            assert_eq!((transferred, addr), (page - 100, boundary));
        }
        other => panic!("expected BadAddress, got {other:?}"),
    }
    assert_eq!(buf[..page - 100], patterned(page)[100..]);
    assert!(buf[page - 100..].iter().all(|&b| b == UNTOUCHED));

    // A range starting on the bad page after good ones: the fault is its first byte.
    let remote = [
        RemoteRange::new(pages.addr(), 10),
        RemoteRange::new(boundary + 5, 10),
        RemoteRange::new(pages.page_addr(2), 10),
    ];
    let mut buf = vec![0u8; 30];
    match p.read_vectored(&mut [IoSliceMut::new(&mut buf)], &remote) {
        Err(VmError::BadAddress { transferred, addr }) => {
            assert_eq!((transferred, addr), (10, boundary + 5));
        }
        other => panic!("expected BadAddress, got {other:?}"),
    }

    // Writes stop at the same place, and nothing past the fault changes.
    let fresh = vec![0x11u8; 2 * page];
    match p.write_all(boundary - 8, &fresh) {
        Err(VmError::BadAddress { transferred, addr }) => {
            assert_eq!((transferred, addr), (8, boundary));
        }
        other => panic!("expected BadAddress, got {other:?}"),
    }
    let mut back = vec![0u8; page];
    p.read_exact(pages.addr(), &mut back).unwrap();
    assert_eq!(back[page - 8..], [0x11; 8]);
    assert_eq!(back[..page - 8], patterned(page)[..page - 8]);
    p.read_exact(pages.page_addr(2), &mut back).unwrap();
    assert_eq!(back, patterned(3 * page)[2 * page..]);
}

#[test]
fn write_to_read_only_memory_is_refused() {
    let _w = watchdog("write_to_read_only_memory_is_refused", 30);
    let mut pages = pages_with_hole(1, None);
    pages.protect(0, Protection::ReadOnly).unwrap();
    let page = pages.page_size();
    let (_child, p) = sleeper();
    match p.write_all(pages.addr() + 16, &[0u8; 32]) {
        Err(VmError::BadAddress {
            transferred: 0,
            addr,
        }) => assert_eq!(addr, pages.addr() + 16),
        other => panic!("expected BadAddress, got {other:?}"),
    }
    let mut back = vec![0u8; page];
    p.read_exact(pages.addr(), &mut back).unwrap();
    assert_eq!(back, patterned(page));
}

fn expect_no_such_process<T: std::fmt::Debug>(result: Result<T, VmError>) {
    match result {
        Err(VmError::NoSuchProcess { .. }) => {}
        other => panic!("expected NoSuchProcess, got {other:?}"),
    }
}

#[test]
fn exited_child_is_no_such_process() {
    let _w = watchdog("exited_child_is_no_such_process", 30);
    let word = [1u8; 8];
    let mut buf = [0u8; 8];
    // Opened while alive, then killed and reaped: the pidfd still knows.
    let (mut child, p) = sleeper();
    assert_eq!(child.kill(), Exit::Signal(libc::SIGKILL));
    assert!(!p.is_alive());
    expect_no_such_process(p.read_exact(word.as_ptr() as usize, &mut buf));
    expect_no_such_process(p.write_all(word.as_ptr() as usize, &word));
    // Opened after it is gone.
    expect_no_such_process(Process::from_pid(child.pid()));
    expect_no_such_process(Process::from_pid(i32::MAX));
}

#[test]
fn zombie_is_no_such_process() {
    let _w = watchdog("zombie_is_no_such_process", 30);
    let word = [1u8; 8];
    let mut buf = [0u8; 8];
    // SAFETY: the child only returns.
    let zombie = unsafe { Child::fork(|| 0) }.unwrap();
    assert!(zombie.wait_exited(Duration::from_secs(10)).unwrap());
    expect_no_such_process(Process::from_pid(zombie.pid()));

    let (sleeper, p) = sleeper();
    let pid = rustix::process::Pid::from_raw(sleeper.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    assert!(sleeper.wait_exited(Duration::from_secs(10)).unwrap());
    // Still unreaped: its pid is taken, but its memory is gone.
    assert!(std::path::Path::new(&format!("/proc/{}", sleeper.pid())).exists());
    expect_no_such_process(p.read_exact(word.as_ptr() as usize, &mut buf));
}

fn expect_invalid<T: std::fmt::Debug>(result: Result<T, VmError>) {
    match result {
        Err(VmError::InvalidArgument { .. }) => {}
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn bad_pids_and_wrapping_ranges_are_invalid_arguments() {
    let _w = watchdog("bad_pids_and_wrapping_ranges_are_invalid_arguments", 30);
    for pid in [0, -1, -12345, i32::MIN] {
        expect_invalid(Process::from_pid(pid));
    }
    // Against a process that has exited: a system call would say NoSuchProcess, so
    // InvalidArgument shows the ranges were refused before any.
    let (mut child, p) = sleeper();
    child.kill();
    let mut buf = [0u8; 16];
    let wrapping = [RemoteRange::new(usize::MAX - 4, 16)];
    expect_invalid(p.read_vectored(&mut [IoSliceMut::new(&mut buf)], &wrapping));
    expect_invalid(p.write_vectored(&[IoSlice::new(&buf)], &wrapping));
    let overflowing = [
        RemoteRange::new(0x1000, usize::MAX / 2),
        RemoteRange::new(0x1000, usize::MAX / 2),
        RemoteRange::new(0x1000, 16),
    ];
    expect_invalid(p.read_vectored(&mut [IoSliceMut::new(&mut buf)], &overflowing));
}

#[test]
fn a_thread_id_is_not_a_process() {
    let _w = watchdog("a_thread_id_is_not_a_process", 30);
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        tid_tx
            .send(rustix::thread::gettid().as_raw_nonzero().get())
            .unwrap();
        let _ = stop_rx.recv();
    });
    let tid = tid_rx.recv().unwrap();
    expect_invalid(Process::from_pid(tid));
    drop(stop_tx);
    thread.join().unwrap();
}

#[test]
fn writing_into_this_process_is_refused() {
    let _w = watchdog("writing_into_this_process_is_refused", 30);
    let target = [5u8; 16];
    let me = Process::from_pid(std::process::id() as i32).unwrap();
    expect_invalid(me.write_all(target.as_ptr() as usize, &[9u8; 16]));
    assert_eq!(std::hint::black_box(target), [5u8; 16]);
    // Reading our own memory is harmless and allowed.
    let mut buf = [0u8; 16];
    me.read_exact(target.as_ptr() as usize, &mut buf).unwrap();
    assert_eq!(buf, target);
}

#[test]
fn permission_denied_names_the_reason() {
    let _w = watchdog("permission_denied_names_the_reason", 30);
    if !is_root() {
        skip("not root: cannot run a child as another user against a root process");
        return;
    }
    static TARGET: [u8; 8] = *b"rootdata";
    let parent = std::process::id() as i32;
    // The child's verdict, as its exit code.
    const AS_EXPECTED: i32 = 0;
    const WRONG_REASON: i32 = 10;
    const WRONG_ERROR: i32 = 11;
    const READ_WORKED: i32 = 12;
    const SETUP_FAILED: i32 = 13;
    let body = move || {
        if child::become_user(child::NOBODY, child::NOBODY).is_err() {
            return SETUP_FAILED;
        }
        let Ok(p) = Process::from_pid(parent) else {
            return SETUP_FAILED;
        };
        let mut buf = [0u8; 8];
        match p.read_exact(TARGET.as_ptr() as usize, &mut buf) {
            Err(VmError::PermissionDenied { pid, reason }) => {
                let want = DenialReason::DifferentUser {
                    ours: child::NOBODY,
                    theirs: 0,
                };
                if pid == parent && reason == want {
                    AS_EXPECTED
                } else {
                    WRONG_REASON
                }
            }
            Err(_) => WRONG_ERROR,
            Ok(()) => READ_WORKED,
        }
    };
    // SAFETY: the child drops privileges with raw system calls, then uses the vm layer, which
    // allocates (glibc's allocator is fork-safe) and takes no lock shared with other threads.
    let mut c = unsafe { Child::fork(body) }.unwrap();
    let exit = c.wait_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(exit, Some(Exit::Code(AS_EXPECTED)), "child verdict");
}

#[test]
fn probe_reports_this_machine() {
    let _w = watchdog("probe_reports_this_machine", 30);
    let cap = probe();
    assert_eq!(
        cap.kernel,
        rustix::system::uname().release().to_string_lossy()
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let seccomp = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse::<u8>().ok());
    assert_eq!(cap.seccomp_mode, seccomp);
    let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok());
    assert_eq!(cap.yama_ptrace_scope, yama);
    assert_eq!(cap.can_read_child, cap.child_error.is_none());
    assert_eq!(
        cap.usable(),
        cap.syscalls == SyscallState::Available && cap.can_read_child
    );
    if !cap.usable() {
        assert!(!cap.advice.is_empty(), "a blocked machine gets advice");
    }
    // On a machine where the probe works, so must a real transfer, and the other way round.
    let source = [3u8; 32];
    let (_child, p) = sleeper();
    let mut buf = [0u8; 32];
    assert_eq!(
        p.read_exact(source.as_ptr() as usize, &mut buf).is_ok(),
        cap.usable()
    );
}

#[test]
fn kernel_limits() {
    let page = rustix::param::page_size();
    let limits = Limits::kernel();
    assert_eq!(limits.max_segments, 1024);
    // MAX_RW_COUNT: INT_MAX rounded down to a page.
    assert_eq!(limits.max_bytes, (i32::MAX as usize) & !(page - 1));
    if page == 4096 {
        assert_eq!(limits.max_bytes, 0x7fff_f000);
    }
}

// ---------------------------------------------------------------------------------------------
// Properties of the splitter

/// Lists of segments of these lengths, each at its own address with a gap after it, so that a
/// byte's address says which element and offset it came from.
fn segments(lens: &[usize], base: usize) -> Vec<Segment> {
    let mut addr = base;
    lens.iter()
        .map(|&len| {
            let s = Segment { addr, len };
            addr += len + 3;
            s
        })
        .collect()
}

/// Every byte address of a list, in order.
fn byte_addresses(list: &[Segment]) -> Vec<usize> {
    list.iter().flat_map(|s| s.addr..s.addr + s.len).collect()
}

/// Runs the splitter to the end, advancing each call by `moved(call_bytes)` (a short count when
/// less than the call), and checks every call; returns the bytes covered on each side.
fn run_splitter(
    local: &[Segment],
    remote: &[Segment],
    limits: Limits,
    mut moved: impl FnMut(usize) -> usize,
) -> Result<(Vec<usize>, Vec<usize>), TestCaseError> {
    let mut s = Splitter::new(local, remote, limits);
    let (mut l, mut r) = (Vec::new(), Vec::new());
    let (mut seen_l, mut seen_r) = (Vec::new(), Vec::new());
    let remote_bytes = byte_addresses(remote);
    for _ in 0..100_000 {
        prop_assert_eq!(s.remote_position(), remote_bytes.get(s.done()).copied());
        let n = s.next_call(&mut l, &mut r);
        if n == 0 {
            break;
        }
        prop_assert!(l.len() <= limits.max_segments && r.len() <= limits.max_segments);
        prop_assert!(n <= limits.max_bytes);
        prop_assert!(l.iter().chain(&r).all(|seg| seg.len > 0), "empty element");
        prop_assert_eq!(l.iter().map(|x| x.len).sum::<usize>(), n);
        prop_assert_eq!(r.iter().map(|x| x.len).sum::<usize>(), n);
        let m = moved(n).min(n);
        seen_l.extend(byte_addresses(&l).into_iter().take(m));
        seen_r.extend(byte_addresses(&r).into_iter().take(m));
        let before = s.done();
        s.advance(m);
        prop_assert_eq!(s.done(), before + m);
    }
    prop_assert_eq!(
        s.next_call(&mut l, &mut r),
        0,
        "the splitter did not finish"
    );
    Ok((seen_l, seen_r))
}

fn layout() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Limits)> {
    (
        prop::collection::vec(prop_oneof![Just(0usize), 0usize..40], 0..12),
        prop::collection::vec(prop_oneof![Just(0usize), 0usize..40], 0..12),
        1usize..5,
        1usize..50,
    )
        .prop_map(|(l, r, segs, bytes)| {
            (
                l,
                r,
                Limits {
                    max_segments: segs,
                    max_bytes: bytes,
                },
            )
        })
}

proptest! {
    #[test]
    fn splitter_covers_both_lists_in_order((l, r, limits) in layout()) {
        let local = segments(&l, 0x10_000);
        let remote = segments(&r, 0x90_000);
        let (seen_l, seen_r) = run_splitter(&local, &remote, limits, |n| n)?;
        let want = l.iter().sum::<usize>().min(r.iter().sum());
        let all_l = byte_addresses(&local);
        let all_r = byte_addresses(&remote);
        // In order and contiguous: exactly the first `want` bytes of each list, each once.
        prop_assert_eq!(&seen_l[..], &all_l[..want]);
        prop_assert_eq!(&seen_r[..], &all_r[..want]);
    }

    #[test]
    fn splitter_continues_after_short_counts(
        (l, r, limits) in layout(),
        shorts in prop::collection::vec(0usize..50, 1..20),
    ) {
        let local = segments(&l, 0x10_000);
        let remote = segments(&r, 0x90_000);
        // Each call moves some of its bytes (at least one, so that the run ends), as the kernel
        // does when a fault is later cleared, or when it stops at a page.
        let mut i = 0;
        let (seen_l, seen_r) = run_splitter(&local, &remote, limits, |n| {
            i += 1;
            1 + shorts[i % shorts.len()] % n
        })?;
        let want = l.iter().sum::<usize>().min(r.iter().sum());
        prop_assert_eq!(&seen_l[..], &byte_addresses(&local)[..want]);
        prop_assert_eq!(&seen_r[..], &byte_addresses(&remote)[..want]);
    }
}

// ---------------------------------------------------------------------------------------------
// Property: faults at random positions in random layouts, against real memory

const FAULT_PAGES: usize = 6;

fn fault_layout() -> impl Strategy<Value = (Vec<(usize, usize)>, Vec<usize>, usize, bool)> {
    let page = rustix::param::page_size();
    let span = FAULT_PAGES * page;
    (
        prop::collection::vec((0..span, 0..2 * page), 1..10),
        prop::collection::vec(0..3 * page, 1..10),
        0..FAULT_PAGES,
        any::<bool>(),
    )
        .prop_map(move |(remote, local, bad, write)| {
            // Clip every remote range to the mapping.
            let remote = remote
                .into_iter()
                .map(|(at, len)| (at, len.min(span - at)))
                .collect();
            (remote, local, bad, write)
        })
}

/// Where the first inaccessible byte lies in the transfer, if it is reached.
fn expected_fault(
    remote: &[(usize, usize)],
    want: usize,
    bad: std::ops::Range<usize>,
) -> Option<(usize, usize)> {
    let mut done = 0;
    for &(at, len) in remote {
        let take = len.min(want - done);
        if take > 0 && at < bad.end && at + take > bad.start {
            let fault = at.max(bad.start);
            return Some((done + fault - at, fault));
        }
        done += take;
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn faults_report_the_exact_count_and_address(
        (remote, local_lens, bad, write) in fault_layout(),
    ) {
        let _w = watchdog("faults_report_the_exact_count_and_address", 60);
        let pages = pages_with_hole(FAULT_PAGES, Some(bad));
        let page = pages.page_size();
        let base = pages.addr();
        let model = patterned(pages.len_bytes());
        let (_child, p) = sleeper();
        let ranges: Vec<RemoteRange> =
            remote.iter().map(|&(at, len)| RemoteRange::new(base + at, len)).collect();
        let want = local_lens.iter().sum::<usize>().min(remote.iter().map(|r| r.1).sum());
        let fault = expected_fault(&remote, want, bad * page..(bad + 1) * page);
        let moved = fault.map_or(want, |f| f.0);
        let result = if write {
            let bufs: Vec<Vec<u8>> =
                local_lens.iter().map(|&l| vec![0x3c; l]).collect();
            let local: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
            let result = p.write_vectored(&local, &ranges);
            // The good pages hold the written bytes up to the fault, and nothing else changed.
            let mut expect = model.clone();
            let mut left = moved;
            for &(at, len) in &remote {
                let n = len.min(left);
                expect[at..at + n].fill(0x3c);
                left -= n;
            }
            for i in (0..FAULT_PAGES).filter(|&i| i != bad) {
                let mut back = vec![0u8; page];
                p.read_exact(pages.page_addr(i), &mut back).unwrap();
                prop_assert_eq!(&back[..], &expect[i * page..(i + 1) * page], "page {}", i);
            }
            result
        } else {
            let mut bufs: Vec<Vec<u8>> =
                local_lens.iter().map(|&l| vec![UNTOUCHED; l]).collect();
            let mut local: Vec<IoSliceMut<'_>> =
                bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let result = p.read_vectored(&mut local, &ranges);
            let got = bufs.concat();
            let stream: Vec<u8> =
                remote.iter().flat_map(|&(at, len)| model[at..at + len].iter().copied()).collect();
            prop_assert_eq!(&got[..moved], &stream[..moved]);
            prop_assert!(got[moved..].iter().all(|&b| b == UNTOUCHED), "bytes past the fault");
            result
        };
        match (fault, result) {
            (None, Ok(n)) => prop_assert_eq!(n, want),
            (Some((transferred, at)), Err(VmError::BadAddress { transferred: t, addr })) => {
                prop_assert_eq!((t, addr), (transferred, base + at));
            }
            (fault, result) => {
                prop_assert!(false, "expected fault {:?}, got {:?}", fault, result);
            }
        }
    }
}
