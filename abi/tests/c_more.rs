//! The C suite: one program per function group (`abi/tests/c/`), each checking its own results
//! and printing `PASS`/`FAIL` lines, built against onecopy's mpi.h and against MPICH's, each run
//! under `onecopy run` at 1 to 4 ranks; every check of theirs must pass. Also profiling through
//! PMPI, a program started without the launcher, and the same binary's layouts on MPICH and on
//! onecopy.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Compiles `abi/tests/c/NAME.c` with `compiler` (onecopy's mpicc or mpicc.mpich).
fn build(name: &str, compiler: &[&std::ffi::OsStr], extra: &[&str], out: &Path) {
    let src = common::workspace().join(format!("abi/tests/c/{name}.c"));
    let status = Command::new(compiler[0])
        .args(&compiler[1..])
        .args(["-Wall", "-Werror", "-O1"])
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(&src)
        .status()
        .expect("the compiler runs");
    assert!(status.success(), "building {name}.c failed");
}

fn own_compiler() -> Vec<std::ffi::OsString> {
    vec![common::onecopy().into_os_string(), "mpicc".into()]
}

/// Builds `name` both ways (MPICH's header where installed).
fn binaries(name: &str) -> Vec<(String, PathBuf)> {
    let dir = common::scratch(&format!("c-more-{name}"));
    let own = own_compiler();
    let own: Vec<&std::ffi::OsStr> = own.iter().map(|s| s.as_os_str()).collect();
    let mut out = vec![(
        "onecopy's mpi.h".to_string(),
        dir.join(format!("{name}.own")),
    )];
    build(name, &own, &[], &out[0].1);
    if let Some(cc) = common::mpich_tool("mpicc.mpich", "libmpich-dev") {
        let path = dir.join(format!("{name}.mpich"));
        build(name, &[cc.as_os_str()], &[], &path);
        out.push(("MPICH's mpi.h".to_string(), path));
    }
    out
}

fn check(ran: &common::Ran, what: &str) {
    assert_eq!(ran.code, Some(0), "{what} failed:\n{}", ran.output);
    assert!(
        ran.output.contains("PASS"),
        "{what}: no PASS line:\n{}",
        ran.output
    );
    assert!(!ran.output.contains("FAIL"), "{what}:\n{}", ran.output);
}

fn run_everywhere(name: &str) {
    for (header, bin) in binaries(name) {
        for n in 1..=4 {
            let ran = common::run_job(n, &bin, &[], Duration::from_secs(120));
            check(&ran, &format!("{name} ({header}) on {n} ranks"));
        }
    }
}

#[test]
fn environment_errors_strings_info_and_predefined_attributes() {
    run_everywhere("env");
}

#[test]
fn point_to_point_in_every_mode_with_probes_cancel_and_persistent_requests() {
    run_everywhere("p2p");
}

#[test]
fn every_collective_with_every_operation_and_in_place() {
    run_everywhere("coll");
}

#[test]
fn communicators_groups_intercommunicators_attributes_and_error_handlers() {
    run_everywhere("comm");
}

#[test]
fn bad_handles_counts_buffers_tags_ranks_and_roots_are_errors_of_their_class() {
    run_everywhere("badinput");
}

#[test]
fn topologies_and_neighbor_collectives() {
    run_everywhere("topo");
}

#[test]
fn nonblocking_collectives_and_generalized_requests() {
    run_everywhere("icoll");
}

#[test]
fn a_preloaded_profiler_sees_each_call_of_the_program_once() {
    for (header, bin) in binaries("pmpi") {
        let dir = bin.parent().unwrap().to_path_buf();
        let lib = dir.join(format!(
            "libprofiler-{}.so",
            bin.extension().unwrap().to_string_lossy()
        ));
        let own = own_compiler();
        let compiler: Vec<std::ffi::OsString> = if header.starts_with("MPICH") {
            vec![
                common::mpich_tool("mpicc.mpich", "libmpich-dev")
                    .unwrap()
                    .into_os_string(),
            ]
        } else {
            own
        };
        let c: Vec<&std::ffi::OsStr> = compiler.iter().map(|s| s.as_os_str()).collect();
        build("profiler", &c, &["-shared", "-fPIC"], &lib);
        for n in [1, 2, 4] {
            let mut cmd = Command::new(common::onecopy());
            cmd.args(["run", "-n", &n.to_string(), "--"])
                .arg(&bin)
                .env("LD_PRELOAD", &lib);
            let ran = common::run_with_watchdog(cmd, Duration::from_secs(120));
            check(
                &ran,
                &format!("pmpi ({header}) with the profiler on {n} ranks"),
            );
            assert_eq!(
                ran.output.matches("profiler present").count(),
                n,
                "the profiler was not loaded:\n{}",
                ran.output
            );
        }
    }
}

#[test]
fn a_program_started_without_the_launcher_is_a_world_of_one() {
    // Built by onecopy's mpicc, the binary finds the library through its rpath.
    let (_, bin) = binaries("icoll").remove(0);
    let mut cmd = Command::new(&bin);
    cmd.env_remove("LD_LIBRARY_PATH");
    let ran = common::run_with_watchdog(cmd, Duration::from_secs(60));
    check(&ran, "icoll started alone");
    assert!(ran.output.contains("[rank 0/1]"), "{}", ran.output);
}

#[test]
fn the_same_binary_gives_the_same_layouts_on_mpich_and_on_onecopy() {
    // darray and subarray types, their sizes, extents, envelopes and packed elements.
    let Some(cc) = common::mpich_tool("mpicc.mpich", "libmpich-dev") else {
        return;
    };
    let Some(mpiexec) = common::mpich_tool("mpiexec.mpich", "mpich") else {
        return;
    };
    let bin = common::scratch("c-more-layouts").join("layouts.mpich");
    build("layouts", &[cc.as_os_str()], &[], &bin);
    let mut on_mpich = Command::new(mpiexec);
    on_mpich.args(["-n", "1"]).arg(&bin);
    let theirs = common::run_with_watchdog(on_mpich, Duration::from_secs(60));
    let ours = common::run_job(1, &bin, &[], Duration::from_secs(60));
    assert_eq!(theirs.code, Some(0), "{}", theirs.output);
    assert_eq!(ours.code, Some(0), "{}", ours.output);
    let lines = |s: &str| {
        s.lines()
            .filter(|l| l.contains("rank 0:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (t, o) = (lines(&theirs.output), lines(&ours.output));
    assert_eq!(t.len(), 26, "{}", theirs.output);
    for (a, b) in t.iter().zip(&o) {
        assert_eq!(a, b, "MPICH and onecopy differ");
    }
    assert_eq!(t.len(), o.len());
}
