//! Gives the library MPICH's SONAME, and puts the names MPI programs look for beside it:
//! `libmpi.so.12` (upstream MPICH, Intel MPI, mpi4py's wheel), `libmpich.so.12` (what Debian's
//! `mpicc.mpich` links) and `libmpich.so`. Each is a relative link to `libmpi.so`, which cargo
//! writes into the same folder once the library is linked.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmpi.so.12");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out; the library lands in <profile>.
    let Some(profile) = out.ancestors().nth(3) else {
        println!(
            "cargo:warning=cannot find the output folder above {}",
            out.display()
        );
        return;
    };
    for name in ["libmpi.so.12", "libmpich.so.12", "libmpich.so"] {
        if let Err(e) = link(profile, name) {
            println!(
                "cargo:warning=cannot link {name} in {}: {e}",
                profile.display()
            );
        }
    }
    println!("cargo:rerun-if-changed=include/mpi.h");
    if let Err(e) = install_header(profile) {
        println!(
            "cargo:warning=cannot write the header and pkg-config files in {}: {e}",
            profile.display()
        );
    }
}

/// Puts `mpi.h` in `<profile>/include` and pkg-config files naming it and the library in
/// `<profile>/pkgconfig`, for `onecopy mpicc` and for build systems.
fn install_header(profile: &Path) -> std::io::Result<()> {
    let include = profile.join("include");
    std::fs::create_dir_all(&include)?;
    let header = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/mpi.h"))?;
    write_if_changed(&include.join("mpi.h"), &header)?;
    let pkgconfig = profile.join("pkgconfig");
    std::fs::create_dir_all(&pkgconfig)?;
    let prefix = profile.canonicalize()?;
    let pc = format!(
        "prefix={}\nincludedir=${{prefix}}/include\nlibdir=${{prefix}}\n\nName: onecopy-mpi\nDescription: MPI on one node by single copy (MPICH ABI)\nVersion: {}\nCflags: -I${{includedir}}\nLibs: -L${{libdir}} -Wl,-rpath,${{libdir}} -lmpi\n",
        prefix.display(),
        env!("CARGO_PKG_VERSION")
    );
    for name in ["onecopy-mpi.pc", "mpi.pc"] {
        write_if_changed(&pkgconfig.join(name), pc.as_bytes())?;
    }
    Ok(())
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

fn link(dir: &Path, name: &str) -> std::io::Result<()> {
    let path = dir.join(name);
    match std::fs::read_link(&path) {
        Ok(target) if target == Path::new("libmpi.so") => return Ok(()),
        Ok(_) => std::fs::remove_file(&path)?,
        Err(_) if path.exists() => std::fs::remove_file(&path)?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink("libmpi.so", &path)
}
