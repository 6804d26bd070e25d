//! The function table in docs/mpi-functions.md against what the library really exports, and
//! the generated header against the sources.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn library() -> PathBuf {
    common::library()
}

fn workspace() -> PathBuf {
    common::workspace()
}

/// Names of the functions the library defines, as `nm -D` lists them.
fn exported() -> BTreeSet<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(library())
        .output()
        .expect("nm (binutils) runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            (kind == "T").then(|| name.to_string())
        })
        .collect()
}

/// The table's rows: function and status.
fn table() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(workspace().join("docs/mpi-functions.md")).expect("the table");
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

#[test]
fn every_function_in_the_table_is_exported_under_both_names_and_nothing_else_is() {
    let exported = exported();
    let rows = table();
    assert!(rows.len() > 350, "the table has {} rows", rows.len());
    let listed: BTreeSet<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    for (name, status) in &rows {
        assert!(
            status == "works" || status == "unsupported",
            "{name}: status {status:?}"
        );
        assert!(
            exported.contains(name),
            "{name} is in the table but not exported"
        );
        assert!(
            exported.contains(&format!("P{name}")),
            "P{name} is not exported"
        );
    }
    for name in exported.iter().filter(|n| n.starts_with("MPI_")) {
        assert!(
            listed.contains(name.as_str()),
            "{name} is exported but not in the table"
        );
        assert!(
            !name.ends_with("_c"),
            "{name}: large-count functions are exported only where they work"
        );
    }
    for name in exported.iter().filter(|n| n.starts_with("PMPI_")) {
        assert!(
            listed.contains(&name[1..]),
            "{name} is exported but its MPI_ name is not in the table"
        );
    }
    // MPI-4 functions that mpi4py would call if present, and the MPI-5 ABI query.
    for absent in [
        "MPI_Isendrecv",
        "MPI_Session_init",
        "MPI_Abi_get_version",
        "MPI_Send_c",
        "MPI_Comm_idup_with_info",
    ] {
        assert!(!exported.contains(absent), "{absent} must not be exported");
    }
}

#[test]
fn the_unsupported_rows_are_the_stubs_and_the_rest_have_prototypes() {
    let stubs = std::fs::read_to_string(workspace().join("abi/src/unsupported.rs")).expect("stubs");
    let header = std::fs::read_to_string(workspace().join("abi/include/mpi.h")).expect("header");
    for (name, status) in table() {
        let stub = stubs.contains(&format!(" {name} / P{name}"));
        assert_eq!(stub, status == "unsupported", "{name}: table says {status}");
        let declared = header.contains(&format!(" {name}("));
        assert_eq!(
            declared,
            status == "works",
            "{name}: declared in mpi.h: {declared}, table says {status}"
        );
    }
}

#[test]
fn the_header_and_the_table_are_what_the_generator_writes() {
    let out = Command::new("python3")
        .arg(workspace().join("abi/include/generate.py"))
        .arg("--check")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_library_is_libmpi_so_12_with_the_names_mpi_programs_look_for() {
    let lib = library();
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("readelf (binutils) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Library soname: [libmpi.so.12]"), "{text}");
    let dir = lib.parent().unwrap();
    for link in ["libmpi.so.12", "libmpich.so.12", "libmpich.so"] {
        let target = std::fs::read_link(dir.join(link)).unwrap_or_else(|e| panic!("{link}: {e}"));
        assert_eq!(target, Path::new("libmpi.so"), "{link}");
    }
    assert!(dir.join("include/mpi.h").is_file());
    assert!(dir.join("pkgconfig/mpi.pc").is_file());
}
