//! `procmem`: the receiver reads the sender's memory through `/proc/PID/mem` with `preadv` (one
//! call per contiguous remote piece, scattering into its own buffers). Same permission as CMA
//! (ptrace attach), but a file descriptor and a seek per piece.

use std::io::{IoSlice, IoSliceMut};

use super::channel::Link;
use super::cma::chunk_bytes;
use super::{Transport, TransportError, window_dst};
use crate::vm::{RemoteRange, VmError};

/// Reads `/proc/PID/mem`.
#[derive(Debug, Clone, Copy)]
pub struct ProcMem;

/// The peer's `/proc/PID/mem`, opened once per link.
fn mem_file<'l>(link: &'l Link) -> Result<&'l std::fs::File, TransportError> {
    if let Some(f) = link.proc_mem.get() {
        return Ok(f);
    }
    let pid = link.peer().pid();
    let f =
        std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => {
                TransportError::Vm(VmError::PermissionDenied {
                    pid,
                    reason: crate::vm::diagnose_denial(pid),
                })
            }
            Some(libc::ENOENT) | Some(libc::ESRCH) => link.peer_gone(),
            _ => TransportError::Io {
                op: "open /proc/PID/mem",
                source: e,
            },
        })?;
    Ok(link.proc_mem.get_or_init(|| f))
}

/// Fills `dst` exactly from `addr` in the peer, or reports where it stopped.
fn read_at(
    link: &Link,
    file: &std::fs::File,
    dst: &mut [IoSliceMut<'_>],
    addr: usize,
    done_before: usize,
) -> Result<(), TransportError> {
    let want: usize = dst.iter().map(|b| b.len()).sum();
    let mut got = 0;
    while got < want {
        let mut part = window_dst(dst, got, want - got);
        let n = rustix::io::preadv(file, &mut part, (addr + got) as u64);
        match n {
            Ok(n) if n > 0 => got += n,
            Ok(_) | Err(rustix::io::Errno::IO) | Err(rustix::io::Errno::FAULT) => {
                if !link.peer().is_alive() {
                    return Err(link.peer_gone());
                }
                return Err(VmError::BadAddress {
                    transferred: done_before + got,
                    addr: addr + got,
                }
                .into());
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(TransportError::Io {
                    op: "preadv /proc/PID/mem",
                    source: e.into(),
                });
            }
        }
    }
    Ok(())
}

/// Reads one byte of a forked child's memory through its `/proc/PID/mem`.
fn probe_child_mem() -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    static PROBE: u8 = 0x5A;
    let child = crate::child::Child::sleeper().map_err(|e| format!("cannot fork a probe: {e}"))?;
    let pid = child.pid();
    let file =
        std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => crate::vm::diagnose_denial(pid).to_string(),
            _ => format!("cannot open /proc/{pid}/mem: {e}"),
        })?;
    let mut byte = [0u8; 1];
    // The child is a fork of this process, so the static sits at the same address there.
    match file.read_at(&mut byte, std::ptr::addr_of!(PROBE) as u64) {
        Ok(1) if byte[0] == PROBE => Ok(()),
        Ok(_) => Err(format!("/proc/{pid}/mem returned the wrong byte")),
        Err(e) => Err(format!("cannot read /proc/{pid}/mem: {e}")),
    }
}

impl Transport for ProcMem {
    fn name(&self) -> &'static str {
        "procmem"
    }

    fn unavailable(&self) -> Option<String> {
        // Probed with a read of its own: the CMA probe's answer does not carry over, since a
        // seccomp filter that blocks the CMA calls leaves /proc/PID/mem readable.
        probe_child_mem().err()
    }

    fn send(&self, link: &Link, src: &[IoSlice<'_>]) -> Result<(), TransportError> {
        link.send_flow(5, src, false, &|_, _| Ok(()))
    }

    fn receive(&self, link: &Link, dst: &mut [IoSliceMut<'_>]) -> Result<usize, TransportError> {
        let fetch = |addr: usize, t: &mut [RemoteRange]| {
            let file = mem_file(link)?;
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(t);
            read_at(link, file, &mut [IoSliceMut::new(bytes)], addr, 0)
        };
        link.receive_flow(5, dst, Some(&fetch), &mut |_, offer, dst| {
            let file = mem_file(link)?;
            let chunk = chunk_bytes();
            let mut at = 0;
            for r in &offer.table {
                let mut off = 0;
                while off < r.len {
                    let len = chunk.min(r.len - off);
                    read_at(link, file, &mut window_dst(dst, at, len), r.addr + off, at)?;
                    off += len;
                    at += len;
                }
            }
            Ok(())
        })
    }
}
