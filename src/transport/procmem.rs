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

impl Transport for ProcMem {
    fn name(&self) -> &'static str {
        "procmem"
    }

    fn unavailable(&self) -> Option<String> {
        let cap = crate::vm::probe();
        if cap.can_read_child {
            None
        } else {
            Some(
                cap.child_error
                    .unwrap_or_else(|| "ptrace access to a child is refused".into()),
            )
        }
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
